package metrics

import (
	"sync"
	"sync/atomic"
)

// cache maps label sets to resolved metric children. Reads are lock-free
// (one atomic load and a map lookup with the key's own hash, which for a
// struct of strings is much cheaper than sync.Map's interface hashing);
// a new label set copies the map, which happens once per label set.
type cache[K comparable, V any] struct {
	m  atomic.Pointer[map[K]V]
	mu sync.Mutex // serializes writers
}

// get returns the value for k, making it with mk the first time.
func (c *cache[K, V]) get(k K, mk func() V) V {
	if m := c.m.Load(); m != nil {
		if v, ok := (*m)[k]; ok {
			return v
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil {
		if v, ok := (*old)[k]; ok {
			return v
		}
	}
	next := make(map[K]V, 1+lenOf(old))
	if old != nil {
		for kk, vv := range *old {
			next[kk] = vv
		}
	}
	v := mk()
	next[k] = v
	c.m.Store(&next)
	return v
}

func lenOf[K comparable, V any](m *map[K]V) int {
	if m == nil {
		return 0
	}
	return len(*m)
}
