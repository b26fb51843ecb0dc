package recent

import (
	"fmt"
	"sync"
	"testing"
)

func TestMapForgetsTheOldestKeyBeyondItsLimit(t *testing.T) {
	m := New[string, int](3)
	for i := range 5 {
		m.Put(fmt.Sprint(i), i)
	}
	if m.Len() != 3 {
		t.Fatalf("Len = %d, want 3", m.Len())
	}
	for i := range 5 {
		v, ok := m.Get(fmt.Sprint(i))
		if want := i >= 2; ok != want || ok && v != i {
			t.Errorf("Get(%d) = %v, %v; want present=%v", i, v, ok, want)
		}
	}
}

func TestMapUpdateKeepsTheKeysPlace(t *testing.T) {
	m := New[string, int](2)
	m.Put("a", 1)
	m.Put("b", 2)
	m.Put("a", 10) // an update, not a new key: "a" stays the oldest
	m.Put("c", 3)
	if _, ok := m.Get("a"); ok {
		t.Error(`"a" survived although it was the oldest key`)
	}
	if v, _ := m.Get("b"); v != 2 {
		t.Errorf(`Get("b") = %d, want 2`, v)
	}
}

func TestMapKeyAddedAgainAfterDeleteIsNotEvictedByItsOldSlot(t *testing.T) {
	m := New[string, int](2)
	m.Put("a", 1)
	m.Delete("a")
	m.Put("b", 2)
	m.Put("a", 3) // evicts the stale slot of the first "a", not the new one
	if v, ok := m.Get("a"); !ok || v != 3 {
		t.Errorf(`Get("a") = %d, %v; want 3, true`, v, ok)
	}
	if v, ok := m.Get("b"); !ok || v != 2 {
		t.Errorf(`Get("b") = %d, %v; want 2, true`, v, ok)
	}
}

func TestMapUpdate(t *testing.T) {
	m := New[string, int](10)
	inc := func(v int, _ bool) (int, bool) { return v + 1, true }
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() { m.Update("n", inc) })
	}
	wg.Wait()
	if v, _ := m.Get("n"); v != 100 {
		t.Errorf("after 100 concurrent increments n = %d", v)
	}
	if got := m.Update("n", func(int, bool) (int, bool) { return 0, false }); got != 100 {
		t.Errorf("Update without keep returned %d, want the existing 100", got)
	}
	if got := m.Update("missing", func(int, bool) (int, bool) { return 0, false }); got != 0 {
		t.Errorf("Update of a missing key without keep returned %d, want 0", got)
	}
}
