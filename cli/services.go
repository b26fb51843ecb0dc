package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/wire"
)

// defaultWait is how long services and describe listen for instances to
// answer. Instances on a healthy bus answer within milliseconds; listing
// returns early once answers stop arriving for a quarter of it.
const defaultWait = time.Second

// ServicesOptions are the options of `switchboard services`.
type ServicesOptions struct {
	*GlobalOptions
	// Names, if any, restrict the list to these services; each must be
	// running.
	Names []string
	// Wait bounds how long to listen for instances to announce themselves.
	Wait time.Duration
}

func newServicesCmd(g *GlobalOptions) *cobra.Command {
	o := &ServicesOptions{GlobalOptions: g}
	cmd := &cobra.Command{
		Use:   "services [SERVICE...]",
		Short: "List the services running on the bus",
		Long: `List the services running on the bus: their versions, how many instances
run, and their endpoints.

Discovery has no registry: the command asks every instance to announce
itself and lists those that answer within --wait. Naming services restricts
the list to them; a named service that is not running ends the command with
exit code 4.`,
		Example: `  switchboard services
  switchboard services trips pricing
  switchboard services -o json | jq '.services[].name'`,
		RunE: runCommand(o),
	}
	cmd.Flags().DurationVar(&o.Wait, "wait", defaultWait, "how long to wait for instances to answer")
	return cmd
}

// Complete takes the service names from args.
func (o *ServicesOptions) Complete(args []string) error {
	o.Names = args
	return nil
}

// Validate checks the names and --wait.
func (o *ServicesOptions) Validate() error {
	for _, n := range o.Names {
		if err := wire.ValidateName("service", n); err != nil {
			return usageErrorf("invalid service name %q: use letters, digits, '_' and '-'", n)
		}
	}
	return validateWait(o.Wait)
}

func validateWait(d time.Duration) error {
	if d <= 0 || d > time.Minute {
		return usageErrorf("invalid --wait %s: want a duration between 1ms and 1m, e.g. 500ms", d)
	}
	return nil
}

// serviceJSON is one service in `services -o json`.
type serviceJSON struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Versions    []string `json:"versions"`
	Instances   int      `json:"instances"`
	Endpoints   []string `json:"endpoints"`
}

// Run lists the services.
func (o *ServicesOptions) Run(ctx context.Context) error {
	conn, err := o.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	sums, err := listServices(ctx, conn, o.Wait, o.Names...)
	if err != nil {
		return err
	}
	if len(o.Names) > 0 {
		var picked []switchboard.ServiceSummary
		for _, n := range o.Names {
			i := slices.IndexFunc(sums, func(s switchboard.ServiceSummary) bool { return s.Name == n })
			if i < 0 {
				return notRunning(n, sums, conn.URL())
			}
			picked = append(picked, sums[i])
		}
		sums = picked
	}
	if o.JSON() {
		out := struct {
			Services []serviceJSON `json:"services"`
		}{Services: []serviceJSON{}}
		for _, s := range sums {
			out.Services = append(out.Services, serviceJSON{Name: s.Name, Description: s.Description,
				Versions: s.Versions, Instances: len(s.Instances), Endpoints: orEmpty(s.Endpoints)})
		}
		return writeJSON(o.IO.Out, out)
	}
	if len(sums) == 0 {
		fmt.Fprintf(o.IO.ErrOut, "no services answered on %s within %s\nhint: %s\n", conn.URL(), o.Wait,
			"'switchboard dev' runs the example services; a service started with the SDK appears here once it runs")
		return nil
	}
	tw := newTable(o.IO.Out)
	fmt.Fprintln(tw, "SERVICE\tVERSIONS\tINSTANCES\tENDPOINTS\tDESCRIPTION")
	for _, s := range sums {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", s.Name, joinOrDash(s.Versions), len(s.Instances), joinOrDash(s.Endpoints), s.Description)
	}
	return tw.Flush()
}

// listServices asks every instance on conn to announce itself and groups
// those heard from within wait by service. Listing stops once answers stop
// coming, so on a slow bus a service may answer late: each of want that did
// not answer is asked once more on its own.
func listServices(ctx context.Context, conn *bus.Conn, wait time.Duration, want ...string) ([]switchboard.ServiceSummary, error) {
	d := switchboard.NewDiscovery(conn)
	defer d.Close()
	insts, err := d.List(ctx, wait)
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	for _, name := range want {
		if slices.ContainsFunc(insts, func(in wire.InstanceInfo) bool { return in.Service == name }) {
			continue
		}
		more, err := d.Lookup(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("look up service %s: %w", name, err)
		}
		insts = append(insts, more...)
	}
	return switchboard.Summarize(insts), nil
}

// notRunning is the ExitNotFound error for a service that did not answer.
func notRunning(name string, sums []switchboard.ServiceSummary, url string) *ExitError {
	e := &ExitError{Exit: ExitNotFound, Code: bus.NotFound.String(), Details: map[string]string{"service": name}}
	if len(sums) == 0 {
		e.Message = fmt.Sprintf("service %q is not running: no services are running on %s", name, url)
		e.Hint = "start the service, or run 'switchboard dev' for the example services"
		return e
	}
	names := make([]string, len(sums))
	for i, s := range sums {
		names[i] = s.Name
	}
	e.Message = fmt.Sprintf("service %q is not running; running services: %s", name, strings.Join(names, ", "))
	e.Hint = "check the name with 'switchboard services'"
	return e
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// instancesOf lists the running instances of service, or of every service
// when service is "", waiting up to wait for them to answer. A named
// service that is not running is the ExitNotFound error naming what runs.
func instancesOf(ctx context.Context, conn *bus.Conn, wait time.Duration, service string) ([]wire.InstanceInfo, error) {
	var want []string
	if service != "" {
		want = []string{service}
	}
	sums, err := listServices(ctx, conn, wait, want...)
	if err != nil {
		return nil, err
	}
	var insts []wire.InstanceInfo
	for _, s := range sums {
		if service == "" || s.Name == service {
			insts = append(insts, s.Instances...)
		}
	}
	if service != "" && len(insts) == 0 {
		return nil, notRunning(service, sums, conn.URL())
	}
	return insts, nil
}
