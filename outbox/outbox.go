// Package outbox is the transactional outbox: a service writes its business
// rows and the events they cause in one database transaction, and a Relay
// publishes the events afterwards, so that an event is published if and only
// if its transaction committed — never lost by a crash between the commit
// and the publish, never published for a transaction that rolled back.
//
// Write side, inside the service's transaction (PostgreSQL shown; SQLite
// is alike):
//
//	msg, err := outbox.Event(ctx, TripEnded, &TripEndedEvent{Trip: id}, switchboard.WithSubject(id))
//	…
//	tx, _ := pool.Begin(ctx)
//	tx.Exec(ctx, `UPDATE trips SET state = 'ended' WHERE id = $1`, id)
//	ob.Enqueue(ctx, tx, msg)
//	tx.Commit(ctx)
//
// Read side, in one or more processes:
//
//	relay := &outbox.Relay{Store: ob, Publisher: conn}
//	go relay.Run(ctx)
//
// What the relay promises:
//
//   - At least once. A record is marked sent only after Publish returned,
//     that is after the broker confirmed it stored the event. A relay
//     killed at any point loses nothing: what it had not marked sent is
//     published again by the next relay to look.
//   - Duplicates carry the same event. A record is published with the
//     CloudEvents id fixed when it was enqueued, as ce-id and as the bus
//     message id, with the same headers and body: the broker drops a
//     duplicate within its de-duplication window (JetStream: 2 minutes),
//     and idempotent consumers (package dedupe) drop it after that.
//   - Several relays share the work without publishing one record twice at
//     the same time: a relay holds what it publishes (a row lock on
//     PostgreSQL, a lease on SQLite) until it has marked it sent.
//   - Order per key. Records of one key (Message.Key; by default the
//     event's subject) are published in the order they were enqueued, also
//     with several relays: a relay publishes a record only when no older
//     unsent record of its key is held by another relay, and stops a key
//     for the rest of its batch when a publish of it fails. The order is
//     that of Enqueue calls as the store numbers them: for the order of
//     commits, lock the aggregate's row (UPDATE it) before enqueuing its
//     event, as a transaction usually does anyway. Records without a key,
//     and records of different keys, have no order.
//
// Stores: pgoutbox (PostgreSQL with pgx) and sqliteoutbox (SQLite, the
// embedded default). The package outboxtest holds the conformance suite,
// the crash test among it, that both pass.
//
// The package sits in the cross-cutting layer, above the SDK (bus ← wire ←
// SDK ← outbox), and imports no broker or database client.
package outbox

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	switchboard "github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/wire"
)

// Message is an event to enqueue.
type Message struct {
	// Topic is the durable topic to publish on, e.g. "trip.ended".
	Topic string
	// Key orders records: those of one key are published in the order they
	// were enqueued. Empty means no order. Event sets it to the subject.
	Key string
	// Event holds the CloudEvents attributes. Prepare fills in what is
	// missing: a new UUID as ID, the store's source, the topic as Type, the
	// current time.
	Event wire.Event
	// Header holds further headers to publish, such as trace context.
	Header bus.Header
	// Body is the encoded event data, in Event.DataContentType.
	Body []byte
}

// Event returns the message that publishing ev on t would send, encoded as
// t.Publish encodes it, with the options of t.Publish (WithEventID,
// WithSubject). Its Key is the subject. The trace context of the call or
// event being handled in ctx, if any, goes with it.
func Event[E any](ctx context.Context, t switchboard.TopicDef[E], ev E, opts ...switchboard.PublishOption) (Message, error) {
	meta := wire.Event{ID: uuid.NewString(), Type: t.Name(), Time: time.Now(), DataContentType: wire.DefaultContentType(ev)}
	for _, o := range opts {
		o(&meta)
	}
	body, err := wire.Marshal(ev, meta.DataContentType)
	if err != nil {
		return Message{}, fmt.Errorf("outbox: event %s: %w", t.Name(), err)
	}
	m := Message{Topic: t.Name(), Key: meta.Subject, Event: meta, Body: body}
	if c, ok := switchboard.CallFrom(ctx); ok && c.Envelope.TraceParent != "" {
		m.Header = bus.Header{wire.HeaderTraceParent: c.Envelope.TraceParent}
	}
	return m, nil
}

