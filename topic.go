package switchboard

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/wire"
)

// TopicDef is a contract for a durable event topic, shared by publishers and
// consumers. Create it with Topic.
type TopicDef[E any] struct {
	name  string
	newEv func() E
	evPtr bool // E is a pointer type: a fresh event is what to decode into
}

// Topic declares the contract of the event topic name (dot-separated tokens,
// e.g. "trip.requested"). It panics on an invalid name: contracts are
// package-level values, so this fails at program start.
func Topic[E any](name string) TopicDef[E] {
	if err := validTopic(name); err != nil {
		panic(err)
	}
	return TopicDef[E]{name: name, newEv: allocator[E](), evPtr: isPointer[E]()}
}

func validTopic(name string) error {
	if name == "" || name[0] == '_' {
		return bus.Errorf(bus.InvalidArgument, "switchboard: invalid topic %q: want dot-separated names such as trip.requested (leading '_' is reserved)", name)
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '.' {
			if err := wire.ValidateName("topic", name[start:i]); err != nil {
				return bus.Errorf(bus.InvalidArgument, "switchboard: invalid topic %q: want dot-separated names of letters, digits, '_' or '-'", name)
			}
			start = i + 1
		}
	}
	return nil
}

// Name returns the topic name.
func (t TopicDef[E]) Name() string { return t.name }

// PublishOption tunes one publish.
type PublishOption func(*wire.Event)

// WithEventID sets the CloudEvents id (the idempotency key). By default a
// new UUID is used. Set it to a business key to make re-publishing the same
// fact idempotent.
func WithEventID(id string) PublishOption { return func(e *wire.Event) { e.ID = id } }

// WithSubject sets the CloudEvents subject: what the event is about.
func WithSubject(s string) PublishOption { return func(e *wire.Event) { e.Subject = s } }

// Publish stores ev durably on the topic through c (a *Client or *Service).
// It returns nil only after the broker confirmed it stored the event.
func (t TopicDef[E]) Publish(ctx context.Context, c Caller, ev E, opts ...PublishOption) error {
	cl := c.client()
	if cl.err != nil {
		return cl.err
	}
	meta := wire.Event{ID: uuid.NewString(), Source: cl.source, Type: t.name, Time: time.Now(),
		DataContentType: wire.DefaultContentType(ev)}
	for _, o := range opts {
		o(&meta)
	}
	body, err := wire.Marshal(ev, meta.DataContentType)
	if err != nil {
		return fmt.Errorf("switchboard: publish %s: %w", t.name, err)
	}
	return cl.PublishRaw(ctx, t.name, meta, body)
}

// PublishRaw publishes an already-encoded event body with the given
// CloudEvents attributes (Type defaults to the topic).
func (c *Client) PublishRaw(ctx context.Context, topic string, meta wire.Event, body []byte) error {
	if err := validTopic(topic); err != nil {
		return err
	}
	if meta.ID == "" {
		meta.ID = uuid.NewString()
	}
	if meta.Type == "" {
		meta.Type = topic
	}
	if meta.Source == "" {
		meta.Source = c.source
	}
	if meta.Time.IsZero() {
		meta.Time = time.Now()
	}
	h := bus.Header{}
	meta.Encode(h)
	if parent, ok := CallFrom(ctx); ok && parent.Envelope.TraceParent != "" {
		h[wire.HeaderTraceParent] = parent.Envelope.TraceParent
	}
	pub := &Publication{Topic: topic, Event: meta, Header: h, Body: body}
	if c.onPublish == nil {
		return c.publish(ctx, pub)
	}
	start := time.Now()
	err := c.publish(ctx, pub) // publish middleware (tracing) included
	c.onPublish(PublishResult{Caller: c.caller, Topic: topic, Code: bus.ErrorCode(err), Duration: time.Since(start)})
	return err
}

// EventInfo is what a consumer knows about the event it handles.
type EventInfo struct {
	wire.Event
	// Attempt is the 1-based delivery count: more than 1 means a retry.
	Attempt int
	// Group is the consumer group.
	Group string
	// Header holds all headers of the message.
	Header bus.Header
}

type eventKey struct{}

// EventFrom returns the event being handled, inside a consumer.
func EventFrom(ctx context.Context) (*EventInfo, bool) {
	e, ok := ctx.Value(eventKey{}).(*EventInfo)
	return e, ok
}

// SubscribeOption tunes a subscription; see bus.SubscribeOptions.
type SubscribeOption func(*bus.SubscribeOptions)

