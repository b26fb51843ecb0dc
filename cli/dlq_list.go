package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
)

// DLQListOptions are the options of `switchboard dlq list`.
type DLQListOptions struct {
	*GlobalOptions
	dlqPlace
	dlqFilters
	// Limit, if positive, bounds how many dead letters are listed.
	Limit int
	// Timeout bounds the work on the bus.
	Timeout time.Duration
	// Wait is how long to listen for running services where the broker
	// cannot list its places.
	Wait time.Duration
}

func newDLQListCmd(g *GlobalOptions) *cobra.Command {
	o := &DLQListOptions{GlobalOptions: g}
	cmd := &cobra.Command{
		Use:   "list [--group GROUP --topic TOPIC]",
		Short: "List dead-letter places, or the dead letters of one",
		Long: `Without --group and --topic, list the dead-letter places that hold dead
letters: group, topic and count (--group or --topic alone narrows the list).
With both, list the dead letters of that place, oldest first: ID, original
topic, attempts, time of dead-lettering, earlier replays and reason.
Filters (--reason-match, --since, --until) and --limit narrow that list.

Listing consumes nothing and changes nothing: the group's handlers and a
later replay see the same dead letters. (On RabbitMQ, which cannot read a
queue in place, each dead letter is taken and put back as an identical copy,
confirmed before the original goes; see docs/protocol.md.)

RabbitMQ cannot list its queues over AMQP: there the places listed are
those of the consumer groups that running services announce (they answer
within --wait), and a stopped service's are named with --group and --topic.

With -o json the output is {"places":[{"group","topic","count"}]} (with
"source":"discovery" on RabbitMQ) or
{"group","topic","count","dead_letters":[{"id","topic","attempts","reason",
"dead_time",…}]}. A group or topic that has no dead-letter place ends with
exit code 4.`,
		Example: `  switchboard dlq list
  switchboard dlq list --group billing --topic order.placed
  switchboard dlq list --group billing --topic order.placed --reason-match 'card declined' --since 2h -o json`,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: runCommand(o),
	}
	o.dlqPlace.flags(cmd, false)
	o.dlqFilters.flags(cmd)
	cmd.Flags().IntVar(&o.Limit, "limit", 0, "list at most this many dead letters, the oldest (0: all)")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", dlqTimeout, "give up after this long")
	cmd.Flags().DurationVar(&o.Wait, "wait", defaultWait, "on RabbitMQ, how long to wait for running services to announce their consumer groups")
	return cmd
}

// Complete has nothing to read from args.
func (o *DLQListOptions) Complete(args []string) error { return nil }

// Validate checks the place, the filters and the flags.
func (o *DLQListOptions) Validate() error {
	if err := o.dlqPlace.validate(); err != nil {
		return err
	}
	if err := o.dlqFilters.validate(time.Now()); err != nil {
		return err
	}
	one := o.Group != "" && o.Topic != ""
	if !one && (o.dlqFilters.given() || o.Limit != 0) {
		return usageErrorf("--reason-match, --since, --until and --limit select dead letters of one place: give --group and --topic too")
	}
	if o.Limit < 0 {
		return usageErrorf("invalid --limit %d: want 0 (all) or more", o.Limit)
	}
	if o.Timeout <= 0 {
		return usageErrorf("invalid --timeout %s: want a positive duration, e.g. 30s", o.Timeout)
	}
	return validateWait(o.Wait)
}

// PlacesJSON is what `dlq list -o json` prints without a place.
type PlacesJSON struct {
	Places []bus.DeadLetterPlace `json:"places"`
	// Source is "discovery" when the broker cannot list its places
	// (RabbitMQ over AMQP) and they are those of the consumer groups that
	// running services announce; empty when the broker listed them.
	Source string `json:"source,omitempty"`
}

// PlaceJSON is what `dlq list -o json` prints for one place.
type PlaceJSON struct {
	Group       string           `json:"group"`
	Topic       string           `json:"topic"`
	Count       int              `json:"count"`
	DeadLetters []DeadLetterJSON `json:"dead_letters"`
}

// Run lists.
func (o *DLQListOptions) Run(ctx context.Context) error {
	conn, ctx, done, err := o.dlqConnect(ctx, o.Timeout)
	if err != nil {
		return err
	}
	defer done()
	if o.Group != "" && o.Topic != "" {
		f := o.filter
		f.Limit = o.Limit
		ds, err := conn.DeadLetters(ctx, o.Group, o.Topic, f)
		if err != nil {
			return dlqError(err, &o.dlqPlace)
		}
		if o.JSON() {
			return writeJSON(o.IO.Out, PlaceJSON{Group: o.Group, Topic: o.Topic, Count: len(ds), DeadLetters: deadLettersJSON(ds)})
		}
		if len(ds) == 0 {
			fmt.Fprintf(o.IO.ErrOut, "no dead letters of %s match\n", o.dlqPlace.String())
			return nil
		}
		return writeDeadLetters(o.IO.Out, ds)
	}
	all, source, err := o.places(ctx, conn)
	if err != nil {
		return dlqError(err, &o.dlqPlace)
	}
	places := []bus.DeadLetterPlace{}
	for _, p := range all {
		if (o.Group == "" || p.Group == o.Group) && (o.Topic == "" || p.Topic == o.Topic) {
			places = append(places, p)
		}
	}
	if len(places) == 0 && (o.Group != "" || o.Topic != "") {
		return &ExitError{Exit: ExitNotFound, Code: bus.NotFound.String(),
			Message: fmt.Sprintf("no dead letters for %s", describeSelection(o.Group, o.Topic)),
			Hint:    "list every place with 'switchboard dlq list'"}
	}
	if o.JSON() {
		return writeJSON(o.IO.Out, PlacesJSON{Places: places, Source: source})
	}
	if source == sourceDiscovery {
		fmt.Fprintf(o.IO.ErrOut, "%s cannot list its dead-letter places: these are those of the consumer groups that running services announce (name a stopped service's with --group and --topic)\n", conn.URL())
	}
	if len(places) == 0 {
		fmt.Fprintf(o.IO.ErrOut, "no dead letters on %s\n", conn.URL())
		return nil
	}
	tw := newTable(o.IO.Out)
	fmt.Fprintln(tw, "GROUP\tTOPIC\tDEAD LETTERS")
	for _, p := range places {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", p.Group, p.Topic, p.Count)
	}
	return tw.Flush()
}

