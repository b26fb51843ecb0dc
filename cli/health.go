package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/health"
	"github.com/switchboard-dev/switchboard/wire"
)

// HealthOptions are the options of `switchboard health`.
type HealthOptions struct {
	*GlobalOptions
	// Service, if set, limits the report to that service, which must run.
	Service string
	// Wait bounds how long to listen for instances to announce themselves.
	Wait time.Duration
	// Timeout bounds each instance's answer (its checks run first).
	Timeout time.Duration
	// Cached asks instances for their last report instead of running
	// their checks now.
	Cached bool
}

func newHealthCmd(g *GlobalOptions) *cobra.Command {
	o := &HealthOptions{GlobalOptions: g}
	cmd := &cobra.Command{
		Use:   "health [SERVICE]",
		Short: "Show the health checks of the running instances",
		Long: `Show the health of every running instance, or of SERVICE's: each check's
status (healthy, degraded or unhealthy), how long it has had it, and why.

Every service run with app.Run or by 'switchboard dev' has the built-in
checks: bus (a round trip through the broker), capacity (in-flight calls
against each endpoint's MaxInFlight, calls refused for it), latency (each
endpoint's observed p99 against switchboard.ExpectLatency) and events
(events dead-lettered or retried), plus the checks its author added
(health.For(svc).Add). The command finds the instances through discovery
and asks each to run its checks now (--cached: to send its last report).
An instance that runs without health checks is listed as "unknown".

Exit codes: 0 when no instance is unhealthy (degraded ones are still
serving), 5 when at least one is, 4 when SERVICE is not running, 3 when the
bus cannot be reached.`,
		Example: `  switchboard health
  switchboard health pricing
  switchboard health -o json | jq '.instances[] | select(.status != "healthy")'
  switchboard health trips || echo "trips is unhealthy (exit $?)"`,
		Args: argsBetween(0, 1, "SERVICE"),
		RunE: runCommand(o),
	}
	cmd.Flags().DurationVar(&o.Wait, "wait", defaultWait, "how long to wait for instances to answer discovery")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 2*health.DefaultTimeout, "how long each instance may take to run its checks and answer")
	cmd.Flags().BoolVar(&o.Cached, "cached", false, "send each instance's last report instead of running its checks now")
	return cmd
}

// Complete takes the service name from args.
func (o *HealthOptions) Complete(args []string) error {
	if len(args) > 0 {
		o.Service = args[0]
	}
	return nil
}

// Validate checks the name and the durations.
func (o *HealthOptions) Validate() error {
	if o.Service != "" {
		if err := wire.ValidateName("service", o.Service); err != nil {
			return usageErrorf("invalid service name %q: use letters, digits, '_' and '-'", o.Service)
		}
	}
	if o.Timeout <= 0 || o.Timeout > 5*time.Minute {
		return usageErrorf("invalid --timeout %s: want a duration between 1ms and 5m, e.g. 10s", o.Timeout)
	}
	return validateWait(o.Wait)
}

// StatusUnknown is the status of an instance that does not answer health
// requests: it runs without health checks, or did not answer in time.
const StatusUnknown = "unknown"

// InstanceHealth is one instance in `health -o json`.
type InstanceHealth struct {
	Service  string `json:"service"`
	Instance string `json:"instance"`
	Version  string `json:"version"`
	Host     string `json:"host,omitempty"`
	// Status is healthy, degraded, unhealthy or unknown.
	Status string `json:"status"`
	// Error says why the status is unknown.
	Error  string              `json:"error,omitempty"`
	Time   time.Time           `json:"time,omitzero"`
	Checks []health.CheckState `json:"checks"`
}

// HealthResult is the output of `health -o json`.
type HealthResult struct {
	// Status is the worst status of the instances that answered, or
	// unknown if none did.
	Status    string           `json:"status"`
	Instances []InstanceHealth `json:"instances"`
}

// Run asks every instance for its report and prints them.
func (o *HealthOptions) Run(ctx context.Context) error {
	conn, err := o.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	insts, err := instancesOf(ctx, conn, o.Wait, o.Service)
	if err != nil {
		return err
	}
	res := o.ask(ctx, conn, insts)
	if o.JSON() {
		if err := writeJSON(o.IO.Out, res); err != nil {
			return err
		}
	} else if err := o.print(res, conn.URL()); err != nil {
		return err
	}
	return unhealthyError(res)
}

