package natsbus

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard-dev/switchboard/bus/driver"
)

// urlParams are the query parameters of a URL, with the ones an opener
// consumed removed so that what is left can be reported as unknown.
type urlParams struct {
	u    *url.URL
	vals map[string]string
	seen []string // all given names, for the unknown-parameter message
}

func parseParams(u *url.URL) (*urlParams, error) {
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("natsbus: URL %s: bad query: %v: %w", u.Redacted(), err, driver.ErrInvalid)
	}
	p := &urlParams{u: u, vals: map[string]string{}}
	for k, vs := range q {
		if len(vs) != 1 {
			return nil, fmt.Errorf("natsbus: URL %s: parameter %q given %d times: %w", u.Redacted(), k, len(vs), driver.ErrInvalid)
		}
		p.vals[k] = vs[0]
	}
	return p, nil
}

// take removes and returns parameter name, and whether it was given.
func (p *urlParams) take(name string) (string, bool) {
	v, ok := p.vals[name]
	delete(p.vals, name)
	return v, ok
}

func (p *urlParams) errorf(name, format string, args ...any) error {
	return fmt.Errorf("natsbus: URL %s: parameter %s: %s: %w", p.u.Redacted(), name, fmt.Sprintf(format, args...), driver.ErrInvalid)
}

// duration takes a Go duration parameter that must be positive.
func (p *urlParams) duration(name string) (time.Duration, bool, error) {
	v, ok := p.take(name)
	if !ok {
		return 0, false, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, true, p.errorf(name, "want a positive Go duration such as 24h, got %q", v)
	}
	return d, true, nil
}

func (p *urlParams) integer(name string, lo, hi int) (int, bool, error) {
	v, ok := p.take(name)
	if !ok {
		return 0, false, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, true, p.errorf(name, "want an integer from %d to %d, got %q", lo, hi, v)
	}
	return n, true, nil
}

// common takes the parameters both schemes accept.
func (p *urlParams) common() (name string, opts Options, err error) {
	name = DefaultName
	if v, ok := p.take("name"); ok {
		if v == "" {
			return "", opts, p.errorf("name", "must not be empty")
		}
		name = v
	}
	opts.Stream, _ = p.take("stream")
	opts.SubjectPrefix, _ = p.take("prefix")
	if opts.MaxAge, _, err = p.duration("max_age"); err != nil {
		return "", opts, err
	}
	if opts.Replicas, _, err = p.integer("replicas", 1, 5); err != nil {
		return "", opts, err
	}
	if err := opts.validate(); err != nil {
		return "", opts, fmt.Errorf("natsbus: URL %s: %w", p.u.Redacted(), err)
	}
	return name, opts, nil
}

// done fails if parameters are left that no one took.
func (p *urlParams) done(known ...string) error {
	if len(p.vals) == 0 {
		return nil
	}
	var unknown []string
	for k := range p.vals {
		unknown = append(unknown, k)
	}
	slices.Sort(unknown)
	return fmt.Errorf("natsbus: URL %s: unknown parameter %q (known: %s): %w",
		p.u.Redacted(), unknown[0], strings.Join(known, ", "), driver.ErrInvalid)
}

var (
	commonParams   = []string{"name", "stream", "prefix", "max_age", "replicas"}
	embeddedParams = append(slices.Clone(commonParams), "port", "sync", "inprocess")
)

// natsURL is a parsed nats:// URL.
type natsURL struct {
	servers string // comma-separated server URLs for nats.Connect
	name    string
	opts    Options
}

func parseNATSURL(u *url.URL) (*natsURL, error) {
	if u.Opaque != "" || u.Host == "" {
		return nil, fmt.Errorf("natsbus: URL %s: want nats://host[:port][,host[:port]...]: %w", u.Redacted(), driver.ErrInvalid)
	}
	if u.Path != "" && u.Path != "/" || u.Fragment != "" {
		return nil, fmt.Errorf("natsbus: URL %s: a nats URL has no path or fragment: %w", u.Redacted(), driver.ErrInvalid)
	}
	p, err := parseParams(u)
	if err != nil {
		return nil, err
	}
	r := &natsURL{}
	if r.name, r.opts, err = p.common(); err != nil {
		return nil, err
	}
	if err := p.done(commonParams...); err != nil {
		return nil, err
	}
	var servers []string
	for _, h := range strings.Split(u.Host, ",") {
		if h == "" {
			return nil, fmt.Errorf("natsbus: URL %s: empty host in server list: %w", u.Redacted(), driver.ErrInvalid)
		}
		s := url.URL{Scheme: "nats", User: u.User, Host: h}
		servers = append(servers, s.String())
	}
	r.servers = strings.Join(servers, ",")
	return r, nil
}

