package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/wire"
)

// PublishOptions are the options of `switchboard publish`.
type PublishOptions struct {
	*GlobalOptions
	Topic string
	// Body is the JSON event data.
	Body    []byte
	bodyArg string
	// ID is the CloudEvents id, the idempotency key (default a new UUID).
	ID string
	// Subject is the CloudEvents subject: what the event is about.
	Subject string
	// Timeout bounds waiting for the broker's confirmation.
	Timeout time.Duration
}

func newPublishCmd(g *GlobalOptions) *cobra.Command {
	o := &PublishOptions{GlobalOptions: g}
	cmd := &cobra.Command{
		Use:   "publish TOPIC [JSON|-]",
		Short: "Publish a JSON event to a topic",
		Long: `Publish an event with a JSON body to a durable topic, and print its id once
the broker has confirmed it stored the event.

The event carries CloudEvents attributes: id (--id, default a new UUID; it
is the idempotency key, so publishing the same id twice is one event),
source /switchboard/cli, type TOPIC, time now, subject (--subject) and
datacontenttype application/json. The body is the second argument, '-' to
read it from stdin, or {} if omitted.

With -o json the output is {"id": …, "topic": …, "source": …, "time": …}.`,
		Example: `  switchboard publish demo.greeting '{"hello": "world"}'
  switchboard publish trip.completed '{"tripId": "t1", "customerId": "ada", "fare": {"amountCents": "500", "currency": "EUR"}}' \
      --id trip.completed:t1 --subject t1
  cat event.json | switchboard publish demo.greeting -`,
		Args: argsBetween(1, 2, "TOPIC [JSON|-]"),
		RunE: runCommand(o),
	}
	f := cmd.Flags()
	f.StringVar(&o.ID, "id", "", "event id, the idempotency key (default a new UUID)")
	f.StringVar(&o.Subject, "subject", "", "CloudEvents subject: what the event is about, e.g. a trip id")
	f.DurationVar(&o.Timeout, "timeout", 10*time.Second, "give up waiting for the broker's confirmation after this long")
	return cmd
}

// Complete reads the arguments, and the body from stdin when it is "-".
func (o *PublishOptions) Complete(args []string) error {
	if len(args) >= 1 {
		o.Topic = args[0]
	}
	if len(args) >= 2 {
		o.bodyArg = args[1]
	}
	body, err := readBody(o.bodyArg, o.IO.In)
	if err != nil {
		return err
	}
	o.Body = body
	return nil
}

// Validate checks the topic, the JSON body and the flags.
func (o *PublishOptions) Validate() error {
	if err := validateTopic(o.Topic); err != nil {
		return err
	}
	if err := checkJSON("event body", o.Body); err != nil {
		return err
	}
	if strings.ContainsAny(o.ID+o.Subject, "\r\n") {
		return usageErrorf("--id and --subject must be on one line")
	}
	if o.Timeout <= 0 {
		return usageErrorf("invalid --timeout %s: want a positive duration, e.g. 5s", o.Timeout)
	}
	return nil
}

// validateTopic accepts what the SDK's Topic accepts: dot-separated names
// of letters, digits, '_' and '-', not starting with '_' (reserved).
func validateTopic(topic string) error {
	bad := topic == "" || strings.HasPrefix(topic, "_")
	for _, tok := range strings.Split(topic, ".") {
		bad = bad || wire.ValidateName("topic", tok) != nil
	}
	if bad {
		return usageErrorf("invalid topic %q: want dot-separated names of letters, digits, '_' and '-', such as trip.requested (a leading '_' is reserved)", topic)
	}
	return nil
}

// PublishResult is what `publish -o json` prints.
type PublishResult struct {
	ID      string    `json:"id"`
	Topic   string    `json:"topic"`
	Source  string    `json:"source"`
	Subject string    `json:"subject,omitempty"`
	Time    time.Time `json:"time"`
}

// eventSource is the CloudEvents source of events the CLI publishes.
const eventSource = "/switchboard/cli"

// Run publishes the event.
func (o *PublishOptions) Run(ctx context.Context) error {
	conn, err := o.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := switchboard.NewClient(conn, switchboard.WithCaller("cli"))
	defer client.Close()
	ev := wire.Event{ID: o.ID, Source: eventSource, Type: o.Topic, Subject: o.Subject,
		Time: time.Now().UTC(), DataContentType: wire.ContentTypeJSON}
	if ev.ID == "" {
		ev.ID = uuid.NewString()
	}
	pctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := client.PublishRaw(pctx, o.Topic, ev, o.Body); err != nil {
		return err
	}
	if o.JSON() {
		return writeJSON(o.IO.Out, PublishResult{ID: ev.ID, Topic: o.Topic, Source: ev.Source, Subject: ev.Subject, Time: ev.Time})
	}
	_, err = fmt.Fprintln(o.IO.Out, ev.ID)
	return err
}
