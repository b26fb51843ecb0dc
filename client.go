package switchboard

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/wire"
)

// Caller is what calls and publishes go through: a *Client, or a *Service
// (whose calls carry its name as the caller).
type Caller interface{ client() *Client }

// Client calls endpoints and publishes events over a bus connection. It is
// safe for concurrent use.
type Client struct {
	conn    *bus.Conn
	caller  string
	source  string // the CloudEvents source of its events: /switchboard/CALLER
	timeout time.Duration
	mw      []ClientMiddleware
	invoker Invoker
	pmw     []PublishMiddleware
	publish Publisher
	disc    *Discovery
	owned   bool
	err     error // set on a client that cannot be used
	// onPublish, if set, is told about every publish (observe.go).
	onPublish func(PublishResult)
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithCaller sets the caller name sent with every call (default "client").
func WithCaller(name string) ClientOption { return func(c *Client) { c.caller = name } }

// WithDefaultTimeout bounds calls whose context has no deadline (default 10s).
func WithDefaultTimeout(d time.Duration) ClientOption { return func(c *Client) { c.timeout = d } }

// WithClientMiddleware appends client middleware (the first is outermost).
func WithClientMiddleware(mw ...ClientMiddleware) ClientOption {
	return func(c *Client) { c.mw = append(c.mw, mw...) }
}

// WithPublishMiddleware appends publish middleware, run on every event the
// client publishes (the first is outermost).
func WithPublishMiddleware(mw ...PublishMiddleware) ClientOption {
	return func(c *Client) { c.pmw = append(c.pmw, mw...) }
}

// NewClient returns a client on conn. conn stays owned by the caller.
func NewClient(conn *bus.Conn, opts ...ClientOption) *Client {
	c := &Client{conn: conn, caller: "client", timeout: 10 * time.Second}
	for _, o := range opts {
		o(c)
	}
	c.source = "/switchboard/" + c.caller
	c.invoker = chainClient(c.send, c.mw)
	c.publish = chainPublish(func(ctx context.Context, p *Publication) error {
		return c.conn.Publish(ctx, &bus.Message{Subject: p.Topic, Header: p.Header, Body: p.Body, ID: p.Event.ID})
	}, c.pmw)
	c.disc = NewDiscovery(conn)
	return c
}

// Dial opens a bus connection to url and returns a client that owns it:
// Close closes both.
func Dial(ctx context.Context, url string, opts ...ClientOption) (*Client, error) {
	conn, err := bus.Open(ctx, url)
	if err != nil {
		return nil, err
	}
	c := NewClient(conn, opts...)
	c.owned = true
	return c, nil
}

// Close stops the client's discovery cache and, if the client opened its own
// connection (Dial), closes it.
func (c *Client) Close() error {
	c.disc.Close()
	if c.owned {
		return c.conn.Close()
	}
	return nil
}

func (c *Client) client() *Client { return c }

// Conn returns the client's bus connection.
func (c *Client) Conn() *bus.Conn { return c.conn }

// Discovery returns the client's view of running instances.
func (c *Client) Discovery() *Discovery { return c.disc }

// CallOption tunes one call.
type CallOption func(*callConfig)

type callConfig struct {
	version     string
	instance    string
	timeout     time.Duration
	contentType string
	priority    string
}

// WithVersion sends the call to an instance whose version matches constraint:
// "2" or "2.x" (any 2.*.*), "2.3" or "2.3.x" (any 2.3.*), or an exact
// "2.3.1". The instance is chosen at random among matching ones known to
// discovery.
func WithVersion(constraint string) CallOption { return func(c *callConfig) { c.version = constraint } }

// WithInstance sends the call to one instance by id (point to point).
func WithInstance(id string) CallOption { return func(c *callConfig) { c.instance = id } }

// WithTimeout bounds this call, on top of any deadline ctx already has.
func WithTimeout(d time.Duration) CallOption { return func(c *callConfig) { c.timeout = d } }

// WithContentType chooses the request encoding (wire.ContentTypeJSON or
// wire.ContentTypeProto); the reply comes back in the same encoding.
func WithContentType(ct string) CallOption { return func(c *callConfig) { c.contentType = ct } }

// WithPriority marks the call's criticality ("critical" passes load
// shedding first).
func WithPriority(p string) CallOption { return func(c *callConfig) { c.priority = p } }

// callOptions applies opts. A call without options returns at once, so
// that it does not allocate the configuration (options take its address,
// which moves it to the heap).
func callOptions(opts []CallOption) callConfig {
	if len(opts) == 0 {
		return callConfig{}
	}
	var cfg callConfig
	for _, o := range opts {
		o(&cfg)
	}
	return cfg
}

// invoke runs a typed call through the client middleware.
func (c *Client) invoke(ctx context.Context, service, endpoint string, req, reply any, opts []CallOption) error {
	if c.err != nil {
		return c.err
	}
	cfg := callOptions(opts)
	if cfg.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.timeout)
		defer cancel()
	} else if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	ct := cfg.contentType
	if ct == "" {
		ct = wire.DefaultContentType(req)
	}
	dl, _ := ctx.Deadline()
	call := &Call{
		Service: service, Endpoint: endpoint, Request: req, Header: bus.Header{},
		Envelope: wire.Envelope{Service: service, Endpoint: endpoint, Version: cfg.version, Instance: cfg.instance,
			ContentType: ct, Deadline: dl, Caller: c.caller, Priority: cfg.priority},
	}
	if parent, ok := CallFrom(ctx); ok && call.Envelope.TraceParent == "" {
		call.Envelope.TraceParent, call.Envelope.TraceState = parent.Envelope.TraceParent, parent.Envelope.TraceState
	}
	return c.invoker(ctx, call, reply)
}

