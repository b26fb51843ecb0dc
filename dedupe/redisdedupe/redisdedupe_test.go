package redisdedupe_test

import (
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/dedupe"
	"github.com/switchboard-dev/switchboard/dedupe/dedupetest"
	"github.com/switchboard-dev/switchboard/dedupe/redisdedupe"
	"github.com/switchboard-dev/switchboard/internal/redistest"
)

func TestConformance(t *testing.T) {
	prefix := redistest.Prefix(t)
	dedupetest.Run(t, dedupetest.Harness{Open: func(t *testing.T, window time.Duration) dedupe.Store {
		// A client of its own, as another instance would have; a prefix per
		// window so that stores of different windows do not share keys.
		return redisdedupe.New(redistest.Client(t), redisdedupe.Options{Prefix: prefix + window.String() + ":", Window: window})
	}})
}
