// Package recent provides a map that keeps only its most recently added
// entries, so the example services can run for days under a workload
// without their in-memory state growing without bound.
package recent

import "sync"

// Map is a concurrency-safe map that holds at most a fixed number of keys:
// adding a new key beyond the limit forgets the oldest added key. Updating
// an existing key keeps its place.
type Map[K comparable, V any] struct {
	mu    sync.Mutex
	max   int
	seq   uint64
	m     map[K]entry[V]
	order []slot[K] // ring of keys in insertion order
	head  int       // index of the oldest slot once the ring is full
}

type entry[V any] struct {
	v   V
	seq uint64
}

// slot remembers which insertion of a key it stands for, so a key deleted
// and added again is not evicted by its old slot.
type slot[K comparable] struct {
	k   K
	seq uint64
}

// New returns a Map holding at most n keys (at least 1).
func New[K comparable, V any](n int) *Map[K, V] {
	return &Map[K, V]{max: max(1, n), m: make(map[K]entry[V])}
}

// Get returns the value of k.
func (r *Map[K, V]) Get(k K) (V, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.m[k]
	return e.v, ok
}

// Put sets k to v.
func (r *Map[K, V]) Put(k K, v V) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.put(k, v)
}

func (r *Map[K, V]) put(k K, v V) {
	if e, ok := r.m[k]; ok {
		r.m[k] = entry[V]{v: v, seq: e.seq}
		return
	}
	r.seq++
	s := slot[K]{k: k, seq: r.seq}
	if len(r.order) < r.max {
		r.order = append(r.order, s)
	} else {
		old := r.order[r.head]
		if e, ok := r.m[old.k]; ok && e.seq == old.seq {
			delete(r.m, old.k)
		}
		r.order[r.head] = s
		r.head = (r.head + 1) % r.max
	}
	r.m[k] = entry[V]{v: v, seq: r.seq}
}

// Update calls f with the current value of k (and whether it exists) under
// the map's lock, and stores the value f returns when keep is true. It
// returns the value k has afterwards (the zero value if none). f must not
// call the Map.
func (r *Map[K, V]) Update(k K, f func(v V, ok bool) (nv V, keep bool)) V {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok := r.m[k]
	nv, keep := f(old.v, ok)
	if !keep {
		return old.v
	}
	r.put(k, nv)
	return nv
}

// Delete forgets k.
func (r *Map[K, V]) Delete(k K) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, k)
}

// Len returns the number of keys held.
func (r *Map[K, V]) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m)
}
