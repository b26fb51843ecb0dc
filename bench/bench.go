// Package bench measures Switchboard against the raw client of the same
// broker doing the same work, in the same run and on the same server, and
// reports the ratio against the performance budget: Switchboard's own work
// (envelope, headers, codec dispatch, middleware, the driver) must keep it
// within 10% of raw nats.go or raw amqp091-go, in latency and in throughput.
//
// RPC compares a typed endpoint (switchboard.Endpoint Handle/Call with JSON
// structs of about 150 bytes) against a nats.go queue subscriber that
// decodes the same JSON, builds the same reply and encodes it, called with
// nc.RequestMsg with the same bytes. Both sides do the JSON work, so the
// ratio isolates what Switchboard adds. It measures sequential latency
// (p50, p99, mean) and throughput with 1 and 32 concurrent callers, over
// TCP loopback and over the in-process connection an embedded server allows.
//
// Events compares Topic.Publish (awaiting the broker's confirmation) and a
// consumer-group subscription that acknowledges after the handler, against
// JetStream js.Publish with its PubAck and a durable pull consumer with
// explicit acks, on streams and consumers of identical configuration and
// the same sync policy. It measures end-to-end throughput (publish M
// messages, time until all are consumed and acknowledged) and publish
// latency.
//
// With an amqp:// (or amqps://) Config.BusURL both run on that RabbitMQ
// node over TCP instead, through the amqpbus driver, against amqp091-go:
// for RPC a responder consuming a queue without acks and callers using
// direct reply-to (amq.rabbitmq.reply-to) and correlation ids, doing the
// same JSON work; for events persistent publishes with publisher confirms
// into a quorum queue consumed with manual acks after the handler and the
// same prefetch. The in-process cases do not apply and the report says so.
//
// Both also report allocations per operation and the bytes of headers each
// side puts on the wire. The embedded server is started by the benchmark in
// a temporary directory unless Config.BusURL names an external one. The
// Switchboard and raw sides run in alternating rounds (AB, BA, AB, …) after
// a warm-up, and the report gives medians, so that machine noise affects
// both alike.
//
// The package sits above the SDK and the NATS and AMQP drivers;
// `switchboard bench` (package cli) is a thin front end to it.
package bench

import (
	"fmt"
	"time"
)

// Budget limits: Switchboard within 10% of raw.
const (
	// MaxP50Ratio is the largest Switchboard/raw median latency within budget.
	MaxP50Ratio = 1.10
	// MinThroughputRatio is the smallest Switchboard/raw throughput within
	// budget.
	MinThroughputRatio = 0.90
)

// Connection is how the benchmark's clients reach the server.
type Connection string

// Connection types.
const (
	// TCP connects over a TCP socket (loopback 127.0.0.1 for the embedded
	// server).
	TCP Connection = "tcp"
	// InProcess connects to an embedded server through an in-memory pipe
	// (nats.InProcessServer), as services co-located with `switchboard dev`
	// do. Not available with an external server.
	InProcess Connection = "inproc"
)

// Describe says what the connection type means, for reports.
func (c Connection) Describe() string {
	switch c {
	case TCP:
		return "TCP socket"
	case InProcess:
		return "in-process pipe (nats.InProcessServer), no socket"
	}
	return string(c)
}

// Config tunes a run. The zero value is a complete run on an embedded server
// with sync=always.
type Config struct {
	// BusURL, if set, is the external server both sides use, over TCP: a
	// nats:// URL of a server with JetStream, or an amqp:// (amqps://) URL
	// of one RabbitMQ node with no driver parameters (see CheckBusURL).
	// Empty: the benchmark starts an embedded NATS server with its data in
	// a temporary directory.
	BusURL string
	// Sync is the embedded server's JetStream sync policy: "always" (fsync
	// before acknowledging every write, what `switchboard dev` uses; the
	// default) or a Go duration between fsyncs such as "2m" (nats-server's
	// default). Ignored, and reported as unknown, with BusURL.
	Sync string
	// Connections are the connection types to measure. Default: RPC both
	// (TCP only with BusURL); Events the first of them, which by default is
	// in-process on an embedded server, as `dev` runs, and TCP otherwise.
	Connections []Connection
	// Requests is the number of sequential requests per side in the
	// latency case, spread over the rounds (default 5000).
	Requests int
	// Duration is the measuring time per side of each RPC throughput case,
	// spread over the rounds (default 3s).
	Duration time.Duration
	// Callers is the number of concurrent callers of the concurrent RPC
	// throughput case (default 32).
	Callers int
	// Messages is the number of events per side of each events case,
	// spread over the rounds (default 5000).
	Messages int
	// Publishers is the number of concurrent publishers of the second
	// events case (default 4; 1 or less skips that case).
	Publishers int
	// Rounds is how many alternating rounds each case runs (default 5).
	Rounds int
	// Warmup is how long each side runs before a case is measured (default
	// 200ms).
	Warmup time.Duration
	// Progress, if set, receives a line as each case starts.
	Progress func(format string, args ...any)
}

func (c *Config) defaults() error {
	if c.Sync == "" {
		c.Sync = "always"
	}
	if c.Sync != "always" {
		if d, err := time.ParseDuration(c.Sync); err != nil || d <= 0 {
			return fmt.Errorf("bench: invalid sync policy %q: want \"always\" or a positive Go duration such as 2m", c.Sync)
		}
	}
	if c.Requests <= 0 {
		c.Requests = 5000
	}
	if c.Duration <= 0 {
		c.Duration = 3 * time.Second
	}
	if c.Callers <= 0 {
		c.Callers = 32
	}
	if c.Messages <= 0 {
		c.Messages = 5000
	}
	if c.Publishers == 0 {
		c.Publishers = 4
	}
	if c.Rounds <= 0 {
		c.Rounds = 5
	}
	if c.Warmup <= 0 {
		c.Warmup = 200 * time.Millisecond
	}
	if c.Requests < c.Rounds || c.Messages < c.Rounds {
		return fmt.Errorf("bench: %d requests and %d messages cannot be spread over %d rounds", c.Requests, c.Messages, c.Rounds)
	}
	for _, conn := range c.Connections {
		if conn != TCP && conn != InProcess {
			return fmt.Errorf("bench: unknown connection type %q: want %q or %q", conn, TCP, InProcess)
		}
		if conn == InProcess && c.BusURL != "" {
			return fmt.Errorf("bench: an in-process connection needs the embedded server; %s is external", c.BusURL)
		}
	}
	if c.Progress == nil {
		c.Progress = func(string, ...any) {}
	}
	return nil
}

func (c *Config) connections() []Connection {
	if len(c.Connections) > 0 {
		return c.Connections
	}
	if c.BusURL != "" {
		return []Connection{TCP}
	}
	return []Connection{TCP, InProcess}
}

// eventsConnection is the one connection type the events cases run on.
func (c *Config) eventsConnection() Connection {
	if len(c.Connections) > 0 {
		return c.Connections[0]
	}
	if c.BusURL != "" {
		return TCP
	}
	return InProcess
}
