// Package lazyctx is a deadline context whose timer and cancel machinery are
// made only when something waits on it.
package lazyctx

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// New is context.WithDeadline(parent, d), except that the timer and the
// cancel machinery are made only when something asks for them (Done, or a
// context derived from it): most code given a context never waits on it
// (a handler that does not select on its context, a driver's Ack that does
// not block), and a timer started and stopped each time costs allocations
// and, at a few microseconds a call, a few percent. Deadline, Err and Value answer without arming it; Err arms it once the
// deadline has passed, so that context.Cause agrees.
//
// A context derived from it (context.WithCancel and the like) calls Done
// first, which arms it; the derived context then hangs on the real one as
// it would on any context.WithDeadline, with no goroutine.
func New(parent context.Context, d time.Time) (context.Context, context.CancelFunc) {
	c := &Context{}
	c.Init(parent, d)
	return c, c.Cancel
}

// Init makes c the context New(parent, d) returns, for a Context embedded
// in a context of the caller's (made with one allocation). Call it once,
// before c is used; c.Cancel is its CancelFunc.
func (c *Context) Init(parent context.Context, d time.Time) {
	c.parent, c.deadline = parent, d
	if pd, ok := parent.Deadline(); ok && pd.Before(d) {
		c.deadline = pd
	}
}

// Context is the context New returns. Its zero value is not usable: Init
// it. A zero deadline is none: the context is its parent's.
type Context struct {
	parent   context.Context
	deadline time.Time

	mu       sync.Mutex // held to arm, and by Cancel to see what is armed
	real     atomic.Pointer[realDeadline]
	canceled atomic.Bool
}

type realDeadline struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// armed reports whether the timer was made (for tests).
func (c *Context) armed() bool { return c.real.Load() != nil }

func (c *Context) arm() *realDeadline {
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

// Cancel cancels c, as the CancelFunc of context.WithDeadline does.
func (c *Context) Cancel() {
	c.canceled.Store(true)
	c.mu.Lock()
	r := c.real.Load()
	c.mu.Unlock()
	if r != nil {
		r.cancel()
	}
}

func (c *Context) Deadline() (time.Time, bool) {
	if c.deadline.IsZero() {
		return c.parent.Deadline()
	}
	return c.deadline, true
}

func (c *Context) Done() <-chan struct{} {
	if c.deadline.IsZero() {
		return c.parent.Done()
	}
	return c.arm().ctx.Done()
}

func (c *Context) Err() error {
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

func (c *Context) Value(key any) any {
	if r := c.real.Load(); r != nil {
		return r.ctx.Value(key)
	}
	return c.parent.Value(key)
}

func (c *Context) String() string { return "lazyctx.Context" }
