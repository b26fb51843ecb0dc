package amqpbus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/internal/amqptest"
)

// BenchmarkRequest compares one caller's request/reply through the driver
// with the same exchange done with plain amqp091-go (direct reply-to, a
// server consuming a queue bound to the message exchange), in the same run, and
// reports the ratio.
//
//	go test ./bus/amqpbus -run '^$' -bench Request
func BenchmarkRequest(b *testing.B) {
	base := amqptest.URL(b)
	e := &env{base: base}
	e.url, e.prefix = isolated(b, base)
	c, err := bus.Open(context.Background(), e.url)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Serve(context.Background(), "bench.echo", "bench", func(_ context.Context, req *bus.Message) *bus.Message {
		return &bus.Message{Body: req.Body}
	}); err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"name":"world"}`)

	// The raw side: its own queue, server and client channels.
	ac, err := amqp.Dial(base)
	if err != nil {
		b.Fatal(err)
	}
	defer ac.Close()
	sch, _ := ac.Channel()
	q, err := sch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := sch.QueueBind(q.Name, "bench.raw", e.prefix+".msg", false, nil); err != nil {
		b.Fatal(err)
	}
	reqs, _ := sch.Consume(q.Name, "", true, false, false, false, nil)
	go func() {
		for d := range reqs {
			_ = sch.Publish("", d.ReplyTo, false, false, amqp.Publishing{CorrelationId: d.CorrelationId, Body: d.Body})
		}
	}()
	cch, _ := ac.Channel()
	replies, _ := cch.Consume("amq.rabbitmq.reply-to", "", true, false, false, false, nil)

	raw := func(n int) time.Duration {
		start := time.Now()
		for i := range n {
			id := fmt.Sprint(i)
			if err := cch.Publish(e.prefix+".msg", "bench.raw", true, false, amqp.Publishing{
				ReplyTo: "amq.rabbitmq.reply-to", CorrelationId: id, Expiration: "30000", Body: body}); err != nil {
				b.Fatal(err)
			}
			if d := <-replies; d.CorrelationId != id {
				b.Fatalf("reply %q to request %q", d.CorrelationId, id)
			}
		}
		return time.Since(start)
	}
	viaBus := func(n int) time.Duration {
		start := time.Now()
		for range n {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if _, err := c.Request(ctx, &bus.Message{Subject: "bench.echo", Body: body}); err != nil {
				b.Fatal(err)
			}
			cancel()
		}
		return time.Since(start)
	}
	raw(100) // warm up both
	viaBus(100)
	b.ResetTimer()
	r := raw(b.N)
	d := viaBus(b.N)
	b.StopTimer()
	b.ReportMetric(float64(r.Nanoseconds())/float64(b.N), "raw-ns/req")
	b.ReportMetric(float64(d.Nanoseconds())/float64(b.N), "bus-ns/req")
	b.ReportMetric(float64(d)/float64(r), "bus/raw")
	_ = sch.Close()
	_ = cch.Close()
	cleanup(b, base, e.prefix)
}
