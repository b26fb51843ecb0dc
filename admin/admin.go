// Package admin serves a process's operational HTTP endpoints on its admin
// port: /healthz (liveness), /readyz (readiness) for Kubernetes probes, and
// /metrics for Prometheus.
//
// One Server covers every service in the process: readiness is the worst
// of their health checks (package health), and /metrics holds the
// Switchboard metrics of all of them (package metrics) plus the Go runtime
// and process collectors. Package app starts one when $SWITCHBOARD_ADMIN_ADDR
// is set; `switchboard dev` starts one for the whole platform.
//
//	GET /healthz  200 "ok" while the checkers run their checks on time;
//	              503 if one has not finished a round for three intervals
//	              (stuck: restarting the process helps).
//	GET /readyz   200 when every service's checks ran and none is
//	              unhealthy (degraded is still ready); 503 otherwise, and
//	              while starting or shutting down. The body is JSON:
//	              {"status": "...", "services": [Report, ...]}.
//	GET /metrics  the Prometheus text exposition format.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/health"
	"github.com/switchboard-dev/switchboard/metrics"
)

// Server is a process's admin HTTP server. Make one with New, add the
// checkers of its services, and Listen. Safe for concurrent use.
type Server struct {
	reg     *prometheus.Registry
	metrics *metrics.Metrics

	mu       sync.Mutex
	checkers []*health.Checker
	srv      *http.Server
	ln       net.Listener
	served   chan struct{}
}

// New returns a server with a fresh Prometheus registry holding the
// Switchboard metrics, the Go runtime and process collectors, and the
// health gauges of the checkers added later.
func New() *Server {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		panic(err) // a fresh registry: cannot happen
	}
	s := &Server{reg: reg, metrics: m}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), healthCollector{s})
	return s
}

// Metrics returns the metrics to instrument services with.
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// Registry returns the Prometheus registry /metrics serves, for
// application metrics of the process's own.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Add makes the checkers' reports part of /readyz, /healthz and the health
// gauges.
func (s *Server) Add(cs ...*health.Checker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range cs {
		if !slices.Contains(s.checkers, c) {
			s.checkers = append(s.checkers, c)
		}
	}
}

// Remove takes checkers out again (for a service that stopped for good).
func (s *Server) Remove(cs ...*health.Checker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkers = slices.DeleteFunc(s.checkers, func(c *health.Checker) bool { return slices.Contains(cs, c) })
}

func (s *Server) snapshot() []*health.Checker {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.checkers)
}

// Handler returns the HTTP handler for /healthz, /readyz and /metrics.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "Switchboard admin: /healthz (liveness), /readyz (readiness), /metrics (Prometheus)")
	})
	return mux
}

// Listen starts serving on addr ("127.0.0.1:0" for a free port, ":9090"
// for every interface) and returns once the port is open. Addr tells the
// address chosen.
func (s *Server) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin: listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	s.mu.Lock()
	if s.srv != nil {
		s.mu.Unlock()
		ln.Close()
		return errors.New("admin: already listening")
	}
	s.srv, s.ln, s.served = srv, ln, make(chan struct{})
	s.mu.Unlock()
	go func() {
		defer close(s.served)
		_ = srv.Serve(ln) // ends with ErrServerClosed on Shutdown
	}()
	return nil
}

// Addr returns the address the server listens on ("" before Listen).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// URL returns http://ADDR, or "" before Listen.
func (s *Server) URL() string {
	if a := s.Addr(); a != "" {
		return "http://" + a
	}
	return ""
}

// Shutdown stops listening and waits until ctx ends for requests being
// served.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	srv, served := s.srv, s.served
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	<-served
	if err != nil {
		return fmt.Errorf("admin: shutdown: %w", err)
	}
	return nil
}

// Readiness is the /readyz body.
type Readiness struct {
	// Status is the worst of the reports; unhealthy when there are none.
	Status   health.Status   `json:"status"`
	Ready    bool            `json:"ready"`
	Services []health.Report `json:"services"`
}

// Ready returns the readiness of the process's services: ready when each
// checker runs and none reports Unhealthy.
func (s *Server) Ready() Readiness {
	cs := s.snapshot()
	r := Readiness{Services: []health.Report{}}
	for _, c := range cs {
		rep := c.Report()
		if !c.Running() && rep.Status != health.Unhealthy {
			rep.Status = health.Unhealthy
			rep.Checks = append(rep.Checks, health.CheckState{Name: "lifecycle", Status: health.Unhealthy, Message: "the checks are not running (starting, or stopped)"})
		}
		r.Status = health.Worst(r.Status, rep.Status)
		r.Services = append(r.Services, rep)
	}
	if len(cs) == 0 {
		r.Status = health.Unhealthy
	}
	r.Ready = r.Status != health.Unhealthy
	return r
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	rd := s.Ready()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !rd.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(rd)
}

// healthz is liveness: the process answers HTTP and its checkers are not
// stuck. Failing dependencies are readiness, not liveness: restarting the
// process would not fix them.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	now := time.Now()
	for _, c := range s.snapshot() {
		rep := c.Report()
		if c.Running() && !rep.Time.IsZero() && now.Sub(rep.Time) > 3*c.Interval()+2*health.DefaultTimeout {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "stuck: the health checks of %s (instance %s) last finished %s ago\n", rep.Service, rep.Instance, now.Sub(rep.Time).Round(time.Second))
			return
		}
	}
	fmt.Fprintln(w, "ok")
}

// healthCollector exports the checks as gauges at scrape time.
type healthCollector struct{ s *Server }

var (
	checkDesc = prometheus.NewDesc("switchboard_health_check_status",
		"1 for the status each health check has now (healthy, degraded or unhealthy), 0 for the others.",
		[]string{"service", "instance", "check", "status"}, nil)
	busDesc = prometheus.NewDesc("switchboard_bus_connected",
		"1 while the instance's last bus health check made a round trip through the broker, else 0.",
		[]string{"service", "instance"}, nil)
)

func (h healthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- checkDesc
	ch <- busDesc
}

func (h healthCollector) Collect(ch chan<- prometheus.Metric) {
	for _, c := range h.s.snapshot() {
		rep := c.Report()
		for _, k := range rep.Checks {
			for _, st := range []health.Status{health.Healthy, health.Degraded, health.Unhealthy} {
				v := 0.0
				if k.Status == st {
					v = 1
				}
				ch <- prometheus.MustNewConstMetric(checkDesc, prometheus.GaugeValue, v, rep.Service, rep.Instance, k.Name, st.String())
			}
			if k.Name == "bus" {
				v := 0.0
				if k.Status != health.Unhealthy {
					v = 1
				}
				ch <- prometheus.MustNewConstMetric(busDesc, prometheus.GaugeValue, v, rep.Service, rep.Instance)
			}
		}
	}
}

// Attach instruments svc with the server's metrics and adds its health
// checker (health.For) to the server, and returns the checker: start it
// after svc.Start and stop it before svc.Shutdown. Call it before
// svc.Start.
func (s *Server) Attach(svc *switchboard.Service) *health.Checker {
	s.metrics.Instrument(svc)
	c := health.For(svc)
	s.Add(c)
	return c
}
