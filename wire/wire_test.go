package wire_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/wire"
)

// deadlineSlack bounds how far a decoded deadline may drift from the sent
// one: the budget is sent in whole milliseconds and time passes between
// Encode and Decode. Generous so that a loaded CI machine does not flake.
const deadlineSlack = 2 * time.Second

func TestEnvelopeRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		env  wire.Envelope
	}{
		{"every field survives encode and decode", wire.Envelope{
			Service: "pricing", Endpoint: "quote", Version: "^1.2", Instance: "pricing-7f3a",
			ContentType: wire.ContentTypeProto, Caller: "trips",
			TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			TraceState:  "vendor=value", Priority: "critical",
			Deadline: time.Now().Add(5 * time.Second),
		}},
		{"a request without a deadline decodes without one", wire.Envelope{Service: "pricing", Endpoint: "quote"}},
		{"an empty envelope round-trips", wire.Envelope{}},
		{"a deadline hours away keeps its budget", wire.Envelope{Service: "s", Deadline: time.Now().Add(3 * time.Hour)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := bus.Header{}
			tt.env.Encode(h)
			got, err := wire.DecodeEnvelope(h)
			if err != nil {
				t.Fatalf("DecodeEnvelope: %v", err)
			}
			want := tt.env
			// The subject carries service and endpoint; JSON is the default.
			want.Service, want.Endpoint = "", ""
			if want.ContentType == "" {
				want.ContentType = wire.ContentTypeJSON
			}
			if want.Deadline.IsZero() {
				if !got.Deadline.IsZero() {
					t.Errorf("Deadline = %v, want none", got.Deadline)
				}
				if _, ok := h[wire.HeaderTimeout]; ok {
					t.Errorf("header %s sent without a deadline", wire.HeaderTimeout)
				}
			} else if d := got.Deadline.Sub(want.Deadline); d < -deadlineSlack || d > deadlineSlack {
				t.Errorf("Deadline off by %v, want within %v", d, deadlineSlack)
			}
			got.Deadline, want.Deadline = time.Time{}, time.Time{}
			if got != want {
				t.Errorf("DecodeEnvelope = %+v, want %+v", got, want)
			}
		})
	}
}

func TestEnvelopeEncodeOmitsEmptyFields(t *testing.T) {
	h := bus.Header{}
	(&wire.Envelope{Service: "pricing", Endpoint: "quote", ContentType: wire.ContentTypeJSON, Caller: "trips"}).Encode(h)
	if want := (bus.Header{wire.HeaderCaller: "trips"}); !maps.Equal(h, want) {
		t.Errorf("headers = %v, want %v", h, want)
	}
}

func TestEnvelopeDeadline(t *testing.T) {
	t.Run("a deadline already past is sent as a zero budget", func(t *testing.T) {
		h := bus.Header{}
		(&wire.Envelope{Deadline: time.Now().Add(-time.Minute)}).Encode(h)
		if got := h[wire.HeaderTimeout]; got != "0" {
			t.Fatalf("%s = %q, want \"0\"", wire.HeaderTimeout, got)
		}
		env, err := wire.DecodeEnvelope(h)
		if err != nil {
			t.Fatal(err)
		}
		if env.Deadline.IsZero() || env.Deadline.After(time.Now()) {
			t.Errorf("Deadline = %v, want expired", env.Deadline)
		}
	})
	t.Run("the budget is measured against the receiver's clock", func(t *testing.T) {
		env, err := wire.DecodeEnvelope(bus.Header{wire.HeaderTimeout: "1500"})
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Until(env.Deadline) - 1500*time.Millisecond; d < -deadlineSlack || d > 0 {
			t.Errorf("budget off by %v", d)
		}
	})
	t.Run("a budget too large for a duration is a deadline far ahead, not in the past", func(t *testing.T) {
		for _, s := range []string{"9223372036854775807", "9223372036854776"} {
			env, err := wire.DecodeEnvelope(bus.Header{wire.HeaderTimeout: s})
			if err != nil {
				t.Fatal(err)
			}
			if until := time.Until(env.Deadline); until < 100*365*24*time.Hour {
				t.Errorf("%s=%s: deadline in %v, want centuries ahead", wire.HeaderTimeout, s, until)
			}
		}
	})
}

func TestDecodeEnvelopeRejectsMalformedTimeout(t *testing.T) {
	for _, s := range []string{"abc", "-1", "1.5", "10ms", " 5", "0x10", "99999999999999999999"} {
		t.Run(fmt.Sprintf("Sb-Timeout %q is InvalidArgument", s), func(t *testing.T) {
			env, err := wire.DecodeEnvelope(bus.Header{wire.HeaderService: "pricing", wire.HeaderTimeout: s})
			if code := bus.ErrorCode(err); code != bus.InvalidArgument {
				t.Fatalf("code = %v (err %v), want InvalidArgument", code, err)
			}
			if !strings.Contains(err.Error(), wire.HeaderTimeout) {
				t.Errorf("error %q does not name header %s", err, wire.HeaderTimeout)
			}
			if env.Service != "pricing" {
				t.Errorf("Service = %q: the rest of the envelope should still decode", env.Service)
			}
		})
	}
}

