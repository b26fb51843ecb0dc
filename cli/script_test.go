package cli_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/natsbus"
	"github.com/switchboard-dev/switchboard/cli"
	"github.com/switchboard-dev/switchboard/health"
	"github.com/switchboard-dev/switchboard/internal/devstate"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"switchboard": func() { os.Exit(cli.Main()) },
	})
}

// TestScripts runs the scripts in testdata/script against the real
// switchboard command, with SWITCHBOARD_BUS pointing at a NATS server this
// test runs, on which two instances of a small greeter service run.
func TestScripts(t *testing.T) {
	ns := startNATS(t)
	url := ns.ClientURL()
	startGreeters(t, url)
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("SWITCHBOARD_BUS", url)
			// No dev state file of the machine's user is ever found.
			env.Setenv("XDG_CONFIG_HOME", filepath.Join(env.WorkDir, "config"))
			env.Setenv("HOME", filepath.Join(env.WorkDir, "home"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits":     cmdExits,
			"validjson": cmdValidJSON,
			"waitsub":   func(ts *testscript.TestScript, neg bool, args []string) { cmdWaitSub(ts, neg, args, ns) },
			"waitfile":  cmdWaitFile,
			"stored":    cmdStored,
		},
	})
}

// startNATS runs a NATS server with JetStream on a free port for the test.
// It is started directly (not through natsbus) so that waitsub can see the
// subscriptions clients make.
func startNATS(t *testing.T) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server did not start")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// The greeter service the scripts call.
type (
	helloRequest struct {
		Name string `json:"name" jsonschema:"description=who to greet"`
	}
	helloReply struct {
		Greeting string `json:"greeting"`
		Version  string `json:"version"`
	}
	greeted struct {
		Name string `json:"name"`
	}
)

var (
	chaosPing    = switchboard.Endpoint[*helloRequest, *helloReply]("chaos", "ping")
	chaosTick    = switchboard.Topic[*greeted]("chaos.tick")
	hello        = switchboard.Endpoint[*helloRequest, *helloReply]("greeter", "hello")
	fail         = switchboard.Endpoint[*helloRequest, *helloReply]("greeter", "fail")
	greetingSent = switchboard.Topic[*greeted]("greeting.sent")
)

func newGreeter(version string) *switchboard.Service {
	svc := switchboard.NewService("greeter", version, switchboard.WithDescription("Greets people"),
		switchboard.WithLogger(slog.New(slog.DiscardHandler)))
	hello.Handle(svc, func(ctx context.Context, req *helloRequest) (*helloReply, error) {
		if req.Name == "" {
			return nil, switchboard.Errorf(switchboard.InvalidArgument, "field name: required")
		}
		return &helloReply{Greeting: "Hello, " + req.Name + "!", Version: version}, nil
	}, switchboard.Describe("Greets someone by name"))
	fail.Handle(svc, func(ctx context.Context, req *helloRequest) (*helloReply, error) {
		return nil, switchboard.Errorf(switchboard.NotFound, "nobody called %q here", req.Name)
	})
	greetingSent.Declare(svc)
	greetingSent.Subscribe(svc, "audit", func(ctx context.Context, ev *greeted) error { return nil })
	return svc
}

// startGreeters runs greeter 1.2.0 and 2.0.0 on the bus at url.
func startGreeters(t *testing.T, url string) {
	t.Helper()
	ctx := context.Background()
	conn, err := bus.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	for _, v := range []string{"1.2.0", "2.0.0"} {
		svc := newGreeter(v)
		if err := svc.Start(ctx, conn); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { svc.Shutdown(context.Background()) })
	}
	startPatient(t, conn)
	// tfront and tback, traced, and a traces collector are for trace*.txtar.
	startTraced(t, conn)
	// chaos is for fault.txtar alone: faults injected into it cannot
	// disturb the scripts that call greeter at the same time.
	for range 2 {
		svc := switchboard.NewService("chaos", "1.0.0", switchboard.WithLogger(slog.New(slog.DiscardHandler)))
		chaosPing.Handle(svc, func(ctx context.Context, req *helloRequest) (*helloReply, error) {
			return &helloReply{Greeting: "pong"}, nil
		})
		chaosTick.Subscribe(svc, "chaos", func(ctx context.Context, ev *greeted) error { return nil })
		if err := svc.Start(ctx, conn); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { svc.Shutdown(context.Background()) })
	}
}

// The patient service is for health*.txtar alone: its "set" endpoint makes
// its custom check unhealthy or healthy again, which no other script sees.
type setHealth struct {
	Unhealthy bool `json:"unhealthy"`
}

var patientSet = switchboard.Endpoint[*setHealth, *helloReply]("patient", "set")