// sourceDiscovery is PlacesJSON.Source when the places are those of the
// consumer groups of running services, the broker being unable to list them.
const sourceDiscovery = "discovery"

// places lists the dead-letter places on conn; where the broker cannot
// list them (RabbitMQ over AMQP), those of the consumer groups that running
// services announce, with source sourceDiscovery.
func (o *DLQListOptions) places(ctx context.Context, conn *bus.Conn) ([]bus.DeadLetterPlace, string, error) {
	all, err := conn.DeadLetterPlaces(ctx)
	if bus.ErrorCode(err) != bus.Unimplemented {
		return all, "", err
	}
	d := switchboard.NewDiscovery(conn)
	defer d.Close()
	insts, lerr := d.List(ctx, o.Wait)
	if lerr != nil {
		return nil, "", fmt.Errorf("list the consumer groups of running services: %w", lerr)
	}
	all, err = switchboard.KnownDeadLetterPlaces(ctx, conn, insts)
	return all, sourceDiscovery, err
}

func describeSelection(group, topic string) string {
	switch {
	case group != "" && topic != "":
		return "group " + group + " on topic " + topic
	case group != "":
		return "group " + group
	}
	return "topic " + topic
}

// DLQShowOptions are the options of `switchboard dlq show`.
type DLQShowOptions struct {
	*GlobalOptions
	dlqPlace
	// ID names the dead letter.
	ID string
	// Timeout bounds the work on the bus.
	Timeout time.Duration
}

func newDLQShowCmd(g *GlobalOptions) *cobra.Command {
	o := &DLQShowOptions{GlobalOptions: g}
	cmd := &cobra.Command{
		Use:   "show --group GROUP --topic TOPIC ID",
		Short: "Show one dead letter with its headers and body",
		Long: `Show one dead letter: why it failed (Sb-Dead-Reason), after how many
attempts, when, its CloudEvents attributes and other headers, and its body
decoded as 'switchboard watch' decodes it (JSON as JSON; protobuf as JSON
when the type is known).

With -o json the output is {"dead_letter":{"id",…},"event":{…}} where event
is in the format of 'watch -o json'. An unknown ID ends with exit code 4.`,
		Example: `  switchboard dlq show --group billing --topic order.placed 42
  switchboard dlq show --group billing --topic order.placed 42 -o json | jq .event.data`,
		Args: argsBetween(1, 1, "ID"),
		RunE: runCommand(o),
	}
	o.dlqPlace.flags(cmd, true)
	cmd.Flags().DurationVar(&o.Timeout, "timeout", dlqTimeout, "give up after this long")
	return cmd
}

// Complete takes the ID from args.
func (o *DLQShowOptions) Complete(args []string) error {
	if len(args) > 0 {
		o.ID = args[0]
	}
	return nil
}

// Validate checks the place and the ID.
func (o *DLQShowOptions) Validate() error {
	if err := o.dlqPlace.validate(); err != nil {
		return err
	}
	if o.ID == "" {
		return usageErrorf("empty dead-letter ID")
	}
	if o.Timeout <= 0 {
		return usageErrorf("invalid --timeout %s: want a positive duration, e.g. 30s", o.Timeout)
	}
	return nil
}

// ShowJSON is what `dlq show -o json` prints.
type ShowJSON struct {
	DeadLetter DeadLetterJSON `json:"dead_letter"`
	Event      EventJSON      `json:"event"`
}

// Run shows the dead letter.
func (o *DLQShowOptions) Run(ctx context.Context) error {
	conn, ctx, done, err := o.dlqConnect(ctx, o.Timeout)
	if err != nil {
		return err
	}
	defer done()
	d, err := conn.DeadLetter(ctx, o.Group, o.Topic, o.ID)
	if err != nil {
		return dlqError(err, &o.dlqPlace)
	}
	ev := eventOf(d.Message, &eventTypes{conn: conn})
	if o.JSON() {
		return writeJSON(o.IO.Out, ShowJSON{DeadLetter: deadLetterJSON(d), Event: ev})
	}
	w := o.IO.Out
	fmt.Fprintf(w, "dead letter %s of group %s on topic %s\n", d.ID, d.Group, d.Topic)
	fmt.Fprintf(w, "%-16s %s\n", "reason:", d.Reason)
	fmt.Fprintf(w, "%-16s %d\n", "attempts:", d.Attempts)
	if !d.Time.IsZero() {
		fmt.Fprintf(w, "%-16s %s\n", "dead at:", d.Time.UTC().Format(time.RFC3339Nano))
	}
	if d.Replayed > 0 {
		fmt.Fprintf(w, "%-16s %d times before\n", "replayed:", d.Replayed)
	}
	fmt.Fprintln(w)
	return ev.writeText(w)
}
