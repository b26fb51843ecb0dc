package metrics

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

func TestCacheMakesEachValueOnce(t *testing.T) {
	var c cache[string, int]
	var made atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				k := fmt.Sprint((g + i) % 10)
				if v := c.get(k, func() int { made.Add(1); return len(k) }); v != len(k) {
					t.Errorf("get(%q) = %d", k, v)
				}
			}
		}()
	}
	wg.Wait()
	if made.Load() != 10 {
		t.Errorf("made %d values for 10 keys", made.Load())
	}
}