func TestErrorRoundTrip(t *testing.T) {
	notFound := bus.Errorf(bus.NotFound, "trip %q not found", "t-1").WithDetail("trip_id", "t-1").WithDetail("retry_after", "2s")
	tests := []struct {
		name        string
		err         error
		wantCode    bus.Code
		wantMsg     string
		wantDetails map[string]string
	}{
		{"a bus error keeps its code, message and details", notFound,
			bus.NotFound, `trip "t-1" not found`, map[string]string{"trip_id": "t-1", "retry_after": "2s"}},
		{"a wrapped bus error keeps its code and details and the wrapping text", fmt.Errorf("get trip: %w", notFound),
			bus.NotFound, `get trip: NotFound: trip "t-1" not found`, map[string]string{"trip_id": "t-1", "retry_after": "2s"}},
		{"a bus error joined with others keeps its code and details", errors.Join(errors.New("cleanup failed"), notFound),
			bus.NotFound, `cleanup failed NotFound: trip "t-1" not found`, map[string]string{"trip_id": "t-1", "retry_after": "2s"}},
		{"a plain error becomes Internal", errors.New("disk on fire"),
			bus.Internal, "disk on fire", nil},
		{"a context deadline becomes DeadlineExceeded", fmt.Errorf("query: %w", context.DeadlineExceeded),
			bus.DeadlineExceeded, "query: context deadline exceeded", nil},
		{"a bus error that says Unknown stays Unknown", &bus.Error{Code: bus.Unknown, Message: "from upstream"},
			bus.Unknown, "from upstream", nil},
		{"a bus error that says OK becomes Internal", &bus.Error{Code: bus.OK, Message: "confused"},
			bus.Internal, "confused", nil},
		{"a multi-line message is put on one line", errors.New("first line\nsecond line\r\nthird"),
			bus.Internal, "first line second line  third", nil},
		{"a multi-line bus error message is put on one line", bus.Errorf(bus.InvalidArgument, "bad:\n  field a\n  field b"),
			bus.InvalidArgument, "bad:   field a   field b", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := bus.Header{}
			wire.EncodeError(h, tt.err)
			for k, v := range h {
				if strings.ContainsAny(v, "\r\n") {
					t.Errorf("header %s=%q has a line break", k, v)
				}
			}
			got := wire.DecodeError(h)
			var be *bus.Error
			if !errors.As(got, &be) {
				t.Fatalf("DecodeError = %#v, want a *bus.Error", got)
			}
			if be.Code != tt.wantCode || be.Message != tt.wantMsg {
				t.Errorf("DecodeError = %v %q, want %v %q", be.Code, be.Message, tt.wantCode, tt.wantMsg)
			}
			if !maps.Equal(be.Details, tt.wantDetails) {
				t.Errorf("Details = %v, want %v", be.Details, tt.wantDetails)
			}
		})
	}
}

func TestDecodeError(t *testing.T) {
	tests := []struct {
		name        string
		h           bus.Header
		wantCode    bus.Code
		wantDetails map[string]string
	}{
		{"a code name is matched case-insensitively", bus.Header{wire.HeaderErrorCode: "notfound"}, bus.NotFound, nil},
		{"an unknown code name is Unknown", bus.Header{wire.HeaderErrorCode: "Exploded"}, bus.Unknown, nil},
		{"an error reply never decodes as OK", bus.Header{wire.HeaderErrorCode: "OK"}, bus.Unknown, nil},
		{"details that are not a JSON object are kept raw", bus.Header{wire.HeaderErrorCode: "Internal", wire.HeaderErrorDetail: "[1,2"},
			bus.Internal, map[string]string{"raw": "[1,2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := wire.DecodeError(tt.h)
			if code := bus.ErrorCode(err); code != tt.wantCode {
				t.Errorf("code = %v, want %v", code, tt.wantCode)
			}
			var be *bus.Error
			if errors.As(err, &be) && !maps.Equal(be.Details, tt.wantDetails) {
				t.Errorf("Details = %v, want %v", be.Details, tt.wantDetails)
			}
		})
	}
	t.Run("headers without an error code are no error", func(t *testing.T) {
		if err := wire.DecodeError(bus.Header{wire.HeaderErrorMsg: "stray"}); err != nil {
			t.Errorf("DecodeError = %v, want nil", err)
		}
	})
	t.Run("encoding a nil error writes nothing", func(t *testing.T) {
		h := bus.Header{}
		wire.EncodeError(h, nil)
		if len(h) != 0 {
			t.Errorf("headers = %v, want none", h)
		}
	})
}

func TestSubjects(t *testing.T) {
	if got, want := wire.RequestSubject("pricing", "quote"), "sb.rpc.pricing.quote"; got != want {
		t.Errorf("RequestSubject = %q, want %q", got, want)
	}
	if got, want := wire.InstanceSubject("pricing-1", "quote"), "sb.inst.pricing-1.quote"; got != want {
		t.Errorf("InstanceSubject = %q, want %q", got, want)
	}
	shared, own := wire.ServiceSubjects("pricing", "pricing-1")
	if shared != "sb.rpc.pricing.*" || own != "sb.inst.pricing-1.*" {
		t.Errorf("ServiceSubjects = %q, %q", shared, own)
	}
	for _, s := range []string{wire.RequestSubject("pricing", "quote"), wire.InstanceSubject("pricing-1", "quote"), "quote"} {
		if got := wire.EndpointOf(s); got != "quote" {
			t.Errorf("EndpointOf(%q) = %q, want \"quote\"", s, got)
		}
	}
	if err := wire.ValidateName("service", "bad.name"); bus.ErrorCode(err) != bus.InvalidArgument || !strings.Contains(err.Error(), "service") {
		t.Errorf("ValidateName(bad.name) = %v, want InvalidArgument naming the kind", err)
	}
	if err := wire.ValidateName("service", "pricing-v2"); err != nil {
		t.Errorf("ValidateName(pricing-v2) = %v", err)
	}
}
