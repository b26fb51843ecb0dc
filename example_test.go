package switchboard_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
)

type QuoteRequest struct {
	DistanceKM float64 `json:"distance_km"`
}

type Quote struct {
	FareCents int64 `json:"fare_cents"`
}

// The contract: shared by the pricing service and its callers.
var QuoteFare = switchboard.Endpoint[*QuoteRequest, *Quote]("pricing", "quote")

func Example_endpoint() {
	ctx := context.Background()
	conn, err := bus.Open(ctx, "embedded:") // an in-process NATS server; use nats://… in production
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	svc := switchboard.NewService("pricing", "1.0.0", switchboard.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	QuoteFare.Handle(svc, func(ctx context.Context, req *QuoteRequest) (*Quote, error) {
		if req.DistanceKM <= 0 {
			return nil, switchboard.Errorf(switchboard.InvalidArgument, "distance_km must be positive, got %v", req.DistanceKM)
		}
		return &Quote{FareCents: 250 + int64(req.DistanceKM*120)}, nil
	})
	if err := svc.Start(ctx, conn); err != nil {
		panic(err)
	}
	defer svc.Shutdown(ctx)

	client := switchboard.NewClient(conn)
	q, err := QuoteFare.Call(ctx, client, &QuoteRequest{DistanceKM: 10})
	fmt.Println(q.FareCents, err)

	_, err = QuoteFare.Call(ctx, client, &QuoteRequest{DistanceKM: -1})
	fmt.Println(switchboard.ErrorCode(err))

	// Any endpoint can be called with JSON.
	rep, err := client.CallJSON(ctx, "pricing", "quote", []byte(`{"distance_km": 2}`))
	fmt.Println(string(rep.Body), err)
	// Output:
	// 1450 <nil>
	// InvalidArgument
	// {"fare_cents":490} <nil>
}

type TripCompleted struct {
	TripID    string `json:"trip_id"`
	FareCents int64  `json:"fare_cents"`
}

var Completed = switchboard.Topic[*TripCompleted]("trip.completed")

func Example_topic() {
	ctx := context.Background()
	conn, err := bus.Open(ctx, "embedded:")
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	charged := make(chan string)
	payments := switchboard.NewService("payments", "1.0.0", switchboard.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	// Every instance of group "payments" shares the events; an event is
	// acknowledged only when the handler returns nil.
	Completed.Subscribe(payments, "payments", func(ctx context.Context, ev *TripCompleted) error {
		charged <- fmt.Sprintf("charge %s: %d cents", ev.TripID, ev.FareCents)
		return nil
	})
	if err := payments.Start(ctx, conn); err != nil {
		panic(err)
	}
	defer payments.Shutdown(ctx)

	// Publish returns once the broker has stored the event.
	err = Completed.Publish(ctx, switchboard.NewClient(conn), &TripCompleted{TripID: "t-1", FareCents: 1450})
	fmt.Println(err)
	fmt.Println(<-charged)
	// Output:
	// <nil>
	// charge t-1: 1450 cents
}
