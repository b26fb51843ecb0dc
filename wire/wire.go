// Package wire is Switchboard's protocol: the envelope carried in message
// headers, the subjects services listen on, the codecs for bodies, the error
// encoding, CloudEvents attributes for events, the discovery messages and
// the JSON Schemas of bodies that discovery carries (Schema, TypeName).
//
// It sits on package bus (which moves opaque messages) and below the SDK.
// Everything here is written down in docs/protocol.md so that a program in
// any language can call a service or publish and consume events with a plain
// NATS or AMQP client.
package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
)

// Header names of the RPC envelope.
const (
	HeaderService     = "Sb-Service"       // target service name
	HeaderEndpoint    = "Sb-Endpoint"      // target endpoint name
	HeaderVersion     = "Sb-Version"       // request: version constraint; reply: responder's version
	HeaderInstance    = "Sb-Instance"      // reply: responder's instance id
	HeaderContentType = "Content-Type"     // body encoding, see Codec
	HeaderTimeout     = "Sb-Timeout"       // request: remaining deadline budget in milliseconds
	HeaderCaller      = "Sb-Caller"        // calling service (or "cli", "external")
	HeaderTraceParent = "traceparent"      // W3C trace context
	HeaderTraceState  = "tracestate"       // W3C trace context
	HeaderErrorCode   = "Sb-Error-Code"    // reply: error code name, e.g. "NotFound"
	HeaderErrorMsg    = "Sb-Error-Message" // reply: human-readable error
	HeaderErrorDetail = "Sb-Error-Details" // reply: JSON object of string details
	HeaderPriority    = "Sb-Priority"      // request: "critical" lets the call past load shedding first
)

// Subject prefixes. RPC subjects are "sb.rpc.<service>.<endpoint>" (served by
// a queue group named after the service, so instances compete) and
// "sb.inst.<instance>.<endpoint>" (one instance, point to point).
const (
	rpcPrefix  = "sb.rpc."
	instPrefix = "sb.inst."
)

// RequestSubject is the subject any instance of service serves endpoint on.
func RequestSubject(service, endpoint string) string {
	return rpcPrefix + service + "." + endpoint
}

// ServiceQueue is the queue group instances of service share, so that each
// request to RequestSubject reaches one of them: the service name itself.
func ServiceQueue(service string) string { return service }

// InstanceSubject is the subject only the instance with id serves endpoint on.
func InstanceSubject(id, endpoint string) string { return instPrefix + id + "." + endpoint }

// ServiceSubjects returns the wildcard subjects an instance serves: all of its
// service's endpoints (queue ServiceQueue) and its own instance subjects.
func ServiceSubjects(service, id string) (shared, own string) {
	return rpcPrefix + service + ".*", instPrefix + id + ".*"
}

// EndpointOf returns the endpoint named by an RPC subject, the last token.
func EndpointOf(subject string) string {
	return subject[strings.LastIndexByte(subject, '.')+1:]
}

// Envelope is what travels with every RPC request and reply, in headers.
type Envelope struct {
	Service     string
	Endpoint    string
	Version     string
	Instance    string
	ContentType string
	// Deadline is when the caller stops waiting. Zero means none was sent.
	// On the wire it travels as the remaining budget (Sb-Timeout, in ms) so
	// clocks of caller and server need not agree.
	Deadline    time.Time
	Caller      string
	TraceParent string
	TraceState  string
	Priority    string
}

// Encode writes e into h, omitting empty fields. Service and Endpoint are
// not written: the subject carries them. A JSON content type is not written
// either: JSON is the default. Every header costs on every call (see
// docs/performance.md), so the envelope sends only what the receiver cannot
// know otherwise.
func (e *Envelope) Encode(h bus.Header) {
	set := func(k, v string) {
		if v != "" {
			h[k] = v
		}
	}
	set(HeaderVersion, e.Version)
	set(HeaderInstance, e.Instance)
	if e.ContentType != "" && normalize(e.ContentType) != ContentTypeJSON {
		h[HeaderContentType] = e.ContentType
	}
	set(HeaderCaller, e.Caller)
	set(HeaderTraceParent, e.TraceParent)
	set(HeaderTraceState, e.TraceState)
	set(HeaderPriority, e.Priority)
	if !e.Deadline.IsZero() {
		ms := max(time.Until(e.Deadline).Milliseconds(), 0)
		h[HeaderTimeout] = strconv.FormatInt(ms, 10)
	}
}