// ask requests each instance's report, all at once.
func (o *HealthOptions) ask(ctx context.Context, conn *bus.Conn, insts []wire.InstanceInfo) HealthResult {
	out := make([]InstanceHealth, len(insts))
	var wg sync.WaitGroup
	for i, in := range insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = o.askOne(ctx, conn, in)
		}()
	}
	wg.Wait()
	res := HealthResult{Status: StatusUnknown, Instances: orEmpty(out)}
	worst := health.Status(-1)
	for _, ih := range out {
		var st health.Status
		if st.UnmarshalText([]byte(ih.Status)) == nil {
			worst = max(worst, st)
		}
	}
	if worst >= 0 {
		res.Status = worst.String()
	}
	return res
}

func (o *HealthOptions) askOne(ctx context.Context, conn *bus.Conn, in wire.InstanceInfo) InstanceHealth {
	ih := InstanceHealth{Service: in.Service, Instance: in.ID, Version: in.Version, Host: in.Host, Status: StatusUnknown, Checks: []health.CheckState{}}
	h := bus.Header{}
	if !o.Cached {
		h[health.HeaderRefresh] = "1"
	}
	rctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	rep, err := conn.Request(rctx, &bus.Message{Subject: health.CheckSubject(in.ID), Header: h})
	if err == nil {
		err = wire.DecodeError(rep.Header)
	}
	var r health.Report
	if err == nil {
		if jerr := json.Unmarshal(rep.Body, &r); jerr != nil {
			err = fmt.Errorf("unreadable health report: %v", jerr)
		}
	}
	switch {
	case bus.IsNoResponders(err):
		ih.Error = "runs without health checks (start it with app.Run, or health.For(svc).Start)"
	case bus.ErrorCode(err) == bus.DeadlineExceeded:
		ih.Error = fmt.Sprintf("no health report within %s", o.Timeout)
	case err != nil:
		ih.Error = trimPrefix(busMessage(err))
	default:
		ih.Status, ih.Time, ih.Checks = r.Status.String(), r.Time, orEmpty(r.Checks)
	}
	return ih
}

func (o *HealthOptions) print(res HealthResult, url string) error {
	if len(res.Instances) == 0 {
		fmt.Fprintf(o.IO.ErrOut, "no services answered on %s within %s\nhint: %s\n", url, o.Wait,
			"'switchboard dev' runs the example services; a service started with app.Run appears here once it runs")
		return nil
	}
	tw := newTable(o.IO.Out)
	fmt.Fprintln(tw, "SERVICE\tINSTANCE\tVERSION\tCHECK\tSTATUS\tSINCE\tMESSAGE")
	now := time.Now()
	counts := map[string]int{}
	for _, in := range res.Instances {
		counts[in.Status]++
		if len(in.Checks) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t%s\t-\t%s\n", in.Service, in.Instance, in.Version, in.Status, in.Error)
			continue
		}
		for _, c := range in.Checks {
			since := "-"
			if !c.Since.IsZero() {
				since = humanDuration(max(now.Sub(c.Since), 0))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", in.Service, in.Instance, in.Version, c.Name, c.Status, since, c.Message)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var parts []string
	for _, st := range []string{"healthy", "degraded", "unhealthy", StatusUnknown} {
		if n := counts[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	_, err := fmt.Fprintf(o.IO.Out, "\n%d instances: %s\n", len(res.Instances), strings.Join(parts, ", "))
	return err
}

// unhealthyError is the ExitUnhealthy error when an instance is unhealthy.
func unhealthyError(res HealthResult) error {
	var bad []string
	for _, in := range res.Instances {
		if in.Status != health.Unhealthy.String() {
			continue
		}
		var failing []string
		for _, c := range in.Checks {
			if c.Status == health.Unhealthy {
				failing = append(failing, c.Name+": "+c.Message)
			}
		}
		bad = append(bad, fmt.Sprintf("%s %s (%s)", in.Service, in.Instance, strings.Join(failing, "; ")))
	}
	if len(bad) == 0 {
		return nil
	}
	slices.Sort(bad)
	return &ExitError{Exit: ExitUnhealthy, Code: bus.Unavailable.String(),
		Message: fmt.Sprintf("%d of %d instances unhealthy: %s", len(bad), len(res.Instances), strings.Join(bad, ", ")),
		Hint:    "see the MESSAGE column; 'switchboard describe SERVICE' shows the instance"}
}