// Concurrency sets how many events one instance handles at once.
func Concurrency(n int) SubscribeOption { return func(o *bus.SubscribeOptions) { o.Concurrency = n } }

// MaxAttempts sets how many deliveries an event gets before it is
// dead-lettered.
func MaxAttempts(n int) SubscribeOption { return func(o *bus.SubscribeOptions) { o.MaxAttempts = n } }

// Backoff sets the redelivery delay after the attempt-th failure.
func Backoff(f func(attempt int) time.Duration) SubscribeOption {
	return func(o *bus.SubscribeOptions) { o.Backoff = f }
}

// AckWait sets how long the broker waits for a handler before redelivering.
func AckWait(d time.Duration) SubscribeOption { return func(o *bus.SubscribeOptions) { o.AckWait = d } }

type consumer struct {
	info  wire.TopicInfo
	opts  bus.SubscribeOptions
	topic string
	group string
	h     bus.Handler
	chain func([]ConsumerMiddleware) // builds h's middleware chain
}

// Subscribe registers fn to consume the topic on svc as consumer group
// group: instances of a group share the events, each group gets all of them.
// An event is acknowledged only after fn returns nil; an error means
// redelivery with backoff, then the dead-letter topic after MaxAttempts.
// Panics if called after svc started or with an invalid group.
func (t TopicDef[E]) Subscribe(svc *Service, group string, fn func(ctx context.Context, ev E) error, opts ...SubscribeOption) {
	if err := wire.ValidateName("group", group); err != nil {
		panic(err)
	}
	var o bus.SubscribeOptions
	for _, opt := range opts {
		opt(&o)
	}
	var handle EventHandler // the consumer middleware chain, built at Start
	c := &consumer{
		info:  wire.TopicInfo{Topic: t.name, Group: group, Type: wire.TypeName(*new(E)), Schema: wire.Schema(t.newEv())},
		opts:  o,
		topic: t.name,
		group: group,
		chain: func(mw []ConsumerMiddleware) {
			handle = chainConsumer(func(ctx context.Context, ec *EventCall) error {
				return fn(ctx, ec.Event.(E))
			}, mw)
		},
		h: func(ctx context.Context, d *bus.Delivery) error {
			meta, err := wire.DecodeEvent(d.Header)
			if err != nil {
				return err
			}
			ev, err := t.decode(d.Body, meta.DataContentType)
			if err != nil {
				return fmt.Errorf("switchboard: event %s %s: %w", t.name, meta.ID, err)
			}
			info := &EventInfo{Event: meta, Attempt: d.Attempt, Group: d.Group, Header: d.Header}
			ctx = context.WithValue(ctx, eventKey{}, info)
			if tp := d.Header.Get(wire.HeaderTraceParent); tp != "" {
				ctx = context.WithValue(ctx, callKey{}, &Call{Envelope: wire.Envelope{TraceParent: tp}})
			}
			if err := svc.injectEvent(ctx, t.name); err != nil {
				return err
			}
			return handle(ctx, &EventCall{Topic: t.name, Info: info, Event: ev})
		},
	}
	svc.mu.Lock()
	defer svc.mu.Unlock()
	if svc.state != stateNew {
		panic(fmt.Sprintf("switchboard: subscription to %s registered after Start", t.name))
	}
	svc.consumers = append(svc.consumers, c)
}

// Declare records that svc publishes this topic, for discovery and
// `switchboard describe`. Publishing works without it.
func (t TopicDef[E]) Declare(svc *Service) {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	svc.publishes = append(svc.publishes, wire.TopicInfo{Topic: t.name, Type: wire.TypeName(*new(E)), Schema: wire.Schema(t.newEv())})
}

func (c *consumer) start(ctx context.Context, s *Service) error {
	c.chain(s.cfg.consumerMW)
	sub, err := s.conn.Subscribe(ctx, c.topic, c.group, c.h, s.observed(c.opts))
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.csubs = append(s.csubs, sub)
	s.mu.Unlock()
	return nil
}

// decode decodes an event body of content type ct into a fresh E.
func (t TopicDef[E]) decode(body []byte, ct string) (E, error) {
	if t.evPtr { // the fresh pointer is what to decode into
		ev := t.newEv()
		return ev, wire.Unmarshal(body, ct, ev)
	}
	var ev E
	err := wire.Unmarshal(body, ct, &ev)
	return ev, err
}
