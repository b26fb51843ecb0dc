package dedupe_test

import (
	"context"
	"fmt"

	switchboard "github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/dedupe"
	"github.com/switchboard-dev/switchboard/wire"
)

type TripEnded struct {
	Trip string `json:"trip"`
}

var TripEndedTopic = switchboard.Topic[*TripEnded]("trip.ended")

func Example() {
	ctx := context.Background()
	conn, err := bus.Open(ctx, "embedded:")
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	// Every consumer of the service runs once per event id. The Memory
	// store covers one process; use pgdedupe or redisdedupe for a group
	// with several instances.
	dropped := make(chan string, 1)
	store := &dedupe.Memory{}
	svc := switchboard.NewService("billing", "1.0.0", switchboard.WithLogger(quiet()),
		switchboard.WithConsumerMiddleware(dedupe.Middleware(store, dedupe.WithObserver(
			func(key string, o dedupe.Outcome, _ error) {
				if o == dedupe.Duplicate {
					dropped <- key
				}
			}))))
	charged := make(chan string, 2)
	TripEndedTopic.Subscribe(svc, "billing", func(ctx context.Context, ev *TripEnded) error {
		charged <- ev.Trip
		return nil
	})
	if err := svc.Start(ctx, conn); err != nil {
		panic(err)
	}
	defer svc.Shutdown(ctx)

	pub := switchboard.NewClient(conn, switchboard.WithCaller("trips"))
	_ = TripEndedTopic.Publish(ctx, pub, &TripEnded{Trip: "t-42"}, switchboard.WithEventID("trip-42-ended"))
	fmt.Println("charged", <-charged)

	// The same event again, as a producer would send it after a retry the
	// broker can no longer recognise (a new message id, the same ce-id).
	h := bus.Header{}
	ev := wire.Event{ID: "trip-42-ended", Source: "/switchboard/trips", Type: "trip.ended", DataContentType: "application/json"}
	ev.Encode(h)
	_ = conn.Publish(ctx, &bus.Message{Subject: "trip.ended", Header: h, ID: "retry-1", Body: []byte(`{"trip":"t-42"}`)})
	fmt.Println("dropped", <-dropped)
	// Output:
	// charged t-42
	// dropped billing trip.ended /switchboard/trips trip-42-ended
}
