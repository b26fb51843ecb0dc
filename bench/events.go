package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-dev/switchboard/bus/natsbus"
)

// Consumer settings of both sides: one handler at a time (in order, the
// SDK's default) with eventsPrefetch deliveries buffered beyond it, so at
// most eventsInFlight unacknowledged per member (package bus asks the
// driver for Prefetch+Concurrency). The raw consumer copies the
// configuration of the one Switchboard creates and pulls at most
// eventsInFlight messages at a time.
const (
	eventsConcurrency = 1
	eventsPrefetch    = 127
	eventsInFlight    = eventsPrefetch + eventsConcurrency
	eventsTopic       = "trip.requested"
	eventsGroup       = "bench"
	rawConsumer       = "bench-raw"
	// drainTimeout bounds the wait for a round's events to be consumed.
	drainTimeout = 2 * time.Minute
)

// Events measures durable events: Switchboard's Topic.Publish and
// consumer-group Subscribe against JetStream publish-with-PubAck and a
// durable pull consumer with explicit acks, on the same server, with
// identical stream and consumer configurations and the same sync policy;
// or, with an amqp:// Config.BusURL, against amqp091-go publishing with
// publisher confirms to a quorum queue consumed with manual acks after the
// handler and the same prefetch.
func Events(ctx context.Context, cfg Config) (Report, error) {
	if err := cfg.defaults(); err != nil {
		return Report{}, err
	}
	if isAMQP(cfg.BusURL) {
		return eventsAMQP(ctx, &cfg)
	}
	start := time.Now()
	e, err := newEnv(ctx, &cfg)
	if err != nil {
		return Report{}, err
	}
	defer e.close()
	rep := e.report("events")
	conn := cfg.eventsConnection()
	p, err := newEventsPair(ctx, e, conn)
	if err != nil {
		return rep, err
	}
	defer p.close()
	rep.Notes = []string{
		"switchboard: Topic.Publish (returns after the broker stored the event; CloudEvents headers, the event id as Nats-Msg-Id so the stream drops duplicates) and Topic.Subscribe in a consumer group (ack after the handler succeeded, as the driver acks)",
		"raw: jetstream js.Publish awaiting the PubAck, and Consume on a durable pull consumer with msg.Ack(); both sides JSON-encode and decode the same event",
		fmt.Sprintf("the raw stream and consumer copy the configuration of Switchboard's (file storage, limits retention, %s duplicate window; explicit ack, MaxAckPending %d); both consume one event at a time with at most %d unacknowledged, on one %s connection per publisher and per consumer",
			p.stream.Duplicates, p.consumer.MaxAckPending, eventsInFlight, conn),
		"throughput: messages published and then consumed and acknowledged (the clock stops when the consumer has no message pending or unacknowledged); p50/p99: latency of one confirmed publish",
		"allocs are whole-process heap allocations per event: publisher, consumer and, when embedded, the server",
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("connection: %s (%s) for every publisher and consumer of both sides", conn, conn.Describe()))
	sbW, rawW, err := p.wireSizes(ctx)
	if err != nil {
		return rep, fmt.Errorf("bench: measure headers: %w", err)
	}
	cases, err := eventsCases(ctx, &cfg, conn, e.syncPolicy, sbW, rawW, p.sides)
	rep.Cases = cases
	if err != nil {
		return rep, err
	}
	rep.finish(start)
	return rep, nil
}

// counter counts consumed events and wakes a waiter at a target.
type counter struct {
	n, target atomic.Int64
	reached   chan struct{}
}

func newCounter() *counter { return &counter{reached: make(chan struct{}, 1)} }

func (c *counter) inc() {
	if c.n.Add(1) == c.target.Load() {
		select {
		case c.reached <- struct{}{}:
		default:
		}
	}
}

// wait returns once at least want events were counted.
func (c *counter) wait(ctx context.Context, want int64) error {
	c.target.Store(want)
	timeout := time.NewTimer(drainTimeout)
	defer timeout.Stop()
	for c.n.Load() < want {
		select {
		case <-c.reached:
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout.C:
			return fmt.Errorf("bench: only %d of %d events consumed after %s", c.n.Load(), want, drainTimeout)
		}
	}
	return nil
}

