package amqpbus_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
	_ "github.com/switchboard-dev/switchboard/bus/amqpbus"
)

// Open a RabbitMQ broker by URL; the rest is package bus, the same on every
// broker. (Not run as a test: it needs a broker.)
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := bus.Open(ctx, "amqp://guest:guest@127.0.0.1:5672/?name=greeter")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	if _, err := conn.Serve(ctx, "greeter.hello", "greeter", func(_ context.Context, req *bus.Message) *bus.Message {
		return &bus.Message{Body: []byte("hello, " + string(req.Body))}
	}); err != nil {
		log.Fatal(err)
	}
	rep, err := conn.Request(ctx, &bus.Message{Subject: "greeter.hello", Body: []byte("world")})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(rep.Body))
}

// A consumer group on a quorum queue, and a publish that returns once the
// broker confirmed it.
func Example_events() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := bus.Open(ctx, "amqp://guest:guest@127.0.0.1:5672/")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	got := make(chan string, 1)
	if _, err := conn.Subscribe(ctx, "orders.created", "billing", func(_ context.Context, d *bus.Delivery) error {
		got <- fmt.Sprintf("%s: %s (attempt %d)", d.Subject, d.Body, d.Attempt)
		return nil
	}, bus.SubscribeOptions{}); err != nil {
		log.Fatal(err)
	}
	if err := conn.Publish(ctx, &bus.Message{Subject: "orders.created", Body: []byte("order 42"), ID: "order-42"}); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-got)
}
