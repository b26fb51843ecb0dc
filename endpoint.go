package switchboard

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"github.com/switchboard-dev/switchboard/wire"
)

// EndpointDef is a contract for one RPC endpoint, shared by the service that
// serves it and the clients that call it. Create it with Endpoint.
type EndpointDef[Req, Rsp any] struct {
	service string
	name    string
	newReq  func() Req
	newRsp  func() Rsp
	// reqPtr and rspPtr say that Req and Rsp are pointer types: a fresh
	// value is then itself what to decode into.
	reqPtr, rspPtr bool
}

// Endpoint declares the contract of endpoint name on service. Req and Rsp are
// usually pointers to structs or to protobuf messages. It panics if a name is
// not a valid subject token (letters, digits, '_' and '-'): contracts are
// package-level values, so this fails at program start, not at call time.
func Endpoint[Req, Rsp any](service, name string) EndpointDef[Req, Rsp] {
	for kind, s := range map[string]string{"service": service, "endpoint": name} {
		if err := wire.ValidateName(kind, s); err != nil {
			panic(err)
		}
	}
	return EndpointDef[Req, Rsp]{service: service, name: name, newReq: allocator[Req](), newRsp: allocator[Rsp](),
		reqPtr: isPointer[Req](), rspPtr: isPointer[Rsp]()}
}

// Service returns the name of the service that serves the endpoint.
func (e EndpointDef[Req, Rsp]) Service() string { return e.service }

// Name returns the endpoint's name.
func (e EndpointDef[Req, Rsp]) Name() string { return e.name }

// allocator returns a function that makes a fresh T to decode into: for a
// pointer type, a pointer to a new zero value.
func allocator[T any]() func() T {
	t := reflect.TypeFor[T]()
	if t.Kind() == reflect.Pointer {
		elem := t.Elem()
		return func() T { return reflect.New(elem).Interface().(T) }
	}
	return func() T { var z T; return z }
}

// isPointer says whether T is a pointer type. A fresh value made by
// allocator is then what to decode into; otherwise a pointer to it is, and
// taking that pointer costs an allocation.
func isPointer[T any]() bool { return reflect.TypeFor[T]().Kind() == reflect.Pointer }

// EndpointOption tunes how a service serves an endpoint.
type EndpointOption func(*endpointConfig)

type endpointConfig struct {
	maxInFlight int
	description string
	expectP99   time.Duration // ExpectLatency, in observe.go
}

// MaxInFlight bounds the endpoint's concurrent handlers in one instance (a
// bulkhead). Calls beyond it fail at once with ResourceExhausted. The
// default is DefaultMaxInFlight.
func MaxInFlight(n int) EndpointOption { return func(c *endpointConfig) { c.maxInFlight = n } }

// Describe sets the endpoint's description shown by `switchboard describe`.
func Describe(text string) EndpointOption { return func(c *endpointConfig) { c.description = text } }

// DefaultMaxInFlight is the per-endpoint concurrency limit when none is set.
const DefaultMaxInFlight = 1024

// Handle registers fn to serve the endpoint on svc. It panics if svc is not
// the endpoint's service or the endpoint is registered twice: both are
// programming errors found at start-up.
func (e EndpointDef[Req, Rsp]) Handle(svc *Service, fn func(ctx context.Context, req Req) (Rsp, error), opts ...EndpointOption) {
	if svc.name != e.service {
		panic(fmt.Sprintf("switchboard: endpoint %s.%s handled by service %q", e.service, e.name, svc.name))
	}
	cfg := endpointConfig{maxInFlight: DefaultMaxInFlight}
	for _, o := range opts {
		o(&cfg)
	}
	var zr Req
	var zs Rsp
	info := wire.EndpointInfo{
		Name:        e.name,
		Subject:     wire.RequestSubject(e.service, e.name),
		Description: cfg.description,
		Request:     wire.Schema(e.newReq()),
		Response:    wire.Schema(e.newRsp()),
		RequestType: wire.TypeName(zr),
		ReplyType:   wire.TypeName(zs),
		MaxInFlight: cfg.maxInFlight,
	}
	svc.addEndpoint(&endpoint{
		info:        info,
		maxInFlight: int64(cfg.maxInFlight),
		expectP99:   cfg.expectP99,
		newReq:      e.decodeReq,
		handler: func(ctx context.Context, call *Call) (any, error) {
			var req Req
			if p, ok := call.Request.(*Req); ok {
				req = *p
			} else {
				req = call.Request.(Req)
			}
			return fn(ctx, req)
		},
	})
}

// decodeReq returns a fresh request to decode into: a pointer to a new
// value (the handler reads the request behind it).
func (e EndpointDef[Req, Rsp]) decodeReq() any {
	if e.reqPtr {
		return e.newReq()
	}
	r := e.newReq()
	return &r
}

// Call calls the endpoint through c (a *Client or a *Service, whose calls
// carry its name as caller) and returns the decoded reply. Errors are *Error
// values: branch on ErrorCode(err).
func (e EndpointDef[Req, Rsp]) Call(ctx context.Context, c Caller, req Req, opts ...CallOption) (Rsp, error) {
	if e.rspPtr { // the fresh pointer is what to decode into
		rsp := e.newRsp()
		err := c.client().invoke(ctx, e.service, e.name, req, rsp, opts)
		return rsp, err
	}
	var rsp Rsp
	err := c.client().invoke(ctx, e.service, e.name, req, &rsp, opts)
	return rsp, err
}