// eventsPair is a Switchboard publisher and consumer service and a raw
// JetStream publisher and consumer on one connection type.
type eventsPair struct {
	e    *env
	conn Connection

	sbEvents
	sbCons jetstream.Consumer // for polling its state

	rawJS      jetstream.JetStream
	rawSubject string
	rawCC      jetstream.ConsumeContext
	rawCons    jetstream.Consumer
	rawN       *counter

	// consumer is the Switchboard consumer's configuration, copied by the
	// raw one.
	consumer jetstream.ConsumerConfig
	stream   jetstream.StreamConfig
	// sbHeader is an event's headers as Switchboard sent them (see
	// wireSizes), for publishRawHeaders.
	sbHeader nats.Header
}

func newEventsPair(ctx context.Context, e *env, conn Connection) (*eventsPair, error) {
	p := &eventsPair{e: e, conn: conn, rawN: newCounter()}
	admin, err := jetstream.New(e.conns[0])
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	// Switchboard: a publishing client and a consuming service.
	pubNC, err := e.connect(conn, "bench-switchboard-publisher")
	if err != nil {
		return nil, err
	}
	pubBus, err := e.busConn(sctx, pubNC)
	if err != nil {
		return nil, err
	}
	subNC, err := e.connect(conn, "bench-switchboard-consumer")
	if err != nil {
		return nil, err
	}
	subBus, err := e.busConn(sctx, subNC)
	if err != nil {
		return nil, err
	}
	if err := p.start(sctx, e.service()+"-events", pubBus, subBus); err != nil {
		return nil, err
	}
	if p.sbCons, err = admin.Consumer(sctx, e.swStream(), natsbus.ConsumerName(eventsGroup, eventsTopic)); err != nil {
		return nil, fmt.Errorf("bench: the Switchboard consumer: %w", err)
	}

	// Raw: a stream and a consumer configured as Switchboard's are.
	st, err := admin.Stream(sctx, e.swStream())
	if err != nil {
		return nil, fmt.Errorf("bench: the Switchboard stream: %w", err)
	}
	scfg := st.CachedInfo().Config
	p.stream = scfg
	scfg.Name, scfg.Subjects, scfg.Description, scfg.Metadata = e.rawStream(), []string{e.rawPrefix() + ".>"}, "Switchboard benchmark: raw JetStream", nil
	if _, err := admin.CreateStream(sctx, scfg); err != nil {
		return nil, fmt.Errorf("bench: raw stream: %w", err)
	}
	p.rawSubject = e.rawPrefix() + "." + eventsTopic
	ccfg := p.sbCons.CachedInfo().Config
	p.consumer = ccfg
	ccfg.Name, ccfg.Durable, ccfg.Description, ccfg.Metadata = rawConsumer, rawConsumer, "Switchboard benchmark: raw consumer", nil
	ccfg.FilterSubject = p.rawSubject
	if _, err := admin.CreateOrUpdateConsumer(sctx, e.rawStream(), ccfg); err != nil {
		return nil, fmt.Errorf("bench: raw consumer: %w", err)
	}
	if p.rawCons, err = admin.Consumer(sctx, e.rawStream(), rawConsumer); err != nil {
		return nil, err
	}
	rawPubNC, err := e.connect(conn, "bench-raw-publisher")
	if err != nil {
		return nil, err
	}
	if p.rawJS, err = jetstream.New(rawPubNC); err != nil {
		return nil, err
	}
	rawSubNC, err := e.connect(conn, "bench-raw-consumer")
	if err != nil {
		return nil, err
	}
	subJS, err := jetstream.New(rawSubNC)
	if err != nil {
		return nil, err
	}
	cons, err := subJS.Consumer(sctx, e.rawStream(), rawConsumer)
	if err != nil {
		return nil, err
	}
	p.rawCC, err = cons.Consume(func(m jetstream.Msg) {
		if checkEvent(m.Data()) != nil {
			_ = m.Nak()
			return
		}
		_ = m.Ack()
		p.rawN.inc()
	}, jetstream.PullMaxMessages(eventsInFlight))
	if err != nil {
		return nil, fmt.Errorf("bench: raw consume: %w", err)
	}
	return p, nil
}

