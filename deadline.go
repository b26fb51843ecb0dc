package switchboard

import "github.com/switchboard-dev/switchboard/internal/lazyctx"

// handlerCtx is the context a handler runs in, made with one allocation:
// the request's deadline, armed only if the handler waits on it (most never
// do, and a timer started and stopped on every request costs allocations
// and a few percent of a call; see package lazyctx), and the Call that
// CallFrom returns once dispatch has filled it in.
type handlerCtx struct {
	lazyctx.Context
	call Call
}

func (c *handlerCtx) Value(key any) any {
	if key == (callKey{}) && c.call.Service != "" {
		return &c.call
	}
	return c.Context.Value(key)
}
