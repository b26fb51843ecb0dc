package natsbus

import (
	"context"
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/driver"
)

func TestParseNATSURL(t *testing.T) {
	good := []struct {
		url     string
		servers string
		name    string
		opts    Options
	}{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222", DefaultName, Options{Stream: DefaultStream, SubjectPrefix: DefaultSubjectPrefix}},
		{"nats://localhost", "nats://localhost", DefaultName, Options{Stream: DefaultStream, SubjectPrefix: DefaultSubjectPrefix}},
		{"nats://a:4222,b:4223/", "nats://a:4222,nats://b:4223", DefaultName, Options{Stream: DefaultStream, SubjectPrefix: DefaultSubjectPrefix}},
		{"nats://user:p%40ss@a:4222,b:4222", "nats://user:p%40ss@a:4222,nats://user:p%40ss@b:4222", DefaultName, Options{Stream: DefaultStream, SubjectPrefix: DefaultSubjectPrefix}},
		{"nats://s3cret@a:4222", "nats://s3cret@a:4222", DefaultName, Options{Stream: DefaultStream, SubjectPrefix: DefaultSubjectPrefix}},
		{"nats://a?name=billing&stream=EVENTS&prefix=app.evt&max_age=24h&replicas=3", "nats://a", "billing",
			Options{Stream: "EVENTS", SubjectPrefix: "app.evt", MaxAge: 24 * time.Hour, Replicas: 3}},
	}
	for _, tc := range good {
		t.Run("accepts "+tc.url, func(t *testing.T) {
			r, err := parseNATSURL(mustParse(t, tc.url))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if r.servers != tc.servers || r.name != tc.name || r.opts != tc.opts {
				t.Errorf("got servers %q name %q opts %+v, want %q %q %+v", r.servers, r.name, r.opts, tc.servers, tc.name, tc.opts)
			}
		})
	}

	bad := []struct {
		url  string
		want string // in the error message
	}{
		{"nats://a?bogus=1", `unknown parameter "bogus"`},
		{"nats://a?port=4222", `unknown parameter "port"`}, // embedded only
		{"nats://a?name=x&name=y", `parameter "name" given 2 times`},
		{"nats://a?name=", "parameter name"},
		{"nats://a?max_age=forever", "parameter max_age"},
		{"nats://a?max_age=-1h", "parameter max_age"},
		{"nats://a?replicas=0", "parameter replicas"},
		{"nats://a?replicas=7", "parameter replicas"},
		{"nats://a?stream=has.dot", "invalid stream name"},
		{"nats://a?prefix=sb.*", "invalid subject prefix"},
		{"nats://a?prefix=sb..evt", "invalid subject prefix"},
		{"nats://a?%zz", "bad query"},
		{"nats://a/path", "no path"},
		{"nats://a#frag", "no path or fragment"},
		{"nats://a:4222,,b:4222", "empty host"},
		{"nats:opaque", "want nats://host"},
		{"nats:///no-host", "want nats://host"},
	}
	for _, tc := range bad {
		t.Run("rejects "+tc.url, func(t *testing.T) {
			_, err := parseNATSURL(mustParse(t, tc.url))
			checkInvalid(t, err, tc.want)
		})
	}
}

func TestParseEmbeddedURL(t *testing.T) {
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	good := []struct {
		url       string
		server    ServerOptions
		inProcess bool
		opts      Options
	}{
		{"embedded:", ServerOptions{}, true, Options{Stream: DefaultStream, SubjectPrefix: DefaultSubjectPrefix}},
		{"embedded://", ServerOptions{}, true, Options{Stream: DefaultStream, SubjectPrefix: DefaultSubjectPrefix}},
		{"embedded:///var/lib/sb", ServerOptions{DataDir: "/var/lib/sb"}, true, Options{Stream: DefaultStream, SubjectPrefix: DefaultSubjectPrefix}},
		{"embedded:.switchboard/data", ServerOptions{DataDir: abs(".switchboard/data")}, true, Options{Stream: DefaultStream, SubjectPrefix: DefaultSubjectPrefix}},
		{"embedded:///d?port=4333&sync=always&inprocess=false", ServerOptions{DataDir: "/d", Port: 4333, SyncAlways: true}, false,
			Options{Stream: DefaultStream, SubjectPrefix: DefaultSubjectPrefix}},
		{"embedded:///d?sync=1s&inprocess=true&port=0&stream=S&max_age=1h", ServerOptions{DataDir: "/d", SyncInterval: time.Second}, true,
			Options{Stream: "S", SubjectPrefix: DefaultSubjectPrefix, MaxAge: time.Hour}},
	}
	for _, tc := range good {
		t.Run("accepts "+tc.url, func(t *testing.T) {
			r, err := parseEmbeddedURL(mustParse(t, tc.url))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if r.server.DataDir != tc.server.DataDir || r.server.Port != tc.server.Port || r.server.SyncAlways != tc.server.SyncAlways ||
				r.server.SyncInterval != tc.server.SyncInterval || r.inProcess != tc.inProcess || r.opts != tc.opts {
				t.Errorf("got server %+v inprocess %v opts %+v, want %+v %v %+v", r.server, r.inProcess, r.opts, tc.server, tc.inProcess, tc.opts)
			}
		})
	}

	bad := []struct {
		url  string
		want string
	}{
		{"embedded:///d?bogus=1", `unknown parameter "bogus"`},
		{"embedded:///d?port=70000", "parameter port"},
		{"embedded:///d?port=-1", "parameter port"},
		{"embedded:///d?port=x", "parameter port"},
		{"embedded:///d?sync=sometimes", "parameter sync"},
		{"embedded:///d?sync=0s", "parameter sync"},
		{"embedded:///d?inprocess=maybe", "parameter inprocess"},
		{"embedded:///d?replicas=9", "parameter replicas"},
		{"embedded://host/d", "no host"},
		{"embedded://user@/d", "no host"},
	}
	for _, tc := range bad {
		t.Run("rejects "+tc.url, func(t *testing.T) {
			_, err := parseEmbeddedURL(mustParse(t, tc.url))
			checkInvalid(t, err, tc.want)
		})
	}
}

// TestOpenRejectsBadURLs checks that bad URLs fail through bus.Open with
// InvalidArgument before anything is dialled or started.
func TestOpenRejectsBadURLs(t *testing.T) {
	for _, u := range []string{
		"nats://127.0.0.1:1?bogus=1",
		"embedded:///nonexistent/never-created?bogus=1",
	} {
		_, err := bus.Open(context.Background(), u)
		if code := bus.ErrorCode(err); code != bus.InvalidArgument {
			t.Errorf("Open(%q): %v (code %v), want InvalidArgument", u, err, code)
		}
	}
}

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("url.Parse(%q): %v", raw, err)
	}
	return u
}

func checkInvalid(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want an error containing %q", want)
	}
	if !errors.Is(err, driver.ErrInvalid) {
		t.Errorf("error %v does not wrap driver.ErrInvalid", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
}
