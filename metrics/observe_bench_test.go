package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dev/switchboard"
)

// BenchmarkObserveRequest is the metrics' cost on the request path alone:
// counting one served request and timing it, label set already seen.
//
//	go test -run '^$' -bench Observe -benchmem ./metrics/
func BenchmarkObserveRequest(b *testing.B) {
	m, err := New(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	r := switchboard.RequestResult{Endpoint: "quote", Caller: "trips", Code: switchboard.OK, Duration: 120 * time.Microsecond}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.observeRequest("pricing", r)
		}
	})
}
