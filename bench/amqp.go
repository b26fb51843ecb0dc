package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/amqpbus"
)

// directReplyTo is RabbitMQ's pseudo-queue for replies, as both sides use
// it: consumed without acks on the channel that publishes the requests.
const directReplyTo = "amq.rabbitmq.reply-to"

// amqpQueueExpiry bounds how long what a benchmark that did not clean up
// after itself (killed) leaves on the broker. Both sides' durable queues
// get it (x-expires), so their configurations stay identical.
const amqpQueueExpiry = 10 * time.Minute

// amqpTLSParams are the only URL parameters bench accepts on an amqp(s)://
// URL: amqp091-go's TLS settings, which both sides use. The driver's own
// parameters (prefix, queue_expires, …) are the benchmark's to set.
var amqpTLSParams = []string{"cacertfile", "certfile", "keyfile", "server_name_indication"}

func isAMQP(busURL string) bool {
	return strings.HasPrefix(busURL, amqpbus.Scheme+"://") || strings.HasPrefix(busURL, amqpbus.SchemeTLS+"://")
}

// CheckBusURL reports whether rawURL can be the external server of a run
// (Config.BusURL), without connecting: nats://HOST[:PORT] of a NATS server
// with JetStream, or amqp://[USER:PASS@]HOST[:PORT][/VHOST] (amqps:// with
// TLS) of one RabbitMQ node. The empty URL (an embedded NATS server) is
// valid. The error says what is wrong.
func CheckBusURL(rawURL string) error {
	if rawURL == "" {
		return nil
	}
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("bench: bus URL %q: want nats://HOST[:PORT] (NATS with JetStream) or amqp://USER:PASS@HOST[:PORT]/[VHOST] (RabbitMQ)", rawURL)
	}
	switch u.Scheme {
	case "nats":
		return nil
	case amqpbus.Scheme, amqpbus.SchemeTLS:
	default:
		return fmt.Errorf("bench: bus URL %s: unknown scheme %q: want nats, %s or %s", u.Redacted(), u.Scheme, amqpbus.Scheme, amqpbus.SchemeTLS)
	}
	if strings.Contains(u.Host, ",") {
		return fmt.Errorf("bench: bus URL %s: name one RabbitMQ node, not a list: both sides must use the same broker", u.Redacted())
	}
	for k := range u.Query() {
		known := false
		for _, p := range amqpTLSParams {
			known = known || k == p
		}
		if !known {
			return fmt.Errorf("bench: bus URL %s: parameter %q: the benchmark sets the driver's parameters itself; give only the broker's address, credentials, vhost and TLS files (%s)",
				u.Redacted(), k, strings.Join(amqpTLSParams, ", "))
		}
		if u.Scheme != amqpbus.SchemeTLS {
			return fmt.Errorf("bench: bus URL %s: parameter %q is for %s:// URLs only", u.Redacted(), k, amqpbus.SchemeTLS)
		}
	}
	if _, err := amqp.ParseURI(rawURL); err != nil {
		return fmt.Errorf("bench: bus URL %s: %v", u.Redacted(), err)
	}
	return nil
}

// amqpEnv is the RabbitMQ broker both sides use, reached over TCP. The
// Switchboard side's exchanges and queues are named from a prefix of its
// own (sbbench.ID), the raw side's from sbbenchraw.ID; close deletes both.
type amqpEnv struct {
	cfg     *Config
	url     string // the broker, as the raw side dials it
	sbURL   string // the same with the driver's parameters for the run
	shown   string
	id      string
	version string
	admin   *amqp.Connection
	conns   []*amqp.Connection // the raw side's
	buses   []*bus.Conn        // the Switchboard side's
	queues  []string           // durable queues to delete
	// exchanges are the raw side's exchanges to delete (the Switchboard
	// side's are sbMsgExchange and sbEvtExchange).
	exchanges []string
}

func (e *amqpEnv) sbPrefix() string      { return "sbbench." + e.id }
func (e *amqpEnv) rawPrefix() string     { return "sbbenchraw." + e.id }
func (e *amqpEnv) service() string       { return "bench-" + e.id }
func (e *amqpEnv) sbMsgExchange() string { return e.sbPrefix() + ".msg" }
func (e *amqpEnv) sbEvtExchange() string { return e.sbPrefix() + ".evt" }

