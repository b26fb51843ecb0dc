package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchboard-dev/switchboard/bus"
)

// dlqTimeout is the default bound on a dlq command's work on the bus.
const dlqTimeout = time.Minute

func newDLQCmd(g *GlobalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect, replay and purge dead letters",
		Long: `Inspect, replay and purge dead letters: the events a consumer group gave up
on after its handler failed them MaxAttempts times (5 by default). Each
group keeps its own dead letters per topic, its dead-letter place, with
the reason of the last failure, the attempt count, the original topic and
group and the time, and the original event unchanged.

A dead letter's ID names it within its place: on NATS it is the stream
sequence number, on RabbitMQ a digest of the message (12 hex digits). It
stays the same for as long as the dead letter is kept.

  list     the places (group, topic, count), or with --group and --topic
           the dead letters of one, without consuming or changing them
  show     one dead letter with its headers and its decoded body
  replay   publish dead letters again to their topic, for their group
           only, and remove each once the broker confirmed its replay
  purge    delete dead letters for good (needs --yes)

A replay that fails part way loses nothing: a dead letter is removed only
after its replay was confirmed, and what was not replayed stays. Replayed
events carry the header Sb-Replayed (how many times replayed) and
Sb-Replay-Of (the dead letter's ID).

RabbitMQ cannot list its queues over AMQP, so there 'list' without --group
and --topic shows the places of the consumer groups that running services
announce, and says so.`,
		Example: `  switchboard dlq list
  switchboard dlq list --group billing --topic order.placed
  switchboard dlq show --group billing --topic order.placed 42
  switchboard dlq replay --group billing --topic order.placed --all --reason-match 'timeout'
  switchboard dlq purge --group billing --topic order.placed --all --since 24h --yes`,
	}
	for _, add := range []func(*GlobalOptions) *cobra.Command{newDLQListCmd, newDLQShowCmd, newDLQReplayCmd, newDLQPurgeCmd} {
		cmd.AddCommand(add(g))
	}
	return cmd
}

// dlqPlace are the --group and --topic flags.
type dlqPlace struct {
	Group string
	Topic string
}

func (p *dlqPlace) flags(cmd *cobra.Command, required bool) {
	f := cmd.Flags()
	f.StringVar(&p.Group, "group", "", "the consumer group that dead-lettered the events")
	f.StringVar(&p.Topic, "topic", "", "the topic the events were published to")
	if required {
		_ = cmd.MarkFlagRequired("group")
		_ = cmd.MarkFlagRequired("topic")
	}
}

func (p *dlqPlace) validate() error {
	if p.Group != "" && !bus.ValidName(p.Group) {
		return usageErrorf("invalid --group %q: use letters, digits, '_' and '-'", p.Group)
	}
	if p.Topic != "" {
		if err := validateTopic(p.Topic); err != nil {
			return err
		}
	}
	return nil
}

func (p *dlqPlace) String() string { return "group " + p.Group + " on topic " + p.Topic }

// dlqFilters are the flags that select dead letters.
type dlqFilters struct {
	// ReasonMatch is a regular expression the reason must match.
	ReasonMatch string
	// Since and Until bound the time of dead-lettering: a Go duration
	// back from now (24h) or an RFC 3339 time.
	Since, Until string

	filter bus.DeadLetterFilter
}

func (f *dlqFilters) flags(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.ReasonMatch, "reason-match", "", "only dead letters whose reason matches this regular expression (RE2 syntax)")
	fs.StringVar(&f.Since, "since", "", "only dead letters dead-lettered since then: a duration back from now (90m, 24h) or an RFC 3339 time")
	fs.StringVar(&f.Until, "until", "", "only dead letters dead-lettered before then: a duration back from now or an RFC 3339 time")
}

func (f *dlqFilters) given() bool { return f.ReasonMatch != "" || f.Since != "" || f.Until != "" }

