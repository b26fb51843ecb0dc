package app_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/app"
	"github.com/switchboard-dev/switchboard/health"
)

func TestConfigCheckSaysWhatTheServiceRunsWith(t *testing.T) {
	ctx := context.Background()
	if r := app.ConfigCheck("", time.Now())(ctx); r.Status != health.Healthy || !strings.Contains(r.Message, "built-in defaults") {
		t.Errorf("without a file: %+v", r)
	}
	path := filepath.Join(t.TempDir(), "resilience.json")
	if err := os.WriteFile(path, []byte(`{"default": {"retry": {"max_attempts": 2}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	loaded := time.Now()
	check := app.ConfigCheck(path, loaded)
	if r := check(ctx); r.Status != health.Healthy || !strings.Contains(r.Message, "loaded "+path) {
		t.Errorf("as loaded: %+v", r)
	}
	later := loaded.Add(time.Minute) // a modification time after the load, without waiting
	if err := os.WriteFile(path, []byte(`{"default": {"retry": {"max_attempts": 3}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	if r := check(ctx); r.Status != health.Degraded || !strings.Contains(r.Message, "restart the service to apply it") {
		t.Errorf("changed: %+v", r)
	}
	if err := os.WriteFile(path, []byte(`{"default": {"retry": {"max_attempts": -1}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	if r := check(ctx); r.Status != health.Degraded || !strings.Contains(r.Message, "no longer loads") || !strings.Contains(r.Message, "max_attempts: -1") {
		t.Errorf("changed to something invalid: %+v", r)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if r := check(ctx); r.Status != health.Degraded || !strings.Contains(r.Message, "a restart would fail") {
		t.Errorf("removed: %+v", r)
	}
}
