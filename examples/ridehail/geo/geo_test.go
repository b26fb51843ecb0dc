package geo

import (
	"errors"
	"math"
	"testing"

	"github.com/switchboard-dev/switchboard"
)

func TestDistanceKM(t *testing.T) {
	amsterdam := Point{Lat: 52.3676, Lng: 4.9041}
	tests := []struct {
		name   string
		a, b   Point
		wantKM float64
		tol    float64
	}{
		{"a point is 0 km from itself", amsterdam, amsterdam, 0, 1e-9},
		{"Amsterdam to Rotterdam is about 57 km", amsterdam, Point{Lat: 51.9244, Lng: 4.4777}, 57.4, 0.5},
		{"London to Paris is about 344 km", Point{Lat: 51.5074, Lng: -0.1278}, Point{Lat: 48.8566, Lng: 2.3522}, 343.6, 1},
		{"one degree of latitude is about 111 km", Point{Lat: 10, Lng: 20}, Point{Lat: 11, Lng: 20}, 111.2, 0.1},
		{"antipodes are half the circumference apart", Point{Lat: 0, Lng: 0}, Point{Lat: 0, Lng: 180}, math.Pi * earthRadiusKM, 1e-6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DistanceKM(tt.a, tt.b); math.Abs(got-tt.wantKM) > tt.tol {
				t.Errorf("DistanceKM = %.3f, want %.3f ± %v", got, tt.wantKM, tt.tol)
			}
			if got, back := DistanceKM(tt.a, tt.b), DistanceKM(tt.b, tt.a); math.Abs(got-back) > 1e-9 {
				t.Errorf("distance is not symmetric: %v and %v", got, back)
			}
		})
	}
}

func TestOffsetMovesByTheGivenDistance(t *testing.T) {
	p := Point{Lat: 52.37, Lng: 4.89}
	for _, d := range []struct{ dx, dy float64 }{{1, 0}, {0, 1}, {-2, 3}, {0.1, -0.1}} {
		q := Offset(p, d.dx, d.dy)
		want := math.Hypot(d.dx, d.dy)
		if got := DistanceKM(p, q); math.Abs(got-want) > want*0.01 {
			t.Errorf("Offset(%v, %v, %v) is %.4f km away, want %.4f", p, d.dx, d.dy, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name      string
		p         Point
		wantField string // "" means valid
	}{
		{"a city centre is valid", Point{Lat: 52.37, Lng: 4.89}, ""},
		{"the poles and the date line are valid", Point{Lat: -90, Lng: 180}, ""},
		{"the zero point is a missing field", Point{}, "pickup"},
		{"latitude above 90 is refused", Point{Lat: 91, Lng: 4}, "pickup.lat"},
		{"NaN latitude is refused", Point{Lat: math.NaN(), Lng: 4}, "pickup.lat"},
		{"longitude below -180 is refused", Point{Lat: 52, Lng: -181}, "pickup.lng"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate("pickup", tt.p)
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var e *switchboard.Error
			if !errors.As(err, &e) || e.Code != switchboard.InvalidArgument {
				t.Fatalf("Validate = %v, want an InvalidArgument *switchboard.Error", err)
			}
			if e.Details["field"] != tt.wantField {
				t.Errorf("field detail = %q, want %q (error %v)", e.Details["field"], tt.wantField, err)
			}
		})
	}
}
