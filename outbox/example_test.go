package outbox_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	switchboard "github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	_ "github.com/switchboard-dev/switchboard/bus/natsbus" // embedded: and nats: URLs
	"github.com/switchboard-dev/switchboard/outbox"
	"github.com/switchboard-dev/switchboard/outbox/sqliteoutbox"
)

type TripEnded struct {
	Trip      string `json:"trip"`
	FareCents int    `json:"fare_cents"`
}

var TripEndedTopic = switchboard.Topic[*TripEnded]("trip.ended")

// A trip's end and its event are written in one SQLite transaction; a relay
// publishes the event afterwards.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "outbox-example")
	defer os.RemoveAll(dir)
	conn, err := bus.Open(ctx, "embedded://"+filepath.Join(dir, "nats"))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	got := make(chan string, 1)
	sub, _ := conn.Subscribe(ctx, "trip.ended", "billing", func(_ context.Context, d *bus.Delivery) error {
		got <- d.Header["ce-id"] + " " + string(d.Body)
		return nil
	}, bus.SubscribeOptions{})
	defer sub.Stop(ctx)

	db, err := sqliteoutbox.Open(filepath.Join(dir, "trips.db"))
	if err != nil {
		panic(err)
	}
	defer db.Close()
	ob, err := sqliteoutbox.New(ctx, db, sqliteoutbox.Options{Source: "/switchboard/trips"})
	if err != nil {
		panic(err)
	}
	_, _ = db.ExecContext(ctx, `CREATE TABLE trips (id TEXT PRIMARY KEY, fare_cents INTEGER)`)

	// The business row and its event commit together, or neither does.
	msg, err := outbox.Event(ctx, TripEndedTopic, &TripEnded{Trip: "t-42", FareCents: 1450},
		switchboard.WithEventID("trip-t-42-ended"), switchboard.WithSubject("t-42"))
	if err != nil {
		panic(err)
	}
	tx, _ := db.BeginTx(ctx, nil)
	_, _ = tx.ExecContext(ctx, `INSERT INTO trips VALUES ('t-42', 1450)`)
	if err := ob.Enqueue(ctx, tx, msg); err != nil {
		panic(err)
	}
	if err := tx.Commit(); err != nil {
		panic(err)
	}

	// In a service: go relay.Run(ctx), with relay.Wake() after commits.
	relay := &outbox.Relay{Store: ob, Publisher: conn}
	n, err := relay.RelayOnce(ctx)
	fmt.Println("published", n, err)
	fmt.Println(<-got)
	// Output:
	// published 1 <nil>
	// trip-t-42-ended {"trip":"t-42","fare_cents":1450}
}
