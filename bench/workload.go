package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// The benchmark's work is a small ride-hailing fare quote, like the example
// domain's: a request and a reply of about 150 bytes of JSON each, and an
// event of about 200 bytes. Both sides use these types and functions.

// Point is a position.
type Point struct {
	Lat float64 `json:"lat"`
	Lng float64 `json:"lng"`
}

// QuoteRequest asks for a fare.
type QuoteRequest struct {
	RideID     string `json:"ride_id"`
	CustomerID string `json:"customer_id"`
	Pickup     Point  `json:"pickup"`
	Dropoff    Point  `json:"dropoff"`
	Vehicle    string `json:"vehicle"`
	Passengers int    `json:"passengers"`
}

// QuoteReply is the fare.
type QuoteReply struct {
	RideID     string  `json:"ride_id"`
	QuoteID    string  `json:"quote_id"`
	DistanceM  int     `json:"distance_m"`
	FareCents  int64   `json:"fare_cents"`
	Currency   string  `json:"currency"`
	ETASeconds int     `json:"eta_s"`
	Surge      float64 `json:"surge"`
}

// TripRequested is the event both sides publish and consume.
type TripRequested struct {
	TripID        string `json:"trip_id"`
	CustomerID    string `json:"customer_id"`
	Pickup        Point  `json:"pickup"`
	Dropoff       Point  `json:"dropoff"`
	Vehicle       string `json:"vehicle"`
	FareCents     int64  `json:"fare_cents"`
	Currency      string `json:"currency"`
	RequestedAtMS int64  `json:"requested_at_ms"`
}

// requests is a fixed set of varied requests, used round robin by both
// sides.
var requests = func() []*QuoteRequest {
	vehicles := []string{"standard", "comfort", "xl", "green"}
	out := make([]*QuoteRequest, 64)
	for i := range out {
		f := float64(i)
		out[i] = &QuoteRequest{
			RideID:     fmt.Sprintf("ride-%08d", 4200+i),
			CustomerID: fmt.Sprintf("cust-%06d", 91000+i*7),
			Pickup:     Point{Lat: 52.520008 + f*0.0013, Lng: 13.404954 - f*0.0011},
			Dropoff:    Point{Lat: 52.500342 - f*0.0009, Lng: 13.425293 + f*0.0017},
			Vehicle:    vehicles[i%len(vehicles)],
			Passengers: 1 + i%4,
		}
	}
	return out
}()

func request(i int) *QuoteRequest { return requests[i%len(requests)] }

func event(i int) *TripRequested {
	r := request(i)
	return &TripRequested{TripID: "trip-" + r.RideID[5:], CustomerID: r.CustomerID, Pickup: r.Pickup,
		Dropoff: r.Dropoff, Vehicle: r.Vehicle, FareCents: 1250 + int64(i%500), Currency: "EUR",
		RequestedAtMS: 1767225600000 + int64(i)}
}

// quote is the handler's work, identical on both sides.
func quote(req *QuoteRequest) *QuoteReply {
	d := haversine(req.Pickup, req.Dropoff)
	surge := 1.0
	if req.Vehicle == "xl" {
		surge = 1.2
	}
	fare := int64((250 + d/1000*140) * surge)
	return &QuoteReply{RideID: req.RideID, QuoteID: "q-" + req.RideID, DistanceM: int(d),
		FareCents: fare, Currency: "EUR", ETASeconds: int(d / 8.3), Surge: surge}
}

// haversine is the distance between a and b in metres.
func haversine(a, b Point) float64 {
	const r = 6371000
	rad := math.Pi / 180
	dLat, dLng := (b.Lat-a.Lat)*rad, (b.Lng-a.Lng)*rad
	h := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(a.Lat*rad)*math.Cos(b.Lat*rad)*math.Sin(dLng/2)*math.Sin(dLng/2)
	return 2 * r * math.Asin(math.Sqrt(h))
}

// answer is a raw responder's work: decode the request, quote, encode the
// reply. The raw responders of every broker use it.
func answer(data []byte) ([]byte, error) {
	var req QuoteRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, fmt.Errorf("malformed request: %w", err)
	}
	return json.Marshal(quote(&req))
}

// malformed is what a raw responder replies to a request it cannot decode.
var malformed = []byte(`{"error":"malformed request"}`)

// checkReply is a raw caller's work on a reply: decode it and check it.
func checkReply(data []byte) error {
	var rep QuoteReply
	if err := json.Unmarshal(data, &rep); err != nil {
		return fmt.Errorf("bench: raw reply: %w", err)
	}
	if rep.RideID == "" {
		return fmt.Errorf("bench: raw: empty reply %q", data)
	}
	return nil
}

// checkEvent is a raw consumer's work on an event: decode it and check it.
func checkEvent(data []byte) error {
	var ev TripRequested
	if err := json.Unmarshal(data, &ev); err != nil {
		return err
	}
	if ev.TripID == "" {
		return errors.New("bench: empty event")
	}
	return nil
}
