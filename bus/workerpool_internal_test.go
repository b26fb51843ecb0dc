package bus

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// goid returns the calling goroutine's id, read from its stack trace.
func goid() int {
	var buf [64]byte
	b := bytes.TrimPrefix(buf[:runtime.Stack(buf[:], false)], []byte("goroutine "))
	id, _ := strconv.Atoi(string(b[:bytes.IndexByte(b, ' ')]))
	return id
}

// TestWorkerPoolReusesTheLastIdleWorker: after a burst has left several
// workers idle, sequential requests all go to the one that became idle
// last instead of going around all of them.
func TestWorkerPoolReusesTheLastIdleWorker(t *testing.T) {
	const burst = 8
	var (
		mu      sync.Mutex
		ran     []int
		started sync.WaitGroup
		release = make(chan struct{})
		done    = make(chan struct{}, 100)
		hold    = true
	)
	p := newWorkerPool(func(serveJob) {
		mu.Lock()
		ran = append(ran, goid())
		h := hold
		mu.Unlock()
		if h {
			started.Done()
			<-release
		}
		done <- struct{}{}
	})
	defer p.close()
	started.Add(burst)
	for range burst {
		p.run(serveJob{})
	}
	started.Wait()
	mu.Lock()
	hold = false
	mu.Unlock()
	close(release)
	for range burst {
		<-done
	}
	waitFor(t, func() bool { return p.idleWorkers() == burst })
	mu.Lock()
	burstIDs := map[int]bool{}
	for _, id := range ran {
		burstIDs[id] = true
	}
	ran = nil
	mu.Unlock()
	if len(burstIDs) != burst {
		t.Fatalf("the burst of %d ran on %d goroutines, want one each", burst, len(burstIDs))
	}
	for range 3 * burst {
		p.run(serveJob{})
		<-done
		waitFor(t, func() bool { return p.idleWorkers() == burst })
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ran {
		if id != ran[0] || !burstIDs[id] {
			t.Fatalf("sequential requests ran on goroutines %v, want all on one worker of the burst", ran)
		}
	}
}

// TestWorkerPoolIdleWorkersExit: workers idle past idleFor exit, and the
// pool starts new ones for later requests; close makes idle ones exit.
func TestWorkerPoolIdleWorkersExit(t *testing.T) {
	done := make(chan struct{}, 10)
	p := newWorkerPool(func(serveJob) { done <- struct{}{} })
	p.idleFor = 40 * time.Millisecond
	before := runtime.NumGoroutine()
	for range 4 {
		p.run(serveJob{})
	}
	for range 4 {
		<-done
	}
	waitFor(t, func() bool { return p.idleWorkers() > 0 })
	waitFor(t, func() bool { return p.idleWorkers() == 0 && runtime.NumGoroutine() <= before })
	p.mu.Lock()
	reaping := p.reaper != nil
	p.mu.Unlock()
	if reaping {
		t.Error("the reaper still runs with no worker idle")
	}
	p.run(serveJob{})
	<-done
	waitFor(t, func() bool { return p.idleWorkers() == 1 })
	p.close()
	if n := p.idleWorkers(); n != 0 {
		t.Errorf("%d idle workers after close, want 0", n)
	}
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before })
	// A request that arrives after close (the driver stops first, but one
	// may be on its way) still runs.
	p.run(serveJob{})
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a request after close did not run")
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
