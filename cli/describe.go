package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/resilience"
	"github.com/switchboard-dev/switchboard/wire"
)

// DescribeOptions are the options of `switchboard describe`.
type DescribeOptions struct {
	*GlobalOptions
	// Service is the service to describe.
	Service string
	// Wait bounds how long to listen for instances to announce themselves.
	Wait time.Duration
}

func newDescribeCmd(g *GlobalOptions) *cobra.Command {
	o := &DescribeOptions{GlobalOptions: g}
	cmd := &cobra.Command{
		Use:   "describe SERVICE",
		Short: "Show a service's endpoints, schemas, events and instances",
		Long: `Show what a running service offers: its endpoints with the JSON Schemas of
their request and response bodies, the events it publishes and consumes,
and its instances with id, version, host, pid and uptime.

Schemas are derived from the service's Go or protobuf types; any endpoint
can be called with a JSON body of that shape ('switchboard call').
A service that is not running ends the command with exit code 4.`,
		Example: `  switchboard describe trips
  switchboard describe trips -o json | jq '.endpoints[].name'`,
		Args: argsBetween(1, 1, "SERVICE"),
		RunE: runCommand(o),
	}
	cmd.Flags().DurationVar(&o.Wait, "wait", defaultWait, "how long to wait for instances to answer")
	return cmd
}

// Complete takes the service name from args.
func (o *DescribeOptions) Complete(args []string) error {
	if len(args) > 0 {
		o.Service = args[0]
	}
	return nil
}

// Validate checks the service name and --wait.
func (o *DescribeOptions) Validate() error {
	if err := wire.ValidateName("service", o.Service); err != nil {
		return usageErrorf("invalid service name %q: use letters, digits, '_' and '-'", o.Service)
	}
	return validateWait(o.Wait)
}

// Description is what `describe -o json` prints.
type Description struct {
	Name        string              `json:"name"`
	Description string              `json:"description,omitempty"`
	Versions    []string            `json:"versions"`
	Endpoints   []wire.EndpointInfo `json:"endpoints"`
	Publishes   []wire.TopicInfo    `json:"publishes"`
	Subscribes  []wire.TopicInfo    `json:"subscribes"`
	Instances   []InstanceSummary   `json:"instances"`
}

// InstanceSummary describes one instance in Description.
type InstanceSummary struct {
	ID            string                        `json:"id"`
	Version       string                        `json:"version"`
	Host          string                        `json:"host"`
	PID           int                           `json:"pid"`
	Started       time.Time                     `json:"started"`
	UptimeSeconds float64                       `json:"uptime_seconds"`
	Metadata      map[string]string             `json:"metadata,omitempty"`
	Stats         map[string]wire.EndpointStats `json:"stats,omitempty"`
	// Faults are the faults injected into the instance ('switchboard fault').
	Faults []wire.ActiveFault `json:"faults,omitempty"`
	// Status is what the instance reports about itself beyond the above,
	// by name, e.g. "resilience" (breakers, shedding, retry budget).
	Status map[string]json.RawMessage `json:"status,omitempty"`
}

// Run describes the service.
func (o *DescribeOptions) Run(ctx context.Context) error {
	conn, err := o.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	sums, err := listServices(ctx, conn, o.Wait, o.Service)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(sums, func(s switchboard.ServiceSummary) bool { return s.Name == o.Service })
	if i < 0 {
		return notRunning(o.Service, sums, conn.URL())
	}
	d := describe(sums[i], time.Now())
	if o.JSON() {
		return writeJSON(o.IO.Out, d)
	}
	return d.writeText(o.IO.Out)
}