func (p *eventsPair) close() {
	if p.rawCC != nil {
		p.rawCC.Stop()
	}
	p.stop()
}

func (p *eventsPair) publishRaw(ctx context.Context, i int) error {
	b, err := json.Marshal(event(i))
	if err != nil {
		return err
	}
	if _, err := p.rawJS.Publish(ctx, p.rawSubject, b); err != nil {
		return fmt.Errorf("bench: raw publish: %w", err)
	}
	return nil
}

// publishRawHeaders is publishRaw with Switchboard's headers, a fresh
// Nats-Msg-Id each time: what the CloudEvents attributes and the
// de-duplication id cost, apart from the SDK's code. It is a diagnostic for
// the Go benchmarks, not a case of the report.
func (p *eventsPair) publishRawHeaders(ctx context.Context, i int) error {
	return p.publishRawWith(ctx, i, true, true)
}

// publishRawCloudEvents is publishRaw with Switchboard's CloudEvents
// headers and no Nats-Msg-Id, and publishRawMsgID with a fresh Nats-Msg-Id
// and nothing else: publishRawHeaders split into its two parts, the
// attributes and the stream's de-duplication.
func (p *eventsPair) publishRawCloudEvents(ctx context.Context, i int) error {
	return p.publishRawWith(ctx, i, true, false)
}

func (p *eventsPair) publishRawMsgID(ctx context.Context, i int) error {
	return p.publishRawWith(ctx, i, false, true)
}

func (p *eventsPair) publishRawWith(ctx context.Context, i int, attrs, msgID bool) error {
	b, err := json.Marshal(event(i))
	if err != nil {
		return err
	}
	h := make(nats.Header, len(p.sbHeader))
	for k, v := range p.sbHeader {
		if attrs && k != jetstream.MsgIDHeader {
			h[k] = v
		}
	}
	if msgID {
		h.Set(jetstream.MsgIDHeader, uuid.NewString())
	}
	if _, err := p.rawJS.PublishMsg(ctx, &nats.Msg{Subject: p.rawSubject, Header: h, Data: b}); err != nil {
		return fmt.Errorf("bench: raw publish: %w", err)
	}
	return nil
}

// drained waits until n has counted want events and cons has none pending
// or unacknowledged.
func drained(ctx context.Context, n *counter, want int64, cons jetstream.Consumer) error {
	if err := n.wait(ctx, want); err != nil {
		return err
	}
	return idle(ctx, cons)
}

