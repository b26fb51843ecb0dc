package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/switchboard-dev/switchboard/bus/amqpbus"
	"github.com/switchboard-dev/switchboard/wire"
)

// rawServeArgs are the arguments of the raw responder's queue: those the
// driver gives the queue a group of servers shares (classic, deleted with
// its last consumer or after 5 minutes without one), so that both sides'
// requests go through queues of one configuration.
var rawServeArgs = amqp.Table{"x-queue-type": "classic", "x-expires": int32(5 * time.Minute / time.Millisecond)}

func rpcAMQP(ctx context.Context, cfg *Config) (Report, error) {
	notes := []string{
		"switchboard: typed endpoint (Endpoint.Handle / Endpoint.Call, JSON structs) through the SDK, package bus and the amqpbus driver: a mandatory request with an expiration to its topic exchange, a shared classic queue consumed with an ack at hand-over (prefetch 128), the reply by direct reply-to",
		"raw: amqp091-go at its leanest: the request published to the default exchange straight to a classic queue of the driver's configuration, consumed without acks (the guarantee of the driver's ack at hand-over) by one goroutine that decodes, quotes, encodes and replies to amq.rabbitmq.reply-to with the correlation id; each concurrent caller has a channel of its own consuming its direct replies, so no demultiplexing; both sides JSON-encode and decode the same request and reply",
		"each side has its own two connections (caller, responder) to the same broker",
		"allocs and cpu/op are the benchmark process's (callers and responders of both sides); the broker's own work, the same for both, is not in them",
		"same AMQP features table (-o json: \"same_features\", that raw side under \"raw\"): the same Switchboard side against raw amqp091-go doing what the driver does on the broker: a mandatory request with an expiration through a topic exchange of its own to a shared classic queue bound with a pattern, consumed with manual acks (each request acknowledged before it is handled) and prefetch 128, mandatory returns watched by the caller; what Switchboard's own code costs, apart from what its AMQP features cost the broker. The budget verdict is the one against the leanest raw above",
	}
	return runAMQP(cfg, "rpc", "not applicable: requests and replies are transient and unconfirmed on both sides", notes, func(e *amqpEnv, rep *Report) error {
		p, err := newAMQPRPCPair(ctx, e)
		if err != nil {
			return err
		}
		defer p.close()
		if rep.Cases, err = rpcCases(ctx, cfg, TCP, "", p.callSwitchboard, p.callRaw, p.sbWire, p.rawWire); err != nil {
			return err
		}
		rep.SameFeatures, err = rpcCases(ctx, cfg, TCP, "same_features", p.callSwitchboard, p.callRawFeatures, p.sbWire, p.featWire)
		return err
	})
}

// featExpiration is the expiration of the raw requests with the driver's
// features: what the driver sets from a call's deadline, here callTimeout.
var featExpiration = strconv.FormatInt(callTimeout.Milliseconds(), 10)

// amqpRPCPair is a Switchboard service and client and a raw responder and
// callers on one RabbitMQ broker.
type amqpRPCPair struct {
	e *amqpEnv
	sbRPC

	rawQueue    string
	rawHdrQueue string // the diagnostic responder's, see callRawHeaders
	rawChans    []*amqp.Channel
	served      sync.WaitGroup // the raw responders' goroutines
	callers     *reuse[*amqpCaller]

	// The raw side with the driver's AMQP features (serveRawFeatures):
	// its exchange, routing key and queue, and its callers, which publish
	// mandatory and watch for returns.
	featX, featKey, featQueue string
	featCallers               *reuse[*amqpCaller]

	sbWire, rawWire, featWire Figures
	// Switchboard's request and reply headers as captured.
	sbReqHeaders, sbRepHeaders amqp.Table
}

