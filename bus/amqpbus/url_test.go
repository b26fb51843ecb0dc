package amqpbus

import (
	"context"
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/driver"
)

func TestParseURL(t *testing.T) {
	defaults := config{name: DefaultName, prefix: DefaultPrefix, queueType: DefaultQueueType, prefetch: DefaultPrefetch,
		heartbeat: DefaultHeartbeat, connectTimeout: DefaultConnectTimeout, maxMessageSize: DefaultMaxMessageSize}
	with := func(f func(*config)) config { c := defaults; f(&c); return c }
	good := []struct {
		url  string
		uris []string
		want config
	}{
		{"amqp://guest:guest@127.0.0.1:5672/", []string{"amqp://guest:guest@127.0.0.1:5672/"}, defaults},
		{"amqp://localhost", []string{"amqp://localhost"}, defaults},
		{"amqp://u:p%40ss@h/vhost", []string{"amqp://u:p%40ss@h/vhost"}, defaults},
		{"amqp://h/%2F", []string{"amqp://h/%2F"}, defaults},
		{"amqp://u:p@a:5672,b:5673/v", []string{"amqp://u:p@a:5672/v", "amqp://u:p@b:5673/v"}, defaults},
		{"amqps://h:5671/?cacertfile=/ca.pem&server_name_indication=rabbit", []string{"amqps://h:5671/?cacertfile=%2Fca.pem&server_name_indication=rabbit"}, defaults},
		{"amqp://h/?name=billing&prefix=app.bus&queue_type=classic&prefetch=10&heartbeat=30s&connect_timeout=2s&max_message_size=1048576&queue_expires=10m",
			[]string{"amqp://h/"}, with(func(c *config) {
				c.name, c.prefix, c.queueType, c.prefetch, c.heartbeat = "billing", "app.bus", "classic", 10, 30*time.Second
				c.connectTimeout, c.maxMessageSize, c.queueExpires = 2*time.Second, 1<<20, 10*time.Minute
			})},
	}
	for _, tc := range good {
		t.Run("accepts "+tc.url, func(t *testing.T) {
			got, err := parseURL(mustParse(t, tc.url))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if strings.Join(got.uris, " ") != strings.Join(tc.uris, " ") {
				t.Errorf("uris %q, want %q", got.uris, tc.uris)
			}
			got.uris, got.shown = nil, ""
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("got %+v, want %+v", *got, tc.want)
			}
		})
	}

	bad := []struct {
		url  string
		want string // in the error message
	}{
		{"amqp://h/?bogus=1", `unknown parameter "bogus"`},
		{"amqp://h/?heartbeat=10", "parameter heartbeat"}, // amqp091-go's seconds are not ours
		{"amqp://h/?channel_max=10", `unknown parameter "channel_max"`},
		{"amqp://h/?name=a&name=b", `parameter "name" given 2 times`},
		{"amqp://h/?name=", "parameter name"},
		{"amqp://h/?prefix=amq.sb", "reserved by the broker"},
		{"amqp://h/?prefix=sb..x", "parameter prefix"},
		{"amqp://h/?prefix=s*b", "parameter prefix"},
		{"amqp://h/?queue_type=stream", "parameter queue_type"},
		{"amqp://h/?prefetch=0", "parameter prefetch"},
		{"amqp://h/?prefetch=x", "parameter prefetch"},
		{"amqp://h/?heartbeat=500ms", "parameter heartbeat"},
		{"amqp://h/?connect_timeout=-1s", "parameter connect_timeout"},
		{"amqp://h/?max_message_size=10", "parameter max_message_size"},
		{"amqp://h/?max_message_size=1073741824", "parameter max_message_size"},
		{"amqp://h/?queue_expires=10ms", "parameter queue_expires"},
		{"amqp://h/?queue_expires=soon", "parameter queue_expires"},
		{"amqp://h/?cacertfile=/ca.pem", "only for amqps"},
		{"amqp://h/?%zz", "bad query"},
		{"amqp://h/a/b", "one segment"},
		{"amqp://h/#frag", "no fragment"},
		{"amqp://a,,b/", "empty host"},
		{"amqp://h:notaport/", "host"},
		{"amqp:opaque", "want amqp://"},
		{"amqp:///vhost", "want amqp://"},
		{"nats://h/", "scheme must be"},
	}
	for _, tc := range bad {
		t.Run("rejects "+tc.url, func(t *testing.T) {
			u, err := url.Parse(tc.url)
			if err != nil {
				if strings.Contains(tc.want, "host") {
					return // net/url refuses it already
				}
				t.Fatalf("url.Parse: %v", err)
			}
			_, err = parseURL(u)
			checkInvalid(t, err, tc.want)
		})
	}
}

