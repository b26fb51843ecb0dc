package cli

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/wire"
)

// WatchOptions are the options of `switchboard watch`.
type WatchOptions struct {
	*GlobalOptions
	// Pattern selects topics: '*' matches one dot-separated name, '>' the
	// rest.
	Pattern string
	// Count, if positive, ends the watch after that many events.
	Count int
	// Timeout, if positive, ends the watch after that long.
	Timeout time.Duration
}

func newWatchCmd(g *GlobalOptions) *cobra.Command {
	o := &WatchOptions{GlobalOptions: g}
	cmd := &cobra.Command{
		Use:   "watch TOPIC_PATTERN",
		Short: "Print events as they are published",
		Long: `Print events published from now on to topics matching TOPIC_PATTERN, with
their CloudEvents attributes (id, type, source, time, subject) and JSON
data, until Ctrl-C. In the pattern '*' matches one dot-separated name and
'>' matches the rest: 'trip.>' is every trip event, '*.completed' every
completion.

Watching is a live tail: it acknowledges nothing and takes no events away
from the services that consume them.

Protobuf data is shown as JSON when this binary knows the message type that
the services announce for the topic (the example domain's types are built
in), and as its size otherwise.

With -o json each event is one line of JSON in the CloudEvents JSON format
(plus "topic", any extra "headers", and "proto_type" when protobuf data was
decoded; undecodable data is in "data_base64"). --count N ends the watch with exit
code 0 after N events; --timeout ends it after that long (exit code 0, or
1 if --count events had not arrived).`,
		Example: `  switchboard watch 'trip.>'
  switchboard watch '*.completed' -o json | jq .data
  switchboard watch trip.requested --count 1 --timeout 30s
  switchboard watch '_dlq.>'     # dead letters, with the reason they failed`,
		Args: argsBetween(1, 1, "TOPIC_PATTERN"),
		RunE: runCommand(o),
	}
	f := cmd.Flags()
	f.IntVar(&o.Count, "count", 0, "exit after this many events (0: until interrupted)")
	f.DurationVar(&o.Timeout, "timeout", 0, "exit after this long (0: until interrupted)")
	return cmd
}

// Complete takes the pattern from args.
func (o *WatchOptions) Complete(args []string) error {
	if len(args) > 0 {
		o.Pattern = args[0]
	}
	return nil
}

// Validate checks the pattern and the flags.
func (o *WatchOptions) Validate() error {
	if err := validatePattern(o.Pattern); err != nil {
		return err
	}
	if o.Count < 0 {
		return usageErrorf("invalid --count %d: want 0 (no limit) or more", o.Count)
	}
	if o.Timeout < 0 {
		return usageErrorf("invalid --timeout %s: want 0 (no limit) or a positive duration", o.Timeout)
	}
	return nil
}

// validatePattern accepts dot-separated names where a name may be '*', and
// the last one '>'.
func validatePattern(p string) error {
	toks := strings.Split(p, ".")
	for i, t := range toks {
		if t == "*" || t == ">" && i == len(toks)-1 {
			continue
		}
		if wire.ValidateName("topic", t) != nil {
			return usageErrorf("invalid topic pattern %q: want dot-separated names of letters, digits, '_' and '-', where a name may be '*' (any one name) and the last may be '>' (all the rest), e.g. 'trip.>'", p)
		}
	}
	return nil
}

