package switchboard

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/wire"
)

// Fault injection: every service takes commands on wire.FaultSubject(id) to
// add latency, fail a share of calls or events with a chosen code, drop
// replies or pause a consumer, and to clear them again, at runtime and
// without a restart (`switchboard fault`). Nothing is injected until a
// command says so; an instance with faults logs each change at Warn and
// shows them in discovery (`switchboard describe`). WithoutFaultInjection
// turns the command subject off for a service.

// WithoutFaultInjection makes the service ignore fault injection commands:
// it does not serve wire.FaultSubject, so `switchboard fault` finds no
// instance to change. Use it where nobody on the bus may slow the service.
func WithoutFaultInjection() ServiceOption { return func(c *serviceConfig) { c.noFaults = true } }

// DetailFault is the error detail set on an error that fault injection
// returned instead of running the handler ("injected").
const DetailFault = "fault"

// faultSet is an instance's injected faults. The call path loads one atomic
// pointer, nil while no fault is set.
type faultSet struct {
	mu     sync.Mutex
	list   []*activeFault // guarded by mu
	timers []*time.Timer  // ForMS expiries, stopped on shutdown
	snap   atomic.Pointer[faultSnap]
}

type activeFault struct {
	wire.Fault
	since, until time.Time
	fired        atomic.Int64
}

// faultSnap is an immutable view of the faults in force. changed is closed
// when a newer view replaces it, which wakes paused consumers.
type faultSnap struct {
	endpoints map[string]*activeFault
	topics    map[string]*activeFault
	changed   chan struct{}
}

func (fs *faultSet) endpoint(name string) *activeFault {
	if sn := fs.snap.Load(); sn != nil {
		return pick(sn.endpoints, name)
	}
	return nil
}

func pick(m map[string]*activeFault, name string) *activeFault {
	if f, ok := m[name]; ok {
		return f
	}
	return m["*"]
}

// publish replaces the view with one of fs.list. fs.mu must be held.
func (fs *faultSet) publish() {
	var next *faultSnap
	if len(fs.list) > 0 {
		next = &faultSnap{endpoints: map[string]*activeFault{}, topics: map[string]*activeFault{}, changed: make(chan struct{})}
		for _, f := range fs.list {
			if f.Topic != "" {
				next.topics[f.Topic] = f
			} else {
				next.endpoints[f.Endpoint] = f
			}
		}
	}
	if old := fs.snap.Swap(next); old != nil {
		close(old.changed)
	}
}

// set adds faults, replacing those on the same targets; with d > 0 they
// clear themselves after d.
func (fs *faultSet) set(faults []wire.Fault, d time.Duration) []*activeFault {
	now := time.Now()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	added := make([]*activeFault, 0, len(faults))
	for _, f := range faults {
		af := &activeFault{Fault: f, since: now}
		if d > 0 {
			af.until = now.Add(d)
		}
		fs.list = slices.DeleteFunc(fs.list, func(o *activeFault) bool { return o.Target() == f.Target() })
		fs.list = append(fs.list, af)
		added = append(added, af)
	}
	fs.publish()
	return added
}

// clear removes the faults on the targets named (all without any) and
// returns them.
func (fs *faultSet) clear(targets []wire.Fault) []*activeFault {
	return fs.remove(func(o *activeFault) bool {
		return len(targets) == 0 || slices.ContainsFunc(targets, func(t wire.Fault) bool { return t.Target() == o.Target() })
	})
}

// expire removes exactly these faults if they are still in force.
func (fs *faultSet) expire(faults []*activeFault) []*activeFault {
	return fs.remove(func(o *activeFault) bool { return slices.Contains(faults, o) })
}

// remove drops the faults hit selects and returns them.
func (fs *faultSet) remove(hit func(*activeFault) bool) []*activeFault {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var removed []*activeFault
	fs.list = slices.DeleteFunc(fs.list, func(o *activeFault) bool {
		if hit(o) {
			removed = append(removed, o)
			return true
		}
		return false
	})
	if len(removed) > 0 {
		fs.publish()
	}
	return removed
}

