package controlplane_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/natsbus"
	"github.com/switchboard-dev/switchboard/controlplane"
	"github.com/switchboard-dev/switchboard/traffic"
)

type helloReq struct {
	Name string `json:"name"`
}
type helloRsp struct {
	Greeting string `json:"greeting"`
}

type greeted struct {
	Name string `json:"name"`
}

var (
	hello   = switchboard.Endpoint[*helloReq, *helloRsp]("greeter", "hello")
	greetEv = switchboard.Topic[*greeted]("greeting.sent")
)

// apiEnv is an embedded NATS server with a control plane and a greeter
// service that counts its traffic and dead-letters greetings of "poison".
type apiEnv struct {
	conn    *bus.Conn
	cp      *controlplane.ControlPlane
	greeter *switchboard.Service
	client  *switchboard.Client
}

func newAPIEnv(t *testing.T) *apiEnv {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := natsbus.StartServer(natsbus.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	ctx := context.Background()
	conn, err := srv.Open(ctx, natsbus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	cp, err := controlplane.Start(ctx, conn, controlplane.Options{Poll: 200 * time.Millisecond, Bucket: time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Shutdown(context.Background()) })
	g := switchboard.NewService("greeter", "1.2.0", append(traffic.ServiceOptions(), switchboard.WithLogger(log))...)
	hello.Handle(g, func(ctx context.Context, r *helloReq) (*helloRsp, error) {
		if r.Name == "" {
			return nil, switchboard.Errorf(switchboard.InvalidArgument, "name is required")
		}
		return &helloRsp{Greeting: "hello " + r.Name}, nil
	})
	greetEv.Subscribe(g, "audit", func(ctx context.Context, ev *greeted) error {
		if ev.Name == "poison" {
			return errors.New("cannot audit poison")
		}
		return nil
	}, switchboard.MaxAttempts(2), switchboard.Backoff(func(int) time.Duration { return 10 * time.Millisecond }))
	if err := g.Start(ctx, conn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Shutdown(context.Background()) })
	cl := switchboard.NewClient(conn, switchboard.WithCaller("tester"))
	t.Cleanup(func() { cl.Close() })
	return &apiEnv{conn: conn, cp: cp, greeter: g, client: cl}
}

// get fetches path and decodes the JSON body into out (if not nil),
// checking the status.
func (e *apiEnv) do(t *testing.T, method, path, body string, wantStatus int, out any) {
	t.Helper()
	req, err := http.NewRequest(method, strings.TrimSuffix(e.cp.URL(), "/")+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	rsp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	b, _ := io.ReadAll(rsp.Body)
	if rsp.StatusCode != wantStatus {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, rsp.StatusCode, wantStatus, b)
	}
	if ct := rsp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s %s: Content-Type %q, want JSON: %s", method, path, ct, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

type errorBody struct {
	Error controlplane.APIError `json:"error"`
}

// wantError checks that the request fails with status, code and a message
// containing each of msgs.
func (e *apiEnv) wantError(t *testing.T, method, path, body string, status int, code string, msgs ...string) controlplane.APIError {
	t.Helper()
	var eb errorBody
	e.do(t, method, path, body, status, &eb)
	if eb.Error.Code != code {
		t.Errorf("%s %s: code %q, want %q (%s)", method, path, eb.Error.Code, code, eb.Error.Message)
	}
	for _, m := range msgs {
		if !strings.Contains(eb.Error.Message, m) {
			t.Errorf("%s %s: message %q does not say %q", method, path, eb.Error.Message, m)
		}
	}
	return eb.Error
}

// eventually retries check until it returns nil, for 10 seconds.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond) // polling an HTTP API: nothing to wait on
	}
}

