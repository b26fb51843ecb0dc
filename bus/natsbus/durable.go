package natsbus

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-dev/switchboard/bus/driver"
)

// Pull requests of a durable subscription.
const (
	// pullExpiry is how long one pull request waits for messages.
	pullExpiry = 30 * time.Second
	// pullHeartbeat is how often the server shows a waiting pull request
	// is alive; after missing two the request is presumed lost (for
	// example to a server restart) and replaced.
	pullHeartbeat = 5 * time.Second
	// pullRetry is the wait before asking again after a failed request.
	pullRetry = time.Second
)

// Subscribe implements driver.Conn with a durable JetStream pull consumer.
//
// Prefetch is per member, as on other brokers: the consumer's MaxAckPending
// would cap the whole group, so each member bounds itself instead. A member
// keeps at most one pull request at the server, asking for no more messages
// than it has room for: Prefetch minus the deliveries it holds that are not
// yet acked or naked.
func (c *conn) Subscribe(ctx context.Context, spec driver.SubscribeSpec, fn func(driver.Delivery)) (driver.Subscription, error) {
	subject := c.prefix + spec.Topic
	if err := c.ready(ctx, "subscribe", subject); err != nil {
		return nil, err
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       ConsumerName(spec.Group, spec.Topic),
		Description:   fmt.Sprintf("Switchboard group %s on topic %s", spec.Group, spec.Topic),
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       spec.AckWait,
		MaxDeliver:    -1,
		FilterSubject: subject,
		MaxAckPending: -1, // members bound themselves
		Metadata:      map[string]string{"switchboard_group": spec.Group, "switchboard_topic": spec.Topic},
	}
	cctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if _, err := c.js.CreateOrUpdateConsumer(cctx, c.opts.Stream, cfg); err != nil {
		return nil, wrapErr("subscribe: consumer "+cfg.Durable+" on", subject, err)
	}
	s := &durableSub{
		c:        c,
		name:     cfg.Durable,
		next:     "$JS.API.CONSUMER.MSG.NEXT." + c.opts.Stream + "." + cfg.Durable,
		inbox:    c.nc.NewInbox(),
		capacity: max(spec.Prefetch, 1),
		fn:       fn,
		wake:     make(chan struct{}, 1),
		seen:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		loopDone: make(chan struct{}),
		subDone:  make(chan struct{}),
	}
	var err error
	if s.sub, err = c.nc.Subscribe(s.inbox+".*", s.receive); err != nil {
		return nil, wrapErr("subscribe", subject, err)
	}
	s.sub.SetClosedHandler(func(string) { s.closed.Do(func() { close(s.subDone) }) })
	if err := c.flush(cctx); err != nil {
		_ = s.sub.Unsubscribe()
		return nil, wrapErr("subscribe", subject, err)
	}
	s.status = c.nc.StatusChanged(nats.CONNECTED)
	if err := c.track(s); err != nil {
		c.nc.RemoveStatusListener(s.status)
		_ = s.sub.Unsubscribe()
		return nil, fmt.Errorf("natsbus: subscribe %s: %w", subject, err)
	}
	go s.loop()
	return s, nil
}

// ConsumerName returns the name of the durable JetStream consumer of group
// on topic: readable, valid as a NATS consumer name, and the same on every
// run so that a restarted member resumes the group.
func ConsumerName(group, topic string) string {
	h := fnv.New32a()
	h.Write([]byte(group))
	h.Write([]byte{0})
	h.Write([]byte(topic))
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
				return r
			}
			return '_'
		}, s)
	}
	name := clean(group) + "-" + clean(topic)
	const maxReadable = 200 // consumer names are file names: stay well under 255 bytes
	if len(name) > maxReadable {
		name = name[:maxReadable]
	}
	return fmt.Sprintf("%s-%08x", name, h.Sum32())
}

