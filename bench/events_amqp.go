package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// amqpEventsSync is what a confirmed publish means on RabbitMQ, for the
// report.
const amqpEventsSync = "quorum queues: the broker confirms a publish once the queue's Raft log has it on disk (fsynced; RabbitMQ batches the fsyncs of concurrent writes); the broker's own setting, the same for both sides"

func eventsAMQP(ctx context.Context, cfg *Config) (Report, error) {
	notes := []string{
		"switchboard: Topic.Publish (persistent, mandatory, in confirm mode to the driver's topic exchange; returns after the broker's confirm; CloudEvents headers, the event id as message_id) and Topic.Subscribe in a consumer group: the driver's quorum queue, manual ack after the handler succeeded",
		fmt.Sprintf("raw: amqp091-go publishing persistent messages to the default exchange straight to a quorum queue (the driver's arguments: x-queue-type quorum, x-expires %s), each publisher on a confirm-mode channel of its own, waiting for the confirm of each publish; a consumer with basic.qos prefetch %d acking each event after decoding it; both sides JSON-encode and decode the same event", amqpQueueExpiry, eventsInFlight),
		fmt.Sprintf("both consume one event at a time with at most %d unacknowledged (prefetch), on one connection per side for the publishers and one for the consumer", eventsInFlight),
		"throughput: messages published and then consumed and acknowledged (the clock stops when the consumer counted every event and its queue holds none ready; AMQP does not confirm acks, so the last ack may still be on its way); p50/p99: latency of one confirmed publish",
		"allocs and cpu/op are the benchmark process's (publishers and consumers of both sides); the broker's own work is not in them",
	}
	return runAMQP(cfg, "events", amqpEventsSync, notes, func(e *amqpEnv, rep *Report) error {
		p, err := newAMQPEventsPair(ctx, e)
		if err != nil {
			return err
		}
		defer p.close()
		sbW, rawW, err := p.wireSizes(ctx)
		if err != nil {
			return fmt.Errorf("bench: measure headers: %w", err)
		}
		rep.Cases, err = eventsCases(ctx, cfg, TCP, "quorum queue", sbW, rawW, p.sides)
		return err
	})
}

// amqpEventsPair is a Switchboard publisher and consumer service and a raw
// publisher and consumer on one RabbitMQ broker.
type amqpEventsPair struct {
	e *amqpEnv
	sbEvents
	sbQueue string

	rawQueue   string
	rawN       *counter
	publishers *reuse[*amqp.Channel]
	consCh     *amqp.Channel
	consumed   sync.WaitGroup // the raw consumer's goroutine
	inspect    *amqp.Channel  // for the queues' message counts
}

func newAMQPEventsPair(ctx context.Context, e *amqpEnv) (*amqpEventsPair, error) {
	p := &amqpEventsPair{e: e, rawN: newCounter(), rawQueue: e.rawPrefix() + ".events", sbQueue: e.sbGroupQueue(eventsGroup, eventsTopic)}
	pubBus, subBus, err := e.busConns(ctx)
	if err != nil {
		return nil, err
	}
	e.queues = append(e.queues, p.sbQueue, e.sbGroupQueue(eventsGroup, "_dlq."+eventsGroup+"."+eventsTopic))
	if err := p.start(ctx, e.service()+"-events", pubBus, subBus); err != nil {
		return nil, err
	}

	if p.inspect, err = e.admin.Channel(); err != nil {
		return nil, err
	}
	args := amqp.Table{"x-queue-type": "quorum", "x-expires": int64(amqpQueueExpiry / time.Millisecond)}
	if err := e.declare(p.inspect, p.rawQueue, args); err != nil {
		return nil, err
	}
	rawPub, err := e.dial("bench-raw-publisher")
	if err != nil {
		return nil, err
	}
	p.publishers = newReuse(func() (*amqp.Channel, error) {
		ch, err := rawPub.Channel()
		if err != nil {
			return nil, fmt.Errorf("bench: raw publisher: %w", err)
		}
		if err := ch.Confirm(false); err != nil {
			_ = ch.Close()
			return nil, fmt.Errorf("bench: raw publisher: confirm mode: %w", err)
		}
		return ch, nil
	})
	rawSub, err := e.dial("bench-raw-consumer")
	if err != nil {
		return nil, err
	}
	if p.consCh, err = rawSub.Channel(); err != nil {
		return nil, err
	}
	if err := p.consCh.Qos(eventsInFlight, 0, false); err != nil {
		return nil, fmt.Errorf("bench: raw consumer: %w", err)
	}
	ds, err := p.consCh.Consume(p.rawQueue, "", false, false, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("bench: raw consumer: %w", err)
	}
	p.consumed.Add(1)
	go func() {
		defer p.consumed.Done()
		for d := range ds {
			if checkEvent(d.Body) != nil {
				_ = d.Nack(false, true)
				continue
			}
			_ = d.Ack(false)
			p.rawN.inc()
		}
	}()
	return p, nil
}

