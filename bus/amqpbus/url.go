package amqpbus

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/switchboard-dev/switchboard/bus/driver"
)

// Defaults of the URL parameters.
const (
	DefaultName           = "switchboard"
	DefaultPrefix         = "sb"
	DefaultQueueType      = "quorum"
	DefaultPrefetch       = 128
	DefaultHeartbeat      = 10 * time.Second
	DefaultConnectTimeout = 5 * time.Second
	// DefaultMaxMessageSize is the largest message the driver sends unless
	// max_message_size says otherwise: well under RabbitMQ's own default
	// limit (128 MiB), because every message is held in memory whole by the
	// broker and by both clients.
	DefaultMaxMessageSize = 8 << 20
	// maxMessageSizeLimit is RabbitMQ's hard limit (max_message_size can not
	// be set higher).
	maxMessageSizeLimit = 512 << 20
)

// config is a parsed amqp:// or amqps:// URL.
type config struct {
	uris           []string // one AMQP URI per host, without the driver's parameters
	shown          string   // the URL as named in errors and logs, password redacted
	name           string
	prefix         string
	queueType      string
	prefetch       int
	heartbeat      time.Duration
	connectTimeout time.Duration
	maxMessageSize int
	queueExpires   time.Duration
}

// The exchanges, named from the prefix: one for live messages (requests
// and sends share it, as they share one subject space on NATS: a Send
// reaches Serve and Listen alike) and one for durable topics.
func (c *config) msgExchange() string { return c.prefix + ".msg" }
func (c *config) evtExchange() string { return c.prefix + ".evt" }

var (
	driverParams = []string{"name", "prefix", "queue_type", "prefetch", "heartbeat", "connect_timeout", "max_message_size", "queue_expires"}
	// tlsParams are passed on to amqp091-go for amqps:// URLs.
	tlsParams = []string{"cacertfile", "certfile", "keyfile", "server_name_indication"}
)

// params holds the query parameters of a URL; take removes those an opener
// consumed so that what is left can be reported as unknown.
type params struct {
	u    *url.URL
	vals map[string]string
}

func (p *params) take(name string) (string, bool) {
	v, ok := p.vals[name]
	delete(p.vals, name)
	return v, ok
}

func (p *params) errorf(name, format string, args ...any) error {
	return fmt.Errorf("amqpbus: URL %s: parameter %s: %s: %w", p.u.Redacted(), name, fmt.Sprintf(format, args...), driver.ErrInvalid)
}

func (p *params) duration(name string, def time.Duration) (time.Duration, error) {
	v, ok := p.take(name)
	if !ok {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, p.errorf(name, "want a positive Go duration such as 10s, got %q", v)
	}
	return d, nil
}

func (p *params) integer(name string, def, lo, hi int) (int, error) {
	v, ok := p.take(name)
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, p.errorf(name, "want an integer from %d to %d, got %q", lo, hi, v)
	}
	return n, nil
}

