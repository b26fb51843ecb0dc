// Package devstate records where a running `switchboard dev` platform can be
// reached, so that the CLI and services started with `go run` in another
// terminal find it with no flags.
package devstate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// DefaultDataDir is where `switchboard dev` keeps its data unless told
// otherwise, relative to the working directory.
const DefaultDataDir = ".switchboard"

// FileName is the state file's name inside a data directory.
const FileName = "dev.json"

// State is what a running dev platform writes.
type State struct {
	BusURL    string    `json:"bus_url"`
	PID       int       `json:"pid"`
	DataDir   string    `json:"data_dir"`
	Dashboard string    `json:"dashboard,omitempty"`
	Started   time.Time `json:"started"`
}

// userFile is the per-user copy, so commands run from another directory find
// the platform too.
func userFile() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "switchboard", FileName), nil
}

// Write records s in dataDir and in the user's config directory.
func Write(dataDir string, s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(dataDir, FileName), b); err != nil {
		return fmt.Errorf("devstate: %w", err)
	}
	if uf, err := userFile(); err == nil {
		_ = writeAtomic(uf, b) // best effort: the data-dir copy is authoritative
	}
	return nil
}

// Remove deletes the state files written by the process with pid.
func Remove(dataDir string, pid int) {
	paths := []string{filepath.Join(dataDir, FileName)}
	if uf, err := userFile(); err == nil {
		paths = append(paths, uf)
	}
	for _, p := range paths {
		if s, err := readFile(p); err == nil && s.PID == pid {
			_ = os.Remove(p)
		}
	}
}

func writeAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readFile(path string) (State, error) {
	var s State
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("devstate: %s: %w", path, err)
	}
	return s, nil
}

// ErrNotRunning means no state file names a live dev platform.
var ErrNotRunning = errors.New("no running `switchboard dev` found")

// Find returns the state of a running dev platform: first the one under
// ./.switchboard, then the user's. A state file whose process is gone is
// ignored.
func Find() (State, string, error) {
	paths := []string{filepath.Join(DefaultDataDir, FileName)}
	if uf, err := userFile(); err == nil {
		paths = append(paths, uf)
	}
	for _, p := range paths {
		s, err := readFile(p)
		if err != nil || s.BusURL == "" || !alive(s.PID) {
			continue
		}
		return s, p, nil
	}
	return State{}, "", ErrNotRunning
}

// alive reports whether a process with pid exists.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	return p.Signal(syscall0) == nil
}