func TestShownURLHasNoPassword(t *testing.T) {
	c, err := parseURL(mustParse(t, "amqp://bob:s3cret@h:5672/v?prefix=x"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(c.shown, "s3cret") || !strings.Contains(c.shown, "h:5672") {
		t.Errorf("shown URL %q: want the host without the password", c.shown)
	}
	_, err = parseURL(mustParse(t, "amqp://bob:s3cret@h/?bogus=1"))
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error %v: want one that does not show the password", err)
	}
}

// TestOpenRejectsBadURLs checks that bad URLs fail through bus.Open with
// InvalidArgument before anything is dialled.
func TestOpenRejectsBadURLs(t *testing.T) {
	for _, u := range []string{"amqp://127.0.0.1:1/?bogus=1", "amqps://127.0.0.1:1/?queue_type=lazy"} {
		_, err := bus.Open(context.Background(), u)
		if code := bus.ErrorCode(err); code != bus.InvalidArgument {
			t.Errorf("Open(%q): %v (code %v), want InvalidArgument", u, err, code)
		}
	}
}

func TestBindingKeys(t *testing.T) {
	for _, tc := range []struct{ pattern, key string }{
		{"a.b", "a.b"},
		{"a.*.c", "a.*.c"},
		{"a.>", "a.*.#"},
		{">", "*.#"},
		{"a.*.>", "a.*.*.#"},
	} {
		got, err := bindingKey(tc.pattern)
		if err != nil || got != tc.key {
			t.Errorf("bindingKey(%q) = %q, %v; want %q", tc.pattern, got, err, tc.key)
		}
	}
	for _, p := range []string{"a.#", "#", strings.Repeat("x", 256)} {
		if _, err := bindingKey(p); !errors.Is(err, driver.ErrInvalid) {
			t.Errorf("bindingKey(%q): %v, want ErrInvalid", p, err)
		}
	}
}

func TestQueueNamesAreStableDistinctAndShort(t *testing.T) {
	if got := queueName("sb", "group", "billing", "orders.created"); got != "sb.group.billing.orders.created" {
		t.Errorf("queueName = %q", got)
	}
	if GroupQueue("g", "t") != "sb.group.g.t" || RetryQueue("g", "t") != "sb.retry.g.t" {
		t.Errorf("GroupQueue, RetryQueue = %q, %q", GroupQueue("g", "t"), RetryQueue("g", "t"))
	}
	long := strings.Repeat("très.long.", 40)
	a, b := queueName("sb", "group", "g", long+"a"), queueName("sb", "group", "g", long+"b")
	if a == b || len(a) > 255 || len(b) > 255 {
		t.Errorf("long names %q and %q: want distinct names of at most 255 bytes", a, b)
	}
	if a != queueName("sb", "group", "g", long+"a") {
		t.Error("queueName is not deterministic")
	}
	if !strings.HasPrefix(a, "sb.group.g.très") {
		t.Errorf("long name %q lost its readable prefix", a)
	}
}

func TestReconnectDelayGrowsToFiveSecondsWithJitter(t *testing.T) {
	for attempt, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 7: 5 * time.Second, 100: 5 * time.Second} {
		for range 50 {
			if d := reconnectDelay(attempt); d < want/2 || d > want {
				t.Fatalf("reconnectDelay(%d) = %v, want within [%v, %v]", attempt, d, want/2, want)
			}
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
