package pgoutbox_test

import (
	"context"
	"log"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	switchboard "github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/outbox"
	"github.com/switchboard-dev/switchboard/outbox/pgoutbox"
)

type TripEnded struct {
	Trip string `json:"trip"`
}

var TripEndedTopic = switchboard.Topic[*TripEnded]("trip.ended")

// The trip's row and its event commit in one transaction; relays in any
// number of instances publish the event.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	ob, err := pgoutbox.New(ctx, pool, pgoutbox.Options{Source: "/switchboard/trips"})
	if err != nil {
		log.Fatal(err)
	}
	conn, err := bus.Open(ctx, os.Getenv("SWITCHBOARD_BUS"))
	if err != nil {
		log.Fatal(err)
	}
	relay := &outbox.Relay{Store: ob, Publisher: conn}
	go relay.Run(ctx)

	msg, err := outbox.Event(ctx, TripEndedTopic, &TripEnded{Trip: "t-42"}, switchboard.WithSubject("t-42"))
	if err != nil {
		log.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `UPDATE trips SET state = 'ended' WHERE id = $1`, "t-42"); err != nil {
		log.Fatal(err)
	}
	if err := ob.Enqueue(ctx, tx, msg); err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		log.Fatal(err)
	}
	relay.Wake() // publish now rather than at the next poll
}
