package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard-dev/switchboard/wire"
)

// observabilityRounds multiplies Config.Rounds for the observability cases.
const observabilityRounds = 4

// callTimeout bounds one call on both sides.
const callTimeout = 10 * time.Second

// RPC measures request/reply: Switchboard's typed endpoint against the raw
// client of the same broker doing the same JSON work — a nats.go responder
// and RequestMsg per connection type (see Config.Connections), or with an
// amqp:// Config.BusURL an amqp091-go responder and a caller using direct
// reply-to. It returns an error if the server cannot be started or reached
// or a call fails; a slow Switchboard is not an error, see
// Report.WithinBudget.
func RPC(ctx context.Context, cfg Config) (Report, error) {
	if err := cfg.defaults(); err != nil {
		return Report{}, err
	}
	if isAMQP(cfg.BusURL) {
		return rpcAMQP(ctx, &cfg)
	}
	start := time.Now()
	e, err := newEnv(ctx, &cfg)
	if err != nil {
		return Report{}, err
	}
	defer e.close()
	rep := e.report("rpc")
	rep.Notes = []string{
		"switchboard: typed endpoint (Endpoint.Handle / Endpoint.Call, JSON structs) through the SDK, package bus and the NATS driver",
		"raw: nats.go QueueSubscribe responder and nc.RequestMsg; both sides JSON-encode and decode the same request and reply",
		"each side has its own two connections (caller, responder) of the case's connection type to the same server",
		"allocs are whole-process heap allocations per call: caller, responder and, when embedded, the server",
		"*_observed_*: the Switchboard side as app.Run runs services: tracing at the production default sampling (spans batched over the bus), Prometheus metrics, health checks and the default protections",
		"observability table: the observed endpoint (obs) against the same endpoint with the same default protections and no observability (bare), in alternating rounds of their own: what health, metrics, traffic counters and tracing cost; in -o json these are \"observability\", with the bare side under \"raw\"",
	}
	if cfg.BusURL != "" && len(cfg.Connections) == 0 {
		rep.Skipped = append(rep.Skipped, "in-process connection: only with the embedded server (--bus names an external one)")
	}
	for _, conn := range cfg.connections() {
		p, err := newRPCPair(ctx, e, conn)
		if err != nil {
			return rep, err
		}
		cases, err := rpcCases(ctx, &cfg, conn, "", p.callSwitchboard, p.callRaw, p.sbWire, p.rawWire)
		if err == nil {
			var more []Case
			more, err = rpcCases(ctx, &cfg, conn, "observed", p.observed.callSwitchboard, p.callRaw, p.sbWire, p.rawWire)
			cases = append(cases, more...)
		}
		if err == nil {
			// What observability costs, measured directly: the observed
			// endpoint and the same endpoint with the same protections
			// but no observability, in alternating rounds, four times as
			// many and as short as the others', so that the two sides see
			// the same machine (the difference is a few microseconds a
			// call).
			var obs []Case
			ocfg := cfg
			ocfg.Rounds = max(min(cfg.Rounds*observabilityRounds, cfg.Requests), cfg.Rounds)
			rep.ObservabilityRounds = ocfg.Rounds
			obs, err = rpcCases(ctx, &ocfg, conn, "observability", p.observed.callSwitchboard, p.protected.callSwitchboard, p.sbWire, p.sbWire)
			rep.Observability = append(rep.Observability, obs...)
		}
		p.close()
		rep.Cases = append(rep.Cases, cases...)
		if err != nil {
			return rep, err
		}
	}
	rep.finish(start)
	return rep, nil
}

// rpcPair is a Switchboard service and client and a raw responder and
// requester on one connection type.
type rpcPair struct {
	e    *env
	conn Connection
	sbRPC
	// observed is the same endpoint with the platform's observability on;
	// protected with the default protections only.
	observed, protected sbRPC

	rawCli     *nats.Conn
	rawSub     *nats.Subscription
	rawSubject string

	// What one call of each side looks like on the wire.
	sbWire, rawWire Figures
	// Switchboard's request and reply headers as captured, and a raw
	// responder that sends them back: the cost of the headers alone.
	sbReqHeader, sbRepHeader nats.Header
	rawHdrSub                *nats.Subscription
	rawHdrSubject            string
}

