package contract

import (
	"github.com/switchboard-dev/switchboard/examples/ridehail/geo"
	"github.com/switchboard-dev/switchboard/examples/ridehail/proto/ridehailpb"
)

// Point converts a protobuf LatLng to a geo.Point; nil gives the zero
// point, which geo.Validate reports as missing.
func Point(p *ridehailpb.LatLng) geo.Point {
	return geo.Point{Lat: p.GetLat(), Lng: p.GetLng()}
}

// LatLng converts a geo.Point to a protobuf LatLng.
func LatLng(p geo.Point) *ridehailpb.LatLng {
	return &ridehailpb.LatLng{Lat: p.Lat, Lng: p.Lng}
}
