package wire

import (
	"fmt"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
)

// FaultSubject is the subject on which the instance with id takes fault
// injection commands (FaultCommand, JSON) and answers with its FaultState.
// It is served without a queue: every command names one instance.
func FaultSubject(id string) string { return "sb.fault." + id }

// Fault is one fault injected into a running instance, for chaos tests. It
// targets one endpoint or one consumed topic ("*" for all of them) and
// combines any of: added latency, errors at a rate, dropped replies, and a
// paused consumer.
type Fault struct {
	// Endpoint names the endpoint the fault applies to, "*" for all.
	// Exactly one of Endpoint and Topic is set.
	Endpoint string `json:"endpoint,omitempty"`
	// Topic names a consumed topic the fault applies to, "*" for all.
	Topic string `json:"topic,omitempty"`

	// LatencyMS is added before the handler runs, in milliseconds; JitterMS
	// adds a uniformly random 0..JitterMS on top. LatencyRate is the share
	// of calls or events delayed (0 means all of them).
	LatencyMS   int64   `json:"latency_ms,omitempty"`
	JitterMS    int64   `json:"jitter_ms,omitempty"`
	LatencyRate float64 `json:"latency_rate,omitempty"`

	// ErrorRate is the share (0..1) of calls or events failed with
	// ErrorCode (default Unavailable) instead of running the handler.
	ErrorRate float64 `json:"error_rate,omitempty"`
	ErrorCode string  `json:"error_code,omitempty"`

	// DropRate is the share (0..1) of calls whose handler runs but whose
	// reply is never sent, so the caller waits for its deadline.
	// Endpoints only.
	DropRate float64 `json:"drop_rate,omitempty"`

	// Pause stops the consumer taking events: handlers wait until the
	// fault is cleared, so events stay with the broker (and, past AckWait,
	// go to other members of the group). Topics only.
	Pause bool `json:"pause,omitempty"`
}

// Target names what the fault applies to: "endpoint NAME" or "topic NAME".
func (f Fault) Target() string {
	if f.Topic != "" {
		return "topic " + f.Topic
	}
	return "endpoint " + f.Endpoint
}

// Validate checks a fault on its own; the instance that receives it also
// checks that its target exists.
func (f Fault) Validate() error {
	bad := func(format string, a ...any) error {
		return bus.Errorf(bus.InvalidArgument, "wire: fault on %s: "+format, append([]any{f.Target()}, a...)...)
	}
	switch {
	case f.Endpoint == "" && f.Topic == "":
		return bus.Errorf(bus.InvalidArgument, "wire: fault: name an endpoint or a topic (\"*\" for all)")
	case f.Endpoint != "" && f.Topic != "":
		return bus.Errorf(bus.InvalidArgument, "wire: fault: name an endpoint or a topic, not both")
	case f.LatencyMS < 0 || f.JitterMS < 0:
		return bad("latency and jitter must not be negative")
	case f.LatencyMS > maxFaultLatencyMS || f.JitterMS > maxFaultLatencyMS:
		return bad("latency and jitter must be at most %v", time.Duration(maxFaultLatencyMS)*time.Millisecond)
	}
	for name, r := range map[string]float64{"latency_rate": f.LatencyRate, "error_rate": f.ErrorRate, "drop_rate": f.DropRate} {
		if r < 0 || r > 1 || r != r {
			return bad("%s %v must be between 0 and 1", name, r)
		}
	}
	if f.ErrorCode != "" {
		code, ok := bus.ParseCode(f.ErrorCode)
		if !ok || code == bus.OK {
			return bad("unknown error code %q (use a code such as Unavailable, Internal, DeadlineExceeded)", f.ErrorCode)
		}
	}
	if f.Topic != "" && f.DropRate > 0 {
		return bad("drop_rate applies to endpoints only: events have no reply")
	}
	if f.Endpoint != "" && f.Pause {
		return bad("pause applies to topics only: it pauses a consumer")
	}
	if f.LatencyMS == 0 && f.JitterMS == 0 && f.ErrorRate == 0 && f.DropRate == 0 && !f.Pause {
		return bad("it does nothing: give a latency, an error rate, a drop rate or pause")
	}
	return nil
}

// maxFaultLatencyMS bounds an injected latency: one hour.
const maxFaultLatencyMS = int64(time.Hour / time.Millisecond)

// Code returns the error code the fault fails calls with.
func (f Fault) Code() bus.Code {
	if code, ok := bus.ParseCode(f.ErrorCode); ok && code != bus.OK {
		return code
	}
	return bus.Unavailable
}

// String describes the fault in one line, for logs and `describe`.
func (f Fault) String() string {
	s := f.Target() + ":"
	if f.LatencyMS > 0 || f.JitterMS > 0 {
		s += fmt.Sprintf(" latency %v", time.Duration(f.LatencyMS)*time.Millisecond)
		if f.JitterMS > 0 {
			s += fmt.Sprintf("+0..%v", time.Duration(f.JitterMS)*time.Millisecond)
		}
		if f.LatencyRate > 0 && f.LatencyRate < 1 {
			s += fmt.Sprintf(" on %g%%", f.LatencyRate*100)
		}
	}
	if f.ErrorRate > 0 {
		s += fmt.Sprintf(" errors %g%% %s", f.ErrorRate*100, f.Code())
	}
	if f.DropRate > 0 {
		s += fmt.Sprintf(" drop %g%% of replies", f.DropRate*100)
	}
	if f.Pause {
		s += " paused"
	}
	return s
}

// Fault command operations.
const (
	FaultGet   = "get"   // report the state, change nothing
	FaultSet   = "set"   // add the faults, replacing any on the same targets
	FaultClear = "clear" // remove the faults on the named targets, or all
)

// FaultCommand is the body of a request on FaultSubject.
type FaultCommand struct {
	// Op is FaultGet, FaultSet or FaultClear.
	Op string `json:"op"`
	// Faults are the faults to set, or for FaultClear the targets to clear
	// (only Endpoint and Topic are read; none clears everything).
	Faults []Fault `json:"faults,omitempty"`
	// ForMS, with FaultSet, clears the faults set by this command by
	// themselves after that many milliseconds (0: until cleared).
	ForMS int64 `json:"for_ms,omitempty"`
}

// ActiveFault is a fault as an instance reports it.
type ActiveFault struct {
	Fault
	// Since is when it was set; Until, if not zero, when it clears itself.
	Since time.Time `json:"since"`
	Until time.Time `json:"until,omitzero"`
	// Fired counts the calls or events it changed so far.
	Fired int64 `json:"fired"`
}

// FaultState is an instance's answer to a FaultCommand: its faults after
// the command.
type FaultState struct {
	Service  string        `json:"service"`
	Instance string        `json:"instance"`
	Faults   []ActiveFault `json:"faults"`
}
