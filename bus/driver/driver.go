// Package driver defines the small contract a message broker implements to
// back package bus. Application code never uses it: it imports bus, and a
// driver package (bus/natsbus, bus/amqpbus) registers itself with bus.Register.
//
// Drivers move bytes and report facts. They never retry, never decide acking
// policy, never apply default deadlines and never invent error codes: all of
// that lives once in package bus. A driver reports failures by wrapping one of
// the sentinel errors below with %w so bus can map them to codes.
package driver

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors a driver wraps (with %w) so that package bus can classify
// them. Any other error is treated as Unavailable when it comes from the
// broker and as Internal otherwise.
var (
	// ErrNoResponders means nothing serves the subject of a request. Drivers
	// must detect this promptly (not by waiting for the deadline) when the
	// broker can tell.
	ErrNoResponders = errors.New("no responders")
	// ErrTimeout means the context ended before a reply or confirmation came.
	ErrTimeout = errors.New("timeout")
	// ErrCanceled means the caller's context was canceled.
	ErrCanceled = errors.New("canceled")
	// ErrTooLarge means the message exceeds what the broker accepts.
	ErrTooLarge = errors.New("message too large")
	// ErrDisconnected means the connection to the broker is down for now.
	ErrDisconnected = errors.New("disconnected from broker")
	// ErrClosed means the connection was closed by its owner.
	ErrClosed = errors.New("connection closed")
	// ErrInvalid means the driver refused an argument (a subject it cannot
	// express, an unknown URL parameter, ...).
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound means a named thing the call needs does not exist on the
	// broker: a consumer group, a dead-letter place, a dead letter.
	ErrNotFound = errors.New("not found")
)

// Message is the unit a driver moves: a subject (RPC subject or durable
// topic), string headers and an opaque body. Drivers must round-trip every
// header exactly.
type Message struct {
	Subject string
	Header  Header
	Body    []byte
	// ID, when set on a durable publish, lets brokers that support it drop a
	// duplicate publish of the same ID within their de-duplication window.
	ID string
}

// Header holds message headers (bus.Header is this type). Keys are case
// sensitive.
type Header map[string]string

// Get returns the value of key, or "" (safe on a nil Header).
func (h Header) Get(key string) string { return h[key] }

// Set sets key to value.
func (h Header) Set(key, value string) { h[key] = value }

// Clone returns a copy of h.
func (h Header) Clone() Header {
	c := make(Header, len(h))
	for k, v := range h {
		c[k] = v
	}
	return c
}

// Respond sends a reply to a request. It may be called at most once, from
// any goroutine.
type Respond func(ctx context.Context, reply *Message) error

// SubscribeSpec describes a durable consumer group subscription.
type SubscribeSpec struct {
	// Topic is the exact durable topic consumed.
	Topic string
	// Group names the consumer group. Subscriptions sharing Topic and Group
	// compete for messages; different groups each get every message.
	Group string
	// Prefetch bounds how many unacknowledged deliveries the broker may push
	// to this subscription at once.
	Prefetch int
	// AckWait is how long the broker waits for an Ack or Nak before it
	// redelivers on its own (for example after a consumer crashed).
	AckWait time.Duration
}

// Delivery is one delivery of a durable message. Exactly one of Ack or Nak
// is called by package bus for each delivery.
type Delivery interface {
	// Message returns the delivered message.
	Message() *Message
	// Attempt returns the 1-based delivery count as the broker knows it.
	Attempt() int
	// Ack acknowledges the delivery; the broker must not deliver it again to
	// this group. It need not wait for the broker to confirm the ack: an
	// ack lost on the way means a redelivery, never a loss, and package bus
	// goes on either way.
	Ack(ctx context.Context) error
	// Nak asks for redelivery after delay (0 means as soon as possible).
	Nak(ctx context.Context, delay time.Duration) error
}

// Subscription is an active subscription of any kind.
type Subscription interface {
	// Stop ends deliveries: after Stop returns the driver calls the
	// subscription's callback no more. Deliveries not yet acknowledged are
	// redelivered to another member of the group.
	Stop(ctx context.Context) error
}