// Record is a message as an outbox keeps it, ready to publish.
type Record struct {
	// Seq is the store's sequence number: the order of enqueuing.
	Seq int64
	// Topic, Key and ID are the message's topic, key and event id.
	Topic, Key, ID string
	// Header holds every header to publish, CloudEvents attributes included.
	Header bus.Header
	// Body is the message body.
	Body []byte
	// Attempts counts the failed publishes of this record so far.
	Attempts int
}

// Message returns the bus message to publish: the same for every attempt,
// with the event id as message id for the broker's de-duplication.
func (r Record) Message() *bus.Message {
	return &bus.Message{Subject: r.Topic, Header: r.Header.Clone(), Body: r.Body, ID: r.ID}
}

// Prepare validates m and fills in its defaults (see Message.Event), with
// source as the CloudEvents source when m has none, and returns the record
// a store keeps. Stores call it from Enqueue, so that a message with no
// chance of being published is refused inside the caller's transaction.
func Prepare(m Message, source string) (Record, error) {
	if err := validTopic(m.Topic); err != nil {
		return Record{}, err
	}
	e := m.Event
	if e.ID == "" {
		e.ID = uuid.NewString()
	}
	if e.Source == "" {
		e.Source = source
	}
	if e.Source == "" {
		return Record{}, bus.Errorf(bus.InvalidArgument, "outbox: event %s on %s has no source: set the store's Source or Message.Event.Source", e.ID, m.Topic)
	}
	if e.Type == "" {
		e.Type = m.Topic
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	h := m.Header.Clone()
	if h == nil {
		h = bus.Header{}
	}
	e.Encode(h)
	if _, err := wire.DecodeEvent(h); err != nil {
		return Record{}, fmt.Errorf("outbox: event %s on %s: %w", e.ID, m.Topic, err)
	}
	return Record{Topic: m.Topic, Key: m.Key, ID: e.ID, Header: h, Body: m.Body}, nil
}

func validTopic(name string) error {
	ok := name != "" && name[0] != '_'
	for tok := range strings.SplitSeq(name, ".") {
		ok = ok && bus.ValidName(tok)
	}
	if !ok {
		return bus.Errorf(bus.InvalidArgument, "outbox: invalid topic %q: want dot-separated names such as trip.ended", name)
	}
	return nil
}

// Store is what a relay needs of an outbox. Implementations are safe for
// concurrent use, by relays in this process and in others.
type Store interface {
	// Claim takes up to max unsent records that no other relay holds,
	// oldest first, and holds them until the batch is finished. It leaves
	// out records that must wait for an older record of their key held by
	// another relay. An empty batch means nothing is claimable now.
	Claim(ctx context.Context, max int) (Batch, error)
	// Prune deletes records marked sent before before, and returns how many.
	Prune(ctx context.Context, before time.Time) (int64, error)
}

// Batch is a set of records held by one relay.
type Batch interface {
	// Records returns the records, in Seq order.
	Records() []Record
	// Expires returns when the hold ends by itself (a lease), or the zero
	// time if it lasts until Finish (a lock). The relay publishes nothing
	// from the batch past it.
	Expires() time.Time
	// Finish marks the records of sent (by Seq) as sent, counts a failed
	// attempt with its reason for those of failed, and lets go of all. It
	// must be called once for every batch, also when nothing was sent.
	Finish(ctx context.Context, sent []int64, failed map[int64]string) error
}

// Publisher publishes a message durably: a *bus.Conn. Publish must return
// nil only after the broker stored the message.
type Publisher interface {
	Publish(ctx context.Context, msg *bus.Message) error
}

var _ Publisher = (*bus.Conn)(nil)
