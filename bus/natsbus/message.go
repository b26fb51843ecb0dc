package natsbus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-dev/switchboard/bus/driver"
)

// headerMsgID carries Message.ID; JetStream de-duplicates on it.
const headerMsgID = jetstream.MsgIDHeader

// reservedPrefix starts the header names NATS gives a meaning to.
const reservedPrefix = "nats-"

func isReserved(key string) bool {
	return len(key) >= len(reservedPrefix) && strings.EqualFold(key[:len(reservedPrefix)], reservedPrefix)
}

// checkHeader refuses what NATS cannot carry exactly: names must be
// printable ASCII without ':' and not reserved; values single-line without
// surrounding blanks (nats.go trims them and turns line breaks into spaces).
// It runs for every header of every message, so it allocates only on error.
func checkHeader(key, value string) error {
	if key == "" {
		return fmt.Errorf("natsbus: empty header name: %w", driver.ErrInvalid)
	}
	for i := 0; i < len(key); i++ {
		if b := key[i]; b <= ' ' || b >= 0x7f || b == ':' {
			return fmt.Errorf("natsbus: header name %q: want printable ASCII without ':' or blanks: %w", key, driver.ErrInvalid)
		}
	}
	if isReserved(key) {
		return fmt.Errorf("natsbus: header name %q: names starting with Nats- are reserved by NATS: %w", key, driver.ErrInvalid)
	}
	if !cleanValue(value) {
		return checkValue("header "+key, value)
	}
	return nil
}

// cleanValue reports quickly whether checkValue would accept v.
func cleanValue(v string) bool {
	if v == "" {
		return true
	}
	if b := v[0]; b == ' ' || b == '\t' {
		return false
	}
	if b := v[len(v)-1]; b == ' ' || b == '\t' {
		return false
	}
	return !strings.ContainsAny(v, "\r\n")
}

func checkValue(what, v string) error {
	if strings.ContainsAny(v, "\r\n") {
		return fmt.Errorf("natsbus: %s: value %q has a line break, which NATS headers cannot carry: %w", what, v, driver.ErrInvalid)
	}
	if v != strings.Trim(v, " \t") {
		return fmt.Errorf("natsbus: %s: value %q has leading or trailing blanks, which NATS headers drop: %w", what, v, driver.ErrInvalid)
	}
	return nil
}

// fill makes nm the NATS message for m on subject, reusing nm's header map
// and vals, the backing array of every header's single value; it returns
// vals as used.
func fill(nm *nats.Msg, vals []string, subject string, m *driver.Message) ([]string, error) {
	nm.Subject, nm.Data = subject, m.Body
	if len(m.Header) == 0 && m.ID == "" {
		nm.Header = nil
		return vals, nil
	}
	if nm.Header == nil {
		nm.Header = make(nats.Header, len(m.Header)+1)
	}
	vals = slices.Grow(vals[:0], len(m.Header)+1)[:len(m.Header)+1]
	i := 0
	for k, v := range m.Header {
		if err := checkHeader(k, v); err != nil {
			return vals, err
		}
		vals[i] = v
		nm.Header[k] = vals[i : i+1 : i+1]
		i++
	}
	if m.ID != "" {
		if err := checkValue("message ID", m.ID); err != nil {
			return vals, err
		}
		vals[i] = m.ID
		nm.Header[headerMsgID] = vals[i : i+1 : i+1]
	}
	return vals, nil
}

// outgoing is a NATS message being sent, taken from outgoingPool: nats.go's
// PublishMsg and RequestMsg (and so jetstream's PublishMsg, which adds no
// header with the options Publish gives it) encode a message before they
// return and keep nothing of it, so that its header map and values serve the
// next one instead of three allocations a message.
type outgoing struct {
	msg  nats.Msg
	vals []string
}

var outgoingPool = sync.Pool{New: func() any { return new(outgoing) }}

// maxPooledHeaders bounds the header map a pooled message keeps.
const maxPooledHeaders = 32

// newOutgoing converts m for sending on subject; release it once sent.
func newOutgoing(subject string, m *driver.Message) (*outgoing, error) {
	o := outgoingPool.Get().(*outgoing)
	var err error
	if o.vals, err = fill(&o.msg, o.vals, subject, m); err != nil {
		o.release()
		return nil, err
	}
	return o, nil
}

// release returns o to the pool, keeping no reference to what it carried.
func (o *outgoing) release() {
	h := o.msg.Header
	if len(h) > maxPooledHeaders {
		return
	}
	clear(h)
	clear(o.vals[:cap(o.vals)])
	o.vals = o.vals[:0]
	o.msg = nats.Msg{Header: h}
	outgoingPool.Put(o)
}

// fromNATS converts a received message, reporting it on subject. Reserved
// headers are dropped except Nats-Msg-Id, which becomes the ID. Several
// values of one header (only non-Go clients send them) are joined with ", ".
func fromNATS(subject string, nm *nats.Msg) *driver.Message {
	m := &driver.Message{Subject: subject, Body: nm.Data}
	if len(nm.Header) == 0 {
		return m
	}
	m.Header = make(map[string]string, len(nm.Header))
	for k, vs := range nm.Header {
		switch {
		case k == headerMsgID:
			if len(vs) > 0 {
				m.ID = vs[0]
			}
		case isReserved(k), len(vs) == 0:
		default:
			m.Header[k] = strings.Join(vs, ", ")
		}
	}
	return m
}

// wrapErr wraps a NATS error with the driver sentinel it corresponds to,
// keeping the NATS error as the cause: "natsbus: OP SUBJECT: SENTINEL: CAUSE".
func wrapErr(op, subject string, err error) error {
	if err == nil {
		return nil
	}
	var sentinel error
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		sentinel = driver.ErrNoResponders
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		sentinel = driver.ErrTimeout
	case errors.Is(err, context.Canceled):
		sentinel = driver.ErrCanceled
	case errors.Is(err, nats.ErrMaxPayload), errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum):
		sentinel = driver.ErrTooLarge
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, jetstream.ErrConnectionClosed):
		sentinel = driver.ErrClosed
	case errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrReconnectBufExceeded),
		errors.Is(err, nats.ErrNoServers), errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrStaleConnection):
		sentinel = driver.ErrDisconnected
	case errors.Is(err, nats.ErrBadSubject), errors.Is(err, nats.ErrBadHeaderMsg),
		errors.Is(err, nats.ErrInvalidArg), errors.Is(err, jetstream.ErrInvalidOption):
		sentinel = driver.ErrInvalid
	}
	if sentinel == nil || errors.Is(err, sentinel) {
		return fmt.Errorf("natsbus: %s %s: %w", op, subject, err)
	}
	return fmt.Errorf("natsbus: %s %s: %w: %w", op, subject, sentinel, err)
}
