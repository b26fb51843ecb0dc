package amqpbus

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/switchboard-dev/switchboard/bus/driver"
)

// Headers the driver itself reads and writes. They never reach package bus:
// they are stripped from deliveries, and publishing them is refused so that
// every header a caller sets round-trips exactly.
const (
	// headerAttempt carries, on a copy made to delay a redelivery, the
	// attempt number of the copy's first delivery.
	headerAttempt = "Sb-Amqp-Attempt"
	// headerNoTimeout marks a request whose expiration does not carry an
	// Sb-Timeout header (the caller had a deadline but sent no budget, or
	// one the expiration cannot hold exactly), so none is restored from it.
	headerNoTimeout = "Sb-Amqp-No-Timeout"
	// internalPrefix starts every header name the driver reserves.
	internalPrefix = "sb-amqp-"
)

// Headers the driver carries in basic properties rather than in the headers
// table (docs/protocol.md, "Messages"). Every table entry costs on every
// message (amqp091-go encodes and decodes the table, the broker parses and
// stores it), so the typical request, reply and event have an empty table.
// A header goes into its property only when the property gives back the
// same value; otherwise it stays in the table, and on receipt the table
// wins over the property. Package bus is below the envelope (package wire)
// that defines these names for the SDK, so they are spelled here; a test
// checks that the two agree.
const (
	// headerContentType is the content_type property, on every message.
	headerContentType = "Content-Type"
	// headerTimeout is, on a request, the caller's budget in milliseconds:
	// it is the expiration when it is a whole number from 1 up to the
	// milliseconds left before the deadline, which the expiration is
	// anyway.
	headerTimeout = "Sb-Timeout"
	// headerCaller is the app_id property of a request.
	headerCaller = "Sb-Caller"
	// headerInstance is the app_id property of a reply.
	headerInstance = "Sb-Instance"
	// The CloudEvents attributes of an event in binary content mode. An
	// event with ce-specversion 1.0, a ce-type and a ce-id (or no message
	// ID) has its ce-type as the type property, which also stands for
	// ce-specversion 1.0; its ce-id is then the message_id when the two are
	// equal, its ce-source the app_id, and its ce-time the timestamp when
	// it is a whole second in UTC (a timestamp has no fraction).
	headerCESpecVersion = "ce-specversion"
	headerCEID          = "ce-id"
	headerCEType        = "ce-type"
	headerCESource      = "ce-source"
	headerCETime        = "ce-time"
)

// kind is what a message is for: it decides which headers travel as which
// properties.
type kind uint8

const (
	kindMessage kind = iota // fire-and-forget (Send): only Content-Type
	kindRequest             // Request: Sb-Timeout, Sb-Caller
	kindReply               // a reply: Sb-Instance
	kindEvent               // a durable publish: the CloudEvents attributes
)

// requestKind is the kind of a delivery from the message exchange: a
// request when it has somewhere to reply to.
func requestKind(d *amqp.Delivery) kind {
	if d.ReplyTo != "" {
		return kindRequest
	}
	return kindMessage
}

// Headers RabbitMQ sets on the messages it dead-letters or redelivers.
var brokerHeaders = []string{"x-death", "x-delivery-count", "x-first-death-", "x-last-death-"}

// isReserved reports whether a header name belongs to the driver or the
// broker (ASCII case-insensitive, without allocating: it runs for every
// header of every message).
func isReserved(key string) bool {
	if len(key) < 7 { // the shortest reserved name, x-death
		return false
	}
	if hasPrefixFold(key, internalPrefix) {
		return true
	}
	if key[0] != 'x' && key[0] != 'X' {
		return false
	}
	for _, b := range brokerHeaders {
		if len(key) == len(b) && hasPrefixFold(key, b) || b[len(b)-1] == '-' && hasPrefixFold(key, b) {
			return true
		}
	}
	return false
}

