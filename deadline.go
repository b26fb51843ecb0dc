package switchboard

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// withDeadline is context.WithDeadline(parent, d) for the context a
// handler runs in, except that the timer and the cancel machinery are made
// only when something asks for them (Done, or a context derived from it):
// most handlers never wait on their context, and a timer started and
// stopped on every request costs allocations and a few percent of a call.
// Deadline, Err and Value answer without arming it; Err arms it once the
// deadline has passed, so that context.Cause agrees.
//
// A context derived from it (context.WithCancel and the like) calls Done
// first, which arms it; the derived context then hangs on the real one as
// it would on any context.WithDeadline, with no goroutine.
func withDeadline(parent context.Context, d time.Time) (context.Context, context.CancelFunc) {
	c := &lazyDeadline{}
	c.init(parent, d)
	return c, c.cancel
}

func (c *lazyDeadline) init(parent context.Context, d time.Time) {
	c.parent, c.deadline = parent, d
	if pd, ok := parent.Deadline(); ok && pd.Before(d) {
		c.deadline = pd
	}
}

// handlerCtx is the context a handler runs in, made with one allocation:
// the request's deadline (lazily armed, see withDeadline) and the Call that
// CallFrom returns once dispatch has filled it in.
type handlerCtx struct {
	lazyDeadline
	call Call
}

func (c *handlerCtx) Value(key any) any {
	if key == (callKey{}) && c.call.Service != "" {
		return &c.call
	}
	return c.lazyDeadline.Value(key)
}

type lazyDeadline struct {
	parent   context.Context
	deadline time.Time

	mu       sync.Mutex // held to arm, and by cancel to see what is armed
	real     atomic.Pointer[realDeadline]
	canceled atomic.Bool
}

type realDeadline struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func (c *lazyDeadline) arm() *realDeadline {
	if r := c.real.Load(); r != nil {
		return r
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.real.Load(); r != nil {
		return r
	}
	ctx, cancel := context.WithDeadline(c.parent, c.deadline)
	if c.canceled.Load() {
		cancel()
	}
	r := &realDeadline{ctx: ctx, cancel: cancel}
	c.real.Store(r)
	return r
}

func (c *lazyDeadline) cancel() {
	c.canceled.Store(true)
	c.mu.Lock()
	r := c.real.Load()
	c.mu.Unlock()
	if r != nil {
		r.cancel()
	}
}

// A zero deadline is none: the context is its parent's.

func (c *lazyDeadline) Deadline() (time.Time, bool) {
	if c.deadline.IsZero() {
		return c.parent.Deadline()
	}
	return c.deadline, true
}

func (c *lazyDeadline) Done() <-chan struct{} {
	if c.deadline.IsZero() {
		return c.parent.Done()
	}
	return c.arm().ctx.Done()
}

func (c *lazyDeadline) Err() error {
	if c.deadline.IsZero() {
		return c.parent.Err()
	}
	if r := c.real.Load(); r != nil {
		return r.ctx.Err()
	}
	if c.canceled.Load() || c.parent.Err() != nil || !time.Now().Before(c.deadline) {
		return c.arm().ctx.Err()
	}
	return nil
}

func (c *lazyDeadline) Value(key any) any {
	if r := c.real.Load(); r != nil {
		return r.ctx.Value(key)
	}
	return c.parent.Value(key)
}

func (c *lazyDeadline) String() string { return "switchboard.withDeadline" }
