// Package crashtest kills a running `switchboard dev` platform with SIGKILL
// while events are being published, restarts it on the same data, and checks
// that every event the broker acknowledged is still there.
package crashtest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
	_ "github.com/switchboard-dev/switchboard/bus/natsbus"
	"github.com/switchboard-dev/switchboard/internal/devstate"
)

func buildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "switchboard")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/switchboard").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startDev runs `switchboard dev` on data and returns the process and the
// bus URL it recorded.
func startDev(t *testing.T, bin, data, sync string) (*exec.Cmd, string) {
	t.Helper()
	_ = os.Remove(filepath.Join(data, devstate.FileName))
	cmd := exec.Command(bin, "dev", "--data", data, "--port", "0", "--sync", sync, "--workload-rate", "0", "--quiet")
	home := t.TempDir() // keep the user's own state file out of it
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+home)
	logf, err := os.Create(filepath.Join(t.TempDir(), "dev.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); logf.Close() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(data, devstate.FileName))
		var st devstate.State
		if err == nil && json.Unmarshal(b, &st) == nil && st.PID == cmd.Process.Pid && st.BusURL != "" {
			return cmd, st.BusURL
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("dev did not write its state file within 60s; log:\n%s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type ledger struct {
	mu                        sync.Mutex
	attempted, acked, errored int
	ackedIDs                  map[string]bool
	consumed                  map[string]int
}

func (l *ledger) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	dup, lost := 0, 0
	for _, n := range l.consumed {
		dup += n - 1
	}
	for id := range l.ackedIDs {
		if l.consumed[id] == 0 {
			lost++
		}
	}
	return fmt.Sprintf("attempted=%d acked=%d errored=%d consumed=%d duplicates=%d lost=%d",
		l.attempted, l.acked, l.errored, len(l.consumed), dup, lost)
}

func (l *ledger) lost() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for id := range l.ackedIDs {
		if l.consumed[id] == 0 {
			n++
		}
	}
	return n
}

func TestDevKilledWithSIGKILLKeepsEveryAcknowledgedEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a dev platform; skipped with -short")
	}
	bin := buildCLI(t)
	for _, policy := range []string{"always", "1m"} {
		t.Run("sync="+policy, func(t *testing.T) { crashRun(t, bin, policy) })
	}
}

func crashRun(t *testing.T, bin, policy string) {
	data := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const topic, group = "crash.ledger", "auditor"

	dev, url := startDev(t, bin, data, policy)
	conn, err := bus.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	// Create the group first: it then keeps everything published after.
	sub, err := conn.Subscribe(ctx, topic, group, func(context.Context, *bus.Delivery) error {
		return fmt.Errorf("not yet")
	}, bus.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = sub.Stop(ctx)

	l := &ledger{ackedIDs: map[string]bool{}, consumed: map[string]int{}}
	const killAfter = 300
	killed := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			id := fmt.Sprintf("ev-%05d", i)
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			err := conn.Publish(pctx, &bus.Message{Subject: topic, ID: id, Header: bus.Header{"seq": fmt.Sprint(i)}, Body: []byte(id)})
			pcancel()
			l.mu.Lock()
			l.attempted++
			if err == nil {
				l.acked++
				l.ackedIDs[id] = true
			} else {
				l.errored++
			}
			errs := l.errored
			l.mu.Unlock()
			select {
			case <-killed:
				if errs >= 3 {
					return // the broker is gone; stop trying
				}
			default:
			}
		}
	}()
	for {
		l.mu.Lock()
		n := l.acked
		l.mu.Unlock()
		if n >= killAfter {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("only %d events acknowledged before the deadline", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := dev.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	close(killed)
	state, _ := dev.Process.Wait()
	ws, _ := state.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the fault did not fire: dev ended with %v", state)
	}
	<-done
	_ = conn.Driver().Close() // the old connection would reconnect forever to a dead port

	_, url = startDev(t, bin, data, policy)
	conn2, err := bus.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	all := make(chan struct{})
	var once sync.Once
	sub2, err := conn2.Subscribe(ctx, topic, group, func(_ context.Context, d *bus.Delivery) error {
		l.mu.Lock()
		l.consumed[string(d.Body)]++
		complete := true
		for id := range l.ackedIDs {
			if l.consumed[id] == 0 {
				complete = false
				break
			}
		}
		l.mu.Unlock()
		if complete {
			once.Do(func() { close(all) })
		}
		return nil
	}, bus.SubscribeOptions{Concurrency: 8, Prefetch: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer sub2.Stop(context.Background())
	select {
	case <-all:
	case <-time.After(30 * time.Second):
	}
	t.Logf("ledger (sync=%s): %s", policy, l)
	if lost := l.lost(); lost != 0 {
		t.Fatalf("%d acknowledged events lost after SIGKILL and restart", lost)
	}
}