func startPatient(t *testing.T, conn *bus.Conn) {
	t.Helper()
	var sick atomic.Bool
	svc := switchboard.NewService("patient", "1.0.0", switchboard.WithLogger(slog.New(slog.DiscardHandler)))
	patientSet.Handle(svc, func(ctx context.Context, req *setHealth) (*helloReply, error) {
		sick.Store(req.Unhealthy)
		return &helloReply{Greeting: fmt.Sprintf("unhealthy=%v", req.Unhealthy)}, nil
	})
	chk := health.For(svc).Add("appetite", func(ctx context.Context) health.Result {
		if sick.Load() {
			return health.Unhealthyf("refuses to eat")
		}
		return health.OK("eats well")
	}).WithLogger(slog.New(slog.DiscardHandler))
	if err := svc.Start(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Shutdown(context.Background()) })
	if err := chk.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { chk.Stop(context.Background()) })
}

// cmdExits runs a program like exec and checks its exit code, and with
// -within that it ended within a duration:
//
//	exits [-within DURATION] CODE program [args...]
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	const usage = "usage: exits [-within DURATION] CODE program [args...]"
	var within time.Duration
	if len(args) > 1 && args[0] == "-within" {
		d, err := time.ParseDuration(args[1])
		if err != nil {
			ts.Fatalf("%s", usage)
		}
		within, args = d, args[2:]
	}
	if neg || len(args) < 2 {
		ts.Fatalf("%s", usage)
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: bad code %q", args[0])
	}
	start := time.Now()
	err = ts.Exec(args[1], args[2:]...)
	if took := time.Since(start); within > 0 && took > within {
		ts.Fatalf("took %s, want at most %s", took.Round(time.Millisecond), within)
	}
	got := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exits: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("exit code %d, want %d", got, want)
	}
}

// cmdValidJSON checks that stdout or stderr of the last command is one JSON
// value, or with -lines that each line is:
//
//	validjson [-lines] stdout|stderr
func cmdValidJSON(ts *testscript.TestScript, neg bool, args []string) {
	lines := len(args) > 0 && args[0] == "-lines"
	if lines {
		args = args[1:]
	}
	if len(args) != 1 || args[0] != "stdout" && args[0] != "stderr" {
		ts.Fatalf("usage: validjson [-lines] stdout|stderr")
	}
	text := ts.ReadFile(args[0])
	docs := []string{text}
	if lines {
		docs = strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	}
	var bad error
	for _, d := range docs {
		var v any
		if err := json.Unmarshal([]byte(d), &v); err != nil {
			bad = fmt.Errorf("%s is not valid JSON: %v\n%s", args[0], err, d)
			break
		}
	}
	switch {
	case bad != nil && !neg:
		ts.Fatalf("%v", bad)
	case bad == nil && neg:
		ts.Fatalf("%s is valid JSON", args[0])
	}
}

// cmdWaitSub waits until some client subscribes to a subject ending in
// the pattern (durable topics are subscribed under a prefix), so that a
// background watch is known to be listening:
//
//	waitsub PATTERN
func cmdWaitSub(ts *testscript.TestScript, neg bool, args []string, ns *server.Server) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitsub PATTERN")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		cz, err := ns.Connz(&server.ConnzOptions{Subscriptions: true})
		ts.Check(err)
		for _, c := range cz.Conns {
			for _, s := range c.Subs {
				if s == args[0] || strings.HasSuffix(s, "."+args[0]) {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			ts.Fatalf("nobody subscribed to %s within 20s", args[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// cmdWaitFile waits until a file exists:
//
//	waitfile PATH
func cmdWaitFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitfile PATH")
	}
	path := ts.MkAbs(args[0])
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s did not appear within 30s", args[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// cmdStored checks how many events of a topic the stream of the dev
// platform described by a state file holds, asking the NATS server
// directly (protocol: docs/protocol.md):
//
//	stored STATEFILE TOPIC COUNT
func cmdStored(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: stored STATEFILE TOPIC COUNT")
	}
	var st devstate.State
	ts.Check(json.Unmarshal([]byte(ts.ReadFile(args[0])), &st))
	want, err := strconv.ParseUint(args[2], 10, 64)
	ts.Check(err)
	nc, err := nats.Connect(st.BusURL)
	ts.Check(err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	ts.Check(err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, natsbus.DefaultStream)
	ts.Check(err)
	subject := natsbus.DefaultSubjectPrefix + "." + args[1]
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subject))
	ts.Check(err)
	if got := info.State.Subjects[subject]; got != want {
		ts.Fatalf("the stream holds %d events on %s, want %d", got, subject, want)
	}
}