func newAMQPRPCPair(ctx context.Context, e *amqpEnv) (*amqpRPCPair, error) {
	p := &amqpRPCPair{e: e, rawQueue: e.rawPrefix() + ".quote"}
	p.rawHdrQueue = p.rawQueue + "_headers"
	srvBus, cliBus, err := e.busConns(ctx)
	if err != nil {
		return nil, err
	}
	if err := p.start(ctx, e.service(), srvBus, cliBus); err != nil {
		return nil, err
	}

	rawSrv, err := e.dial("bench-raw-responder")
	if err != nil {
		return nil, err
	}
	if err := p.serveRaw(rawSrv, p.rawQueue, nil); err != nil {
		return nil, err
	}
	rawCli, err := e.dial("bench-raw-caller")
	if err != nil {
		return nil, err
	}
	n := 0
	p.callers = newReuse(func() (*amqpCaller, error) {
		n++
		return newAMQPCaller(rawCli, "r"+strconv.Itoa(n)+"-", false)
	})
	p.featX, p.featKey, p.featQueue = e.rawPrefix()+".msg", "sb.rpc."+e.service()+"-raw.quote", e.rawPrefix()+".serve.quote"
	if err := p.serveRawFeatures(rawSrv, "sb.rpc."+e.service()+"-raw.*"); err != nil {
		return nil, err
	}
	nf := 0 // each pool opens one caller at a time, but the two pools may at once
	p.featCallers = newReuse(func() (*amqpCaller, error) {
		nf++
		return newAMQPCaller(rawCli, "f"+strconv.Itoa(nf)+"-", true)
	})
	if err := p.measureWire(ctx); err != nil {
		return nil, fmt.Errorf("bench: measure headers: %w", err)
	}
	// The diagnostic responder: raw, but with Switchboard's headers.
	return p, p.serveRaw(rawSrv, p.rawHdrQueue, p.sbRepHeaders)
}

// serveRaw declares queue and answers its requests on a channel of ac,
// with replyHeaders on every reply.
func (p *amqpRPCPair) serveRaw(ac *amqp.Connection, queue string, replyHeaders amqp.Table) error {
	ch, err := ac.Channel()
	if err != nil {
		return fmt.Errorf("bench: raw responder: %w", err)
	}
	p.rawChans = append(p.rawChans, ch)
	if _, err := ch.QueueDeclare(queue, true, true, false, false, rawServeArgs); err != nil {
		return fmt.Errorf("bench: raw responder: declare %s: %w", queue, err)
	}
	ds, err := ch.Consume(queue, "", true, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("bench: raw responder: consume %s: %w", queue, err)
	}
	p.answerRaw(ch, ds, false, replyHeaders)
	return nil
}

// answerRaw answers the requests of ds on ch, on a goroutine of its own,
// with replyHeaders on every reply; with ack, it acknowledges each request
// before handling it.
func (p *amqpRPCPair) answerRaw(ch *amqp.Channel, ds <-chan amqp.Delivery, ack bool, replyHeaders amqp.Table) {
	p.served.Add(1)
	go func() {
		defer p.served.Done()
		for d := range ds {
			if ack {
				_ = d.Ack(false)
			}
			b, err := answer(d.Body)
			if err != nil {
				b = malformed
			}
			_ = ch.Publish("", d.ReplyTo, false, false, amqp.Publishing{CorrelationId: d.CorrelationId, Headers: replyHeaders, Body: b})
		}
	}()
}

// serveRawFeatures answers raw requests the way the driver serves them, with
// amqp091-go alone: a topic exchange of the raw side's own (durable, as the
// driver's message exchange), a shared classic queue of the driver's
// configuration bound to it with pattern, as a service's queue is, consumed
// with manual acknowledgements and the driver's prefetch, each request
// acknowledged before it is handled (at hand-over, without the driver's
// batching of bursts), on the consuming goroutine.
func (p *amqpRPCPair) serveRawFeatures(ac *amqp.Connection, pattern string) error {
	ch, err := ac.Channel()
	if err != nil {
		return fmt.Errorf("bench: raw responder with the driver's features: %w", err)
	}
	p.rawChans = append(p.rawChans, ch)
	if err := ch.ExchangeDeclare(p.featX, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("bench: raw responder: declare exchange %s: %w", p.featX, err)
	}
	p.e.exchanges = append(p.e.exchanges, p.featX)
	if _, err := ch.QueueDeclare(p.featQueue, true, true, false, false, rawServeArgs); err != nil {
		return fmt.Errorf("bench: raw responder: declare %s: %w", p.featQueue, err)
	}
	if err := ch.QueueBind(p.featQueue, pattern, p.featX, false, nil); err != nil {
		return fmt.Errorf("bench: raw responder: bind %s: %w", p.featQueue, err)
	}
	if err := ch.Qos(amqpbus.DefaultPrefetch, 0, false); err != nil {
		return fmt.Errorf("bench: raw responder: prefetch: %w", err)
	}
	ds, err := ch.Consume(p.featQueue, "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("bench: raw responder: consume %s: %w", p.featQueue, err)
	}
	p.answerRaw(ch, ds, true, nil)
	return nil
}

