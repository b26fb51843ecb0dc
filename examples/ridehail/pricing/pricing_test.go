package pricing

import (
	"testing"
	"time"
)

func TestFare(t *testing.T) {
	tests := []struct {
		name               string
		km, minutes, surge float64
		want               int64
	}{
		{"a short hop costs the minimum fare", 0.5, 1.2, 1, MinimumCents},
		{"a 10 km ride of 24 minutes is base + distance + time", 10, 24, 1, BaseCents + 10*PerKMCents + 24*PerMinuteCents},
		{"surge multiplies the fare", 10, 24, 1.5, 3255}, // 2170 × 1.5
		{"surge multiplies the minimum fare too", 0.5, 1.2, 2, 2 * MinimumCents},
		{"fractions round to the nearest cent", 12.345, 30, 1.1, 2895}, // 2631.4 × 1.1 = 2894.54
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Fare(tt.km, tt.minutes, tt.surge)
			if got.AmountCents != tt.want || got.Currency != "EUR" {
				t.Errorf("Fare(%v, %v, %v) = %+v, want %d EUR", tt.km, tt.minutes, tt.surge, got, tt.want)
			}
		})
	}
}

func TestSurge(t *testing.T) {
	tests := []struct {
		name   string
		quotes int
		want   float64
	}{
		{"no demand means no surge", 0, 1},
		{"demand below one step means no surge", SurgeStep - 1, 1},
		{"each step adds an increment", 2 * SurgeStep, 1 + 2*SurgeIncrement},
		{"surge is capped", 100 * SurgeStep, MaxSurge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Surge(tt.quotes); got != tt.want {
				t.Errorf("Surge(%d) = %v, want %v", tt.quotes, got, tt.want)
			}
		})
	}
}

func TestDemandCountsTheLastMinuteOnly(t *testing.T) {
	var d demand
	t0 := time.Unix(1_700_000_000, 0)
	for i := range 30 {
		d.add(t0.Add(time.Duration(i) * time.Second))
	}
	if got := d.add(t0.Add(30 * time.Second)); got != 31 {
		t.Errorf("after 31 quotes within a minute, count = %d", got)
	}
	// 70 s later the first 11 quotes (t0 .. t0+10s) are older than a minute.
	if got := d.add(t0.Add(70 * time.Second)); got != 21 {
		t.Errorf("count 70 s after the first quote = %d, want 21", got)
	}
	if got := d.add(t0.Add(10 * time.Minute)); got != 1 {
		t.Errorf("count after ten quiet minutes = %d, want 1", got)
	}
}