// durableSub is one member of a consumer group: a subscription on its own
// inbox that receives the replies to its pull requests, and a goroutine
// (loop) that sends the pull requests. Pull request N replies on inbox.N, so
// that the status replies (heartbeat, expiry) of a request given up on are
// told apart from the live one's.
type durableSub struct {
	c        *conn
	name     string
	next     string // the consumer's pull request subject
	inbox    string
	capacity int // the member's prefetch
	fn       func(driver.Delivery)
	sub      *nats.Subscription
	status   chan nats.Status // reconnections

	mu          sync.Mutex
	seq         uint64 // last pull request sent
	live        uint64 // the request the server holds for us, 0 for none
	outstanding int    // messages the live request may still bring
	held        int    // deliveries handed to fn, not yet acked or naked
	failed      bool   // the last request failed: wait before the next

	wake     chan struct{} // room freed or request ended: reconsider pulling
	seen     chan struct{} // the live request showed signs of life
	stop     chan struct{} // closed by Stop
	loopDone chan struct{}
	subDone  chan struct{} // closed when nats.go stopped delivering
	closed   sync.Once
	stopping atomic.Bool // set first in Stop: later messages are kept to give back
	gate     gate
	once     sync.Once

	// Messages that arrive while stopping are given back (Nak) only after
	// the inbox is unsubscribed: a Nak sent while the server still holds
	// this member's pull request would be redelivered to it at once, and
	// one in flight when the unsubscribe lands would wait out AckWait.
	backMu   sync.Mutex
	back     []string // ack subjects to Nak once unsubscribed
	backDone bool     // given back already: Nak at once
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// loop sends a pull request whenever none is live and there is room, and
// replaces a request that went silent or did not survive a reconnection.
func (s *durableSub) loop() {
	defer close(s.loopDone)
	watchdog := time.NewTimer(time.Hour)
	watchdog.Stop()
	defer watchdog.Stop()
	var retry <-chan time.Time
	for {
		if retry == nil {
			switch id, n, backoff := s.nextRequest(); {
			case backoff:
				retry = time.After(pullRetry)
			case n > 0:
				if err := s.pull(id, n); err != nil {
					slog.Debug("natsbus: pull request failed", "consumer", s.name, "err", err)
					s.end(id, false)
					retry = time.After(pullRetry)
				} else {
					watchdog.Reset(2*pullHeartbeat + pullHeartbeat/2)
				}
			}
		}
		select {
		case <-s.wake:
		case <-s.seen:
			watchdog.Reset(2*pullHeartbeat + pullHeartbeat/2)
		case <-watchdog.C:
			s.end(s.liveRequest(), false)
		case _, ok := <-s.status:
			if !ok {
				s.status = nil
				continue
			}
			s.end(s.liveRequest(), false) // the server may have lost it
			retry = nil
		case <-retry:
			retry = nil
		case <-s.stop:
			return
		}
	}
}

// nextRequest reserves the next pull request: its id and batch size, or
// n = 0 when a request is live or the member has no room.
func (s *durableSub) nextRequest() (id uint64, n int, backoff bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed {
		s.failed = false
		return 0, 0, true
	}
	if s.live != 0 || s.held >= s.capacity {
		return 0, 0, false
	}
	s.seq++
	s.live, s.outstanding = s.seq, s.capacity-s.held
	return s.live, s.outstanding, false
}

func (s *durableSub) liveRequest() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live
}

// end marks request id as no longer live.
func (s *durableSub) end(id uint64, failed bool) {
	s.mu.Lock()
	if id == 0 || id != s.live {
		s.mu.Unlock()
		return
	}
	s.live, s.outstanding = 0, 0
	s.failed = s.failed || failed
	s.mu.Unlock()
	signal(s.wake)
}

func (s *durableSub) pull(id uint64, n int) error {
	req, err := json.Marshal(struct {
		Batch     int           `json:"batch"`
		Expires   time.Duration `json:"expires"`
		Heartbeat time.Duration `json:"idle_heartbeat"`
	}{n, pullExpiry, pullHeartbeat})
	if err != nil {
		return err
	}
	if !s.c.nc.IsConnected() {
		return nats.ErrConnectionReconnecting
	}
	return s.c.nc.PublishRequest(s.next, s.inbox+"."+strconv.FormatUint(id, 10), req)
}

// receive handles a reply to a pull request: a message, a heartbeat or the
// end of the request. nats.go calls it from one goroutine.
func (s *durableSub) receive(m *nats.Msg) {
	if m.Reply == "" {
		// Status replies come on the request's own inbox subject.
		if code := m.Header.Get("Status"); code != "" {
			id, _ := strconv.ParseUint(m.Subject[strings.LastIndexByte(m.Subject, '.')+1:], 10, 64)
			s.handleStatus(id, code, m.Header.Get("Description"))
		}
		return
	}
	// Messages keep their stream subject, so they are counted against the
	// live request: only after a request was given up on can this
	// overcount, and then at most that request's batch.
	s.mu.Lock()
	if s.live != 0 {
		if s.outstanding--; s.outstanding <= 0 {
			s.live, s.outstanding = 0, 0
			signal(s.wake)
		} else {
			signal(s.seen)
		}
	}
	s.held++
	s.mu.Unlock()
	if s.stopping.Load() || !s.gate.run(func() { s.fn(s.newDelivery(m)) }) {
		s.release()
		s.giveBack(m.Reply)
	}
}

// giveBack returns a message that was not handed over to the group: later,
// when Stop has unsubscribed, or at once if it has.
func (s *durableSub) giveBack(reply string) {
	s.backMu.Lock()
	if !s.backDone {
		s.back = append(s.back, reply)
		s.backMu.Unlock()
		return
	}
	s.backMu.Unlock()
	_ = s.c.nc.Publish(reply, ackNak)
}

// flushBack gives back every message kept while stopping.
func (s *durableSub) flushBack() {
	s.backMu.Lock()
	back := s.back
	s.back, s.backDone = nil, true
	s.backMu.Unlock()
	for _, reply := range back {
		_ = s.c.nc.Publish(reply, ackNak)
	}
}