// Run tails the topics until the count, the timeout or ctx ends it.
func (o *WatchOptions) Run(ctx context.Context) error {
	conn, err := o.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	types := &eventTypes{conn: conn}
	var (
		mu   sync.Mutex
		seen int
		done = make(chan struct{})
		werr error
	)
	sub, err := conn.Tail(ctx, o.Pattern, func(m *bus.Message) {
		mu.Lock()
		defer mu.Unlock()
		if o.Count > 0 && seen >= o.Count || werr != nil {
			return
		}
		seen++
		if werr = o.print(m, types); werr != nil || o.Count > 0 && seen == o.Count {
			close(done)
		}
	})
	if err != nil {
		return fmt.Errorf("watch %s: %w", o.Pattern, err)
	}
	if !o.JSON() {
		fmt.Fprintf(o.IO.ErrOut, "watching %q on %s; Ctrl-C to stop\n", o.Pattern, conn.URL())
	}
	var timeout <-chan time.Time
	if o.Timeout > 0 {
		t := time.NewTimer(o.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-done:
	case <-ctx.Done(): // interrupted: the normal way to end a watch
	case <-timeout:
	}
	if err := sub.Stop(context.Background()); err != nil {
		return fmt.Errorf("watch %s: %w", o.Pattern, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if werr != nil {
		return fmt.Errorf("write event: %w", werr)
	}
	if o.Count > 0 && seen < o.Count && ctx.Err() == nil {
		return &ExitError{Exit: ExitFailed, Code: bus.DeadlineExceeded.String(),
			Message: fmt.Sprintf("watch %q: %d of %d events arrived within %s", o.Pattern, seen, o.Count, o.Timeout),
			Hint:    "are events being published? try a wider pattern or a longer --timeout"}
	}
	return nil
}

// EventJSON is one line of `watch -o json`: the CloudEvents JSON format
// with the topic and the remaining headers.
type EventJSON struct {
	Topic           string            `json:"topic"`
	SpecVersion     string            `json:"specversion,omitempty"`
	ID              string            `json:"id,omitempty"`
	Type            string            `json:"type,omitempty"`
	Source          string            `json:"source,omitempty"`
	Subject         string            `json:"subject,omitempty"`
	Time            *time.Time        `json:"time,omitempty"`
	DataContentType string            `json:"datacontenttype,omitempty"`
	Data            json.RawMessage   `json:"data,omitempty"`
	DataBase64      []byte            `json:"data_base64,omitempty"`
	Headers         map[string]string `json:"headers,omitempty"`
	// ProtoType is the protobuf message type a protobuf body was decoded
	// as to show it in Data.
	ProtoType string `json:"proto_type,omitempty"`
	// Invalid says why the message is not a valid CloudEvent, if it is not.
	Invalid string `json:"invalid,omitempty"`
}

func eventOf(m *bus.Message, types *eventTypes) EventJSON {
	ev, err := wire.DecodeEvent(m.Header)
	e := EventJSON{Topic: m.Subject, SpecVersion: m.Header.Get(wire.HeaderCESpecVersion), ID: ev.ID, Type: ev.Type,
		Source: ev.Source, Subject: ev.Subject, DataContentType: ev.DataContentType}
	if err != nil {
		e.Invalid = trimPrefix(busMessage(err))
	}
	if !ev.Time.IsZero() {
		e.Time = &ev.Time
	}
	switch {
	case ev.DataContentType == wire.ContentTypeJSON && json.Valid(m.Body):
		e.Data = m.Body
	case ev.DataContentType == wire.ContentTypeProto && types != nil:
		topic := cmp.Or(m.Header.Get(bus.HeaderDeadTopic), m.Subject) // a dead letter keeps its topic's type
		if data, name, ok := types.decode(topic, m.Body); ok {
			e.Data, e.ProtoType = data, name
		} else {
			e.DataBase64 = m.Body
		}
	case len(m.Body) > 0:
		e.DataBase64 = m.Body
	}
	e.Headers = wire.OtherHeaders(m.Header)
	return e
}

func (o *WatchOptions) print(m *bus.Message, types *eventTypes) error {
	e := eventOf(m, types)
	if o.JSON() {
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(o.IO.Out, "%s\n", b)
		return err
	}
	return e.writeText(o.IO.Out)
}

func (e *EventJSON) writeText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "--- %s\n", e.Topic)
	attr := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%-16s %s\n", k+":", v)
		}
	}
	attr("id", e.ID)
	attr("type", e.Type)
	attr("source", e.Source)
	if e.Time != nil {
		attr("time", e.Time.UTC().Format(time.RFC3339Nano))
	}
	attr("subject", e.Subject)
	attr("datacontenttype", e.DataContentType)
	attr("decoded as", e.ProtoType)
	if e.Invalid != "" {
		attr("invalid", e.Invalid)
	}
	for _, k := range slices.Sorted(maps.Keys(e.Headers)) {
		attr(k, e.Headers[k])
	}
	switch {
	case e.Data != nil:
		fmt.Fprintf(&b, "%s\n", indentJSON(e.Data, ""))
	case e.DataBase64 != nil:
		fmt.Fprintf(&b, "(%d bytes of %s)\n", len(e.DataBase64), cmp.Or(e.DataContentType, "data"))
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// eventTypes finds the protobuf message types of events from what running
// services announce (wire.TopicInfo.Type), so that protobuf bodies are shown
// as JSON. It works for the types this binary was built with (the example
// domain's are), and asks discovery once, on the first protobuf event.
type eventTypes struct {
	conn    *bus.Conn
	once    sync.Once
	byTopic map[string]string
}

// typeLookupWait bounds the discovery round eventTypes makes.
const typeLookupWait = 500 * time.Millisecond

// decode returns body, a protobuf event on topic, as JSON, and the name of
// its type; ok is false when the type is unknown.
func (t *eventTypes) decode(topic string, body []byte) (data json.RawMessage, name string, ok bool) {
	t.once.Do(func() {
		t.byTopic = map[string]string{}
		ctx, cancel := context.WithTimeout(context.Background(), 2*typeLookupWait)
		defer cancel()
		d := switchboard.NewDiscovery(t.conn)
		defer d.Close()
		insts, _ := d.List(ctx, typeLookupWait)
		for _, in := range insts {
			for _, ti := range append(slices.Clone(in.Publishes), in.Subscribes...) {
				if ti.Type != "" {
					t.byTopic[ti.Topic] = ti.Type
				}
			}
		}
	})
	name = t.byTopic[topic]
	if name == "" {
		return nil, "", false
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(name))
	if err != nil {
		return nil, "", false
	}
	msg := mt.New().Interface()
	if proto.Unmarshal(body, msg) != nil {
		return nil, "", false
	}
	b, err := protojson.Marshal(msg)
	if err != nil {
		return nil, "", false
	}
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return nil, "", false
	}
	return buf.Bytes(), name, true
}
