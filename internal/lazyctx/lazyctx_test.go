package lazyctx

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
)

type ctxKey struct{}

func TestLazyDeadlineBehavesAsContextWithDeadline(t *testing.T) {
	t.Run("unarmed", func(t *testing.T) {
		d := time.Now().Add(time.Hour)
		ctx, cancel := New(context.WithValue(context.Background(), ctxKey{}, "v"), d)
		defer cancel()
		if got, ok := ctx.Deadline(); !ok || !got.Equal(d) {
			t.Errorf("Deadline = %v, %v; want %v", got, ok, d)
		}
		if err := ctx.Err(); err != nil {
			t.Errorf("Err = %v before the deadline", err)
		}
		if ctx.Value(ctxKey{}) != "v" {
			t.Error("the parent's values are lost")
		}
		if ctx.(*Context).armed() {
			t.Error("Deadline, Err or Value armed the timer")
		}
	})
	t.Run("expires", func(t *testing.T) {
		ctx, cancel := New(context.Background(), time.Now().Add(20*time.Millisecond))
		defer cancel()
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("Done did not close at the deadline")
		}
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) || !errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
			t.Errorf("Err = %v, Cause = %v; want DeadlineExceeded", ctx.Err(), context.Cause(ctx))
		}
	})
	t.Run("expired-unarmed", func(t *testing.T) {
		ctx, cancel := New(context.Background(), time.Now().Add(-time.Millisecond))
		defer cancel()
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Errorf("Err = %v after the deadline, want DeadlineExceeded", ctx.Err())
		}
		if !errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
			t.Errorf("Cause = %v after Err, want DeadlineExceeded", context.Cause(ctx))
		}
		select {
		case <-ctx.Done():
		default:
			t.Error("Done is open although Err is not nil")
		}
	})
	t.Run("canceled-unarmed", func(t *testing.T) {
		ctx, cancel := New(context.Background(), time.Now().Add(time.Hour))
		cancel()
		if !errors.Is(ctx.Err(), context.Canceled) {
			t.Errorf("Err = %v after cancel, want Canceled", ctx.Err())
		}
		select {
		case <-ctx.Done():
		default:
			t.Error("Done is open after cancel")
		}
	})
	t.Run("canceled-armed", func(t *testing.T) {
		ctx, cancel := New(context.Background(), time.Now().Add(time.Hour))
		done := ctx.Done()
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Done did not close on cancel")
		}
	})
	t.Run("parent-canceled", func(t *testing.T) {
		parent, pcancel := context.WithCancel(context.Background())
		ctx, cancel := New(parent, time.Now().Add(time.Hour))
		defer cancel()
		pcancel()
		if !errors.Is(ctx.Err(), context.Canceled) {
			t.Errorf("Err = %v after the parent was canceled, want Canceled", ctx.Err())
		}
		<-ctx.Done()
	})
	t.Run("earlier-parent-deadline", func(t *testing.T) {
		pd := time.Now().Add(time.Minute)
		parent, pcancel := context.WithDeadline(context.Background(), pd)
		defer pcancel()
		ctx, cancel := New(parent, pd.Add(time.Hour))
		defer cancel()
		if got, _ := ctx.Deadline(); !got.Equal(pd) {
			t.Errorf("Deadline = %v, want the parent's %v", got, pd)
		}
	})
	t.Run("derived", func(t *testing.T) {
		ctx, cancel := New(context.Background(), time.Now().Add(time.Hour))
		before := runtime.NumGoroutine()
		var kids []context.Context
		var stops []context.CancelFunc
		for range 200 {
			k, c := context.WithCancel(ctx)
			kids, stops = append(kids, k), append(stops, c)
		}
		fired := make(chan struct{})
		context.AfterFunc(ctx, func() { close(fired) })
		// A context that is not the standard library's would make
		// WithCancel start a goroutine per child to watch it.
		if n := runtime.NumGoroutine() - before; n > 20 {
			t.Errorf("%d goroutines more for 200 derived contexts", n)
		}
		cancel()
		for _, k := range kids {
			<-k.Done()
		}
		select {
		case <-fired:
		case <-time.After(10 * time.Second):
			t.Error("AfterFunc did not run on cancel")
		}
		for _, s := range stops {
			s()
		}
	})
}

func TestLazyDeadlineIsSafeForConcurrentUse(t *testing.T) {
	for range 50 {
		ctx, cancel := New(context.Background(), time.Now().Add(time.Millisecond))
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				switch i {
				case 0:
					<-ctx.Done()
				case 1:
					_ = ctx.Err()
				case 2:
					cancel()
				case 3:
					k, c := context.WithCancel(ctx)
					<-k.Done()
					c()
				}
			})
		}
		wg.Wait()
		if ctx.Err() == nil {
			t.Fatal("Err is nil after cancel")
		}
	}
}
