package cli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// wantExit checks that err is an *ExitError with exit code want (or nil for
// ExitOK) whose message contains msg.
func wantExit(t *testing.T, err error, want int, msg string) {
	t.Helper()
	if want == ExitOK {
		if err != nil {
			t.Fatalf("got error %v, want none", err)
		}
		return
	}
	var e *ExitError
	if !errors.As(err, &e) {
		t.Fatalf("got %v (%T), want an *ExitError with exit code %d", err, err, want)
	}
	if e.Exit != want {
		t.Errorf("exit code %d, want %d (%v)", e.Exit, want, e)
	}
	if !strings.Contains(e.Error(), msg) {
		t.Errorf("error %q does not contain %q", e.Error(), msg)
	}
}

func globals() *GlobalOptions {
	return &GlobalOptions{Output: OutputText, IO: IOStreams{In: strings.NewReader(""), Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}}}
}

func TestGlobalOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name, output string
		exit         int
	}{
		{"text output is accepted", "text", ExitOK},
		{"json output is accepted", "json", ExitOK},
		{"yaml output is a usage error", "yaml", ExitUsage},
		{"empty output is a usage error", "", ExitUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := globals()
			g.Output = tc.output
			wantExit(t, g.Validate(), tc.exit, "output format")
		})
	}
}

func TestCallOptions(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		stdin string
		edit  func(*CallOptions)
		exit  int
		msg   string
		body  string
	}{
		{name: "a JSON body is accepted", args: []string{"trips", "get_trip", `{"id":"t1"}`}, body: `{"id":"t1"}`},
		{name: "no body means an empty object", args: []string{"trips", "get_trip"}, body: `{}`},
		{name: "a dash reads the body from stdin", args: []string{"trips", "get_trip", "-"}, stdin: "[1, 2]\n", body: "[1, 2]\n"},
		{name: "malformed JSON names the offset", args: []string{"trips", "get_trip", `{"id": }`}, exit: ExitUsage, msg: "byte offset 8 (line 1, column 8)"},
		{name: "a second JSON value is malformed", args: []string{"trips", "get_trip", `{} {}`}, exit: ExitUsage, msg: "byte offset 4"},
		{name: "an empty stdin is malformed", args: []string{"trips", "get_trip", "-"}, exit: ExitUsage, msg: "the body is empty"},
		{name: "the line of malformed JSON is named", args: []string{"trips", "get_trip", "{\n  \"a\": 1,\n}"}, exit: ExitUsage, msg: "byte offset 13 (line 3, column 1)"},
		{name: "a dotted service name is refused", args: []string{"a.b", "get_trip"}, exit: ExitUsage, msg: `invalid service name "a.b"`},
		{name: "a wildcard endpoint is refused", args: []string{"trips", "*"}, exit: ExitUsage, msg: `invalid endpoint name "*"`},
		{name: "version and instance together are refused", args: []string{"trips", "get_trip"},
			edit: func(o *CallOptions) { o.Version, o.Instance = "1", "abc" }, exit: ExitUsage, msg: "cannot be used together"},
		{name: "a bad instance id is refused", args: []string{"trips", "get_trip"},
			edit: func(o *CallOptions) { o.Instance = "a b" }, exit: ExitUsage, msg: "invalid instance id"},
		{name: "a zero timeout is refused", args: []string{"trips", "get_trip"},
			edit: func(o *CallOptions) { o.Timeout = 0 }, exit: ExitUsage, msg: "invalid --timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := globals()
			g.IO.In = strings.NewReader(tc.stdin)
			o := &CallOptions{GlobalOptions: g, Timeout: 10 * time.Second}
			if tc.edit != nil {
				tc.edit(o)
			}
			err := o.Complete(tc.args)
			if err == nil {
				err = o.Validate()
			}
			wantExit(t, err, tc.exit, tc.msg)
			if tc.exit == ExitOK && string(o.Body) != tc.body {
				t.Errorf("body %q, want %q", o.Body, tc.body)
			}
		})
	}
}

func TestPublishOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		edit func(*PublishOptions)
		exit int
		msg  string
	}{
		{name: "a dotted topic is accepted", args: []string{"trip.requested", `{"a":1}`}},
		{name: "a topic with dashes and digits is accepted", args: []string{"v2.trip-requested_1"}},
		{name: "an empty topic is refused", args: []string{""}, exit: ExitUsage, msg: "invalid topic"},
		{name: "a topic with a space is refused", args: []string{"trip requested"}, exit: ExitUsage, msg: "invalid topic"},
		{name: "a wildcard topic is refused", args: []string{"trip.*"}, exit: ExitUsage, msg: "invalid topic"},
		{name: "an empty token is refused", args: []string{"trip..requested"}, exit: ExitUsage, msg: "invalid topic"},
		{name: "a reserved topic is refused", args: []string{"_dlq.g.t"}, exit: ExitUsage, msg: "reserved"},
		{name: "malformed JSON is refused", args: []string{"trip.requested", `{"a":}`}, exit: ExitUsage, msg: "malformed JSON event body at byte offset 6"},
		{name: "a multi-line id is refused", args: []string{"t"}, edit: func(o *PublishOptions) { o.ID = "a\nb" }, exit: ExitUsage, msg: "one line"},
		{name: "a negative timeout is refused", args: []string{"t"}, edit: func(o *PublishOptions) { o.Timeout = -time.Second }, exit: ExitUsage, msg: "invalid --timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &PublishOptions{GlobalOptions: globals(), Timeout: 10 * time.Second}
			if tc.edit != nil {
				tc.edit(o)
			}
			err := o.Complete(tc.args)
			if err == nil {
				err = o.Validate()
			}
			wantExit(t, err, tc.exit, tc.msg)
		})
	}
}

func TestWatchOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pattern string
		count   int
		timeout time.Duration
		exit    int
	}{
		{name: "a topic is a pattern", pattern: "trip.requested"},
		{name: "a star matches one name", pattern: "*.completed"},
		{name: "a trailing greater-than matches the rest", pattern: "trip.>"},
		{name: "a lone greater-than matches everything", pattern: ">"},
		{name: "a greater-than before the end is refused", pattern: "trip.>.x", exit: ExitUsage},
		{name: "a partial star is refused", pattern: "trip.req*", exit: ExitUsage},
		{name: "an empty pattern is refused", pattern: "", exit: ExitUsage},
		{name: "a negative count is refused", pattern: "t", count: -1, exit: ExitUsage},
		{name: "a negative timeout is refused", pattern: "t", timeout: -time.Second, exit: ExitUsage},
		{name: "count and timeout together are accepted", pattern: "t", count: 3, timeout: time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &WatchOptions{GlobalOptions: globals(), Count: tc.count, Timeout: tc.timeout}
			err := o.Complete([]string{tc.pattern})
			if err == nil {
				err = o.Validate()
			}
			wantExit(t, err, tc.exit, "")
		})
	}
}

func TestServicesAndDescribeOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		wait time.Duration
		exit int
	}{
		{name: "no names lists all", wait: time.Second},
		{name: "valid names are accepted", args: []string{"trips", "pricing"}, wait: time.Second},
		{name: "a dotted name is refused", args: []string{"trips.x"}, wait: time.Second, exit: ExitUsage},
		{name: "a zero wait is refused", wait: 0, exit: ExitUsage},
		{name: "a wait over a minute is refused", wait: 2 * time.Minute, exit: ExitUsage},
	} {
		t.Run("services: "+tc.name, func(t *testing.T) {
			o := &ServicesOptions{GlobalOptions: globals(), Wait: tc.wait}
			err := o.Complete(tc.args)
			if err == nil {
				err = o.Validate()
			}
			wantExit(t, err, tc.exit, "")
		})
	}
	for _, tc := range []struct {
		name, service string
		exit          int
	}{
		{"a service name is accepted", "trips", ExitOK},
		{"a dotted name is refused", "a.b", ExitUsage},
		{"an empty name is refused", "", ExitUsage},
	} {
		t.Run("describe: "+tc.name, func(t *testing.T) {
			o := &DescribeOptions{GlobalOptions: globals(), Wait: time.Second}
			err := o.Complete([]string{tc.service})
			if err == nil {
				err = o.Validate()
			}
			wantExit(t, err, tc.exit, "")
		})
	}
}

func TestDevOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*DevOptions)
		exit int
		msg  string
	}{
		{name: "the defaults are valid", edit: func(o *DevOptions) {}},
		{name: "a sync interval is accepted", edit: func(o *DevOptions) { o.Sync = "250ms" }},
		{name: "port zero picks a free port", edit: func(o *DevOptions) { o.Port = 0 }},
		{name: "an unknown sync policy is refused", edit: func(o *DevOptions) { o.Sync = "never" }, exit: ExitUsage, msg: "invalid --sync"},
		{name: "a zero sync interval is refused", edit: func(o *DevOptions) { o.Sync = "0s" }, exit: ExitUsage, msg: "must be positive"},
		{name: "a negative port is refused", edit: func(o *DevOptions) { o.Port = -1 }, exit: ExitUsage, msg: "invalid --port"},
		{name: "a port beyond 65535 is refused", edit: func(o *DevOptions) { o.Port = 70000 }, exit: ExitUsage, msg: "invalid --port"},
		{name: "a negative workload rate is refused", edit: func(o *DevOptions) { o.WorkloadRate = -1 }, exit: ExitUsage, msg: "workload-rate"},
		{name: "an empty data directory is refused", edit: func(o *DevOptions) { o.DataDir = "" }, exit: ExitUsage, msg: "--data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &DevOptions{GlobalOptions: globals(), DataDir: t.TempDir(), Port: DefaultDevPort, Sync: "always", WorkloadRate: DefaultWorkloadRate}
			tc.edit(o)
			err := o.Complete(nil)
			if err == nil {
				err = o.Validate()
			}
			wantExit(t, err, tc.exit, tc.msg)
		})
	}
}

// TestRunExitCodes runs whole command lines in process, for the exit codes
// that need no bus.
func TestRunExitCodes(t *testing.T) {
	t.Setenv("SWITCHBOARD_BUS", "")
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("HOME", t.TempDir())
	t.Chdir(t.TempDir())
	for _, tc := range []struct {
		name   string
		args   []string
		exit   int
		stderr string
	}{
		{"help succeeds", []string{"--help"}, ExitOK, ""},
		{"an unknown command is a usage error", []string{"frobnicate"}, ExitUsage, `unknown command "frobnicate"`},
		{"an unknown flag is a usage error", []string{"call", "--frob"}, ExitUsage, "unknown flag: --frob"},
		{"a missing argument is a usage error", []string{"call", "trips"}, ExitUsage, "takes 2 to 3 argument(s)"},
		{"no bus is exit 3", []string{"services"}, ExitUnavailable, "no bus to connect to"},
		{"an unknown scheme is a usage error", []string{"--bus", "foo://x", "services"}, ExitUsage, "accepted schemes are"},
		{"a URL without a scheme is a usage error", []string{"--bus", "localhost:4222", "services"}, ExitUsage, "invalid bus URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			got := Run(context.Background(), tc.args, IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
			if got != tc.exit {
				t.Errorf("exit code %d, want %d; stderr:\n%s", got, tc.exit, errOut.String())
			}
			if !strings.Contains(errOut.String(), tc.stderr) {
				t.Errorf("stderr %q does not contain %q", errOut.String(), tc.stderr)
			}
			if tc.exit != ExitOK && !strings.HasPrefix(errOut.String(), "switchboard: ") {
				t.Errorf("stderr does not start with \"switchboard: \": %q", errOut.String())
			}
		})
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1.2.0", "1.10.0", -1},
		{"2.0.0", "1.99.99", 1},
		{"1.0.0-rc1", "1.0.0-rc1", 0},
		{"junk", "0.0.1", -1},
	} {
		if got := compareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