// describe merges what the instances of one service announce. Instances of
// different versions may differ; the newest version's definition of an
// endpoint or topic wins.
func describe(s switchboard.ServiceSummary, now time.Time) Description {
	d := Description{Name: s.Name, Description: s.Description, Versions: s.Versions,
		Endpoints: []wire.EndpointInfo{}, Publishes: []wire.TopicInfo{}, Subscribes: []wire.TopicInfo{}}
	insts := slices.Clone(s.Instances)
	slices.SortStableFunc(insts, func(a, b wire.InstanceInfo) int { return compareVersions(b.Version, a.Version) })
	for _, in := range insts {
		for _, e := range in.Endpoints {
			if !slices.ContainsFunc(d.Endpoints, func(x wire.EndpointInfo) bool { return x.Name == e.Name }) {
				d.Endpoints = append(d.Endpoints, e)
			}
		}
		for _, t := range in.Publishes {
			if !slices.ContainsFunc(d.Publishes, func(x wire.TopicInfo) bool { return x.Topic == t.Topic }) {
				d.Publishes = append(d.Publishes, t)
			}
		}
		for _, t := range in.Subscribes {
			if !slices.ContainsFunc(d.Subscribes, func(x wire.TopicInfo) bool { return x.Topic == t.Topic && x.Group == t.Group }) {
				d.Subscribes = append(d.Subscribes, t)
			}
		}
		if d.Description == "" {
			d.Description = in.Description
		}
	}
	slices.SortFunc(d.Endpoints, func(a, b wire.EndpointInfo) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(d.Publishes, func(a, b wire.TopicInfo) int { return cmp.Compare(a.Topic, b.Topic) })
	slices.SortFunc(d.Subscribes, func(a, b wire.TopicInfo) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Group, b.Group))
	})
	for _, in := range s.Instances {
		d.Instances = append(d.Instances, InstanceSummary{ID: in.ID, Version: in.Version, Host: in.Host, PID: in.PID,
			Started: in.Started, UptimeSeconds: max(now.Sub(in.Started), 0).Round(time.Millisecond).Seconds(),
			Metadata: in.Metadata, Stats: in.Stats, Faults: in.Faults, Status: in.Status})
	}
	return d
}

// compareVersions orders semantic versions by major, minor and patch
// number; what does not parse sorts first, by text.
func compareVersions(a, b string) int {
	pa, oka := parseVersion(a)
	pb, okb := parseVersion(b)
	if !oka || !okb {
		return cmp.Or(cmp.Compare(boolInt(oka), boolInt(okb)), cmp.Compare(a, b))
	}
	for i := range pa {
		if c := cmp.Compare(pa[i], pb[i]); c != 0 {
			return c
		}
	}
	return cmp.Compare(a, b)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func parseVersion(v string) ([3]int, bool) {
	var out [3]int
	if i := strings.IndexAny(v, "-+"); i >= 0 {
		v = v[:i]
	}
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return out, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return out, false
		}
		out[i] = n
	}
	return out, true
}

func (d *Description) writeText(w io.Writer) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "Service:\t%s\n", d.Name)
	if d.Description != "" {
		fmt.Fprintf(tw, "Description:\t%s\n", d.Description)
	}
	fmt.Fprintf(tw, "Versions:\t%s\n", joinOrDash(d.Versions))
	fmt.Fprintf(tw, "Instances:\t%d\n", len(d.Instances))
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(w, "\nEndpoints:\n")
	if len(d.Endpoints) == 0 {
		fmt.Fprintf(w, "  (none)\n")
	}
	for _, e := range d.Endpoints {
		fmt.Fprintf(w, "  %s", e.Name)
		if e.Description != "" {
			fmt.Fprintf(w, " - %s", e.Description)
		}
		fmt.Fprintf(w, "\n    subject: %s\n", e.Subject)
		if e.MaxInFlight > 0 {
			fmt.Fprintf(w, "    max in flight: %d\n", e.MaxInFlight)
		}
		writeSchema(w, "request", e.RequestType, e.Request)
		writeSchema(w, "response", e.ReplyType, e.Response)
	}

	fmt.Fprintf(w, "\nPublishes:\n")
	if len(d.Publishes) == 0 {
		fmt.Fprintf(w, "  (none declared)\n")
	}
	for _, t := range d.Publishes {
		fmt.Fprintf(w, "  %s\n", t.Topic)
		writeSchema(w, "event", t.Type, t.Schema)
	}

	fmt.Fprintf(w, "\nSubscribes:\n")
	if len(d.Subscribes) == 0 {
		fmt.Fprintf(w, "  (none)\n")
	}
	for _, t := range d.Subscribes {
		fmt.Fprintf(w, "  %s (group %s)\n", t.Topic, t.Group)
		writeSchema(w, "event", t.Type, t.Schema)
	}

	fmt.Fprintf(w, "\nInstances:\n")
	tw = newTable(w)
	fmt.Fprintln(tw, "  ID\tVERSION\tHOST\tPID\tUPTIME\tREQUESTS\tERRORS")
	for _, in := range d.Instances {
		var reqs, errs int64
		for _, st := range in.Stats {
			reqs += st.Requests
			errs += st.Errors
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%d\t%d\n", in.ID, in.Version, in.Host, in.PID,
			humanDuration(time.Duration(in.UptimeSeconds*float64(time.Second))), reqs, errs)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, in := range d.Instances {
		writeProtections(w, in)
	}
	var faults []wire.FaultState
	for _, in := range d.Instances {
		if len(in.Faults) > 0 {
			faults = append(faults, wire.FaultState{Service: d.Name, Instance: in.ID, Faults: in.Faults})
		}
	}
	if len(faults) == 0 {
		return nil
	}
	// Loud on purpose: a fault left on is an outage someone forgot.
	fmt.Fprintf(w, "\nFAULTS INJECTED (clear with 'switchboard fault clear %s'):\n", d.Name)
	return writeFaults(w, faults, time.Now())
}

