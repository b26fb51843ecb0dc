package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/wire"
)

// FaultOptions are the options of `switchboard fault set|clear|list`.
type FaultOptions struct {
	*GlobalOptions
	// Op is wire.FaultSet, wire.FaultClear or wire.FaultGet (list).
	Op string
	// Service names the service whose instances change; optional for list.
	Service string
	// Instance limits the command to one instance.
	Instance string
	// Endpoint or Topic is the target ("*" for all of them).
	Endpoint, Topic string
	// The fault, for set.
	Latency, Jitter time.Duration
	LatencyRate     float64
	ErrorRate       float64
	Code            string
	DropRate        float64
	Pause           bool
	For             time.Duration
	Wait            time.Duration
	fault           wire.Fault
}

func newFaultCmd(g *GlobalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fault",
		Short: "Inject faults into running services, for chaos tests",
		Long: `Inject faults into the running instances of a service, at runtime and
without a restart: added latency (fixed, plus uniform jitter), a share of
calls or events failed with a chosen error code, dropped replies (the
handler runs, the caller waits for its deadline) and paused consumers
(events stay with the broker until the pause is cleared).

A fault targets one endpoint (--endpoint NAME, "*" for all) or one consumed
topic (--topic NAME). Each instance confirms the change; 'describe' and
'fault list' show what is in force and how often it fired, and instances
log every change. --for makes a fault clear itself after a while, so a
forgotten experiment ends on its own.

Services started with switchboard.WithoutFaultInjection take no commands.`,
		Example: `  switchboard fault set pricing --endpoint quote --latency 200ms --jitter 100ms
  switchboard fault set dispatch --endpoint '*' --error-rate 0.2 --code Unavailable --for 5m
  switchboard fault set trips --endpoint request_trip --drop-rate 0.05
  switchboard fault set payments --topic trip.completed --pause
  switchboard fault list
  switchboard fault clear payments --topic trip.completed
  switchboard fault clear pricing`,
	}
	cmd.AddCommand(newFaultSubCmd(g, wire.FaultSet), newFaultSubCmd(g, wire.FaultClear), newFaultSubCmd(g, wire.FaultGet))
	return cmd
}

func newFaultSubCmd(g *GlobalOptions, op string) *cobra.Command {
	o := &FaultOptions{GlobalOptions: g, Op: op}
	cmd := &cobra.Command{RunE: runCommand(o)}
	switch op {
	case wire.FaultSet:
		cmd.Use = "set SERVICE (--endpoint NAME | --topic NAME) FAULT-FLAGS"
		cmd.Short = "Add a fault to every instance of a service (or one)"
		cmd.Long = `Add a fault to every running instance of SERVICE, or to one with
--instance. It replaces a fault already on the same endpoint or topic.
Give at least one of --latency, --jitter, --error-rate, --drop-rate
(endpoints) or --pause (topics).`
		cmd.Example = `  switchboard fault set pricing --endpoint quote --latency 200ms --jitter 100ms --latency-rate 0.5
  switchboard fault set dispatch --endpoint '*' --error-rate 0.2 --code ResourceExhausted --for 5m
  switchboard fault set payments --topic trip.completed --pause`
		cmd.Args = argsBetween(1, 1, "SERVICE")
	case wire.FaultClear:
		cmd.Use = "clear SERVICE [--endpoint NAME | --topic NAME]"
		cmd.Short = "Remove faults from a service's instances"
		cmd.Long = `Remove the fault on the endpoint or topic named, or every fault when
neither is given, from every running instance of SERVICE (or one with
--instance).`
		cmd.Example = `  switchboard fault clear pricing
  switchboard fault clear payments --topic trip.completed`
		cmd.Args = argsBetween(1, 1, "SERVICE")
	case wire.FaultGet:
		cmd.Use = "list [SERVICE]"
		cmd.Short = "Show the faults in force, per instance"
		cmd.Long = `Show the faults in force on every instance (of SERVICE, if given): the
target, the fault, since when, until when and how often it fired.
With -o json: a list of {service, instance, faults: [...]}.`
		cmd.Example = `  switchboard fault list
  switchboard fault list pricing -o json`
		cmd.Args = argsBetween(0, 1, "[SERVICE]")
	}
	f := cmd.Flags()
	f.StringVar(&o.Instance, "instance", "", "change only this instance (an id from 'switchboard describe SERVICE')")
	f.DurationVar(&o.Wait, "wait", defaultWait, "how long to wait for instances to answer")
	if op != wire.FaultGet {
		f.StringVar(&o.Endpoint, "endpoint", "", `the endpoint the fault applies to ("*" for all)`)
		f.StringVar(&o.Topic, "topic", "", `the consumed topic the fault applies to ("*" for all)`)
	}
	if op == wire.FaultSet {
		f.DurationVar(&o.Latency, "latency", 0, "add this latency before the handler runs")
		f.DurationVar(&o.Jitter, "jitter", 0, "add up to this much more latency, uniformly at random")
		f.Float64Var(&o.LatencyRate, "latency-rate", 0, "share of calls delayed, 0..1 (default all)")
		f.Float64Var(&o.ErrorRate, "error-rate", 0, "share of calls or events failed instead of handled, 0..1")
		f.StringVar(&o.Code, "code", "", "error code of failed calls (default Unavailable)")
		f.Float64Var(&o.DropRate, "drop-rate", 0, "share of replies dropped after the handler ran, 0..1 (endpoints)")
		f.BoolVar(&o.Pause, "pause", false, "pause the consumer of --topic until the fault is cleared")
		f.DurationVar(&o.For, "for", 0, "clear the fault by itself after this long (default: until cleared)")
	}
	return cmd
}

