package dedupe

import (
	"container/list"
	"context"
	"strconv"
	"sync"
	"time"
)

// Defaults of Memory.
const (
	DefaultMemoryEntries = 100_000
	DefaultMemoryWindow  = time.Hour
)

// Memory is an in-process Store, bounded by count and by time: it remembers
// at most MaxEntries handled keys, each for at most Window, forgetting the
// oldest first. Claims in flight are kept beside them (they are bounded by
// the handlers running). It de-duplicates only what this process sees:
// redeliveries to this instance, duplicates published within its memory.
// For a consumer group with several instances use a shared store
// (pgdedupe, redisdedupe).
//
// The zero value is ready to use with the defaults. Set the fields before
// first use. Memory is safe for concurrent use.
type Memory struct {
	// MaxEntries bounds the handled keys remembered (default
	// DefaultMemoryEntries, 100 000).
	MaxEntries int
	// Window is how long a handled key is remembered (default
	// DefaultMemoryWindow, 1 hour).
	Window time.Duration

	mu     sync.Mutex
	keys   map[string]*memEntry
	done   list.List // of *memEntry, completed oldest first
	tokens uint64
}

type memEntry struct {
	key   string
	token string // of the live claim; empty when done
	until time.Time
	elem  *list.Element // in done, when done
}

var _ Store = (*Memory)(nil)

func (m *Memory) initLocked() {
	if m.keys == nil {
		m.keys = map[string]*memEntry{}
		if m.MaxEntries <= 0 {
			m.MaxEntries = DefaultMemoryEntries
		}
		if m.Window <= 0 {
			m.Window = DefaultMemoryWindow
		}
	}
}

// trimLocked forgets handled keys past their window or beyond MaxEntries.
// With one window for all, the oldest completion expires first.
func (m *Memory) trimLocked(now time.Time) {
	for e := m.done.Front(); e != nil; e = m.done.Front() {
		ent := e.Value.(*memEntry)
		if m.done.Len() <= m.MaxEntries && now.Before(ent.until) {
			return
		}
		m.done.Remove(e)
		delete(m.keys, ent.key)
	}
}

// Claim implements Store.
func (m *Memory) Claim(_ context.Context, key string, lease time.Duration) (Claim, error) {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.initLocked()
	m.trimLocked(now)
	if e, ok := m.keys[key]; ok {
		switch {
		case e.elem != nil: // done and, after trimming, within the window
			return Claim{Key: key, Status: Done, TTL: e.until.Sub(now)}, nil
		case now.Before(e.until):
			return Claim{Key: key, Status: Busy, TTL: e.until.Sub(now)}, nil
		}
		// An expired claim: its holder is presumed gone.
	}
	m.tokens++
	e := &memEntry{key: key, token: strconv.FormatUint(m.tokens, 10), until: now.Add(lease)}
	m.keys[key] = e
	return Claim{Key: key, Status: Claimed, Token: e.token, TTL: lease}, nil
}

// Extend implements Store.
func (m *Memory) Extend(_ context.Context, c Claim, lease time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	e, ok := m.keys[c.Key]
	if !ok || e.elem != nil || e.token != c.Token || !now.Before(e.until) {
		return ErrLeaseLost // as in the shared stores, an expired lease is lost
	}
	e.until = now.Add(lease)
	return nil
}

// Complete implements Store.
func (m *Memory) Complete(_ context.Context, c Claim) error {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.initLocked()
	e, ok := m.keys[c.Key]
	if ok && e.elem != nil {
		return nil // already done
	}
	if !ok {
		e = &memEntry{key: c.Key}
		m.keys[c.Key] = e
	}
	e.token, e.until = "", now.Add(m.Window)
	e.elem = m.done.PushBack(e)
	m.trimLocked(now)
	return nil
}

// Release implements Store.
func (m *Memory) Release(_ context.Context, c Claim) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.keys[c.Key]; ok && e.elem == nil && e.token == c.Token {
		delete(m.keys, c.Key)
	}
	return nil
}

// Len returns how many keys the store holds: handled ones and claims.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.initLocked()
	m.trimLocked(time.Now())
	return len(m.keys)
}