// Conn is a connection to a broker. All methods are safe for concurrent use.
// Callbacks given to Serve, Listen, Tail and Subscribe are called from
// driver goroutines, one at a time per subscription, and must not block for
// long: package bus hands the work to its own goroutines.
type Conn interface {
	// Request sends msg to msg.Subject and blocks until one reply arrives or
	// ctx ends (ErrTimeout/ErrCanceled). It returns ErrNoResponders promptly
	// when the broker knows nothing serves the subject.
	Request(ctx context.Context, msg *Message) (*Message, error)
	// Serve delivers requests sent to subject. Subscriptions sharing a
	// non-empty queue compete (one of them gets each request); with an empty
	// queue every subscription gets every request.
	Serve(ctx context.Context, subject, queue string, fn func(req *Message, respond Respond)) (Subscription, error)
	// Send publishes msg on msg.Subject without persistence: at most once,
	// to whoever listens right now.
	Send(ctx context.Context, msg *Message) error
	// Listen receives messages sent with Send on subjects matching pattern
	// ('*' matches one dot-separated token, '>' the rest).
	Listen(ctx context.Context, pattern string, fn func(*Message)) (Subscription, error)

	// Publish stores msg durably on topic msg.Subject and returns only after
	// the broker confirmed it stored the message.
	Publish(ctx context.Context, msg *Message) error
	// Subscribe starts (or resumes) a durable consumer group on a topic.
	// Messages published while no member ran are delivered when one starts.
	Subscribe(ctx context.Context, spec SubscribeSpec, fn func(Delivery)) (Subscription, error)
	// Tail receives durable messages published from now on to topics matching
	// pattern, without acknowledgement and without affecting any group.
	Tail(ctx context.Context, pattern string, fn func(*Message)) (Subscription, error)

	// MaxMessageSize is the largest message (headers and body) the broker
	// accepts, in bytes.
	MaxMessageSize() int
	// Close releases the connection. Subscriptions end; pending calls fail
	// with ErrClosed.
	Close() error
}

// DeadLetterPlace is where the dead letters of one consumer group on one
// topic are kept, with how many it holds.
type DeadLetterPlace struct {
	Group string
	Topic string
	Count int
}

// DeadLetter is one stored dead letter. Message is as package bus published
// it to the dead-letter topic: the original headers plus the Sb-Dead-*
// headers, Subject the dead-letter topic.
type DeadLetter struct {
	// ID names the dead letter within its place and stays the same across
	// browses for as long as it is kept (a stream sequence, a digest).
	ID      string
	Message *Message
}

// DeadLetterFeatures says which dead-letter operations a driver supports.
// What is false, Why explains to the user, with what to do instead.
type DeadLetterFeatures struct {
	// ListPlaces: DeadLetterPlaces can enumerate places unnamed.
	ListPlaces bool
	// Browse: BrowseDeadLetters reads a place without consuming it.
	Browse bool
	// Delete: DeleteDeadLetters removes single dead letters.
	Delete bool
	// Replay: PublishToGroup delivers to a single group.
	Replay bool
	// Why says what the missing operations need, e.g. "RabbitMQ does not
	// list queues over AMQP 0.9.1: name the group and topic".
	Why string
}

// DeadLetters is implemented, optionally, by a Conn whose broker lets dead
// letters be inspected and managed in place. Package bus builds filtering,
// replay order, replay headers and remove-only-after-confirmed-replay on
// these primitives; a driver only reads, deletes and publishes. Methods are
// safe for concurrent use, block until the broker answered, and never retry.
type DeadLetters interface {
	// DeadLetterFeatures reports what the other methods can do.
	DeadLetterFeatures() DeadLetterFeatures
	// DeadLetterPlaces lists the places that hold dead letters.
	DeadLetterPlaces(ctx context.Context) ([]DeadLetterPlace, error)
	// BrowseDeadLetters calls fn with each dead letter of group on topic,
	// oldest first where the broker keeps an order, without removing any
	// and without counting a delivery against it; fn returning false stops
	// the browse. A place that does not exist (no such group on the topic
	// and nothing stored) is ErrNotFound.
	BrowseDeadLetters(ctx context.Context, group, topic string, fn func(DeadLetter) bool) error
	// DeleteDeadLetters removes the dead letters of group on topic whose
	// IDs are listed and returns the IDs it removed; IDs it did not find
	// are not an error. A failure part way leaves the rest in place.
	DeleteDeadLetters(ctx context.Context, group, topic string, ids []string) ([]string, error)
	// PublishToGroup stores msg durably on topic msg.Subject for group and
	// returns only after the broker confirmed it. When the broker can, only
	// group receives it; otherwise every group on the topic does and package
	// bus makes the others skip it (the Sb-Replay-Group header). It fails
	// with ErrNotFound, storing nothing, when group does not consume the
	// topic.
	PublishToGroup(ctx context.Context, group string, msg *Message) error
}
