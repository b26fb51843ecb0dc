package cli_test

import (
	"bytes"
	"context"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/switchboard-dev/switchboard/cli"
	"github.com/switchboard-dev/switchboard/internal/amqptest"
)

// TestDevOnAMQP runs the scripts in testdata/script_amqp against the real
// switchboard command with SWITCHBOARD_BUS pointing at the machine's
// RabbitMQ ($SWITCHBOARD_TEST_AMQP_URL, else 127.0.0.1:5672), in exchanges
// and queues of a random prefix: `switchboard dev --bus amqp://…` runs the
// example services and workload there, and the other commands reach them.
// Without a broker it skips, or fails when CI=true.
func TestDevOnAMQP(t *testing.T) {
	base := amqptest.URL(t)
	// The example services' group queues go a minute after the test.
	busURL, prefix := amqptest.Isolated(t, base, "1m")
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	plain := u.String()
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script_amqp",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("SWITCHBOARD_BUS", busURL)
			env.Setenv("XDG_CONFIG_HOME", filepath.Join(env.WorkDir, "config"))
			env.Setenv("HOME", filepath.Join(env.WorkDir, "home"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits":       cmdExits,
			"validjson":   cmdValidJSON,
			"waitservice": cmdWaitService,
			"waitroute":   func(ts *testscript.TestScript, neg bool, args []string) { cmdWaitRoute(ts, neg, args, plain, prefix) },
		},
	})
}

// cmdWaitService waits until `switchboard services NAME` finds the
// service on $SWITCHBOARD_BUS:
//
//	waitservice NAME
func cmdWaitService(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitservice NAME")
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var out, errOut bytes.Buffer
		code := cli.Run(context.Background(), []string{"--bus", ts.Getenv("SWITCHBOARD_BUS"), "services", args[0], "--wait", "500ms"},
			cli.IOStreams{In: bytes.NewReader(nil), Out: &out, ErrOut: &errOut})
		if code == cli.ExitOK {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("service %s did not appear within 60s (exit %d): %s", args[0], code, errOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cmdWaitRoute waits until some queue is bound to receive durable events
// of TOPIC, so that a background watch is known to be listening. It
// publishes a probe event on TOPIC with the mandatory flag until the broker
// stops returning it: exactly one probe is delivered, to whoever listens.
//
//	waitroute TOPIC
func cmdWaitRoute(ts *testscript.TestScript, neg bool, args []string, plainURL, prefix string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitroute TOPIC")
	}
	ac, err := amqp.Dial(plainURL)
	ts.Check(err)
	defer ac.Close()
	ch, err := ac.Channel()
	ts.Check(err)
	ts.Check(ch.Confirm(false))
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, prefix+".evt", args[0], true, false,
			amqp.Publishing{ContentType: "application/json", Body: []byte(`{"probe":true}`)})
		ts.Check(err)
		ok, err := conf.WaitContext(ctx)
		cancel()
		ts.Check(err)
		if !ok {
			ts.Fatalf("waitroute: the broker refused the probe")
		}
		// A return comes before the confirm of the same message.
		select {
		case <-returns:
		default:
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("nobody listened for %s within 30s", args[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
