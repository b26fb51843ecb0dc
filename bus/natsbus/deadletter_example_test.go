package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"sync/atomic"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
)

// A handler rejects an order until its bug is fixed: the order is
// dead-lettered, inspected in place, and replayed to its group once the fix
// is in, after which the dead letter is gone.
func ExampleConn_ReplayDeadLetters() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := bus.Open(ctx, "embedded:")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	var fixed atomic.Bool
	failed, done := make(chan struct{}), make(chan string)
	handler := func(_ context.Context, d *bus.Delivery) error {
		if !fixed.Load() {
			defer close(failed)
			return errors.New("amount missing")
		}
		done <- fmt.Sprintf("handled %s (replay %s)", d.Body, d.Header.Get(bus.HeaderReplayed))
		return nil
	}
	sub, err := conn.Subscribe(ctx, "orders.created", "billing", handler, bus.SubscribeOptions{MaxAttempts: 1})
	if err != nil {
		log.Fatal(err)
	}
	if err := conn.Publish(ctx, &bus.Message{Subject: "orders.created", Body: []byte("order 42")}); err != nil {
		log.Fatal(err)
	}
	<-failed
	_ = sub.Stop(ctx) // waits until the dead letter is stored

	dead, err := conn.DeadLetters(ctx, "billing", "orders.created", bus.DeadLetterFilter{})
	if err != nil {
		log.Fatal(err)
	}
	for _, d := range dead {
		fmt.Printf("dead letter %s: %s after %d attempt(s): %s\n", d.ID, d.Message.Body, d.Attempts, d.Reason)
	}

	fixed.Store(true) // the fix is deployed
	if _, err := conn.Subscribe(ctx, "orders.created", "billing", handler, bus.SubscribeOptions{}); err != nil {
		log.Fatal(err)
	}
	res, err := conn.ReplayDeadLetters(ctx, "billing", "orders.created", bus.DeadLetterFilter{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-done)
	left, _ := conn.DeadLetters(ctx, "billing", "orders.created", bus.DeadLetterFilter{})
	fmt.Printf("replayed %d, %d left\n", len(res.Replayed), len(left))
	// Output:
	// dead letter 2: order 42 after 1 attempt(s): amount missing
	// handled order 42 (replay 1)
	// replayed 1, 0 left
}
