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
)

// Message is the unit a driver moves: a subject (RPC subject or durable
// topic), string headers and an opaque body. Drivers must round-trip every
// header exactly.
type Message struct {
	Subject string
	Header  map[string]string
	Body    []byte
	// ID, when set on a durable publish, lets brokers that support it drop a
	// duplicate publish of the same ID within their de-duplication window.
	ID string
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
	// this group. It returns after the broker confirmed the ack when the
	// broker can confirm acks.
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