// send is the innermost Invoker: encode, route, request, decode.
func (c *Client) send(ctx context.Context, call *Call, reply any) error {
	body, err := wire.Marshal(call.Request, call.Envelope.ContentType)
	if err != nil {
		return fmt.Errorf("switchboard: call %s.%s: encode request: %w", call.Service, call.Endpoint, err)
	}
	rep, err := c.roundTrip(ctx, call, body)
	if err != nil {
		return err
	}
	if err := wire.Unmarshal(rep.Body, rep.Header.Get(wire.HeaderContentType), reply); err != nil {
		return fmt.Errorf("switchboard: call %s.%s: decode reply: %w", call.Service, call.Endpoint, err)
	}
	return nil
}

// roundTrip sends an encoded request and returns the reply message, or the
// error the reply carries.
func (c *Client) roundTrip(ctx context.Context, call *Call, body []byte) (*bus.Message, error) {
	subject, err := c.route(ctx, call)
	if err != nil {
		return nil, err
	}
	h := call.Header
	if h == nil {
		h = bus.Header{}
	}
	call.Envelope.Encode(h)
	rep, err := c.conn.Request(ctx, &bus.Message{Subject: subject, Header: h, Body: body})
	if err != nil {
		return nil, c.explain(call, err)
	}
	if err := wire.DecodeError(rep.Header); err != nil {
		return rep, err
	}
	if msg := rep.Header.Get(bus.HeaderBusError); msg != "" {
		return rep, bus.Errorf(bus.Internal, "switchboard: call %s.%s: the reply could not be sent: %s", call.Service, call.Endpoint, msg)
	}
	return rep, nil
}

// route picks the subject: a chosen instance for version- or instance-
// targeted calls, the service's shared subject otherwise.
func (c *Client) route(ctx context.Context, call *Call) (string, error) {
	if id := call.Envelope.Instance; id != "" {
		return wire.InstanceSubject(id, call.Endpoint), nil
	}
	if v := call.Envelope.Version; v != "" {
		insts, err := c.disc.Lookup(ctx, call.Service)
		if err != nil {
			return "", err
		}
		match, seen := matching(insts, v)
		if len(match) == 0 && len(insts) > 0 {
			// The cache may predate a newer instance: ask once more.
			if insts, err = c.disc.Refresh(ctx, call.Service); err != nil {
				return "", err
			}
			match, seen = matching(insts, v)
		}
		if len(match) == 0 {
			return "", bus.Errorf(bus.Unavailable, "switchboard: no instance of service %q matches version %q (running: %s)", call.Service, v, orNone(seen))
		}
		return wire.InstanceSubject(match[rand.IntN(len(match))].ID, call.Endpoint), nil
	}
	return wire.RequestSubject(call.Service, call.Endpoint), nil
}

