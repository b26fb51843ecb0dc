// Package health checks that a service instance works, and says so on the
// bus and over HTTP.
//
// Every service gets built-in checks without code from its author: "bus"
// (a request to the instance itself through the broker answers), "capacity"
// (in-flight calls against each endpoint's MaxInFlight, and calls refused
// because an endpoint was full), "latency" (each endpoint's observed 99th
// percentile against what it declared with switchboard.ExpectLatency) and
// "events" (events dead-lettered or retried by the service's consumers).
// Package app attaches them to every service it runs; anyone else calls
// For(svc) before svc.Start and Start after it. The SDK has no notion of
// configuration yet, so there is no "config" check.
//
// A custom check is one line:
//
//	health.For(svc).Add("postgres", pghealth.Check(pool))
//
// Each check is healthy, degraded or unhealthy, with a message and the time
// its status last changed. An instance publishes its Report on
// ReportSubject every interval and answers requests for it on
// CheckSubject (docs/protocol.md, "Health"); `switchboard health` shows
// them. Package admin serves the same reports as /healthz and /readyz.
//
// Health sits above the SDK (it is a cross-cutting concern of layer 4) and
// imports no database or broker client: pghealth and redishealth hold the
// dependency checks.
package health

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Status is how well something works. The zero value is Healthy.
type Status int

// The statuses, from best to worst.
const (
	// Healthy: working as expected.
	Healthy Status = iota
	// Degraded: working, but worse than expected (slow, near a limit). An
	// instance that is degraded stays ready for traffic.
	Degraded
	// Unhealthy: not working. An instance with an unhealthy check is not
	// ready (/readyz answers 503, `switchboard health` exits with 5).
	Unhealthy
)

var statusNames = [...]string{"healthy", "degraded", "unhealthy"}

// String returns "healthy", "degraded" or "unhealthy".
func (s Status) String() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// MarshalText encodes the status as its name, as in JSON reports.
func (s Status) MarshalText() ([]byte, error) {
	if s < 0 || int(s) >= len(statusNames) {
		return nil, fmt.Errorf("health: invalid status %d", int(s))
	}
	return []byte(statusNames[s]), nil
}

// UnmarshalText decodes a status name.
func (s *Status) UnmarshalText(b []byte) error {
	for i, n := range statusNames {
		if string(b) == n {
			*s = Status(i)
			return nil
		}
	}
	return fmt.Errorf("health: unknown status %q: want healthy, degraded or unhealthy", b)
}

// Worst returns the worse of a and b.
func Worst(a, b Status) Status { return max(a, b) }

// Result is what a check found: a status and a message saying why, for a
// person reading `switchboard health`.
type Result struct {
	Status  Status
	Message string
}

// OK returns a Healthy result.
func OK(format string, args ...any) Result { return Result{Healthy, fmt.Sprintf(format, args...)} }

// Degradedf returns a Degraded result.
func Degradedf(format string, args ...any) Result {
	return Result{Degraded, fmt.Sprintf(format, args...)}
}

// Unhealthyf returns an Unhealthy result.
func Unhealthyf(format string, args ...any) Result {
	return Result{Unhealthy, fmt.Sprintf(format, args...)}
}

// CheckFunc checks one thing. It must honour ctx, which ends at the check's
// timeout; a check that panics or overruns is reported Unhealthy.
type CheckFunc func(ctx context.Context) Result

// ErrorCheck adapts a function that returns an error: nil is healthy ("ok"),
// an error unhealthy with the error as message.
func ErrorCheck(fn func(ctx context.Context) error) CheckFunc {
	return func(ctx context.Context) Result {
		if err := fn(ctx); err != nil {
			return Result{Unhealthy, err.Error()}
		}
		return Result{Healthy, "ok"}
	}
}

// CheckState is one check's state as reports carry it.
type CheckState struct {
	Name    string `json:"name"`
	Status  Status `json:"status"`
	Message string `json:"message"`
	// Since is when the status last changed (the first check counts as a
	// change).
	Since time.Time `json:"since"`
	// Checked is when the check last ran.
	Checked time.Time `json:"checked"`
	// DurationMS is how long it took, in milliseconds.
	DurationMS float64 `json:"duration_ms"`
}

// Report is an instance's health: what ReportSubject messages, CheckSubject
// replies and /readyz carry.
type Report struct {
	Service  string `json:"service"`
	Instance string `json:"instance"`
	Version  string `json:"version"`
	Host     string `json:"host,omitempty"`
	// Status is the worst status of the checks.
	Status Status `json:"status"`
	// Time is when the checks last ran.
	Time time.Time `json:"time"`
	// IntervalMS is how often the instance runs its checks and publishes
	// its report; a report older than three intervals is stale.
	IntervalMS int64        `json:"interval_ms"`
	Checks     []CheckState `json:"checks"`
}

// Check returns the state of the check named name, if the report has it.
func (r *Report) Check(name string) (CheckState, bool) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return CheckState{}, false
}

// Subjects and headers of the health protocol (docs/protocol.md, "Health").
const (
	// ReportPrefix starts the subject of every periodic report:
	// sb.health.report.<service>.<instance>. Listen to
	// "sb.health.report.>" for all of them.
	ReportPrefix = "sb.health.report."
	// CheckPrefix starts the subject each instance serves (without a queue
	// group) to answer with its Report: sb.health.check.<instance>.
	CheckPrefix = "sb.health.check."
	// HeaderRefresh on a check request, set to "1", asks the instance to
	// run its checks before answering rather than send the last report.
	HeaderRefresh = "Sb-Health-Refresh"
)

// ReportSubject is where instance id of service publishes its reports.
func ReportSubject(service, id string) string { return ReportPrefix + service + "." + id }

// CheckSubject is where instance id answers requests for its report.
func CheckSubject(id string) string { return CheckPrefix + id }

// ErrNotStarted is returned by Refresh on a Checker that is not running.
var ErrNotStarted = errors.New("health: checker is not running: call Start after the service started")

// oneLine makes a message fit a table row.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
