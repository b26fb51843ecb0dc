package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/natsbus"
)

// ErrUnavailable is wrapped by errors that mean the server could not be
// started or reached.
var ErrUnavailable = errors.New("server unavailable")

// env is the server both sides run on and how to connect to it.
type env struct {
	cfg        *Config
	srv        *natsbus.Server // nil for an external server
	url        string          // client URL
	shown      string          // URL or description for reports
	syncPolicy string
	id         string // random, keeps names of concurrent runs apart
	version    string // server version
	conns      []*nats.Conn
}

// Names of what the benchmark creates on the server; id makes them unique.
func (e *env) swStream() string  { return "SBBENCH_" + e.id }
func (e *env) swPrefix() string  { return "sbbench." + e.id }
func (e *env) rawStream() string { return "SBBENCHRAW_" + e.id }
func (e *env) rawPrefix() string { return "sbbenchraw." + e.id }
func (e *env) service() string   { return "bench-" + e.id }

func newEnv(ctx context.Context, cfg *Config) (*env, error) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	e := &env{cfg: cfg, id: hex.EncodeToString(b)}
	if cfg.BusURL != "" {
		if err := CheckBusURL(cfg.BusURL); err != nil {
			return nil, err
		}
		u, _ := url.Parse(cfg.BusURL)
		e.url, e.shown = cfg.BusURL, "external server "+u.Redacted()
		e.syncPolicy = "unknown (external server: its own setting)"
	} else {
		opts := natsbus.ServerOptions{}
		if cfg.Sync == "always" {
			opts.SyncAlways = true
			e.syncPolicy = "always (fsync before every acknowledgement)"
		} else {
			d, _ := time.ParseDuration(cfg.Sync)
			opts.SyncInterval = d
			e.syncPolicy = fmt.Sprintf("every %s (fsync on an interval)", d)
		}
		srv, err := natsbus.StartServer(opts)
		if err != nil {
			return nil, fmt.Errorf("bench: %w: %w", ErrUnavailable, err)
		}
		e.srv, e.url = srv, srv.ClientURL()
		e.shown = "embedded nats-server on " + srv.ClientURL() + ", data in a temporary directory"
	}
	nc, err := e.connect(TCP, "bench-admin")
	if err != nil {
		e.close()
		return nil, err
	}
	e.version = nc.ConnectedServerVersion()
	if _, err := jetstream.New(nc); err != nil || !jetStreamEnabled(ctx, nc) {
		e.close()
		return nil, fmt.Errorf("bench: %w: the server at %s has no JetStream; start it with -js", ErrUnavailable, e.shown)
	}
	return e, nil
}

func jetStreamEnabled(ctx context.Context, nc *nats.Conn) bool {
	js, err := jetstream.New(nc)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err == nil
}

// connect opens a NATS connection of the given type. Every connection of
// both sides is made here, with the same options.
func (e *env) connect(c Connection, name string) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.Timeout(5 * time.Second)}
	var nc *nats.Conn
	var err error
	if c == InProcess {
		if e.srv == nil {
			return nil, fmt.Errorf("bench: no in-process connection to an external server")
		}
		nc, err = e.srv.Connect(opts...)
	} else {
		nc, err = nats.Connect(e.url, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("bench: connect to %s (%s): %w: %w", e.shown, c, ErrUnavailable, err)
	}
	e.conns = append(e.conns, nc)
	return nc, nil
}

// busConn wraps nc in a Switchboard bus connection on the benchmark's own
// stream.
func (e *env) busConn(ctx context.Context, nc *nats.Conn) (*bus.Conn, error) {
	c, err := natsbus.NewConn(ctx, nc, natsbus.Options{Stream: e.swStream(), SubjectPrefix: e.swPrefix()})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return c, nil
}

// close deletes what the benchmark created and stops the server it started.
func (e *env) close() {
	if len(e.conns) > 0 {
		if js, err := jetstream.New(e.conns[0]); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = js.DeleteStream(ctx, e.swStream())
			_ = js.DeleteStream(ctx, e.rawStream())
			cancel()
		}
	}
	for _, nc := range e.conns {
		nc.Close()
	}
	if e.srv != nil {
		e.srv.Shutdown()
	}
}

func (e *env) report(kind string) Report {
	return newReport(kind, e.cfg, brokerNATS, e.shown, e.version, rawClientNATS, nats.Version, e.syncPolicy)
}

// quiet is the logger of the benchmark's services.
var quiet = slog.New(slog.DiscardHandler)