func (p *amqpRPCPair) close() {
	p.stop()
	for _, ch := range p.rawChans {
		_ = ch.Close()
	}
	p.served.Wait()
}

func (p *amqpRPCPair) callRaw(ctx context.Context, i int) error {
	return p.rawCall(ctx, p.callers, "", p.rawQueue, amqp.Publishing{}, i)
}

// callRawHeaders is callRaw with Switchboard's request and reply headers
// added: what the envelope costs on the wire, without the SDK. It is a
// diagnostic for the Go benchmarks, not a case of the report.
func (p *amqpRPCPair) callRawHeaders(ctx context.Context, i int) error {
	return p.rawCall(ctx, p.callers, "", p.rawHdrQueue, amqp.Publishing{Headers: p.sbReqHeaders}, i)
}

// callRawFeatures calls the raw responder with the driver's features
// (serveRawFeatures): mandatory, with an expiration, through its topic
// exchange.
func (p *amqpRPCPair) callRawFeatures(ctx context.Context, i int) error {
	return p.rawCall(ctx, p.featCallers, p.featX, p.featKey, amqp.Publishing{Expiration: featExpiration}, i)
}

// rawCall sends request i as pub's body to exchange with routing key key
// through one of callers.
func (p *amqpRPCPair) rawCall(ctx context.Context, callers *reuse[*amqpCaller], exchange, key string, pub amqp.Publishing, i int) error {
	b, err := json.Marshal(request(i))
	if err != nil {
		return err
	}
	c, err := callers.get()
	if err != nil {
		return err
	}
	pub.Body = b
	d, err := c.call(ctx, exchange, key, pub)
	callers.put(c)
	if err != nil {
		return err
	}
	return checkReply(d.Body)
}

// measureWire captures one call of each side: Switchboard's request as the
// broker got it, its reply to that same request sent again by a raw
// caller, and raw's reply (raw's request has exactly the properties call
// sets).
func (p *amqpRPCPair) measureWire(ctx context.Context) error {
	subject := wire.RequestSubject(p.ep.Service(), p.ep.Name())
	req, err := p.e.tap(p.e.sbMsgExchange(), subject, func() error { return p.callSwitchboard(ctx, 0) })
	if err != nil {
		return err
	}
	c, err := p.callers.get()
	if err != nil {
		return err
	}
	defer p.callers.put(c)
	again := published(req)
	again.ReplyTo, again.CorrelationId = "", ""
	rep, err := c.call(ctx, p.e.sbMsgExchange(), subject, again)
	if err != nil {
		return fmt.Errorf("switchboard's reply: %w", err)
	}
	if rep.Headers[wire.HeaderErrorCode] != nil {
		return fmt.Errorf("switchboard's reply: %v: %v", rep.Headers[wire.HeaderErrorCode], rep.Headers[wire.HeaderErrorMsg])
	}
	p.sbReqHeaders, p.sbRepHeaders = req.Headers, rep.Headers
	p.sbWire = Figures{HeaderBytes: propertiesBytes(published(req)), ReplyHeaderBytes: propertiesBytes(published(&rep)), BodyBytes: len(req.Body)}

	b, err := json.Marshal(request(0))
	if err != nil {
		return err
	}
	raw, err := c.call(ctx, "", p.rawQueue, amqp.Publishing{Body: b})
	if err != nil {
		return fmt.Errorf("raw reply: %w", err)
	}
	p.rawWire = Figures{HeaderBytes: propertiesBytes(amqp.Publishing{ReplyTo: directReplyTo, CorrelationId: raw.CorrelationId}),
		ReplyHeaderBytes: propertiesBytes(published(&raw)), BodyBytes: len(b)}
	fc, err := p.featCallers.get()
	if err != nil {
		return err
	}
	defer p.featCallers.put(fc)
	feat, err := fc.call(ctx, p.featX, p.featKey, amqp.Publishing{Expiration: featExpiration, Body: b})
	if err != nil {
		return fmt.Errorf("raw reply with the driver's features: %w", err)
	}
	p.featWire = Figures{HeaderBytes: propertiesBytes(amqp.Publishing{ReplyTo: directReplyTo, CorrelationId: feat.CorrelationId, Expiration: featExpiration}),
		ReplyHeaderBytes: propertiesBytes(published(&feat)), BodyBytes: len(b)}
	return nil
}

