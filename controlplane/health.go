package controlplane

import (
	"encoding/json"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
)

// HealthReportPattern is the subject pattern instances publish their
// health reports on (sb.health.report.<service>.<instance>, package health
// and docs/protocol.md, "Health"). The control plane reads the reports as
// JSON, by the protocol, so it works with instances of any version.
const HealthReportPattern = "sb.health.report.>"

// Health statuses, from best to worst, as reports and the API name them.
// HealthUnknown is for a service or instance that reports no health.
const (
	HealthHealthy   = "healthy"
	HealthDegraded  = "degraded"
	HealthUnhealthy = "unhealthy"
	HealthUnknown   = "unknown"
)

// HealthReport is one instance's health as it published it.
type HealthReport struct {
	Service    string        `json:"service"`
	Instance   string        `json:"instance"`
	Status     string        `json:"status"`
	Time       time.Time     `json:"time"`
	IntervalMS int64         `json:"interval_ms"`
	Checks     []HealthCheck `json:"checks"`

	received time.Time
}

// HealthCheck is one check of a HealthReport.
type HealthCheck struct {
	Name    string    `json:"name"`
	Status  string    `json:"status"`
	Message string    `json:"message"`
	Since   time.Time `json:"since"`
}

// stale reports whether the report is older than three intervals.
func (h *HealthReport) stale(now time.Time) bool {
	iv := time.Duration(h.IntervalMS) * time.Millisecond
	if iv <= 0 {
		iv = 10 * time.Second
	}
	return now.Sub(h.received) > 3*iv
}

func healthRank(s string) int {
	switch s {
	case HealthHealthy:
		return 1
	case HealthDegraded:
		return 2
	case HealthUnhealthy:
		return 3
	}
	return 0 // unknown
}

// worseHealth returns the worse of a and b, where any known status is worse
// than unknown (one instance reporting says more than none).
func worseHealth(a, b string) string {
	if healthRank(b) > healthRank(a) {
		return b
	}
	if a == "" {
		return HealthUnknown
	}
	return a
}

func (cp *ControlPlane) observeHealth(m *bus.Message) {
	var r HealthReport
	if json.Unmarshal(m.Body, &r) != nil || r.Instance == "" || healthRank(r.Status) == 0 {
		return
	}
	if len(r.Checks) > 64 { // what an instance sends is bounded here
		r.Checks = r.Checks[:64]
	}
	for i := range r.Checks {
		r.Checks[i].Name = cut(r.Checks[i].Name, 128)
		r.Checks[i].Message = cut(r.Checks[i].Message, 1024)
	}
	r.received = time.Now()
	s := cp.state
	s.mu.Lock()
	defer s.mu.Unlock()
	if in := s.instances[r.Instance]; in != nil {
		in.health = &r
	}
}

// cut shortens s to at most n bytes, marking it.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
