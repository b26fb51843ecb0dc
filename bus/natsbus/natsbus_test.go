package natsbus_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/bustest"
	"github.com/switchboard-dev/switchboard/bus/natsbus"
)

// harness opens bus connections by URL.
type harness struct{ url string }

func (h harness) Open(ctx context.Context, t *testing.T) (*bus.Conn, error) {
	return bus.Open(ctx, h.url)
}

func (harness) Features() bustest.Features { return bustest.Features{PublishDedup: true} }

// TestConformanceEmbedded runs the suite on an embedded: URL, connecting in
// process, the way `switchboard dev` runs.
func TestConformanceEmbedded(t *testing.T) {
	u := "embedded://" + t.TempDir()
	open(t, u) // holds the shared server between subtests, which close all theirs
	bustest.Run(t, harness{url: u})
}

// TestConformanceTCP runs the suite on a nats:// URL to an embedded server,
// so the TCP path and the external-server code are covered in every run.
func TestConformanceTCP(t *testing.T) {
	srv := startServer(t, natsbus.ServerOptions{})
	bustest.Run(t, harness{url: srv.ClientURL() + "?name=bustest"})
}

// TestConformanceExternal runs the suite against a real nats-server, in a
// stream and subject prefix of its own that it deletes at the end.
func TestConformanceExternal(t *testing.T) {
	base := externalURL(t)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("SWITCHBOARD_TEST_NATS_URL: %v", err)
	}
	suffix := fmt.Sprintf("%08x", rand.Uint32())
	stream := "SBTEST_" + suffix
	q := u.Query()
	q.Set("stream", stream)
	q.Set("prefix", "sbtest."+suffix)
	q.Set("max_age", "1h") // bounds what a failed cleanup leaves behind
	u.RawQuery = q.Encode()
	// One open up front turns a wrong SWITCHBOARD_TEST_NATS_URL into one
	// clear failure rather than one per subtest.
	open(t, u.String())
	t.Cleanup(func() { deleteStream(t, base, stream) })
	bustest.Run(t, harness{url: u.String()})
}

// externalURL returns the external server's URL from
// SWITCHBOARD_TEST_NATS_URL, or nats://127.0.0.1:4222 when something listens
// there. Without a server it skips, or fails when CI=true.
func externalURL(t *testing.T) string {
	t.Helper()
	if u := os.Getenv("SWITCHBOARD_TEST_NATS_URL"); u != "" {
		return u
	}
	const def = "nats://127.0.0.1:4222"
	c, err := net.DialTimeout("tcp", "127.0.0.1:4222", time.Second)
	if err != nil {
		msg := fmt.Sprintf("no NATS server at %s (%v): run ./scripts/test, which starts one, or set SWITCHBOARD_TEST_NATS_URL to a nats-server with JetStream", def, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	_ = c.Close()
	return def
}

func deleteStream(t *testing.T, rawURL, stream string) {
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	u.RawQuery = ""
	nc, err := nats.Connect(u.String())
	if err != nil {
		t.Errorf("cleanup: connect: %v", err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, stream); err != nil {
		t.Errorf("cleanup: delete stream %s: %v", stream, err)
	}
}

// startServer starts an embedded server that is shut down after the test.
func startServer(t *testing.T, opts natsbus.ServerOptions) *natsbus.Server {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	srv, err := natsbus.StartServer(opts)
	if err != nil {
		t.Fatalf("StartServer: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// open opens a bus connection that is closed after the test.
func open(t *testing.T, rawURL string) *bus.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := bus.Open(ctx, rawURL)
	if err != nil {
		t.Fatalf("Open(%q): %v", rawURL, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}