func (fs *faultSet) state() []wire.ActiveFault {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	out := make([]wire.ActiveFault, 0, len(fs.list))
	for _, f := range fs.list {
		out = append(out, wire.ActiveFault{Fault: f.Fault, Since: f.since, Until: f.until, Fired: f.fired.Load()})
	}
	return out
}

// stopTimers ends every pending expiry; the service is stopping.
func (fs *faultSet) stopTimers() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, t := range fs.timers {
		t.Stop()
	}
	fs.timers = nil
}

func chance(rate float64) bool { return rate > 0 && (rate >= 1 || rand.Float64() < rate) }

// delay waits out f's latency, if this call gets it, or until ctx ends.
func (f *activeFault) delay(ctx context.Context) error {
	if f.LatencyMS <= 0 && f.JitterMS <= 0 {
		return nil
	}
	if f.LatencyRate > 0 && !chance(f.LatencyRate) {
		return nil
	}
	d := time.Duration(f.LatencyMS) * time.Millisecond
	if f.JitterMS > 0 {
		d += rand.N(time.Duration(f.JitterMS)*time.Millisecond + 1)
	}
	f.fired.Add(1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// failure returns the injected error for this call, if it gets one.
func (f *activeFault) failure(what string) error {
	if !chance(f.ErrorRate) {
		return nil
	}
	f.fired.Add(1)
	return bus.Errorf(f.Code(), "switchboard: %s: injected fault (%s)", what, f.String()).WithDetail(DetailFault, "injected")
}

// dropped reports whether this call's reply is to be dropped.
func (f *activeFault) dropped() bool {
	if f == nil || !chance(f.DropRate) {
		return false
	}
	f.fired.Add(1)
	return true
}

// injectCall applies an endpoint fault before the handler runs.
func (s *Service) injectCall(ctx context.Context, f *activeFault, endpoint string) error {
	what := s.name + "." + endpoint
	if err := f.delay(ctx); err != nil {
		return bus.Errorf(bus.DeadlineExceeded, "switchboard: %s: the caller's deadline passed during injected latency", what).WithDetail(DetailFault, "injected")
	}
	return f.failure(what)
}

// injectEvent applies the fault on topic, if any, before the consumer's
// handler runs: a paused consumer waits here until the pause is cleared,
// ctx ends or the service stops.
func (s *Service) injectEvent(ctx context.Context, topic string) error {
	for {
		sn := s.faults.snap.Load()
		if sn == nil {
			return nil
		}
		f := pick(sn.topics, topic)
		if f == nil {
			return nil
		}
		if !f.Pause {
			if err := f.delay(ctx); err != nil {
				return err
			}
			return f.failure(s.name + " consuming " + topic)
		}
		f.fired.Add(1)
		select {
		case <-sn.changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.stop:
			return bus.Errorf(bus.Unavailable, "switchboard: %s: consumer of %s paused by fault injection while stopping", s.name, topic).WithDetail(DetailFault, "injected")
		}
	}
}

// Faults returns the faults injected into this instance right now, with how
// often each fired (see `switchboard fault`); none in normal operation.
func (s *Service) Faults() []wire.ActiveFault { return s.faults.state() }

// serveFault answers a fault injection command.
func (s *Service) serveFault(_ context.Context, m *bus.Message) *bus.Message {
	reply := &bus.Message{Header: bus.Header{wire.HeaderInstance: s.id}}
	state, err := s.applyFault(m.Body)
	if err != nil {
		wire.EncodeError(reply.Header, err)
		return reply
	}
	body, err := json.Marshal(state)
	if err != nil {
		wire.EncodeError(reply.Header, err)
		return reply
	}
	reply.Body = body
	return reply
}

func (s *Service) applyFault(body []byte) (*wire.FaultState, error) {
	var cmd wire.FaultCommand
	if err := wire.Unmarshal(body, wire.ContentTypeJSON, &cmd); err != nil {
		return nil, fmt.Errorf("switchboard: fault command: %w", err)
	}
	switch cmd.Op {
	case wire.FaultGet:
	case wire.FaultSet:
		if len(cmd.Faults) == 0 {
			return nil, bus.Errorf(bus.InvalidArgument, "switchboard: fault command: set needs at least one fault")
		}
		if cmd.ForMS < 0 {
			return nil, bus.Errorf(bus.InvalidArgument, "switchboard: fault command: for_ms %d must not be negative", cmd.ForMS)
		}
		for _, f := range cmd.Faults {
			if err := f.Validate(); err != nil {
				return nil, err
			}
			if err := s.checkFaultTarget(f); err != nil {
				return nil, err
			}
		}
		d := time.Duration(cmd.ForMS) * time.Millisecond
		added := s.faults.set(cmd.Faults, d)
		for _, f := range added {
			s.logger.Warn("fault injected", "fault", f.String(), "for", d)
		}
		if d > 0 {
			s.faults.mu.Lock()
			s.faults.timers = append(s.faults.timers, time.AfterFunc(d, func() {
				for _, f := range s.faults.expire(added) {
					s.logger.Info("fault expired", "fault", f.String(), "fired", f.fired.Load())
				}
				s.reannounce()
			}))
			s.faults.mu.Unlock()
		}
		s.reannounce()
	case wire.FaultClear:
		for _, f := range s.faults.clear(cmd.Faults) {
			s.logger.Info("fault cleared", "fault", f.String(), "fired", f.fired.Load())
		}
		s.reannounce()
	default:
		return nil, bus.Errorf(bus.InvalidArgument, "switchboard: fault command: unknown op %q: use %q, %q or %q", cmd.Op, wire.FaultGet, wire.FaultSet, wire.FaultClear)
	}
	return &wire.FaultState{Service: s.name, Instance: s.id, Faults: s.faults.state()}, nil
}

// checkFaultTarget refuses a fault on an endpoint or topic this service
// does not have, naming the ones it has.
func (s *Service) checkFaultTarget(f wire.Fault) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Endpoint != "" {
		if _, ok := s.endpoints[f.Endpoint]; ok || f.Endpoint == "*" {
			return nil
		}
		names := make([]string, 0, len(s.endpoints))
		for n := range s.endpoints {
			names = append(names, n)
		}
		slices.Sort(names)
		return bus.Errorf(bus.NotFound, "switchboard: fault: service %q has no endpoint %q; its endpoints are: %s", s.name, f.Endpoint, orNone(names))
	}
	var topics []string
	for _, c := range s.consumers {
		if c.topic == f.Topic || f.Topic == "*" {
			return nil
		}
		topics = append(topics, c.topic)
	}
	return bus.Errorf(bus.NotFound, "switchboard: fault: service %q consumes no topic %q; it consumes: %s", s.name, f.Topic, orNone(topics))
}

// reannounce tells discovery at once, so that `describe` shows a change of
// faults without waiting for the next heartbeat.
func (s *Service) reannounce() {
	s.mu.Lock()
	running := s.state == stateRunning
	s.mu.Unlock()
	if !running {
		return // leaving discovery: an announce now would bring it back
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s.announce(ctx, wire.SubjectAnnounce)
}

// InjectFaults sets (op wire.FaultSet), clears (wire.FaultClear) or reports
// (wire.FaultGet) faults on one instance, the way `switchboard fault` does
// over the bus, and returns the instance's faults after the command. It is
// for chaos tests written in Go; c is any Caller on the same bus.
func InjectFaults(ctx context.Context, c Caller, instance string, cmd wire.FaultCommand) (*wire.FaultState, error) {
	cl := c.client()
	if cl.err != nil {
		return nil, cl.err
	}
	body, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cl.timeout)
		defer cancel()
	}
	rep, err := cl.conn.Request(ctx, &bus.Message{Subject: wire.FaultSubject(instance), Body: body,
		Header: bus.Header{wire.HeaderCaller: cl.caller}})
	if err != nil {
		if bus.IsNoResponders(err) {
			return nil, bus.Errorf(bus.Unavailable, "switchboard: fault: instance %q is not running, or takes no fault injection commands", instance).WithDetail("instance", instance)
		}
		return nil, fmt.Errorf("switchboard: fault: instance %s: %w", instance, err)
	}
	if err := wire.DecodeError(rep.Header); err != nil {
		return nil, err
	}
	var st wire.FaultState
	if err := json.Unmarshal(rep.Body, &st); err != nil {
		return nil, bus.Errorf(bus.Internal, "switchboard: fault: instance %s: malformed reply: %v", instance, err)
	}
	return &st, nil
}
