package amqpbus_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/amqpbus"
	"github.com/switchboard-dev/switchboard/bus/driver"
)

// proxy is a TCP proxy on 127.0.0.1 that the test can cut: cut closes
// every connection through it and refuses new ones until restore.
type proxy struct {
	ln       net.Listener
	upstream string
	mu       sync.Mutex
	down     bool
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
}

func startProxy(t *testing.T, upstream string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, upstream: upstream, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			_ = c.Close()
			continue
		}
		u, err := net.Dial("tcp", p.upstream)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[u] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		p.wg.Go(func() { pipe(u, c) })
		p.wg.Go(func() { pipe(c, u) })
	}
}

// cut closes every connection and refuses new ones.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		_ = c.Close()
	}
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// through returns rawURL with its host replaced by the proxy's address.
func (p *proxy) through(t *testing.T, rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.ln.Addr().String()
	return u.String()
}

func waitState(t *testing.T, c *bus.Conn, up bool, what string) {
	t.Helper()
	if !amqpbus.WaitState(c, up, wait) {
		t.Fatalf("timed out after %v waiting for %s", wait, what)
	}
}

// TestConnectionCutsLoseNoConfirmedMessage publishes a numbered sequence
// while a consumer group of two members consumes it, all through a proxy
// that cuts every connection three times. Every confirmed message must be
// consumed; calls made during a cut must fail at once with Unavailable.
func TestConnectionCutsLoseNoConfirmedMessage(t *testing.T) {
	e := newEnv(t)
	u, err := url.Parse(e.url)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, u.Host)
	proxied := p.through(t, e.url)
	pub := e.open(proxied)
	members := []*bus.Conn{e.open(proxied), e.open(proxied)}
	direct := e.open() // serves requests; not cut

	const topic, group, n, cuts = "ledger.seq", "ledger", 600, 3
	var mu sync.Mutex
	consumed := map[int]int{}
	changed := make(chan struct{}, 1)
	for _, m := range members {
		if _, err := m.Subscribe(ctxWait(t), topic, group, func(_ context.Context, d *bus.Delivery) error {
			var i int
			if _, err := fmt.Sscan(string(d.Body), &i); err != nil {
				return err
			}
			mu.Lock()
			consumed[i]++
			mu.Unlock()
			select {
			case changed <- struct{}{}:
			default:
			}
			return nil
		}, bus.SubscribeOptions{Concurrency: 4}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := direct.Serve(ctxWait(t), "ledger.echo", "echo", func(_ context.Context, req *bus.Message) *bus.Message { return req }); err != nil {
		t.Fatal(err)
	}
	// ledger.hold keeps its request until the test releases it, so that a
	// request is waiting for its reply when the first cut comes.
	held, release := make(chan struct{}), make(chan struct{})
	var heldOnce sync.Once
	if _, err := direct.Serve(ctxWait(t), "ledger.hold", "hold", func(_ context.Context, req *bus.Message) *bus.Message {
		heldOnce.Do(func() { close(held) })
		select {
		case <-release:
		case <-time.After(wait):
		}
		return req
	}); err != nil {
		t.Fatal(err)
	}
	type result struct {
		err  error
		when time.Time
	}
	inflight := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := pub.Request(ctx, &bus.Message{Subject: "ledger.hold"})
		inflight <- result{err, time.Now()}
	}()
	select {
	case <-held:
	case <-time.After(wait):
		t.Fatal("the held request never reached its server")
	}

	// The publisher: one message at a time, each waiting for its confirm;
	// after an error it waits a little, as a real publisher would.
	var confirmed, errored []int
	progress := make(chan int, n)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := pub.Publish(ctx, &bus.Message{Subject: topic, Body: []byte(fmt.Sprint(i))})
			cancel()
			mu.Lock()
			if err != nil {
				errored = append(errored, i)
			} else {
				confirmed = append(confirmed, i)
			}
			mu.Unlock()
			progress <- i
			if err != nil {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}()

	// The cutter: every n/(cuts+1) messages, cut everything, check that
	// calls fail fast while the connections are down, then restore.
	type fast struct {
		took time.Duration
		err  error
	}
	var during []fast
	for cut := 1; cut <= cuts; cut++ {
		for i := range progress {
			if i >= cut*n/(cuts+1) {
				break
			}
		}
		cutAt := time.Now()
		p.cut()
		waitState(t, pub, false, "the publisher to notice the cut")
		if cut == 1 {
			select {
			case r := <-inflight:
				t.Logf("request waiting for its reply when the connection was cut: %v after %v", r.err, r.when.Sub(cutAt))
				if bus.ErrorCode(r.err) != bus.Unavailable || r.when.Sub(cutAt) > time.Second {
					t.Errorf("request waiting when the connection was cut: %v after %v, want Unavailable at once (its deadline was 5s)", r.err, r.when.Sub(cutAt))
				}
			case <-time.After(wait):
				t.Fatal("the request waiting for its reply did not return after the cut")
			}
			close(release)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		start := time.Now()
		_, err := pub.Request(ctx, &bus.Message{Subject: "ledger.echo", Body: []byte("during the cut")})
		during = append(during, fast{time.Since(start), err})
		perr := pub.Publish(ctx, &bus.Message{Subject: topic, Body: []byte("-1")})
		cancel()
		if !errors.Is(perr, driver.ErrDisconnected) {
			t.Errorf("Publish during cut %d: %v, want a disconnected error", cut, perr)
		}
		time.Sleep(300 * time.Millisecond) // the outage
		p.restore()
		for _, c := range append([]*bus.Conn{pub}, members...) {
			waitState(t, c, true, "reconnection after the cut")
		}
	}
	go func() {
		for range progress {
		}
	}()
	<-done
	close(progress)

	// Wait until every confirmed message was consumed (or give up and
	// report what is missing).
	lost := func() []int {
		mu.Lock()
		defer mu.Unlock()
		var missing []int
		for _, i := range confirmed {
			if consumed[i] == 0 {
				missing = append(missing, i)
			}
		}
		return missing
	}
	deadline := time.After(wait)
	for len(lost()) > 0 {
		select {
		case <-changed:
		case <-deadline:
			t.Errorf("timed out waiting for confirmed messages")
		}
		if t.Failed() {
			break
		}
	}

	missing := lost()
	mu.Lock()
	dups, consumedConfirmed, consumedErrored := 0, 0, 0
	isConfirmed := map[int]bool{}
	for _, i := range confirmed {
		isConfirmed[i] = true
	}
	for i, c := range consumed {
		if c > 1 {
			dups += c - 1
		}
		if isConfirmed[i] {
			consumedConfirmed++
		} else if i >= 0 {
			consumedErrored++
		}
	}
	t.Logf("ledger: attempted=%d confirmed=%d errored=%d consumed=%d (of which published with an error: %d) duplicates=%d lost=%d",
		n, len(confirmed), len(errored), consumedConfirmed+consumedErrored, consumedErrored, dups, len(missing))
	mu.Unlock()
	if len(missing) > 0 {
		t.Errorf("%d confirmed messages were never consumed, first %v", len(missing), missing[:min(10, len(missing))])
	}
	for _, c := range append([]*bus.Conn{pub}, members...) {
		if d := amqpbus.Disconnects(c); d < cuts {
			t.Errorf("a connection through the proxy noticed %d disconnections, want %d: the cuts did not fire", d, cuts)
		}
	}
	if len(errored) == 0 {
		t.Errorf("no publish failed: the cuts did not reach the publisher")
	}
	for i, f := range during {
		t.Logf("request during cut %d: %v after %v", i+1, f.err, f.took)
		if bus.ErrorCode(f.err) != bus.Unavailable || f.took > time.Second {
			t.Errorf("request during cut %d: %v after %v, want Unavailable at once (its deadline was 5s)", i+1, f.err, f.took)
		}
	}
	// After the cuts, everything works again.
	if _, err := pub.Request(ctxWait(t), &bus.Message{Subject: "ledger.echo", Body: []byte("after")}); err != nil {
		t.Errorf("Request after the cuts: %v", err)
	}
}
