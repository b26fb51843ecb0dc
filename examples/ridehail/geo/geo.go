// Package geo holds the little geometry the ride-hailing example needs:
// points, great-circle distances and validation of coordinates that arrive
// in requests.
package geo

import (
	"math"

	"github.com/switchboard-dev/switchboard/examples/ridehail/internal/check"
)

// Point is a position in degrees (WGS 84), as JSON {"lat":52.37,"lng":4.89}.
type Point struct {
	Lat float64 `json:"lat"`
	Lng float64 `json:"lng"`
}

// earthRadiusKM is the mean radius of the Earth.
const earthRadiusKM = 6371.0

// DistanceKM returns the great-circle (haversine) distance between a and b
// in kilometres.
func DistanceKM(a, b Point) float64 {
	rad := math.Pi / 180
	dLat := (b.Lat - a.Lat) * rad
	dLng := (b.Lng - a.Lng) * rad
	h := math.Sin(dLat/2)*math.Sin(dLat/2) +
		math.Cos(a.Lat*rad)*math.Cos(b.Lat*rad)*math.Sin(dLng/2)*math.Sin(dLng/2)
	return 2 * earthRadiusKM * math.Asin(math.Min(1, math.Sqrt(h)))
}

// Validate checks that p is a real position and returns an InvalidArgument
// error naming field (e.g. "pickup") and the coordinate at fault otherwise.
// The zero point (0, 0) is refused: in this domain it is a missing field,
// not a spot in the Gulf of Guinea.
func Validate(field string, p Point) error {
	switch {
	case p == Point{}:
		return check.Invalid(field, "required")
	case math.IsNaN(p.Lat) || p.Lat < -90 || p.Lat > 90:
		return check.Invalid(field+".lat", "%v is not a latitude between -90 and 90", p.Lat)
	case math.IsNaN(p.Lng) || p.Lng < -180 || p.Lng > 180:
		return check.Invalid(field+".lng", "%v is not a longitude between -180 and 180", p.Lng)
	}
	return nil
}

// Offset returns the point dx kilometres east and dy kilometres north of p
// (a flat-Earth approximation, good for the few kilometres of a city).
func Offset(p Point, dxKM, dyKM float64) Point {
	lat := p.Lat + dyKM/earthRadiusKM*180/math.Pi
	lng := p.Lng + dxKM/(earthRadiusKM*math.Cos(p.Lat*math.Pi/180))*180/math.Pi
	return Point{Lat: lat, Lng: lng}
}