// writeSchema prints one JSON Schema indented under its label.
func writeSchema(w io.Writer, label, typ string, schema json.RawMessage) {
	fmt.Fprintf(w, "    %s", label)
	if typ != "" {
		fmt.Fprintf(w, " (%s)", typ)
	}
	if len(schema) == 0 {
		fmt.Fprintf(w, ": no schema\n")
		return
	}
	// Every schema names its draft; in text that is noise.
	schema = schemaKeyword.ReplaceAll(schema, []byte("{"))
	fmt.Fprintf(w, ":\n      %s\n", indentJSON(schema, "      "))
}

var schemaKeyword = regexp.MustCompile(`^\{\s*"\$schema"\s*:\s*"[^"]*"\s*,`)

// writeProtections prints what an instance's resilience protections are
// doing, if it reports them.
func writeProtections(w io.Writer, in InstanceSummary) {
	raw, ok := in.Status[resilience.StatusName]
	if !ok {
		return
	}
	var st resilience.Status
	if err := json.Unmarshal(raw, &st); err != nil {
		fmt.Fprintf(w, "\nProtections of %s: unreadable (%v)\n", in.ID, err)
		return
	}
	fmt.Fprintf(w, "\nProtections of %s:\n", in.ID)
	for _, b := range st.Breakers {
		target := b.Service
		if b.Endpoint != "" {
			target += "." + b.Endpoint
		}
		if b.Instance != "" {
			target += " @" + b.Instance
		}
		fmt.Fprintf(w, "  breaker %s: %s for %s", target, b.State, humanDuration(max(time.Since(b.Since), 0)))
		if b.State == resilience.StateOpen {
			fmt.Fprintf(w, ", probing in %s", humanDuration(b.RetryIn))
		}
		if b.LastFailure != "" && b.State != resilience.StateClosed {
			fmt.Fprintf(w, " (last failure: %s)", b.LastFailure)
		}
		fmt.Fprintln(w)
	}
	for _, s := range st.Shed {
		fmt.Fprintf(w, "  shedding %s: limit %d, in flight %d, admitted %d, rejected %d\n", s.Endpoint, s.Limit, s.InFlight, s.Admitted, s.Rejected)
	}
	if b := st.RetryBudget; b != nil {
		fmt.Fprintf(w, "  retry budget: %d retries for %d calls (ratio %g, %.1f available)\n", b.Retries, b.Calls, b.Ratio, b.Available)
	}
	for _, l := range st.RateLimits {
		fmt.Fprintf(w, "  rate limit (%s): %g/s", l.Side, l.Limit.Rate)
		if len(l.Overrides) > 0 {
			keys := slices.Sorted(maps.Keys(l.Overrides))
			for _, k := range keys {
				fmt.Fprintf(w, ", %s %g/s", k, l.Overrides[k].Rate)
			}
		}
		fmt.Fprintln(w)
	}
}