// sbGroupQueue is the name the driver gives the durable queue of a group
// on a topic (see package amqpbus: PREFIX.group.GROUP.TOPIC).
func (e *amqpEnv) sbGroupQueue(group, topic string) string {
	return e.sbPrefix() + ".group." + group + "." + topic
}

func newAMQPEnv(cfg *Config) (*amqpEnv, error) {
	if err := CheckBusURL(cfg.BusURL); err != nil {
		return nil, err
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	e := &amqpEnv{cfg: cfg, url: cfg.BusURL, id: hex.EncodeToString(b)}
	u, _ := url.Parse(cfg.BusURL)
	e.shown = "external RabbitMQ " + u.Redacted()
	q := u.Query()
	q.Set("prefix", e.sbPrefix())
	q.Set("queue_expires", amqpQueueExpiry.String())
	q.Set("name", "switchboard-bench")
	u.RawQuery = q.Encode()
	e.sbURL = u.String()
	ac, err := e.dial("bench-admin")
	if err != nil {
		return nil, err
	}
	e.admin = ac
	e.version, _ = ac.Properties["version"].(string)
	if p, _ := ac.Properties["product"].(string); p != "" && p != brokerAMQP {
		e.version += " (" + p + ")"
	}
	return e, nil
}

// dial opens one of the raw side's connections, with the driver's defaults
// (heartbeat, locale) so that both sides' connections are alike.
func (e *amqpEnv) dial(name string) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	ac, err := amqp.DialConfig(e.url, amqp.Config{Heartbeat: amqpbus.DefaultHeartbeat, Locale: "en_US", Properties: props,
		Dial: amqp.DefaultDial(amqpbus.DefaultConnectTimeout)})
	if err != nil {
		return nil, fmt.Errorf("bench: connect to %s: %w: %w", e.shown, ErrUnavailable, err)
	}
	e.conns = append(e.conns, ac)
	return ac, nil
}

// busConns opens two of the Switchboard side's connections (a server's
// and a client's, or a publisher's and a consumer's).
func (e *amqpEnv) busConns(ctx context.Context) (*bus.Conn, *bus.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for range 2 {
		c, err := bus.Open(ctx, e.sbURL)
		if err != nil {
			if bus.ErrorCode(err) == bus.Unavailable {
				return nil, nil, fmt.Errorf("bench: %w: %w", ErrUnavailable, err)
			}
			return nil, nil, fmt.Errorf("bench: %w", err)
		}
		e.buses = append(e.buses, c)
	}
	return e.buses[len(e.buses)-2], e.buses[len(e.buses)-1], nil
}

// declare declares a durable queue that close deletes.
func (e *amqpEnv) declare(ch *amqp.Channel, name string, args amqp.Table) error {
	if _, err := ch.QueueDeclare(name, true, false, false, false, args); err != nil {
		return fmt.Errorf("bench: declare queue %s: %w", name, err)
	}
	e.queues = append(e.queues, name)
	return nil
}

// close closes every connection and deletes what the benchmark made on the
// broker.
func (e *amqpEnv) close() {
	for _, c := range e.buses {
		_ = c.Close()
	}
	if e.admin != nil {
		ch, err := e.admin.Channel()
		for _, q := range e.queues {
			if err != nil {
				break
			}
			if _, err = ch.QueueDelete(q, false, false, false); err != nil {
				ch, err = e.admin.Channel() // an error closed it
			}
		}
		for _, x := range append([]string{e.sbMsgExchange(), e.sbEvtExchange()}, e.exchanges...) {
			if err != nil {
				break
			}
			if err = ch.ExchangeDelete(x, false, false); err != nil {
				ch, err = e.admin.Channel()
			}
		}
	}
	for _, c := range e.conns {
		_ = c.Close()
	}
}

func (e *amqpEnv) report(kind, syncPolicy string) Report {
	client, _ := amqp.NewConnectionProperties()["version"].(string)
	return newReport(kind, e.cfg, brokerAMQP, e.shown, e.version, rawClientAMQP, client, syncPolicy)
}