func TestAPI(t *testing.T) {
	e := newAPIEnv(t)
	ctx := context.Background()

	t.Run("services lists the running services and their endpoints", func(t *testing.T) {
		eventually(t, "greeter in /api/services", func() error {
			var r controlplane.ServicesReply
			e.do(t, "GET", "/api/services", "", 200, &r)
			for _, s := range r.Services {
				if s.Name == "greeter" && s.Instances == 1 && len(s.Endpoints) == 1 && s.Versions[0] == "1.2.0" {
					return nil
				}
			}
			return fmt.Errorf("not listed: %+v", r.Services)
		})
	})

	t.Run("a service's detail has its schemas, topics and instances", func(t *testing.T) {
		var d controlplane.ServiceDetail
		e.do(t, "GET", "/api/services/greeter", "", 200, &d)
		if len(d.EndpointInfo) != 1 || d.EndpointInfo[0].Name != "hello" || !strings.Contains(string(d.EndpointInfo[0].Request), `"name"`) {
			t.Errorf("endpoint info: %+v", d.EndpointInfo)
		}
		if len(d.Subscribes) != 1 || d.Subscribes[0].Topic != "greeting.sent" || len(d.InstanceList) != 1 {
			t.Errorf("subscribes %+v, instances %+v", d.Subscribes, d.InstanceList)
		}
	})

	t.Run("bad service names and unknown services are clear errors", func(t *testing.T) {
		e.wantError(t, "GET", "/api/services/no%20such", "", 400, "InvalidArgument", "invalid service name")
		e.wantError(t, "GET", "/api/services/nosuch", "", 404, "NotFound", "nosuch is not running")
		e.wantError(t, "GET", "/api/instances?service=a.b", "", 400, "InvalidArgument", "invalid service name")
		e.wantError(t, "GET", "/api/services?verbose=1", "", 400, "InvalidArgument", `unknown query parameter "verbose"`)
		e.wantError(t, "GET", "/api/nothing/here", "", 404, "NotFound", "no API at /api/nothing/here")
		// OTLP/HTTP is served next to the API (tracing.OTLPHandler has its own tests).
		rsp, err := http.Post(strings.TrimSuffix(e.cp.URL(), "/")+"/v1/traces", "application/json", strings.NewReader(`{"resourceSpans": []}`))
		if err != nil {
			t.Fatal(err)
		}
		rsp.Body.Close()
		if rsp.StatusCode != http.StatusOK {
			t.Errorf("POST /v1/traces: status %d, want 200", rsp.StatusCode)
		}
	})

	t.Run("call calls any endpoint with JSON and says what went wrong", func(t *testing.T) {
		var r controlplane.CallReply
		e.do(t, "POST", "/api/call/greeter/hello?timeout=5s", `{"name":"ada"}`, 200, &r)
		if !strings.Contains(string(r.Reply), "hello ada") || r.Instance != e.greeter.ID() {
			t.Errorf("reply %s from %s", r.Reply, r.Instance)
		}
		e.wantError(t, "POST", "/api/call/greeter/hello", `{"name":`, 400, "InvalidArgument", "malformed JSON body")
		e.wantError(t, "POST", "/api/call/greeter/hello", `{}`, 400, "InvalidArgument", "name is required")
		e.wantError(t, "POST", "/api/call/greeter/goodbye", `{}`, 404, "Unimplemented", "goodbye")
		e.wantError(t, "POST", "/api/call/nosuch/hello", `{}`, 503, "Unavailable", "nosuch")
		e.wantError(t, "POST", "/api/call/greeter/hello?timeout=soon", `{}`, 400, "InvalidArgument", `invalid timeout "soon"`)
		e.wantError(t, "POST", "/api/call/greeter/hello?timeout=1h", `{}`, 400, "InvalidArgument", "invalid timeout")
		e.wantError(t, "GET", "/api/call/greeter/hello", "", 405, "InvalidArgument", "method GET is not allowed", "POST")
	})

	t.Run("stats count requests, errors and callers, with rates and percentiles", func(t *testing.T) {
		for i := range 20 {
			if _, err := hello.Call(ctx, e.client, &helloReq{Name: fmt.Sprint("n", i)}); err != nil {
				t.Fatal(err)
			}
		}
		_, _ = hello.Call(ctx, e.client, &helloReq{}) // one error
		eventually(t, "stats of greeter.hello", func() error {
			var r controlplane.StatsReply
			e.do(t, "GET", "/api/stats?service=greeter&endpoint=hello&points=10", "", 200, &r)
			if len(r.Endpoints) != 1 {
				return fmt.Errorf("endpoints %+v", r.Endpoints)
			}
			s := r.Endpoints[0]
			var tester *controlplane.CallerStats
			for i := range s.Callers {
				if s.Callers[i].Caller == "tester" {
					tester = &s.Callers[i]
				}
			}
			// 20 + 1 from tester, 1 from the dashboard's call, 1 more error
			// from the dashboard: at least 21 from tester.
			if tester == nil || tester.Requests < 21 || tester.Errors < 1 {
				return fmt.Errorf("callers %+v", s.Callers)
			}
			if s.Requests < 21 || s.Errors < 1 || s.Rate.M1 <= 0 || s.ErrorRate.M1 <= 0 || s.Latency.P50 == nil || s.Latency.P99 == nil || s.Latency.Mean == nil {
				return fmt.Errorf("stats %+v", s)
			}
			if *s.Latency.P99 < *s.Latency.P50 || len(s.Points) == 0 || r.BucketSeconds != 1 {
				return fmt.Errorf("latency %v/%v, %d points, bucket %gs", *s.Latency.P50, *s.Latency.P99, len(s.Points), r.BucketSeconds)
			}
			return nil
		})
		e.wantError(t, "GET", "/api/stats?points=abc", "", 400, "InvalidArgument", `invalid points "abc"`)
		e.wantError(t, "GET", "/api/stats?points=100000", "", 400, "InvalidArgument", "invalid points")
		e.wantError(t, "GET", "/api/stats?endpoint=a%2Fb", "", 400, "InvalidArgument", "invalid endpoint name")
	})

	t.Run("the graph has the calls seen, by caller", func(t *testing.T) {
		eventually(t, "edge tester -> greeter", func() error {
			var g controlplane.Graph
			e.do(t, "GET", "/api/graph", "", 200, &g)
			for _, ed := range g.Edges {
				if ed.From == "tester" && ed.To == "greeter" && ed.Kind == controlplane.EdgeCall && ed.Requests >= 21 && ed.Errors >= 1 {
					for _, n := range g.Nodes {
						if n.ID == "tester" && n.Kind == controlplane.NodeClient {
							return nil
						}
					}
				}
			}
			return fmt.Errorf("graph %+v", g)
		})
	})

	t.Run("events are tailed per topic, newest first", func(t *testing.T) {
		for _, n := range []string{"ada", "grace"} {
			if err := greetEv.Publish(ctx, e.client, &greeted{Name: n}); err != nil {
				t.Fatal(err)
			}
		}
		var evs struct{ Events []controlplane.Event }
		eventually(t, "two events in the tail", func() error {
			e.do(t, "GET", "/api/events?topic=greeting.sent", "", 200, &evs)
			if len(evs.Events) != 2 {
				return fmt.Errorf("%d events", len(evs.Events))
			}
			return nil
		})
		if !strings.Contains(string(evs.Events[0].Data), "grace") || evs.Events[0].Seq <= evs.Events[1].Seq || evs.Events[0].Source != "/switchboard/client" && evs.Events[0].Source == "" {
			t.Errorf("events %+v", evs.Events)
		}
		var newer struct{ Events []controlplane.Event }
		e.do(t, "GET", fmt.Sprintf("/api/events?topic=greeting.sent&since=%d", evs.Events[0].Seq), "", 200, &newer)
		if len(newer.Events) != 0 {
			t.Errorf("since the newest: %+v", newer.Events)
		}
		var topics struct{ Topics []controlplane.TopicSummary }
		e.do(t, "GET", "/api/topics", "", 200, &topics)
		if len(topics.Topics) == 0 || topics.Topics[0].Topic != "greeting.sent" || topics.Topics[0].Seen != 2 {
			t.Errorf("topics %+v", topics.Topics)
		}
		e.wantError(t, "GET", "/api/events?topic=greeting..sent", "", 400, "InvalidArgument", "invalid topic")
		e.wantError(t, "GET", "/api/events?limit=0", "", 400, "InvalidArgument", "invalid limit")
		e.wantError(t, "GET", "/api/events?since=-1", "", 400, "InvalidArgument", "invalid since")
	})

	t.Run("dead letters are listed, inspected and replayed", func(t *testing.T) {
		if err := greetEv.Publish(ctx, e.client, &greeted{Name: "poison"}); err != nil {
			t.Fatal(err)
		}
		var list struct {
			DeadLetters []controlplane.DeadLetter `json:"dead_letters"`
		}
		eventually(t, "a dead letter of audit", func() error {
			var places struct{ Places []bus.DeadLetterPlace }
			e.do(t, "GET", "/api/deadletters", "", 200, &places)
			if len(places.Places) != 1 || places.Places[0].Group != "audit" || places.Places[0].Count != 1 {
				return fmt.Errorf("places %+v", places.Places)
			}
			return nil
		})
		e.do(t, "GET", "/api/deadletters/audit/greeting.sent", "", 200, &list)
		if len(list.DeadLetters) != 1 || !strings.Contains(list.DeadLetters[0].Reason, "cannot audit poison") || list.DeadLetters[0].Attempts != 2 {
			t.Fatalf("dead letters %+v", list.DeadLetters)
		}
		id := list.DeadLetters[0].ID
		var one controlplane.DeadLetter
		e.do(t, "GET", "/api/deadletters/audit/greeting.sent/"+id, "", 200, &one)
		if one.Event == nil || !strings.Contains(string(one.Event.Data), "poison") || one.Event.Headers["Sb-Dead-Group"] != "audit" {
			t.Errorf("dead letter %+v, event %+v", one, one.Event)
		}
		e.wantError(t, "GET", "/api/deadletters/audit/greeting.sent/999999", "", 404, "NotFound")
		e.wantError(t, "GET", "/api/deadletters/nogroup/greeting.sent", "", 404, "NotFound")
		e.wantError(t, "GET", "/api/deadletters/bad.group/x", "", 400, "InvalidArgument", `invalid group "bad.group"`)
		e.wantError(t, "GET", "/api/deadletters?group=audit", "", 400, "InvalidArgument", "both group and topic")
		e.wantError(t, "GET", "/api/deadletters/audit/greeting.sent?limit=x", "", 400, "InvalidArgument", "invalid limit")
		e.wantError(t, "POST", "/api/deadletters/audit/greeting.sent/replay", `{"ids":`, 400, "InvalidArgument", "malformed body")
		e.wantError(t, "POST", "/api/deadletters/audit/greeting.sent/replay", `{}`, 400, "InvalidArgument", "say which")
		e.wantError(t, "POST", "/api/deadletters/audit/greeting.sent/replay", `{"ids":["1"],"extra":1}`, 400, "InvalidArgument", "unknown field")
		var rep controlplane.ReplayReply
		e.do(t, "POST", "/api/deadletters/audit/greeting.sent/"+id+"/replay", "", 200, &rep)
		if len(rep.Replayed) != 1 || rep.Replayed[0] != id {
			t.Errorf("replay %+v", rep)
		}
		// Replayed, it fails again and becomes a new dead letter.
		eventually(t, "the replay dead-lettered again", func() error {
			e.do(t, "GET", "/api/deadletters/audit/greeting.sent", "", 200, &list)
			if len(list.DeadLetters) != 1 || list.DeadLetters[0].ID == id || list.DeadLetters[0].Replayed != 1 {
				return fmt.Errorf("dead letters %+v", list.DeadLetters)
			}
			return nil
		})
	})

	t.Run("traces need a trace store and a well-formed id", func(t *testing.T) {
		e.wantError(t, "GET", "/api/traces", "", 503, "Unavailable", "no trace store is running")
		e.wantError(t, "GET", "/api/traces/0123456789abcdef0123456789abcdef", "", 503, "Unavailable", "no trace store")
		e.wantError(t, "GET", "/api/traces/xyz", "", 400, "InvalidArgument", "invalid trace id")
		e.wantError(t, "GET", "/api/traces?endpoint=nodot", "", 400, "InvalidArgument", "invalid endpoint")
		e.wantError(t, "GET", "/api/traces?limit=5000", "", 400, "InvalidArgument", "invalid limit")
	})

	t.Run("the control plane answers on the bus too", func(t *testing.T) {
		r, err := controlplane.ListServices.Call(ctx, e.client, &controlplane.ServicesRequest{})
		if err != nil || len(r.Services) < 2 {
			t.Fatalf("services over the bus: %v, %+v", err, r)
		}
		if _, err := controlplane.GetStats.Call(ctx, e.client, &controlplane.StatsRequest{Points: -1}); switchboard.ErrorCode(err) != switchboard.InvalidArgument {
			t.Errorf("stats with points -1: %v", err)
		}
	})

	t.Run("a service that stopped is reported gone", func(t *testing.T) {
		if err := e.greeter.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		eventually(t, "greeter gone", func() error {
			rsp, err := http.Get(strings.TrimSuffix(e.cp.URL(), "/") + "/api/services/greeter")
			if err != nil {
				return err
			}
			defer rsp.Body.Close()
			var eb errorBody
			if err := json.NewDecoder(rsp.Body).Decode(&eb); err != nil || rsp.StatusCode != 404 {
				return fmt.Errorf("status %d, %v", rsp.StatusCode, err)
			}
			if !strings.Contains(eb.Error.Message, "greeter is not running: its last instance left") || eb.Error.Details["last_seen"] == "" {
				return fmt.Errorf("%+v", eb.Error)
			}
			return nil
		})
		// Its history stays.
		var r controlplane.StatsReply
		e.do(t, "GET", "/api/stats?service=greeter", "", 200, &r)
		if len(r.Endpoints) != 1 || r.Endpoints[0].Requests < 21 {
			t.Errorf("history of a stopped service: %+v", r.Endpoints)
		}
	})
}

func TestDashboardAssetsAreSelfContained(t *testing.T) {
	e := newAPIEnv(t)
	for _, path := range []string{"/", "/app.js", "/style.css"} {
		rsp, err := http.Get(strings.TrimSuffix(e.cp.URL(), "/") + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rsp.Body)
		rsp.Body.Close()
		if rsp.StatusCode != 200 || len(b) == 0 {
			t.Fatalf("GET %s: %d", path, rsp.StatusCode)
		}
		// Nothing may be loaded from outside: no absolute URL but the SVG
		// namespace name, which is an identifier, not a download.
		text := strings.ReplaceAll(string(b), "http://www.w3.org/2000/svg", "")
		for _, bad := range []string{"http://", "https://", "//cdn", "@import"} {
			if strings.Contains(text, bad) {
				t.Errorf("%s contains %q: the dashboard must work offline", path, bad)
			}
		}
	}
	rsp, err := http.Post(e.cp.URL(), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	rsp.Body.Close()
	if rsp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d", rsp.StatusCode)
	}
}
