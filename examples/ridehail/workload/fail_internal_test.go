package workload

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard"
)

// TestFailLogsFaultsAsWarningsAndRefusalsAsInfo checks the levels of the
// workload's failure log: a fault is a warning the first time, a refusal
// the simulation expects (no driver free) only information, and repeats
// of either are debug.
func TestFailLogsFaultsAsWarningsAndRefusalsAsInfo(t *testing.T) {
	var buf bytes.Buffer
	g := New(nil, Options{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	refused := switchboard.Errorf(switchboard.FailedPrecondition, "dispatch: no available driver within 5 km of the pickup")
	broken := switchboard.Errorf(switchboard.Unavailable, "pricing is down")
	g.fail("request trip", refused)
	g.fail("request trip", refused)
	g.fail("request trip", broken)
	g.fail("request trip", broken)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{"level=INFO", "level=DEBUG", "level=WARN", "level=DEBUG"}
	if len(lines) != len(want) {
		t.Fatalf("%d log lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d: %s, want %s", i+1, lines[i], w)
		}
	}
	if s := g.Stats(); s.Errors != 4 || s.ErrorsByCode["FailedPrecondition"] != 2 || s.ErrorsByCode["Unavailable"] != 2 {
		t.Errorf("stats %+v, want every failure counted by its code", s)
	}
}