// handleStatus handles a status reply to pull request id.
func (s *durableSub) handleStatus(id uint64, code, description string) {
	switch code {
	case "100": // idle heartbeat
		s.mu.Lock()
		live := id == s.live
		s.mu.Unlock()
		if live {
			signal(s.seen)
		}
	case "408": // the request expired
		s.end(id, false)
	default: // 409 consumer deleted, leadership change, ...; 503 no JetStream
		level := slog.LevelDebug
		if strings.Contains(strings.ToLower(description), "deleted") || code == "503" {
			level = slog.LevelWarn
		}
		slog.Log(context.Background(), level, "natsbus: pull request ended", "consumer", s.name, "status", code, "description", description)
		s.end(id, true)
	}
}

// release gives back the room a delivery took.
func (s *durableSub) release() {
	s.mu.Lock()
	s.held--
	s.mu.Unlock()
	signal(s.wake)
}

// Stop ends the subscription: the pull request is dropped, messages already
// received but not handed over are given back to the group (Nak) once the
// server knows this member is gone, and no callback runs after Stop returns.
func (s *durableSub) Stop(ctx context.Context) error {
	s.once.Do(func() {
		s.stopping.Store(true)
		close(s.stop)
		<-s.loopDone
		s.c.nc.RemoveStatusListener(s.status)
		hadRequest := s.liveRequest() != 0
		// Draining unsubscribes, so the server sends no more, and hands
		// what already arrived to receive, which keeps it to give back.
		if !s.c.nc.IsConnected() {
			// Nothing more can arrive, and draining would wait for a flush.
			_ = s.sub.Unsubscribe()
		} else if err := s.sub.Drain(); err == nil {
			select {
			case <-s.subDone:
			case <-ctx.Done():
				_ = s.sub.Unsubscribe()
			}
		} else {
			_ = s.sub.Unsubscribe()
		}
		if hadRequest && ctx.Err() == nil && s.c.nc.IsConnected() {
			// nats-server before 2.10 loses a redelivered message it pops
			// while only departed members' pull requests wait (until
			// AckWait). Asking for the consumer's info makes it drop the
			// requests nobody listens to any more.
			ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, _ = s.c.js.Consumer(ictx, s.c.opts.Stream, s.name)
			cancel()
		}
		// Sent after the unsubscribe on the same connection, so the server
		// no longer counts this member's pull request when it redelivers.
		s.flushBack()
		s.gate.close()
		s.c.untrack(s)
	})
	return nil
}

// Acknowledgement bodies of the JetStream protocol.
var (
	ackAck = []byte("+ACK")
	ackNak = []byte("-NAK")
)

// delivery is one JetStream delivery.
type delivery struct {
	c       *conn
	reply   string // the ack subject
	msg     *driver.Message
	attempt int
	sub     *durableSub
	settled atomic.Bool // set by the first Ack or Nak, which releases its room
}

var _ driver.Delivery = (*delivery)(nil)

func (s *durableSub) newDelivery(m *nats.Msg) *delivery {
	d := &delivery{c: s.c, reply: m.Reply, attempt: 1, sub: s}
	d.msg = fromNATS(strings.TrimPrefix(m.Subject, s.c.prefix), m)
	if md, err := m.Metadata(); err == nil && md.NumDelivered > 0 {
		d.attempt = int(md.NumDelivered)
	}
	return d
}

// done gives back the room of the delivery in its subscription, once.
func (d *delivery) done() {
	if d.settled.CompareAndSwap(false, true) {
		d.sub.release()
	}
}

func (d *delivery) Message() *driver.Message { return d.msg }
func (d *delivery) Attempt() int             { return d.attempt }

// Ack sends +ACK without waiting for the server to confirm it, as a
// JetStream client's plain ack does: the consumer goes on to the next
// event at once. Waiting would add a round trip to every event and guard
// nothing: an ack that is lost has the event redelivered after AckWait,
// never lost, whether or not anyone waited for it. Acks leave in order on
// the connection, ahead of this instance's later pull requests, and Close
// flushes those still buffered.
func (d *delivery) Ack(ctx context.Context) error {
	defer d.done()
	if err := d.c.ready(ctx, "ack", d.msg.Subject); err != nil {
		return err
	}
	if err := d.c.nc.Publish(d.reply, ackAck); err != nil {
		return wrapErr("ack", d.c.prefix+d.msg.Subject, err)
	}
	return nil
}

// Nak sends -NAK, with the delay when there is one. The server does not
// confirm it.
func (d *delivery) Nak(ctx context.Context, delay time.Duration) error {
	defer d.done()
	if err := d.c.ready(ctx, "nak", d.msg.Subject); err != nil {
		return err
	}
	body := ackNak
	if delay > 0 {
		body = fmt.Appendf(nil, `-NAK {"delay": %d}`, delay.Nanoseconds())
	}
	if err := d.c.nc.Publish(d.reply, body); err != nil {
		return wrapErr("nak", d.c.prefix+d.msg.Subject, err)
	}
	return nil
}