// validate parses the filters into f.filter.
func (f *dlqFilters) validate(now time.Time) error {
	if f.ReasonMatch != "" {
		re, err := regexp.Compile(f.ReasonMatch)
		if err != nil {
			return usageErrorf("invalid --reason-match %q: %v", f.ReasonMatch, strings.TrimPrefix(err.Error(), "error parsing regexp: ")).
				withHint("use a Go (RE2) regular expression, e.g. 'timeout|refused'")
		}
		f.filter.Reason = re
	}
	var err error
	if f.filter.Since, err = parseWhen("--since", f.Since, now); err != nil {
		return err
	}
	if f.filter.Until, err = parseWhen("--until", f.Until, now); err != nil {
		return err
	}
	return nil
}

// parseWhen reads a duration back from now or an RFC 3339 time.
func parseWhen(flag, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	return time.Time{}, usageErrorf("invalid %s %q: want a positive duration back from now, such as 90m or 24h, or an RFC 3339 time such as 2026-01-02T15:04:05Z", flag, v)
}

// dlqError gives a dead-letter failure its exit code and a hint.
func dlqError(err error, p *dlqPlace) error {
	if err == nil {
		return nil
	}
	var be *bus.Error
	if !errors.As(err, &be) {
		return err
	}
	switch be.Code {
	case bus.NotFound:
		hint := "list the dead-letter places with 'switchboard dlq list'"
		if strings.Contains(be.Message, "no dead letter ") {
			hint = fmt.Sprintf("list the IDs with 'switchboard dlq list --group %s --topic %s'", p.Group, p.Topic)
		}
		return &ExitError{Exit: ExitNotFound, Code: be.Code.String(), Message: trimPrefix(be.Message), Details: be.Details, Hint: hint, Err: err}
	case bus.Unimplemented:
		return &ExitError{Exit: ExitFailed, Code: be.Code.String(), Message: trimPrefix(be.Message), Err: err,
			Hint: "name the place with --group and --topic, or read the dead-letter topic with 'switchboard watch _dlq.>'"}
	}
	return err
}

// dlqConnect connects with the command's time bound.
func (g *GlobalOptions) dlqConnect(ctx context.Context, timeout time.Duration) (*bus.Conn, context.Context, context.CancelFunc, error) {
	conn, err := g.connect(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	return conn, wctx, func() { cancel(); conn.Close() }, nil
}

// DeadLetterJSON is one dead letter in the output of the dlq commands.
type DeadLetterJSON struct {
	ID         string     `json:"id"`
	Group      string     `json:"group"`
	Topic      string     `json:"topic"`
	Attempts   int        `json:"attempts"`
	Reason     string     `json:"reason"`
	DeadTime   *time.Time `json:"dead_time,omitempty"`
	OriginalID string     `json:"original_id,omitempty"`
	// Replayed is how many times the event had been replayed before.
	Replayed int `json:"replayed,omitempty"`
	// EventID and EventType are its CloudEvents id and type.
	EventID   string `json:"event_id,omitempty"`
	EventType string `json:"event_type,omitempty"`
}

func deadLetterJSON(d *bus.DeadLetter) DeadLetterJSON {
	j := DeadLetterJSON{ID: d.ID, Group: d.Group, Topic: d.Topic, Attempts: d.Attempts, Reason: d.Reason,
		OriginalID: d.OriginalID, Replayed: d.Replayed,
		EventID: d.Message.Header.Get("ce-id"), EventType: d.Message.Header.Get("ce-type")}
	if !d.Time.IsZero() {
		t := d.Time.UTC()
		j.DeadTime = &t
	}
	return j
}

func deadLettersJSON(ds []*bus.DeadLetter) []DeadLetterJSON {
	out := make([]DeadLetterJSON, len(ds))
	for i, d := range ds {
		out[i] = deadLetterJSON(d)
	}
	return out
}

func ids(ds []*bus.DeadLetter) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

// writeDeadLetters prints dead letters as a table.
func writeDeadLetters(w io.Writer, ds []*bus.DeadLetter) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tTOPIC\tATTEMPTS\tDEAD AT\tREPLAYED\tREASON")
	for _, d := range ds {
		at := "-"
		if !d.Time.IsZero() {
			at = d.Time.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\n", d.ID, d.Topic, d.Attempts, at, d.Replayed, d.Reason)
	}
	return tw.Flush()
}