// matching returns the instances whose version satisfies constraint, and the
// versions seen.
func matching(insts []wire.InstanceInfo, constraint string) (match []wire.InstanceInfo, seen []string) {
	for _, in := range insts {
		seen = append(seen, in.Version)
		if VersionMatches(constraint, in.Version) {
			match = append(match, in)
		}
	}
	return match, seen
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// explain turns a transport error into one that names the call.
func (c *Client) explain(call *Call, err error) error {
	if bus.IsNoResponders(err) {
		if call.Envelope.Instance != "" {
			return bus.Errorf(bus.Unavailable, "switchboard: instance %q of service %q is not running (see `switchboard services`)", call.Envelope.Instance, call.Service).WithDetail("service", call.Service)
		}
		return bus.Errorf(bus.Unavailable, "switchboard: no instance of service %q is running: unknown service, or all its instances are down (see `switchboard services`)", call.Service).WithDetail("service", call.Service)
	}
	switch bus.ErrorCode(err) {
	case bus.DeadlineExceeded:
		return &bus.Error{Code: bus.DeadlineExceeded, Message: fmt.Sprintf("switchboard: call %s.%s: no reply before the deadline", call.Service, call.Endpoint), Err: err}
	}
	return fmt.Errorf("switchboard: call %s.%s: %w", call.Service, call.Endpoint, err)
}

// RawReply is the reply of CallJSON.
type RawReply struct {
	Body        json.RawMessage
	Instance    string // the instance that answered
	ContentType string
}

// CallJSON calls any endpoint with a JSON body and returns the JSON reply,
// whatever the endpoint's Go types are. It is what the CLI and gateways use.
func (c *Client) CallJSON(ctx context.Context, service, endpoint string, body []byte, opts ...CallOption) (*RawReply, error) {
	if c.err != nil {
		return nil, c.err
	}
	for kind, s := range map[string]string{"service": service, "endpoint": endpoint} {
		if err := wire.ValidateName(kind, s); err != nil {
			return nil, err
		}
	}
	if len(body) > 0 && !json.Valid(body) {
		// Report the offset as the server would, without a round trip.
		var v any
		return nil, wire.Unmarshal(body, wire.ContentTypeJSON, &v)
	}
	cfg := callOptions(opts)
	timeout := c.timeout
	if cfg.timeout > 0 {
		timeout = cfg.timeout
	}
	if _, ok := ctx.Deadline(); !ok || cfg.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	dl, _ := ctx.Deadline()
	call := &Call{Service: service, Endpoint: endpoint, Header: bus.Header{}, Request: json.RawMessage(body),
		Envelope: wire.Envelope{Service: service, Endpoint: endpoint, Version: cfg.version, Instance: cfg.instance,
			ContentType: wire.ContentTypeJSON, Deadline: dl, Caller: c.caller, Priority: cfg.priority}}
	var out *RawReply
	err := chainClient(func(ctx context.Context, call *Call, _ any) error {
		rep, err := c.roundTrip(ctx, call, body)
		if err != nil {
			return err
		}
		ct := rep.Header.Get(wire.HeaderContentType)
		if ct == "" {
			ct = wire.ContentTypeJSON
		}
		out = &RawReply{Body: rep.Body, Instance: rep.Header.Get(wire.HeaderInstance), ContentType: ct}
		return nil
	}, c.mw)(ctx, call, nil)
	return out, err
}

// VersionMatches reports whether version satisfies constraint: "" and "*"
// match anything; "2" and "2.x" match major 2; "2.3" and "2.3.x" match
// 2.3.*; "2.3.1" matches exactly (pre-release and build suffixes of version
// are ignored for partial constraints).
func VersionMatches(constraint, version string) bool {
	constraint = strings.TrimPrefix(strings.TrimSpace(constraint), "v")
	if constraint == "" || constraint == "*" || constraint == "x" {
		return true
	}
	core := version
	if i := strings.IndexAny(core, "-+"); i >= 0 {
		core = core[:i]
	}
	want := strings.Split(constraint, ".")
	have := strings.Split(core, ".")
	for i, w := range want {
		if w == "x" || w == "*" {
			return true
		}
		if i >= len(have) || have[i] != w {
			return false
		}
	}
	if len(want) == 3 {
		return version == constraint || core == constraint && !strings.ContainsAny(constraint, "-+")
	}
	return true
}
