package natsbus_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/natsbus"
)

// A throwaway in-process NATS server: "embedded:" keeps its data in a
// temporary directory that goes away when the connection closes.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := bus.Open(ctx, "embedded:")
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
	// Output: hello, world
}

// StartServer runs the embedded server for a whole process, as
// `switchboard dev` does: other processes connect to its ClientURL, and
// embedded: URLs of the same directory share it.
func ExampleStartServer() {
	dir, err := os.MkdirTemp("", "example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	srv, err := natsbus.StartServer(natsbus.ServerOptions{DataDir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown()
	fmt.Println(strings.HasPrefix(srv.ClientURL(), "nats://127.0.0.1:"))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := bus.Open(ctx, srv.ClientURL()) // what another process does
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
	// Output:
	// true
	// orders.created: order 42 (attempt 1)
}