// parseURL parses amqp://user:pass@host[:port][,host[:port]...]/vhost?params.
func parseURL(u *url.URL) (*config, error) {
	shown := u.Redacted()
	if u.Scheme != Scheme && u.Scheme != SchemeTLS {
		return nil, fmt.Errorf("amqpbus: URL %s: scheme must be %s or %s: %w", shown, Scheme, SchemeTLS, driver.ErrInvalid)
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, fmt.Errorf("amqpbus: URL %s: want %s://user:pass@host[:port][,host[:port]...]/vhost: %w", shown, u.Scheme, driver.ErrInvalid)
	}
	if u.Fragment != "" {
		return nil, fmt.Errorf("amqpbus: URL %s: an AMQP URL has no fragment: %w", shown, driver.ErrInvalid)
	}
	if strings.Contains(strings.TrimPrefix(u.EscapedPath(), "/"), "/") {
		return nil, fmt.Errorf("amqpbus: URL %s: the path is the vhost, one segment (write / inside it as %%2F): %w", shown, driver.ErrInvalid)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("amqpbus: URL %s: bad query: %v: %w", shown, err, driver.ErrInvalid)
	}
	p := &params{u: u, vals: map[string]string{}}
	for k, vs := range q {
		if len(vs) != 1 {
			return nil, fmt.Errorf("amqpbus: URL %s: parameter %q given %d times: %w", shown, k, len(vs), driver.ErrInvalid)
		}
		p.vals[k] = vs[0]
	}

	c := &config{shown: (&url.URL{Scheme: u.Scheme, User: u.User, Host: u.Host, Path: u.Path, RawPath: u.RawPath}).Redacted()}
	c.name = DefaultName
	if v, ok := p.take("name"); ok {
		if v == "" {
			return nil, p.errorf("name", "must not be empty")
		}
		c.name = v
	}
	c.prefix = DefaultPrefix
	if v, ok := p.take("prefix"); ok {
		if err := checkPrefix(v); err != nil {
			return nil, p.errorf("prefix", "%v", err)
		}
		c.prefix = v
	}
	c.queueType = DefaultQueueType
	if v, ok := p.take("queue_type"); ok {
		if v != "quorum" && v != "classic" {
			return nil, p.errorf("queue_type", "want quorum or classic, got %q", v)
		}
		c.queueType = v
	}
	if c.prefetch, err = p.integer("prefetch", DefaultPrefetch, 1, 65535); err != nil {
		return nil, err
	}
	if c.heartbeat, err = p.duration("heartbeat", DefaultHeartbeat); err != nil {
		return nil, err
	}
	if c.heartbeat < time.Second {
		return nil, p.errorf("heartbeat", "want at least 1s, got %s", c.heartbeat)
	}
	if c.connectTimeout, err = p.duration("connect_timeout", DefaultConnectTimeout); err != nil {
		return nil, err
	}
	if c.maxMessageSize, err = p.integer("max_message_size", DefaultMaxMessageSize, 1024, maxMessageSizeLimit); err != nil {
		return nil, err
	}
	if c.queueExpires, err = p.duration("queue_expires", 0); err != nil {
		return nil, err
	}
	if c.queueExpires > 0 && c.queueExpires < time.Second {
		return nil, p.errorf("queue_expires", "want at least 1s, got %s", c.queueExpires)
	}
	tls := url.Values{}
	for _, name := range tlsParams {
		if v, ok := p.take(name); ok {
			if u.Scheme != SchemeTLS {
				return nil, p.errorf(name, "only for %s:// URLs", SchemeTLS)
			}
			tls.Set(name, v)
		}
	}
	if len(p.vals) > 0 {
		unknown := make([]string, 0, len(p.vals))
		for k := range p.vals {
			unknown = append(unknown, k)
		}
		slices.Sort(unknown)
		known := append(slices.Clone(driverParams), tlsParams...)
		return nil, fmt.Errorf("amqpbus: URL %s: unknown parameter %q (known: %s): %w", shown, unknown[0], strings.Join(known, ", "), driver.ErrInvalid)
	}

	for _, h := range strings.Split(u.Host, ",") {
		if h == "" {
			return nil, fmt.Errorf("amqpbus: URL %s: empty host in host list: %w", shown, driver.ErrInvalid)
		}
		one := url.URL{Scheme: u.Scheme, User: u.User, Host: h, Path: u.Path, RawPath: u.RawPath, RawQuery: tls.Encode()}
		if _, err := amqp.ParseURI(one.String()); err != nil {
			return nil, fmt.Errorf("amqpbus: URL %s: host %q: %v: %w", shown, h, err, driver.ErrInvalid)
		}
		c.uris = append(c.uris, one.String())
	}
	return c, nil
}

// checkPrefix accepts dot-separated tokens of letters, digits, '_' and '-'
// that do not start with "amq." (reserved by the broker).
func checkPrefix(p string) error {
	if p == "" || len(p) > 64 {
		return fmt.Errorf("want 1 to 64 characters, got %q", p)
	}
	if p == "amq" || strings.HasPrefix(p, "amq.") {
		return fmt.Errorf("names starting with amq. are reserved by the broker")
	}
	for _, t := range strings.Split(p, ".") {
		if t == "" || strings.Trim(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != "" {
			return fmt.Errorf("want dot-separated tokens of letters, digits, '_' and '-', got %q", p)
		}
	}
	return nil
}