// idle waits until cons has no event pending or unacknowledged.
func idle(ctx context.Context, cons jetstream.Consumer) error {
	deadline := time.Now().Add(drainTimeout)
	for {
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		info, err := cons.Info(ictx)
		cancel()
		if err != nil {
			return fmt.Errorf("bench: consumer state: %w", err)
		}
		if info.NumAckPending == 0 && info.NumPending == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: consumer %s still has %d unacknowledged and %d pending events after %s", info.Name, info.NumAckPending, info.NumPending, drainTimeout)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// wireSizes publishes one event on each side and measures them as they
// travel, then waits until both were consumed.
func (p *eventsPair) wireSizes(ctx context.Context) (sb, raw Figures, err error) {
	nc, err := p.e.connect(p.conn, "bench-snoop")
	if err != nil {
		return sb, raw, err
	}
	defer nc.Close()
	var hdr nats.Header
	measure := func(subject string, publish func() error) (Figures, error) {
		ms, err := snoop(nc, []string{subject}, publish)
		if err != nil {
			return Figures{}, err
		}
		hdr = ms[0].Header
		return Figures{HeaderBytes: headerBytes(ms[0].Header), BodyBytes: len(ms[0].Data)}, nil
	}
	sbBase, rawBase := p.sbN.n.Load(), p.rawN.n.Load()
	if sb, err = measure(p.e.swPrefix()+"."+eventsTopic, func() error { return p.publishSwitchboard(ctx, 0) }); err != nil {
		return sb, raw, err
	}
	p.sbHeader = hdr
	if raw, err = measure(p.rawSubject, func() error { return p.publishRaw(ctx, 0) }); err != nil {
		return sb, raw, err
	}
	if err := drained(ctx, p.sbN, sbBase+1, p.sbCons); err != nil {
		return sb, raw, err
	}
	return sb, raw, drained(ctx, p.rawN, rawBase+1, p.rawCons)
}

// sides returns the two sides of a case with publishers concurrent
// publishers sending perPublisher events each.
func (p *eventsPair) sides(publishers, perPublisher int) (sb, raw side) {
	return eventSide("switchboard", publishers, perPublisher, p.publishSwitchboard, p.sbN, func(ctx context.Context) error { return idle(ctx, p.sbCons) }),
		eventSide("raw", publishers, perPublisher, p.publishRaw, p.rawN, func(ctx context.Context) error { return idle(ctx, p.rawCons) })
}

// eventSide is one side of an events case: publishers concurrent
// publishers each publish perPublisher events, and the clock stops when n
// has counted them all consumed and settled says the broker holds none of
// them any more.
func eventSide(name string, publishers, perPublisher int, publish callFunc, n *counter, settled func(context.Context) error) side {
	return side{name, func(ctx context.Context) (sample, error) {
		base := n.n.Load()
		return drive(ctx, publishers, perPublisher, 0, publish, func(ops int) error {
			if err := n.wait(ctx, base+int64(ops)); err != nil {
				return err
			}
			return settled(ctx)
		})
	}}
}

// eventsCases measures the events cases on one connection type: sides
// makes the two sides of a case, sbW and rawW are what one event of each
// looks like on the wire.
func eventsCases(ctx context.Context, cfg *Config, conn Connection, syncPolicy string, sbW, rawW Figures, sides func(publishers, perPublisher int) (side, side)) ([]Case, error) {
	type spec struct {
		name, what string
		publishers int
	}
	specs := []spec{{"events_publish_consume", fmt.Sprintf("%d events from 1 publisher, consumed and acked", cfg.Messages), 1}}
	if cfg.Publishers > 1 {
		specs = append(specs, spec{fmt.Sprintf("events_publish_consume_%d_publishers", cfg.Publishers),
			fmt.Sprintf("%d events from %d concurrent publishers, consumed and acked", cfg.Messages, cfg.Publishers), cfg.Publishers})
	}
	var cases []Case
	for _, s := range specs {
		cfg.Progress("bench: %s (%s, %s, sync %s) …", s.name, s.what, conn.Describe(), syncPolicy)
		warm := max(cfg.Messages/10/s.publishers, 5)
		wsb, wraw := sides(s.publishers, warm)
		for _, sd := range []side{wsb, wraw} {
			if _, err := sd.run(ctx); err != nil {
				return cases, fmt.Errorf("bench: %s: warm-up %s: %w", s.name, sd.name, err)
			}
		}
		sb, raw := sides(s.publishers, max(cfg.Messages/cfg.Rounds/s.publishers, 1))
		c := Case{Name: s.name, What: s.what, Connection: string(conn), SyncPolicy: syncPolicy}
		var err error
		c.Switchboard, c.Raw, c.P50Ratio, c.ThroughputRatio, err = alternate(ctx, cfg.Rounds, sb, raw)
		if err != nil {
			return cases, fmt.Errorf("bench: %s: %w", s.name, err)
		}
		c.Switchboard.HeaderBytes, c.Switchboard.BodyBytes = sbW.HeaderBytes, sbW.BodyBytes
		c.Raw.HeaderBytes, c.Raw.BodyBytes = rawW.HeaderBytes, rawW.BodyBytes
		c.EnvelopeOverheadBytes = sbW.HeaderBytes - rawW.HeaderBytes
		cases = append(cases, c)
	}
	return cases, nil
}
