package amqpbus

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"strconv"
	"strings"
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
	// internalPrefix starts every header name the driver reserves.
	internalPrefix = "sb-amqp-"
	// headerContentType is mirrored into the content_type property.
	headerContentType = "Content-Type"
)

// Headers RabbitMQ sets on the messages it dead-letters or redelivers.
var brokerHeaders = []string{"x-death", "x-delivery-count", "x-first-death-", "x-last-death-"}

// isReserved reports whether a header name belongs to the driver or the
// broker (case-insensitive).
func isReserved(key string) bool {
	k := strings.ToLower(key)
	if strings.HasPrefix(k, internalPrefix) {
		return true
	}
	for _, b := range brokerHeaders {
		if k == b || strings.HasSuffix(b, "-") && strings.HasPrefix(k, b) {
			return true
		}
	}
	return false
}

// maxShortString is the longest AMQP short string: routing keys, queue
// names, header names, message ids.
const maxShortString = 255

// toPublishing converts m. Headers become a table of string values; the
// Content-Type header is mirrored into the content_type property for AMQP
// tooling; Message.ID is the message_id property.
func toPublishing(m *driver.Message, persistent bool) (amqp.Publishing, error) {
	p := amqp.Publishing{Body: m.Body, MessageId: m.ID, DeliveryMode: amqp.Transient}
	if persistent {
		p.DeliveryMode = amqp.Persistent
	}
	if len(m.ID) > maxShortString {
		return p, fmt.Errorf("amqpbus: message ID of %d bytes: AMQP allows at most %d: %w", len(m.ID), maxShortString, driver.ErrInvalid)
	}
	if len(m.Header) > 0 {
		p.Headers = make(amqp.Table, len(m.Header))
		for k, v := range m.Header {
			if k == "" || len(k) > maxShortString {
				return p, fmt.Errorf("amqpbus: header name %q: want 1 to %d bytes: %w", k, maxShortString, driver.ErrInvalid)
			}
			if isReserved(k) {
				return p, fmt.Errorf("amqpbus: header name %q is reserved (Sb-Amqp-*, x-death, x-delivery-count, x-first-death-*, x-last-death-*): %w", k, driver.ErrInvalid)
			}
			p.Headers[k] = v
		}
		if ct, ok := m.Header[headerContentType]; ok && len(ct) <= maxShortString {
			p.ContentType = ct
		}
	}
	return p, nil
}

// headersOf converts an AMQP header table back to bus headers, dropping the
// reserved ones. Values that are not strings (only other clients send them)
// are formatted with fmt. A content_type property without a Content-Type
// header (from another client) becomes the header.
func headersOf(t amqp.Table, contentType string) map[string]string {
	h := make(map[string]string, len(t)+1)
	for k, v := range t {
		if isReserved(k) {
			continue
		}
		switch v := v.(type) {
		case string:
			h[k] = v
		case []byte:
			h[k] = string(v)
		default:
			h[k] = fmt.Sprint(v)
		}
	}
	if _, ok := h[headerContentType]; !ok && contentType != "" {
		h[headerContentType] = contentType
	}
	return h
}

// fromDelivery converts a delivery, reporting it on subject.
func fromDelivery(subject string, d *amqp.Delivery) *driver.Message {
	return &driver.Message{Subject: subject, Header: headersOf(d.Headers, d.ContentType), Body: d.Body, ID: d.MessageId}
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