func (p *amqpEventsPair) close() {
	p.stop()
	if p.consCh != nil {
		_ = p.consCh.Close()
	}
	p.consumed.Wait()
}

// rawEvent is the message the raw publisher sends: persistent, nothing
// else but the body.
func rawEvent(body []byte) amqp.Publishing {
	return amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body}
}

func (p *amqpEventsPair) publishRaw(ctx context.Context, i int) error {
	b, err := json.Marshal(event(i))
	if err != nil {
		return err
	}
	ch, err := p.publishers.get()
	if err != nil {
		return err
	}
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", p.rawQueue, false, false, rawEvent(b))
	if err != nil {
		return fmt.Errorf("bench: raw publish: %w", err)
	}
	ok, err := dc.WaitContext(ctx)
	p.publishers.put(ch)
	switch {
	case err != nil:
		return fmt.Errorf("bench: raw publish: %w", err)
	case !ok:
		return errors.New("bench: raw publish: the broker refused the message (basic.nack)")
	}
	return nil
}

// empty waits until queue holds no message ready for delivery.
func (p *amqpEventsPair) empty(ctx context.Context, queue string) error {
	deadline := time.Now().Add(drainTimeout)
	for {
		q, err := p.inspect.QueueDeclarePassive(queue, true, false, false, false, nil)
		if err != nil {
			return fmt.Errorf("bench: queue %s: %w", queue, err)
		}
		if q.Messages == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: queue %s still holds %d events after %s", queue, q.Messages, drainTimeout)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// sides returns the two sides of a case with publishers concurrent
// publishers sending perPublisher events each.
func (p *amqpEventsPair) sides(publishers, perPublisher int) (sb, raw side) {
	return eventSide("switchboard", publishers, perPublisher, p.publishSwitchboard, p.sbN, func(ctx context.Context) error { return p.empty(ctx, p.sbQueue) }),
		eventSide("raw", publishers, perPublisher, p.publishRaw, p.rawN, func(ctx context.Context) error { return p.empty(ctx, p.rawQueue) })
}

// wireSizes captures one of Switchboard's events as the broker got it and
// waits until it was consumed; raw's event has exactly the properties
// rawEvent sets.
func (p *amqpEventsPair) wireSizes(ctx context.Context) (sb, raw Figures, err error) {
	base := p.sbN.n.Load()
	d, err := p.e.tap(p.e.sbEvtExchange(), eventsTopic, func() error { return p.publishSwitchboard(ctx, 0) })
	if err != nil {
		return sb, raw, err
	}
	sb = Figures{HeaderBytes: propertiesBytes(published(d)), BodyBytes: len(d.Body)}
	b, err := json.Marshal(event(0))
	if err != nil {
		return sb, raw, err
	}
	raw = Figures{HeaderBytes: propertiesBytes(rawEvent(nil)), BodyBytes: len(b)}
	if err := p.sbN.wait(ctx, base+1); err != nil {
		return sb, raw, err
	}
	return sb, raw, p.empty(ctx, p.sbQueue)
}
