package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// dlqSelection is what replay and purge act on: IDs or --all, narrowed by
// filters.
type dlqSelection struct {
	dlqPlace
	dlqFilters
	IDs []string
	All bool
}

func (s *dlqSelection) flags(cmd *cobra.Command) {
	s.dlqPlace.flags(cmd, true)
	s.dlqFilters.flags(cmd)
	cmd.Flags().BoolVar(&s.All, "all", false, "every dead letter of the place (that the filters select)")
}

func (s *dlqSelection) validate(verb string) error {
	if err := s.dlqPlace.validate(); err != nil {
		return err
	}
	if err := s.dlqFilters.validate(time.Now()); err != nil {
		return err
	}
	switch {
	case len(s.IDs) == 0 && !s.All:
		return usageErrorf("name the dead letters to %s by ID, or give --all (with filters to narrow it)", verb).
			withHint("list the IDs with 'switchboard dlq list --group %s --topic %s'", s.Group, s.Topic)
	case len(s.IDs) > 0 && s.All:
		return usageErrorf("give dead-letter IDs or --all, not both")
	}
	for _, id := range s.IDs {
		if id == "" || strings.ContainsAny(id, " \t\r\n") {
			return usageErrorf("invalid dead-letter ID %q", id)
		}
	}
	s.filter.IDs = s.IDs
	return nil
}

// DLQReplayOptions are the options of `switchboard dlq replay`.
type DLQReplayOptions struct {
	*GlobalOptions
	dlqSelection
	// Timeout bounds the work on the bus.
	Timeout time.Duration
}

func newDLQReplayCmd(g *GlobalOptions) *cobra.Command {
	o := &DLQReplayOptions{GlobalOptions: g}
	cmd := &cobra.Command{
		Use:   "replay --group GROUP --topic TOPIC (ID... | --all) [filters]",
		Short: "Publish dead letters again to their group, then remove them",
		Long: `Publish the dead letters named by ID, or --all of them (narrowed by
--reason-match, --since and --until), again to their original topic for
their group alone, oldest first, with their original body and headers
(CloudEvents attributes included; the Sb-Dead-* headers removed) plus
Sb-Replayed (how many times replayed: 1, 2, …), Sb-Replay-Of (the dead
letter's ID) and Sb-Replay-Group. Other groups on the topic do not handle
it.

Each dead letter is removed only after the broker confirmed its replay, so
a replay that fails part way loses nothing: the error says how many were
replayed, and the rest are still dead letters. A replay that fails again in
the handler is dead-lettered anew after MaxAttempts. Deploy the fix first.

The group must still consume the topic (its queue or consumer exists):
otherwise nothing is replayed and the command ends with exit code 4, as it
does for an unknown ID.

With -o json the output is {"group","topic","replayed":[IDs],"count":N}.`,
		Example: `  switchboard dlq replay --group billing --topic order.placed 42 43
  switchboard dlq replay --group billing --topic order.placed --all
  switchboard dlq replay --group billing --topic order.placed --all --reason-match 'timeout' --since 1h`,
		RunE: runCommand(o),
	}
	o.dlqSelection.flags(cmd)
	cmd.Flags().DurationVar(&o.Timeout, "timeout", dlqTimeout, "give up after this long (what was replayed by then stays replayed)")
	return cmd
}

// Complete takes the IDs from args.
func (o *DLQReplayOptions) Complete(args []string) error {
	o.IDs = args
	return nil
}

// Validate checks the selection and the flags.
func (o *DLQReplayOptions) Validate() error {
	if err := o.dlqSelection.validate("replay"); err != nil {
		return err
	}
	if o.Timeout <= 0 {
		return usageErrorf("invalid --timeout %s: want a positive duration, e.g. 30s", o.Timeout)
	}
	return nil
}

// ReplayJSON is what `dlq replay -o json` prints.
type ReplayJSON struct {
	Group    string   `json:"group"`
	Topic    string   `json:"topic"`
	Replayed []string `json:"replayed"`
	Count    int      `json:"count"`
}