// amqpCaller is a raw caller: a channel of its own consuming its direct
// replies, used by one call at a time, so that a reply needs no
// demultiplexing.
type amqpCaller struct {
	ch      *amqp.Channel
	replies <-chan amqp.Delivery
	// returns, when set, receives the requests the broker could not route:
	// the caller publishes mandatory, as the driver does.
	returns <-chan amqp.Return
	timer   *time.Timer
	prefix  string // of its correlation ids
	n       uint64
}

func newAMQPCaller(ac *amqp.Connection, prefix string, mandatory bool) (*amqpCaller, error) {
	ch, err := ac.Channel()
	if err != nil {
		return nil, fmt.Errorf("bench: raw caller: %w", err)
	}
	c := &amqpCaller{ch: ch, prefix: prefix}
	if mandatory {
		c.returns = ch.NotifyReturn(make(chan amqp.Return, 1))
	}
	if c.replies, err = ch.Consume(directReplyTo, "", true, false, false, false, nil); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("bench: raw caller: consume %s: %w", directReplyTo, err)
	}
	c.timer = time.NewTimer(time.Hour)
	c.timer.Stop()
	return c, nil
}

// call publishes pub to exchange with routing key key, with reply_to
// amq.rabbitmq.reply-to and a fresh correlation id (mandatory if the
// caller watches returns), and waits up to callTimeout for the reply with
// that id (a late reply to an earlier call is dropped).
func (c *amqpCaller) call(ctx context.Context, exchange, key string, pub amqp.Publishing) (amqp.Delivery, error) {
	c.n++
	id := c.prefix + strconv.FormatUint(c.n, 10)
	pub.ReplyTo, pub.CorrelationId = directReplyTo, id
	if err := c.ch.PublishWithContext(ctx, exchange, key, c.returns != nil, false, pub); err != nil {
		return amqp.Delivery{}, fmt.Errorf("bench: raw request: %w", err)
	}
	c.timer.Reset(callTimeout)
	defer c.timer.Stop()
	for {
		select {
		case d, ok := <-c.replies:
			if !ok {
				return d, errors.New("bench: raw request: the caller's channel closed")
			}
			if d.CorrelationId == id {
				return d, nil
			}
		case r := <-c.returns:
			if r.CorrelationId == id {
				return amqp.Delivery{}, fmt.Errorf("bench: raw request to %q: returned by the broker: %d %s", key, r.ReplyCode, r.ReplyText)
			}
		case <-c.timer.C:
			return amqp.Delivery{}, fmt.Errorf("bench: raw request to %q: no reply within %s", key, callTimeout)
		case <-ctx.Done():
			return amqp.Delivery{}, ctx.Err()
		}
	}
}

// reuse keeps what one operation at a time uses (a raw caller's or
// publisher's channel) for the next, making a new one when none is free.
type reuse[T any] struct {
	free chan T
	open func() (T, error)
	mu   sync.Mutex // serialises open
}

func newReuse[T any](open func() (T, error)) *reuse[T] {
	return &reuse[T]{free: make(chan T, 256), open: open}
}

func (r *reuse[T]) get() (T, error) {
	select {
	case v := <-r.free:
		return v, nil
	default:
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.open()
}

// put gives v back. Beyond 256 kept, v is dropped; its channel closes with
// its connection.
func (r *reuse[T]) put(v T) {
	select {
	case r.free <- v:
	default:
	}
}
