package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus/natsbus"
)

// TestREADMEQuickStartIsThisProgram keeps the README's quick start true: its
// Go block is this file's program.
func TestREADMEQuickStartIsThisProgram(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllSubmatch(readme, -1)
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	body := src[bytes.Index(src, []byte("package main")):]
	for _, b := range blocks {
		if bytes.Equal(bytes.TrimSpace(b[1]), bytes.TrimSpace(body)) {
			return
		}
	}
	t.Fatal("README.md has no ```go block equal to examples/hello/main.go (from `package main`): update one or the other")
}

// TestQuickStartServesCallsAndShutsDownCleanly builds and runs the program as
// the README does, against an embedded NATS server named by SWITCHBOARD_BUS.
func TestQuickStartServesCallsAndShutsDownCleanly(t *testing.T) {
	srv, err := natsbus.StartServer(natsbus.ServerOptions{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	bin := filepath.Join(t.TempDir(), "hello")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "SWITCHBOARD_BUS="+srv.ClientURL())
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := switchboard.Dial(ctx, srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var rsp *HelloReply
	for {
		rsp, err = Hello.Call(ctx, cl, &HelloRequest{Name: "Ada"})
		if err == nil || switchboard.ErrorCode(err) != switchboard.Unavailable || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond) // the program is still starting
	}
	if err != nil || rsp.Greeting != "Hello, Ada" {
		t.Fatalf("call: %v, %v\n%s", rsp, err, logs.String())
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGINT: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "service stopped") {
		t.Fatalf("no graceful shutdown in the logs:\n%s", logs.String())
	}
}