// embeddedURL is a parsed embedded: URL.
type embeddedURL struct {
	server    ServerOptions
	portSet   bool
	syncSet   bool
	inProcess bool
	name      string
	opts      Options
}

func parseEmbeddedURL(u *url.URL) (*embeddedURL, error) {
	if u.Host != "" || u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("natsbus: URL %s: want embedded:///abs/dir, embedded:rel/dir or embedded: (no host): %w", u.Redacted(), driver.ErrInvalid)
	}
	dir := u.Path
	if u.Opaque != "" {
		dir = u.Opaque
		if d, err := url.PathUnescape(dir); err == nil {
			dir = d
		}
	}
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, fmt.Errorf("natsbus: URL %s: data directory: %v: %w", u.Redacted(), err, driver.ErrInvalid)
		}
		dir = abs
	}
	p, err := parseParams(u)
	if err != nil {
		return nil, err
	}
	r := &embeddedURL{inProcess: true}
	r.server.DataDir = dir
	if r.name, r.opts, err = p.common(); err != nil {
		return nil, err
	}
	if r.server.Port, r.portSet, err = p.integer("port", 0, 65535); err != nil {
		return nil, err
	}
	if v, ok := p.take("sync"); ok {
		r.syncSet = true
		if v == "always" {
			r.server.SyncAlways = true
		} else if d, err := time.ParseDuration(v); err == nil && d > 0 {
			r.server.SyncInterval = d
		} else {
			return nil, p.errorf("sync", `want "always" or a positive Go duration such as 1s, got %q`, v)
		}
	}
	if v, ok := p.take("inprocess"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, p.errorf("inprocess", "want true or false, got %q", v)
		}
		r.inProcess = b
	}
	if err := p.done(embeddedParams...); err != nil {
		return nil, err
	}
	return r, nil
}

func openURL(ctx context.Context, u *url.URL) (driver.Conn, error) {
	r, err := parseNATSURL(u)
	if err != nil {
		return nil, err
	}
	shown := (&url.URL{Scheme: u.Scheme, User: u.User, Host: u.Host}).Redacted()
	nc, err := connect(ctx, r.servers, shown, r.name)
	if err != nil {
		return nil, err
	}
	c, err := newConn(ctx, nc, r.opts, true)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func openEmbeddedURL(ctx context.Context, u *url.URL) (driver.Conn, error) {
	r, err := parseEmbeddedURL(u)
	if err != nil {
		return nil, err
	}
	srv, release, err := acquireServer(r)
	if err != nil {
		return nil, fmt.Errorf("natsbus: URL %s: %w", u.Redacted(), err)
	}
	var extra []nats.Option
	if r.inProcess {
		extra = append(extra, nats.InProcessServer(srv.ns))
	}
	nc, err := connect(ctx, srv.ClientURL(), srv.ClientURL(), r.name, extra...)
	if err != nil {
		release()
		return nil, err
	}
	c, err := newConn(ctx, nc, r.opts, true)
	if err != nil {
		nc.Close()
		release()
		return nil, err
	}
	c.release = release
	return c, nil
}

// connectTimeout bounds connecting to one server when ctx allows as much.
const connectTimeout = 5 * time.Second

// reconnectDelay is the wait before another round of reconnect attempts:
// doubling from 100ms up to 2s, with jitter so that clients spread out.
func reconnectDelay(attempts int) time.Duration {
	d := 100 * time.Millisecond << min(max(attempts-1, 0), 5)
	d = min(d, 2*time.Second)
	return d + rand.N(d/5+1)
}

// connect dials servers with the options every driver connection uses:
// reconnect forever with backoff, no buffering while disconnected (calls
// fail fast instead), and a first connection that fails promptly. shown is
// the URL named in errors and logs.
func connect(ctx context.Context, servers, shown, name string, extra ...nats.Option) (*nats.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, wrapErr("connect to", shown, err)
	}
	timeout := connectTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(min(timeout, time.Until(dl)), time.Millisecond)
	}
	logger := slog.Default().With("url", shown, "name", name)
	opts := append([]nats.Option{
		nats.Name(name),
		nats.Timeout(timeout),
		nats.RetryOnFailedConnect(false),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(reconnectDelay),
		nats.ReconnectBufSize(-1),
		nats.PingInterval(20 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("natsbus: disconnected from NATS; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			logger.Info("natsbus: reconnected to NATS", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			logger.Warn("natsbus: asynchronous NATS error", "subject", subject, "err", err)
		}),
	}, extra...)
	nc, err := nats.Connect(servers, opts...)
	if err != nil {
		return nil, wrapErr("connect to", shown, err)
	}
	return nc, nil
}