// runAMQP runs one kind of benchmark on RabbitMQ: cases measures them on
// the broker into rep.
func runAMQP(cfg *Config, kind, syncPolicy string, notes []string, cases func(e *amqpEnv, rep *Report) error) (Report, error) {
	start := time.Now()
	e, err := newAMQPEnv(cfg)
	if err != nil {
		return Report{}, err
	}
	defer e.close()
	rep := e.report(kind, syncPolicy)
	rep.Notes, rep.Skipped = notes, []string{amqpSkipped}
	if err := cases(e, &rep); err != nil {
		return rep, err
	}
	rep.finish(start)
	return rep, nil
}

// amqpSkipped is what a RabbitMQ run does not measure.
const amqpSkipped = "in-process connection: does not apply to RabbitMQ (an AMQP client reaches the broker over TCP only)"

// tap captures a copy of the next message published to exchange with
// routing key key while f runs, through a private queue bound beside the
// real one: the message as the broker got it.
func (e *amqpEnv) tap(exchange, key string, f func() error) (*amqp.Delivery, error) {
	ch, err := e.admin.Channel()
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	q, err := ch.QueueDeclare("", false, true, true, false, amqp.Table{"x-queue-type": "classic"})
	if err != nil {
		return nil, err
	}
	if err := ch.QueueBind(q.Name, key, exchange, false, nil); err != nil {
		return nil, err
	}
	ds, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		return nil, err
	}
	if err := f(); err != nil {
		return nil, err
	}
	select {
	case d := <-ds:
		return &d, nil
	case <-time.After(5 * time.Second):
		return nil, errors.New("bench: no copy of the message arrived to measure its headers on " + exchange + " " + key)
	}
}

// published is the message as its publisher gave it to the broker: the
// delivery's properties, with a direct reply-to address (which the broker
// rewrites for the responder) as the caller wrote it.
func published(d *amqp.Delivery) amqp.Publishing {
	p := amqp.Publishing{Headers: d.Headers, ContentType: d.ContentType, ContentEncoding: d.ContentEncoding,
		DeliveryMode: d.DeliveryMode, Priority: d.Priority, CorrelationId: d.CorrelationId, ReplyTo: d.ReplyTo,
		Expiration: d.Expiration, MessageId: d.MessageId, Timestamp: d.Timestamp, Type: d.Type, UserId: d.UserId,
		AppId: d.AppId, Body: d.Body}
	if strings.HasPrefix(p.ReplyTo, directReplyTo) {
		p.ReplyTo = directReplyTo
	}
	return p
}

// propertiesBytes is the size of p's basic properties as AMQP 0.9.1 puts
// them in the content header frame: 2 bytes of property flags, then each
// property set (short strings 1+length, the headers table 4+its entries,
// delivery mode and priority 1, timestamp 8).
func propertiesBytes(p amqp.Publishing) int {
	n := 2
	for _, s := range []string{p.ContentType, p.ContentEncoding, p.CorrelationId, p.ReplyTo, p.Expiration, p.MessageId, p.Type, p.UserId, p.AppId} {
		if s != "" {
			n += 1 + len(s)
		}
	}
	if len(p.Headers) > 0 {
		n += 4 + tableBytes(p.Headers)
	}
	if p.DeliveryMode != 0 {
		n++
	}
	if p.Priority != 0 {
		n++
	}
	if !p.Timestamp.IsZero() {
		n += 8
	}
	return n
}

// tableBytes is the encoded size of a field table's entries: per entry a
// short-string name, a type octet and the value.
func tableBytes(t amqp.Table) int {
	n := 0
	for k, v := range t {
		n += 1 + len(k) + 1
		switch v := v.(type) {
		case string:
			n += 4 + len(v)
		case []byte:
			n += 4 + len(v)
		case bool, int8, uint8:
			n++
		case int16, uint16:
			n += 2
		case int32, uint32, float32:
			n += 4
		case int64, int, float64, time.Time:
			n += 8
		case amqp.Table:
			n += 4 + tableBytes(v)
		default:
			n += 4 + len(fmt.Sprint(v))
		}
	}
	return n
}
