package health

import (
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard"
)

func TestBucketsBoundTheirValuesWithin25Percent(t *testing.T) {
	prev := -1
	for d := time.Duration(0); d < 20*time.Second; d = d*11/10 + time.Microsecond {
		i := bucketOf(d)
		if i < prev {
			t.Fatalf("bucketOf(%s) = %d, below the bucket of a shorter duration (%d)", d, i, prev)
		}
		prev = i
		up := bucketUpper(i)
		if up <= d.Truncate(time.Microsecond) {
			t.Fatalf("bucketUpper(%d) = %s, not above %s", i, up, d)
		}
		if d >= 10*time.Microsecond && float64(up) > 1.26*float64(d) {
			t.Fatalf("bucketUpper(%d) = %s, more than 26%% above %s", i, up, d)
		}
	}
}

func TestQuantile(t *testing.T) {
	w := newWindow([]string{"e"})
	e := w.cur.Load().endpoint("e", false)
	for range 98 {
		e.buckets[bucketOf(time.Millisecond)].Add(1)
	}
	e.buckets[bucketOf(100*time.Millisecond)].Add(2)
	st := w.endpoint("e")
	if p50 := st.quantile(0.5); p50 < time.Millisecond || p50 > 1300*time.Microsecond {
		t.Errorf("p50 = %s, want about 1ms", p50)
	}
	if p99 := st.quantile(0.99); p99 < 100*time.Millisecond || p99 > 130*time.Millisecond {
		t.Errorf("p99 = %s, want about 100ms", p99)
	}
	w.rotate()
	w.rotate()
	if st := w.endpoint("e"); st.quantile(0.99) != 0 {
		t.Errorf("after two rotations the window still holds %v", st.buckets)
	}
}

// BenchmarkObserveRequest is health's cost on the request path alone:
// recording one request's latency in the window.
//
//	go test -run '^$' -bench Observe -benchmem ./health/
func BenchmarkObserveRequest(b *testing.B) {
	w := newWindow([]string{"quote"})
	r := switchboard.RequestResult{Endpoint: "quote", Caller: "trips", Code: switchboard.OK, Duration: 120 * time.Microsecond}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w.observeRequest(r)
		}
	})
}