// Run replays.
func (o *DLQReplayOptions) Run(ctx context.Context) error {
	conn, ctx, done, err := o.dlqConnect(ctx, o.Timeout)
	if err != nil {
		return err
	}
	defer done()
	res, err := conn.ReplayDeadLetters(ctx, o.Group, o.Topic, o.filter)
	if err != nil {
		if res == nil {
			return dlqError(err, &o.dlqPlace)
		}
		e := failed(dlqError(err, &o.dlqPlace)).(*ExitError)
		e.Message = fmt.Sprintf("replayed %d of %d dead letters of %s, then: %s; nothing was lost: the other %d are still dead letters",
			len(res.Replayed), len(res.Replayed)+len(res.NotRemoved)+len(res.Pending), o.dlqPlace.String(), e.Message,
			len(res.NotRemoved)+len(res.Pending))
		if len(res.NotRemoved) > 0 {
			e.Message += fmt.Sprintf(" (%s were replayed but not removed: a later replay repeats them)", strings.Join(ids(res.NotRemoved), ", "))
		}
		e.Hint = "fix the cause, then run the same command again to replay the rest"
		return e
	}
	if o.JSON() {
		return writeJSON(o.IO.Out, ReplayJSON{Group: o.Group, Topic: o.Topic, Replayed: ids(res.Replayed), Count: len(res.Replayed)})
	}
	for _, d := range res.Replayed {
		fmt.Fprintf(o.IO.Out, "replayed %s to %s for group %s\n", d.ID, d.Topic, d.Group)
	}
	fmt.Fprintf(o.IO.ErrOut, "%d dead letter(s) of %s replayed and removed\n", len(res.Replayed), o.dlqPlace.String())
	return nil
}

// DLQPurgeOptions are the options of `switchboard dlq purge`.
type DLQPurgeOptions struct {
	*GlobalOptions
	dlqSelection
	// Yes confirms the deletion.
	Yes bool
	// Timeout bounds the work on the bus.
	Timeout time.Duration
}

func newDLQPurgeCmd(g *GlobalOptions) *cobra.Command {
	o := &DLQPurgeOptions{GlobalOptions: g}
	cmd := &cobra.Command{
		Use:   "purge --group GROUP --topic TOPIC (ID... | --all) [filters] --yes",
		Short: "Delete dead letters for good",
		Long: `Delete the dead letters named by ID, or --all of them (narrowed by
--reason-match, --since and --until), for good. Without --yes nothing is
deleted: the command says how many would be and ends with exit code 2.
An unknown ID ends with exit code 4 and deletes nothing.

With -o json the output is {"group","topic","purged":[IDs],"count":N}.`,
		Example: `  switchboard dlq purge --group billing --topic order.placed 42 --yes
  switchboard dlq purge --group billing --topic order.placed --all --until 168h --yes`,
		RunE: runCommand(o),
	}
	o.dlqSelection.flags(cmd)
	cmd.Flags().BoolVar(&o.Yes, "yes", false, "really delete")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", dlqTimeout, "give up after this long")
	return cmd
}

// Complete takes the IDs from args.
func (o *DLQPurgeOptions) Complete(args []string) error {
	o.IDs = args
	return nil
}

// Validate checks the selection and the flags.
func (o *DLQPurgeOptions) Validate() error {
	if err := o.dlqSelection.validate("purge"); err != nil {
		return err
	}
	if o.Timeout <= 0 {
		return usageErrorf("invalid --timeout %s: want a positive duration, e.g. 30s", o.Timeout)
	}
	return nil
}

// PurgeJSON is what `dlq purge -o json` prints.
type PurgeJSON struct {
	Group  string   `json:"group"`
	Topic  string   `json:"topic"`
	Purged []string `json:"purged"`
	Count  int      `json:"count"`
}

// Run purges, or without --yes says what it would purge.
func (o *DLQPurgeOptions) Run(ctx context.Context) error {
	conn, ctx, done, err := o.dlqConnect(ctx, o.Timeout)
	if err != nil {
		return err
	}
	defer done()
	if !o.Yes {
		ds, err := conn.DeadLetters(ctx, o.Group, o.Topic, o.filter)
		if err != nil {
			return dlqError(err, &o.dlqPlace)
		}
		return usageErrorf("refusing to purge without --yes: it would delete %d dead letter(s) of %s for good", len(ds), o.dlqPlace.String()).
			withHint("check them with 'switchboard dlq list --group %s --topic %s', then add --yes", o.Group, o.Topic)
	}
	gone, err := conn.PurgeDeadLetters(ctx, o.Group, o.Topic, o.filter)
	if err != nil {
		e := failed(dlqError(err, &o.dlqPlace)).(*ExitError)
		if len(gone) > 0 {
			e.Message = fmt.Sprintf("purged %d dead letters of %s, then: %s", len(gone), o.dlqPlace.String(), e.Message)
		}
		return e
	}
	if o.JSON() {
		return writeJSON(o.IO.Out, PurgeJSON{Group: o.Group, Topic: o.Topic, Purged: ids(gone), Count: len(gone)})
	}
	for _, d := range gone {
		fmt.Fprintf(o.IO.Out, "purged %s\n", d.ID)
	}
	fmt.Fprintf(o.IO.ErrOut, "%d dead letter(s) of %s deleted\n", len(gone), o.dlqPlace.String())
	return nil
}