// Complete reads the service argument and builds the fault.
func (o *FaultOptions) Complete(args []string) error {
	if len(args) > 0 {
		o.Service = args[0]
	}
	o.fault = wire.Fault{Endpoint: o.Endpoint, Topic: o.Topic,
		LatencyMS: o.Latency.Milliseconds(), JitterMS: o.Jitter.Milliseconds(), LatencyRate: o.LatencyRate,
		ErrorRate: o.ErrorRate, ErrorCode: o.Code, DropRate: o.DropRate, Pause: o.Pause}
	return nil
}

// Validate rejects a bad command line before anything is sent.
func (o *FaultOptions) Validate() error {
	if o.Service != "" {
		if err := wire.ValidateName("service", o.Service); err != nil {
			return usageErrorf("invalid service name %q: use letters, digits, '_' and '-'", o.Service)
		}
	}
	if o.Instance != "" {
		if err := wire.ValidateName("instance", o.Instance); err != nil {
			return usageErrorf("invalid instance id %q: use an id from 'switchboard describe %s'", o.Instance, o.Service)
		}
	}
	if err := validateWait(o.Wait); err != nil {
		return err
	}
	if o.Endpoint != "" && o.Topic != "" {
		return usageErrorf("give --endpoint or --topic, not both")
	}
	switch o.Op {
	case wire.FaultSet:
		if o.Endpoint == "" && o.Topic == "" {
			return usageErrorf("fault set needs --endpoint NAME or --topic NAME (\"*\" for all)")
		}
		for name, d := range map[string]time.Duration{"--latency": o.Latency, "--jitter": o.Jitter, "--for": o.For} {
			if d < 0 {
				return usageErrorf("invalid %s %s: want a positive duration, e.g. 200ms", name, d)
			}
			if d > 0 && d < time.Millisecond {
				return usageErrorf("invalid %s %s: the smallest step is 1ms", name, d)
			}
		}
		if err := o.fault.Validate(); err != nil {
			var be *bus.Error
			if errors.As(err, &be) {
				return usageErrorf("%s", strings.TrimPrefix(be.Message, "wire: "))
			}
			return usageErrorf("%v", err)
		}
	}
	return nil
}