// DecodeEnvelope reads an envelope from h. Deadline is computed from the
// received budget relative to now; ContentType is normalised, JSON when
// absent. A malformed budget is InvalidArgument.
func DecodeEnvelope(h bus.Header) (Envelope, error) {
	e := Envelope{
		Service:     h[HeaderService],
		Endpoint:    h[HeaderEndpoint],
		Version:     h[HeaderVersion],
		Instance:    h[HeaderInstance],
		ContentType: normalize(h[HeaderContentType]),
		Caller:      h[HeaderCaller],
		TraceParent: h[HeaderTraceParent],
		TraceState:  h[HeaderTraceState],
		Priority:    h[HeaderPriority],
	}
	if s := h[HeaderTimeout]; s != "" {
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil || ms < 0 {
			return e, bus.Errorf(bus.InvalidArgument, "wire: header %s=%q: want a non-negative number of milliseconds", HeaderTimeout, s)
		}
		// A budget beyond what a Duration holds (292 years) would overflow
		// into a deadline in the past.
		ms = min(ms, maxBudgetMS)
		e.Deadline = time.Now().Add(time.Duration(ms) * time.Millisecond)
	}
	return e, nil
}

// maxBudgetMS is the largest Sb-Timeout that fits a time.Duration.
const maxBudgetMS = int64(math.MaxInt64 / time.Millisecond)

// EncodeError writes err into reply headers: its code (Internal for errors
// that carry none), message and details. A nil err writes nothing.
func EncodeError(h bus.Header, err error) {
	if err == nil {
		return
	}
	code := bus.ErrorCode(err)
	if code == bus.OK || code == bus.Unknown && asBusError(err) == nil {
		// A *bus.Error that says Unknown (say, relayed from a callee) keeps
		// its code; only errors without one become Internal.
		code = bus.Internal
	}
	msg := err.Error()
	var details map[string]string
	if be, ok := err.(*bus.Error); ok {
		msg = be.Message
		details = be.Details
	} else if be := asBusError(err); be != nil {
		details = be.Details
	}
	h[HeaderErrorCode] = code.String()
	h[HeaderErrorMsg] = sanitizeHeader(msg)
	if len(details) > 0 {
		b, _ := json.Marshal(details)
		h[HeaderErrorDetail] = string(b)
	}
}

// DecodeError returns the *bus.Error carried by reply headers h, or nil if
// they carry none. An unrecognised code (or "OK") decodes as Unknown, and
// details that are not a JSON object of strings are kept under "raw".
func DecodeError(h bus.Header) error {
	name := h[HeaderErrorCode]
	if name == "" {
		return nil
	}
	code, ok := bus.ParseCode(name)
	if !ok || code == bus.OK {
		// The header is only sent on failure; an error must never read as OK.
		code = bus.Unknown
	}
	e := &bus.Error{Code: code, Message: h[HeaderErrorMsg]}
	if d := h[HeaderErrorDetail]; d != "" {
		if err := json.Unmarshal([]byte(d), &e.Details); err != nil {
			e.Details = map[string]string{"raw": d}
		}
	}
	return e
}

// asBusError returns the first *bus.Error in err's tree, the one whose code
// bus.ErrorCode reports (errors.Join trees included).
func asBusError(err error) *bus.Error {
	var be *bus.Error
	if errors.As(err, &be) {
		return be
	}
	return nil
}

// sanitizeHeader keeps header values on one line: NATS and AMQP headers
// cannot carry CR or LF.
func sanitizeHeader(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}

// validName reports whether s is usable as a service, endpoint or instance
// name in subjects.
func validName(kind, s string) error {
	if !bus.ValidName(s) {
		return bus.Errorf(bus.InvalidArgument, "wire: invalid %s name %q: use 1-128 letters, digits, '_' or '-'", kind, s)
	}
	return nil
}

// ValidateName checks a service, endpoint or group name; kind names it in the error.
func ValidateName(kind, s string) error { return validName(kind, s) }

// String renders the envelope for logs.
func (e Envelope) String() string {
	return fmt.Sprintf("%s.%s", e.Service, e.Endpoint)
}
