package ridehail_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	_ "github.com/switchboard-dev/switchboard/bus/natsbus" // embedded://
	"github.com/switchboard-dev/switchboard/examples/ridehail"
	"github.com/switchboard-dev/switchboard/examples/ridehail/contract"
	"github.com/switchboard-dev/switchboard/examples/ridehail/geo"
	"github.com/switchboard-dev/switchboard/examples/ridehail/proto/ridehailpb"
)

// A customer requests a trip through a client. The services run here on an
// embedded bus; against `switchboard dev` only the client part is needed.
func Example() {
	ctx := context.Background()
	conn, err := bus.Open(ctx, "embedded:") // a NATS server in this process, data in a temporary directory
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	quiet := slog.New(slog.DiscardHandler)
	for _, svc := range ridehail.Services(quiet) {
		if err := svc.Start(ctx, conn); err != nil {
			fmt.Println(err)
			return
		}
		defer svc.Shutdown(ctx)
	}

	client := switchboard.NewClient(conn)
	defer client.Close()

	// A driver comes online near Amsterdam Centraal.
	centraal := geo.Point{Lat: 52.3791, Lng: 4.9003}
	_, err = contract.ReportPosition.Call(ctx, client, &contract.ReportPositionRequest{
		DriverID: "dave", Position: geo.Offset(centraal, 0.3, 0),
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	// Ada asks for a ride to the Rijksmuseum.
	trip, err := contract.RequestTrip.Call(ctx, client, &ridehailpb.RequestTripRequest{
		CustomerId: "ada",
		Pickup:     contract.LatLng(centraal),
		Dropoff:    &ridehailpb.LatLng{Lat: 52.3600, Lng: 4.8852},
	})
	if err != nil {
		fmt.Println(switchboard.ErrorCode(err), err)
		return
	}
	fmt.Println("driver:", trip.GetDriverId())
	fmt.Printf("fare: %.2f %s for %.1f km\n", float64(trip.GetFare().GetAmountCents())/100, trip.GetFare().GetCurrency(), trip.GetDistanceKm())

	_, err = contract.GetTrip.Call(ctx, client, &ridehailpb.GetTripRequest{TripId: "no-such-trip"})
	fmt.Println(switchboard.ErrorCode(err))
	// Output:
	// driver: dave
	// fare: 7.03 EUR for 2.4 km
	// NotFound
}