// Run sends the command to each instance and prints their answers.
func (o *FaultOptions) Run(ctx context.Context) error {
	conn, err := o.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	insts, err := instancesOf(ctx, conn, o.Wait, o.Service)
	if err != nil {
		return err
	}
	if o.Instance != "" {
		insts = slices.DeleteFunc(insts, func(in wire.InstanceInfo) bool { return in.ID != o.Instance })
		if len(insts) == 0 {
			return &ExitError{Exit: ExitNotFound, Code: bus.NotFound.String(),
				Message: fmt.Sprintf("service %q has no running instance %q", o.Service, o.Instance),
				Hint:    fmt.Sprintf("run 'switchboard describe %s' to see its instances", o.Service)}
		}
	}
	slices.SortFunc(insts, func(a, b wire.InstanceInfo) int { return strings.Compare(a.Service+a.ID, b.Service+b.ID) })

	client := switchboard.NewClient(conn, switchboard.WithCaller("cli"))
	defer client.Close()
	cmd := wire.FaultCommand{Op: o.Op}
	switch {
	case o.Op == wire.FaultSet:
		cmd.Faults, cmd.ForMS = []wire.Fault{o.fault}, o.For.Milliseconds()
	case o.Endpoint != "" || o.Topic != "":
		cmd.Faults = []wire.Fault{{Endpoint: o.Endpoint, Topic: o.Topic}}
	}
	states := []wire.FaultState{}
	var firstErr error
	var failedIDs []string
	for _, in := range insts {
		if o.Op == wire.FaultGet {
			// Discovery already carries each instance's faults.
			states = append(states, wire.FaultState{Service: in.Service, Instance: in.ID, Faults: noFaults(in.Faults)})
			continue
		}
		st, err := switchboard.InjectFaults(ctx, client, in.ID, cmd)
		if err != nil {
			firstErr = cmpErr(firstErr, err)
			failedIDs = append(failedIDs, in.ID)
			continue
		}
		st.Faults = noFaults(st.Faults)
		states = append(states, *st)
	}
	if len(states) > 0 || firstErr == nil {
		if o.JSON() {
			if err := writeJSON(o.IO.Out, states); err != nil {
				return err
			}
		} else if err := writeFaults(o.IO.Out, states, time.Now()); err != nil {
			return err
		}
	}
	if firstErr != nil {
		e, _ := failed(firstErr).(*ExitError)
		if e != nil && len(insts) > 1 {
			e.Message = fmt.Sprintf("%s (on %d of %d instances: %s)", e.Message, len(failedIDs), len(insts), strings.Join(failedIDs, ", "))
		}
		if e != nil && (e.Code == bus.NotFound.String() || e.Code == bus.InvalidArgument.String()) {
			e.Hint = fmt.Sprintf("run 'switchboard describe %s' to see its endpoints and topics", o.Service)
		}
		if e != nil {
			return e
		}
		return firstErr
	}
	return nil
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func noFaults(f []wire.ActiveFault) []wire.ActiveFault {
	if f == nil {
		return []wire.ActiveFault{}
	}
	return f
}

// writeFaults prints one line per fault in force, per instance.
func writeFaults(w io.Writer, states []wire.FaultState, now time.Time) error {
	n := 0
	for _, st := range states {
		n += len(st.Faults)
	}
	if n == 0 {
		_, err := fmt.Fprintf(w, "no faults in force on %d instance(s)\n", len(states))
		return err
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "SERVICE\tINSTANCE\tFAULT\tSINCE\tUNTIL\tFIRED")
	for _, st := range states {
		for _, f := range st.Faults {
			until := "cleared by hand"
			if !f.Until.IsZero() {
				until = "in " + humanDuration(max(f.Until.Sub(now), 0))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s ago\t%s\t%d\n", st.Service, st.Instance, f.Fault.String(),
				humanDuration(max(now.Sub(f.Since), 0)), until, f.Fired)
		}
	}
	return tw.Flush()
}