func newRPCPair(ctx context.Context, e *env, conn Connection) (*rpcPair, error) {
	p := &rpcPair{e: e, conn: conn}
	srvNC, err := e.connect(conn, "bench-switchboard-responder")
	if err != nil {
		return nil, err
	}
	srvBus, err := e.busConn(ctx, srvNC)
	if err != nil {
		return nil, err
	}
	cliNC, err := e.connect(conn, "bench-switchboard-caller")
	if err != nil {
		return nil, err
	}
	cliBus, err := e.busConn(ctx, cliNC)
	if err != nil {
		return nil, err
	}
	if err := p.start(ctx, e.service()+"-"+string(conn), srvBus, cliBus); err != nil {
		return nil, err
	}
	if p.observed.obs, err = newObservability(ctx); err != nil {
		return nil, err
	}
	if err := p.observed.start(ctx, e.service()+"-obs-"+string(conn), srvBus, cliBus); err != nil {
		return nil, err
	}
	p.protected.protect = true
	if err := p.protected.start(ctx, e.service()+"-prot-"+string(conn), srvBus, cliBus); err != nil {
		return nil, err
	}

	rawSrv, err := e.connect(conn, "bench-raw-responder")
	if err != nil {
		return nil, err
	}
	if p.rawCli, err = e.connect(conn, "bench-raw-caller"); err != nil {
		return nil, err
	}
	p.rawSubject = "benchraw." + e.id + "." + string(conn) + ".quote"
	p.rawSub, err = rawSrv.QueueSubscribe(p.rawSubject, "benchraw", func(m *nats.Msg) {
		b, err := answer(m.Data)
		if err != nil {
			b = malformed
		}
		_ = m.Respond(b)
	})
	if err != nil {
		return nil, fmt.Errorf("bench: raw responder: %w", err)
	}
	if err := rawSrv.Flush(); err != nil {
		return nil, fmt.Errorf("bench: raw responder: %w", err)
	}
	if err := p.measureWire(ctx); err != nil {
		return nil, fmt.Errorf("bench: measure headers: %w", err)
	}
	// The diagnostic responder: raw, but with Switchboard's headers.
	p.rawHdrSubject = p.rawSubject + "_headers"
	p.rawHdrSub, err = rawSrv.QueueSubscribe(p.rawHdrSubject, "benchraw", func(m *nats.Msg) {
		b, err := answer(m.Data)
		if err != nil {
			b = malformed
		}
		_ = m.RespondMsg(&nats.Msg{Header: p.sbRepHeader, Data: b})
	})
	if err != nil {
		return nil, fmt.Errorf("bench: raw responder: %w", err)
	}
	return p, rawSrv.Flush()
}

func (p *rpcPair) close() {
	p.stop()
	p.observed.stop()
	p.protected.stop()
	_ = p.rawSub.Unsubscribe()
	if p.rawHdrSub != nil {
		_ = p.rawHdrSub.Unsubscribe()
	}
}

func (p *rpcPair) callRaw(_ context.Context, i int) error {
	b, err := json.Marshal(request(i))
	if err != nil {
		return err
	}
	m, err := p.rawCli.RequestMsg(&nats.Msg{Subject: p.rawSubject, Data: b}, callTimeout)
	if err != nil {
		return fmt.Errorf("bench: raw request: %w", err)
	}
	return checkReply(m.Data)
}

// callRawHeaders is callRaw with Switchboard's request and reply headers
// added: what the envelope costs on the wire, without the SDK. It is a
// diagnostic for the Go benchmarks, not a case of the report.
func (p *rpcPair) callRawHeaders(_ context.Context, i int) error {
	b, err := json.Marshal(request(i))
	if err != nil {
		return err
	}
	m, err := p.rawCli.RequestMsg(&nats.Msg{Subject: p.rawHdrSubject, Header: p.sbReqHeader, Data: b}, callTimeout)
	if err != nil {
		return fmt.Errorf("bench: raw request: %w", err)
	}
	return checkReply(m.Data)
}

