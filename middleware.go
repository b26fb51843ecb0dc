package switchboard

import (
	"context"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/wire"
)

// Call describes one RPC as middleware sees it.
type Call struct {
	// Service and Endpoint name the target.
	Service  string
	Endpoint string
	// Envelope is the request envelope: as received on the server, as about
	// to be sent on the client (middleware may add to it, e.g. trace context).
	Envelope wire.Envelope
	// Header holds the request's raw headers. Client middleware may add
	// headers to send; server middleware reads what arrived.
	Header bus.Header
	// Request is the decoded request value (server) or the value being sent
	// (client).
	Request any
}

// Handler handles a call on the server after its request was decoded. It
// returns the reply value or an error.
type Handler func(ctx context.Context, call *Call) (any, error)

// Middleware wraps a server Handler, for concerns that apply to every
// endpoint of a service: metrics, tracing, auth, rate limits.
type Middleware func(Handler) Handler

// Invoker performs a call on the client: it sends call.Request and decodes
// the reply into reply.
type Invoker func(ctx context.Context, call *Call, reply any) error

// ClientMiddleware wraps an Invoker, for concerns such as retries, circuit
// breakers and tracing on the calling side.
type ClientMiddleware func(Invoker) Invoker

func chain(h Handler, mw []Middleware) Handler {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}

func chainClient(inv Invoker, mw []ClientMiddleware) Invoker {
	for i := len(mw) - 1; i >= 0; i-- {
		inv = mw[i](inv)
	}
	return inv
}

type callKey struct{}

// CallFrom returns the call being served, inside a handler.
func CallFrom(ctx context.Context) (*Call, bool) {
	c, ok := ctx.Value(callKey{}).(*Call)
	return c, ok
}

// EventCall is one event delivery as consumer middleware sees it.
type EventCall struct {
	// Topic is the topic the event was consumed from.
	Topic string
	// Info holds the CloudEvents attributes, attempt and group.
	Info *EventInfo
	// Event is the decoded event value.
	Event any
}

// EventHandler consumes one event after it was decoded. Returning nil
// acknowledges it.
type EventHandler func(ctx context.Context, ev *EventCall) error

// ConsumerMiddleware wraps an EventHandler, for concerns that apply to every
// consumer of a service: idempotency (skip an id already handled by
// returning nil), metrics, tracing.
type ConsumerMiddleware func(EventHandler) EventHandler

func chainConsumer(h EventHandler, mw []ConsumerMiddleware) EventHandler {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}

// Publication is one event publish as publish middleware sees it, just
// before it goes to the broker.
type Publication struct {
	// Topic is the topic published to.
	Topic string
	// Event holds the CloudEvents attributes, already written into Header.
	Event wire.Event
	// Header holds the message headers about to be sent; middleware may add
	// to them (trace context, for instance).
	Header bus.Header
	// Body is the encoded event.
	Body []byte
}

// Publisher stores a publication durably; it returns nil only after the
// broker confirmed it.
type Publisher func(ctx context.Context, p *Publication) error

// PublishMiddleware wraps a Publisher, for concerns that apply to every
// publish of a client or service: tracing, metrics.
type PublishMiddleware func(Publisher) Publisher

func chainPublish(p Publisher, mw []PublishMiddleware) Publisher {
	for i := len(mw) - 1; i >= 0; i-- {
		p = mw[i](p)
	}
	return p
}