// hasPrefixFold reports whether s starts with the lower-case ASCII prefix,
// ignoring ASCII case in s.
func hasPrefixFold(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

// maxShortString is the longest AMQP short string: routing keys, queue
// names, header names, message ids.
const maxShortString = 255

// noBudget is the budget of a message without a deadline.
const noBudget = -1

// toPublishing converts m, a message of kind k. Message.ID is the
// message_id property; headers are carried in properties where the round
// trip is exact (see headerTimeout and the others) and in a table of
// string values otherwise. For a request, budget is the milliseconds left
// before the deadline (at least 1), the expiration; noBudget without one.
func toPublishing(m *driver.Message, k kind, budget int64) (amqp.Publishing, error) {
	p := amqp.Publishing{Body: m.Body, MessageId: m.ID, DeliveryMode: amqp.Transient}
	if k == kindEvent {
		p.DeliveryMode = amqp.Persistent
	}
	if len(m.ID) > maxShortString {
		return p, fmt.Errorf("amqpbus: message ID of %d bytes: AMQP allows at most %d: %w", len(m.ID), maxShortString, driver.ErrInvalid)
	}
	cloudEvent := k == kindEvent && isCloudEvent(m)
	for name, v := range m.Header {
		if name == "" || len(name) > maxShortString {
			return p, fmt.Errorf("amqpbus: header name %q: want 1 to %d bytes: %w", name, maxShortString, driver.ErrInvalid)
		}
		if isReserved(name) {
			return p, fmt.Errorf("amqpbus: header name %q is reserved (Sb-Amqp-*, x-death, x-delivery-count, x-first-death-*, x-last-death-*): %w", name, driver.ErrInvalid)
		}
		if carry(&p, k, cloudEvent, name, v, m.ID, budget) {
			continue
		}
		if p.Headers == nil {
			p.Headers = make(amqp.Table, len(m.Header))
		}
		p.Headers[name] = v
	}
	if k == kindRequest && budget != noBudget && p.Expiration == "" {
		p.Expiration = strconv.FormatInt(max(budget, 1), 10)
		if _, ok := m.Header[headerTimeout]; !ok {
			if p.Headers == nil {
				p.Headers = make(amqp.Table, 1)
			}
			p.Headers[headerNoTimeout] = "1"
		}
	}
	return p, nil
}

// isCloudEvent reports whether m's CloudEvents attributes go in properties:
// specversion 1.0, a type a property can hold, and an id whenever the
// message has an ID (on receipt the message_id stands for a missing ce-id).
func isCloudEvent(m *driver.Message) bool {
	if m.Header[headerCESpecVersion] != "1.0" || !isShortString(m.Header[headerCEType]) {
		return false
	}
	_, hasID := m.Header[headerCEID]
	return hasID || m.ID == ""
}

// carry puts header name = v of a message of kind k into the property that
// carries it, if the property gives v back exactly, and reports whether it
// did.
func carry(p *amqp.Publishing, k kind, cloudEvent bool, name, v, id string, budget int64) bool {
	switch {
	case name == headerContentType:
		return setShort(&p.ContentType, v)
	case k == kindRequest && name == headerTimeout:
		if n, ok := wholeMillis(v); ok && budget != noBudget && n <= max(budget, 1) {
			p.Expiration = v
			return true
		}
	case k == kindRequest && name == headerCaller, k == kindReply && name == headerInstance:
		return setShort(&p.AppId, v)
	case !cloudEvent:
	case name == headerCESpecVersion:
		return true // the type property stands for it
	case name == headerCEType:
		return setShort(&p.Type, v)
	case name == headerCEID:
		return v != "" && v == id
	case name == headerCESource:
		return setShort(&p.AppId, v)
	case name == headerCETime:
		if t, ok := wholeSecond(v); ok {
			p.Timestamp = t
			return true
		}
	}
	return false
}

func isShortString(v string) bool { return v != "" && len(v) <= maxShortString }

// setShort sets a short-string property to v if it can hold v: an empty
// property is an absent one.
func setShort(prop *string, v string) bool {
	if !isShortString(v) {
		return false
	}
	*prop = v
	return true
}

// wholeMillis parses a canonical positive decimal (no sign, no leading
// zero) that formats back to v, so that the expiration gives v back.
func wholeMillis(v string) (int64, bool) {
	if v == "" || v[0] == '0' || len(v) > 18 {
		return 0, false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

// wholeSecond parses an RFC 3339 time that formatTimestamp gives back
// exactly: a whole second from 1970 on, in UTC ("Z").
func wholeSecond(v string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil || t.Nanosecond() != 0 || t.Unix() < 0 || formatTimestamp(t) != v {
		return time.Time{}, false
	}
	return t, true
}

func formatTimestamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// headersOf returns the bus headers of a delivery of kind k: the table's
// entries but the reserved ones, then the headers its properties carry (see
// toPublishing) where the table has none of that name, so that a message
// from another client that sets only the property gets the header too.
// Table values that are not strings (only other clients send them) are
// formatted with fmt.
func headersOf(k kind, d *amqp.Delivery) map[string]string {
	h := make(map[string]string, len(d.Headers)+4)
	noTimeout := false
	for name, v := range d.Headers {
		if isReserved(name) {
			noTimeout = noTimeout || name == headerNoTimeout
			continue
		}
		switch v := v.(type) {
		case string:
			h[name] = v
		case []byte:
			h[name] = string(v)
		default:
			h[name] = fmt.Sprint(v)
		}
	}
	restore := func(name, v string) {
		if v == "" {
			return
		}
		if _, ok := h[name]; !ok {
			h[name] = v
		}
	}
	restore(headerContentType, d.ContentType)
	switch k {
	case kindRequest:
		if !noTimeout {
			restore(headerTimeout, d.Expiration)
		}
		restore(headerCaller, d.AppId)
	case kindReply:
		restore(headerInstance, d.AppId)
	case kindEvent:
		if d.Type == "" {
			break
		}
		restore(headerCESpecVersion, "1.0")
		restore(headerCEType, d.Type)
		restore(headerCEID, d.MessageId)
		restore(headerCESource, d.AppId)
		if !d.Timestamp.IsZero() {
			restore(headerCETime, formatTimestamp(d.Timestamp))
		}
	}
	return h
}

// fromDelivery converts a delivery of kind k, reporting it on subject.
func fromDelivery(subject string, k kind, d *amqp.Delivery) *driver.Message {
	return &driver.Message{Subject: subject, Header: headersOf(k, d), Body: d.Body, ID: d.MessageId}
}

// headerInt reads an integer header whatever integer type carried it.
func headerInt(t amqp.Table, key string) (int64, bool) {
	switch v := t[key].(type) {
	case int64:
		return v, true
	case int32:
		return int64(v), true
	case int16:
		return int64(v), true
	case int8:
		return int64(v), true
	case int:
		return int64(v), true
	case uint8:
		return int64(v), true
	case uint16:
		return int64(v), true
	case uint32:
		return int64(v), true
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		return n, err == nil
	}
	return 0, false
}

// routingKey checks that subject can be an AMQP routing key.
func routingKey(subject string) (string, error) {
	if len(subject) > maxShortString {
		return "", fmt.Errorf("amqpbus: subject of %d bytes: AMQP routing keys are at most %d bytes: %w", len(subject), maxShortString, driver.ErrInvalid)
	}
	return subject, nil
}

// bindingKey maps a bus pattern to an AMQP topic binding key: '*' is '*'
// and '>' (one or more tokens) is "*.#" ('#' alone would match zero). A
// token '#' would be an AMQP wildcard and is refused.
func bindingKey(pattern string) (string, error) {
	toks := strings.Split(pattern, ".")
	for i, t := range toks {
		switch {
		case t == "#":
			return "", fmt.Errorf("amqpbus: pattern %q: a token '#' is an AMQP wildcard and cannot be matched literally: %w", pattern, driver.ErrInvalid)
		case t == ">" && i == len(toks)-1:
			toks[i] = "*.#"
		}
	}
	key := strings.Join(toks, ".")
	if len(key) > maxShortString {
		return "", fmt.Errorf("amqpbus: pattern %q: AMQP binding keys are at most %d bytes: %w", pattern, maxShortString, driver.ErrInvalid)
	}
	return key, nil
}

// queueName returns the name of a queue the driver declares:
// PREFIX.KIND.A.B, readable and the same on every run. A name over AMQP's
// 255 bytes is cut and ends in '~' and 16 hex digits of FNV-1a over A, a
// NUL byte and B, so that distinct pairs keep distinct names.
func queueName(prefix, kind, a, b string) string {
	n := prefix + "." + kind + "." + a + "." + b
	if len(n) <= maxShortString {
		return n
	}
	h := fnv.New64a()
	h.Write([]byte(a))
	h.Write([]byte{0})
	h.Write([]byte(b))
	cut := maxShortString - 17
	for cut > 0 && !utf8.RuneStart(n[cut]) {
		cut--
	}
	return fmt.Sprintf("%s~%016x", n[:cut], h.Sum64())
}

// wrapErr wraps an AMQP error with the driver sentinel it corresponds to,
// keeping it as the cause: "amqpbus: OP SUBJECT: SENTINEL: CAUSE".
func wrapErr(op, subject string, err error) error {
	if err == nil {
		return nil
	}
	var sentinel error
	var ae *amqp.Error
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		sentinel = driver.ErrTimeout
	case errors.Is(err, context.Canceled):
		sentinel = driver.ErrCanceled
	case errors.As(err, &ae):
		switch ae.Code {
		case amqp.NoRoute:
			sentinel = driver.ErrNoResponders
		case amqp.ContentTooLarge:
			sentinel = driver.ErrTooLarge
		case amqp.PreconditionFailed:
			if strings.Contains(ae.Reason, "max size") || strings.Contains(ae.Reason, "message size") {
				sentinel = driver.ErrTooLarge
			} else {
				sentinel = driver.ErrInvalid
			}
		case amqp.SyntaxError, amqp.CommandInvalid, amqp.NotAllowed:
			sentinel = driver.ErrInvalid
		case amqp.ConnectionForced, amqp.ChannelError, amqp.FrameError, amqp.InternalError, amqp.ResourceError, amqp.UnexpectedFrame:
			sentinel = driver.ErrDisconnected
		}
	case errors.As(err, &ne), errors.Is(err, net.ErrClosed):
		sentinel = driver.ErrDisconnected
	}
	if sentinel == nil || errors.Is(err, sentinel) {
		return fmt.Errorf("amqpbus: %s %s: %w", op, subject, err)
	}
	return fmt.Errorf("amqpbus: %s %s: %w: %w", op, subject, sentinel, err)
}