// measureWire captures one call of each side as it travels: request and
// reply headers and body.
func (p *rpcPair) measureWire(ctx context.Context) error {
	nc, err := p.e.connect(p.conn, "bench-snoop")
	if err != nil {
		return err
	}
	defer nc.Close()
	measure := func(subject string, call func() error) (Figures, nats.Header, nats.Header, error) {
		ms, err := snoop(nc, []string{subject, "_INBOX.>"}, call)
		if err != nil {
			return Figures{}, nil, nil, err
		}
		f := Figures{HeaderBytes: headerBytes(ms[0].Header), ReplyHeaderBytes: headerBytes(ms[1].Header), BodyBytes: len(ms[0].Data)}
		return f, ms[0].Header, ms[1].Header, nil
	}
	if p.sbWire, p.sbReqHeader, p.sbRepHeader, err = measure(wire.RequestSubject(p.ep.Service(), p.ep.Name()), func() error { return p.callSwitchboard(ctx, 0) }); err != nil {
		return err
	}
	p.rawWire, _, _, err = measure(p.rawSubject, func() error { return p.callRaw(ctx, 0) })
	return err
}

// rpcCases measures the RPC cases on one connection type: sb and raw make
// the same call on the two sides, sbW and rawW are what one call of each
// looks like on the wire. A variant ("observed") names the cases after it
// and measures only sequential latency and concurrent throughput.
func rpcCases(ctx context.Context, cfg *Config, conn Connection, variant string, sbCall, rawCall callFunc, sbW, rawW Figures) ([]Case, error) {
	type spec struct {
		name, what string
		callers    int
		perCaller  int
		d          time.Duration
	}
	perRound := cfg.Duration / time.Duration(cfg.Rounds)
	specs := []spec{
		{"rpc_sequential", fmt.Sprintf("latency of %d sequential calls", cfg.Requests), 1, cfg.Requests / cfg.Rounds, 0},
		{"rpc_1_caller", fmt.Sprintf("throughput of 1 caller for %s", cfg.Duration), 1, 0, perRound},
		{fmt.Sprintf("rpc_%d_callers", cfg.Callers), fmt.Sprintf("throughput of %d concurrent callers for %s", cfg.Callers, cfg.Duration), cfg.Callers, 0, perRound},
	}
	if variant != "" {
		specs = []spec{specs[0], specs[2]}
		for i := range specs {
			specs[i].name += "_" + variant
			specs[i].what += " (" + variant + ")"
		}
	}
	var cases []Case
	for _, s := range specs {
		name := s.name + "_" + string(conn)
		cfg.Progress("bench: %s (%s, %s) …", name, s.what, conn.Describe())
		sb := side{"switchboard", func(ctx context.Context) (sample, error) {
			return drive(ctx, s.callers, s.perCaller, s.d, sbCall, nil)
		}}
		raw := side{"raw", func(ctx context.Context) (sample, error) {
			return drive(ctx, s.callers, s.perCaller, s.d, rawCall, nil)
		}}
		for _, sd := range []struct {
			name string
			call callFunc
		}{{sb.name, sbCall}, {raw.name, rawCall}} { // warm up both before measuring
			if _, err := drive(ctx, s.callers, 0, cfg.Warmup, sd.call, nil); err != nil {
				return cases, fmt.Errorf("bench: %s: warm-up %s: %w", name, sd.name, err)
			}
		}
		c := Case{Name: name, What: s.what, Connection: string(conn)}
		var err error
		c.Switchboard, c.Raw, c.P50Ratio, c.ThroughputRatio, err = alternate(ctx, cfg.Rounds, sb, raw)
		if err != nil {
			return cases, fmt.Errorf("bench: %s: %w", name, err)
		}
		c.Switchboard.HeaderBytes, c.Switchboard.ReplyHeaderBytes, c.Switchboard.BodyBytes = sbW.HeaderBytes, sbW.ReplyHeaderBytes, sbW.BodyBytes
		c.Raw.HeaderBytes, c.Raw.ReplyHeaderBytes, c.Raw.BodyBytes = rawW.HeaderBytes, rawW.ReplyHeaderBytes, rawW.BodyBytes
		c.EnvelopeOverheadBytes = sbW.HeaderBytes + sbW.ReplyHeaderBytes - rawW.HeaderBytes - rawW.ReplyHeaderBytes
		cases = append(cases, c)
	}
	return cases, nil
}
