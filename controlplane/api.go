package controlplane

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/tracing"
	"github.com/switchboard-dev/switchboard/wire"
)

//go:embed web
var webFS embed.FS

// TraceStoreService is the service the control plane asks for traces
// (package tracestore runs it; `switchboard dev` starts one).
const TraceStoreService = "traces"

// Limits of the API's parameters.
const (
	maxLimit       = 1000
	defaultLimit   = 50
	maxCallTimeout = 5 * time.Minute
	defaultTimeout = 10 * time.Second
)

// APIError is the body of every failed API request:
// {"error": {"code": "InvalidArgument", "message": "..."}}, where code is a
// Switchboard error code and the HTTP status matches it (see httpStatus).
type APIError struct {
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Details map[string]string `json:"details,omitempty"`
}

type route struct {
	method, path string
	params       []string // query parameters it accepts
	h            func(w http.ResponseWriter, r *http.Request) error
}

// Handler returns the HTTP handler of the API (under /api/) and the
// dashboard (everything else).
func (cp *ControlPlane) Handler() http.Handler {
	routes := []route{
		{"GET", "/api/services", nil, cp.apiServices},
		{"GET", "/api/services/{service}", nil, cp.apiService},
		{"GET", "/api/instances", []string{"service"}, cp.apiInstances},
		{"GET", "/api/stats", []string{"service", "endpoint", "points"}, cp.apiStats},
		{"GET", "/api/graph", nil, cp.apiGraph},
		{"GET", "/api/topics", nil, cp.apiTopics},
		{"GET", "/api/events", []string{"topic", "since", "limit"}, cp.apiEvents},
		{"GET", "/api/deadletters", []string{"group", "topic"}, cp.apiDeadLetterPlaces},
		{"GET", "/api/deadletters/{group}/{topic}", []string{"limit"}, cp.apiDeadLetters},
		{"GET", "/api/deadletters/{group}/{topic}/{id}", nil, cp.apiDeadLetter},
		{"POST", "/api/deadletters/{group}/{topic}/replay", nil, cp.apiReplay},
		{"POST", "/api/deadletters/{group}/{topic}/{id}/replay", nil, cp.apiReplay},
		{"POST", "/api/call/{service}/{endpoint}", []string{"timeout", "version", "instance"}, cp.apiCall},
		{"GET", "/api/traces", []string{"endpoint", "limit"}, cp.apiTraces},
		{"GET", "/api/traces/{id}", []string{"wait_ms"}, cp.apiTrace},
	}
	mux := http.NewServeMux()
	for _, rt := range routes {
		mux.Handle(rt.method+" "+rt.path, cp.api(rt))
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		// A path that another method serves is a wrong method, not a
		// wrong path.
		var allowed []string
		for _, m := range []string{"GET", "POST"} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, p := mux.Handler(probe); strings.HasPrefix(p, m+" ") {
				allowed = append(allowed, m)
			}
		}
		if len(allowed) > 0 {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			writeError(w, http.StatusMethodNotAllowed, bus.InvalidArgument.String(),
				fmt.Sprintf("method %s is not allowed on %s: use %s", r.Method, r.URL.Path, strings.Join(allowed, " or ")), nil)
			return
		}
		writeError(w, http.StatusNotFound, bus.NotFound.String(), fmt.Sprintf("no API at %s: see docs/operations.md, \"Control plane and dashboard\"", r.URL.Path), nil)
	})
	// OTLP/HTTP, so services instrumented with plain OpenTelemetry, in any
	// language, show in the same trace views (OTEL_EXPORTER_OTLP_ENDPOINT
	// = this server's URL).
	mux.Handle(tracing.OTLPPath, tracing.OTLPHandler(cp.conn))
	static, err := fs.Sub(webFS, "web")
	if err != nil {
		panic(err) // embedded at build time: cannot happen
	}
	files := http.FileServerFS(static)
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}))
	return mux
}

// api adapts a route's handler: it rejects unknown query parameters and
// turns returned errors into JSON error replies.
func (cp *ControlPlane) api(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k := range r.URL.Query() {
			if !slices.Contains(rt.params, k) {
				msg := fmt.Sprintf("unknown query parameter %q", k)
				if len(rt.params) > 0 {
					msg += ": " + rt.path + " takes " + strings.Join(rt.params, ", ")
				} else {
					msg += ": " + rt.path + " takes none"
				}
				writeError(w, http.StatusBadRequest, bus.InvalidArgument.String(), msg, nil)
				return
			}
		}
		if err := rt.h(w, r); err != nil {
			var be *bus.Error
			if errors.As(err, &be) {
				writeError(w, httpStatus(be.Code), be.Code.String(), strings.TrimPrefix(be.Message, "bus: "), be.Details)
				return
			}
			writeError(w, http.StatusInternalServerError, bus.Internal.String(), err.Error(), nil)
		}
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string, details map[string]string) {
	writeJSON(w, status, map[string]APIError{"error": {Code: code, Message: msg, Details: details}})
}

// httpStatus maps a Switchboard error code to an HTTP status, as gRPC
// gateways do.
func httpStatus(c bus.Code) int {
	switch c {
	case bus.InvalidArgument, bus.OutOfRange:
		return http.StatusBadRequest
	case bus.Unauthenticated:
		return http.StatusUnauthorized
	case bus.PermissionDenied:
		return http.StatusForbidden
	case bus.NotFound, bus.Unimplemented:
		return http.StatusNotFound
	case bus.AlreadyExists, bus.Aborted:
		return http.StatusConflict
	case bus.FailedPrecondition:
		return http.StatusPreconditionFailed
	case bus.ResourceExhausted:
		return http.StatusTooManyRequests
	case bus.Canceled:
		return 499
	case bus.Unavailable:
		return http.StatusServiceUnavailable
	case bus.DeadlineExceeded:
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

func invalid(format string, args ...any) error {
	return &bus.Error{Code: bus.InvalidArgument, Message: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &bus.Error{Code: bus.NotFound, Message: fmt.Sprintf(format, args...)}
}

// intParam reads an integer query parameter within [lo, hi], def if absent.
func intParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, invalid("invalid %s %q: want an integer from %d to %d", name, v, lo, hi)
	}
	return n, nil
}

func nameParam(kind, v string) error {
	if err := wire.ValidateName(kind, v); err != nil {
		return invalid("invalid %s name %q: use 1 to 128 letters, digits, '_' and '-'", kind, v)
	}
	return nil
}

func topicParam(v string) error {
	for _, part := range strings.Split(v, ".") {
		if wire.ValidateName("topic", part) != nil {
			return invalid("invalid topic %q: want dot-separated names of letters, digits, '_' and '-', e.g. trip.completed", v)
		}
	}
	return nil
}

func (cp *ControlPlane) apiServices(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, ServicesReply{Services: orEmpty(cp.services(time.Now()))})
	return nil
}

func (cp *ControlPlane) apiService(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("service")
	if err := nameParam("service", name); err != nil {
		return err
	}
	now := time.Now()
	d, ok := cp.service(name, now)
	if ok {
		writeJSON(w, http.StatusOK, d)
		return nil
	}
	if at, gone := cp.state.goneAt(name); gone {
		return &bus.Error{Code: bus.NotFound, Message: fmt.Sprintf("service %s is not running: its last instance left %s ago", name, now.Sub(at).Round(time.Second)),
			Details: map[string]string{"last_seen": at.UTC().Format(time.RFC3339)}}
	}
	return notFound("service %s is not running (no instance has announced itself)", name)
}

func (cp *ControlPlane) apiInstances(w http.ResponseWriter, r *http.Request) error {
	svc := r.URL.Query().Get("service")
	if svc != "" {
		if err := nameParam("service", svc); err != nil {
			return err
		}
	}
	now := time.Now()
	out := []InstanceDetail{}
	for _, v := range cp.state.snapshot(now) {
		if svc == "" || v.Info.Service == svc {
			out = append(out, instanceDetail(v, now))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"instances": out})
	return nil
}

func (cp *ControlPlane) apiStats(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	svc, ep := q.Get("service"), q.Get("endpoint")
	if svc != "" {
		if err := nameParam("service", svc); err != nil {
			return err
		}
	}
	if ep != "" {
		if err := nameParam("endpoint", ep); err != nil {
			return err
		}
	}
	points, err := intParam(r, "points", 60, 0, cp.stats.n)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, StatsReply{BucketSeconds: cp.opts.Bucket.Seconds(), Endpoints: orEmpty(cp.stats.query(svc, ep, points, time.Now()))})
	return nil
}

func (cp *ControlPlane) apiGraph(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, cp.graph(time.Now()))
	return nil
}

func (cp *ControlPlane) apiTopics(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]any{"topics": cp.events.summaries(), "events_per_topic": cp.events.perTopic})
	return nil
}

func (cp *ControlPlane) apiEvents(w http.ResponseWriter, r *http.Request) error {
	topic := r.URL.Query().Get("topic")
	if topic != "" {
		if err := topicParam(topic); err != nil {
			return err
		}
	}
	limit, err := intParam(r, "limit", defaultLimit, 1, maxLimit)
	if err != nil {
		return err
	}
	since, err := intParam(r, "since", 0, 0, int(^uint(0)>>1))
	if err != nil {
		return err
	}
	types := topicTypes(cp.state.snapshot(time.Now()))
	out := []Event{}
	for _, ev := range cp.events.recent(topic, int64(since), limit) {
		out = append(out, eventJSON(ev, types))
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": out})
	return nil
}

// DeadLetter is a dead letter as the API lists it.
type DeadLetter struct {
	ID         string     `json:"id"`
	Group      string     `json:"group"`
	Topic      string     `json:"topic"`
	Attempts   int        `json:"attempts"`
	Reason     string     `json:"reason"`
	DeadTime   *time.Time `json:"dead_time,omitempty"`
	OriginalID string     `json:"original_id,omitempty"`
	Replayed   int        `json:"replayed,omitempty"`
	EventID    string     `json:"event_id,omitempty"`
	EventType  string     `json:"event_type,omitempty"`
	// Event is the stored message, decoded (only when one is asked for).
	Event *Event `json:"event,omitempty"`
}

func deadLetter(d *bus.DeadLetter) DeadLetter {
	j := DeadLetter{ID: d.ID, Group: d.Group, Topic: d.Topic, Attempts: d.Attempts, Reason: d.Reason,
		OriginalID: d.OriginalID, Replayed: d.Replayed,
		EventID: d.Message.Header.Get(wire.HeaderCEID), EventType: d.Message.Header.Get(wire.HeaderCEType)}
	if !d.Time.IsZero() {
		t := d.Time.UTC()
		j.DeadTime = &t
	}
	return j
}

func placeParams(r *http.Request) (group, topic string, err error) {
	group, topic = r.PathValue("group"), r.PathValue("topic")
	if group == "" {
		group, topic = r.URL.Query().Get("group"), r.URL.Query().Get("topic")
	}
	if group != "" && !bus.ValidName(group) {
		return "", "", invalid("invalid group %q: use letters, digits, '_' and '-'", group)
	}
	if topic != "" {
		if err := topicParam(topic); err != nil {
			return "", "", err
		}
	}
	return group, topic, nil
}

func busCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 30*time.Second)
}

func (cp *ControlPlane) apiDeadLetterPlaces(w http.ResponseWriter, r *http.Request) error {
	group, topic, err := placeParams(r)
	if err != nil {
		return err
	}
	if (group == "") != (topic == "") {
		return invalid("give both group and topic, or neither")
	}
	ctx, cancel := busCtx(r)
	defer cancel()
	var places []bus.DeadLetterPlace
	source := "broker"
	if group != "" {
		ds, err := cp.conn.DeadLetters(ctx, group, topic, bus.DeadLetterFilter{})
		if err != nil {
			return err
		}
		places = []bus.DeadLetterPlace{{Group: group, Topic: topic, Count: len(ds)}}
	} else if places, err = cp.conn.DeadLetterPlaces(ctx); bus.ErrorCode(err) == bus.Unimplemented {
		// The broker cannot list them (RabbitMQ over AMQP): look in the
		// places of the consumer groups that running services announce.
		source = "discovery"
		if places, err = cp.knownPlaces(ctx); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"places": orEmpty(places), "source": source, "features": cp.conn.DeadLetterSupport()})
	return nil
}

// knownPlaces counts the dead letters of every consumer group that running
// services announce, leaving out the empty places.
func (cp *ControlPlane) knownPlaces(ctx context.Context) ([]bus.DeadLetterPlace, error) {
	var insts []wire.InstanceInfo
	for _, v := range cp.state.snapshot(time.Now()) {
		insts = append(insts, v.Info)
	}
	return switchboard.KnownDeadLetterPlaces(ctx, cp.conn, insts)
}

func (cp *ControlPlane) apiDeadLetters(w http.ResponseWriter, r *http.Request) error {
	group, topic, err := placeParams(r)
	if err != nil {
		return err
	}
	limit, err := intParam(r, "limit", defaultLimit, 1, maxLimit)
	if err != nil {
		return err
	}
	ctx, cancel := busCtx(r)
	defer cancel()
	ds, err := cp.conn.DeadLetters(ctx, group, topic, bus.DeadLetterFilter{Limit: limit})
	if err != nil {
		return err
	}
	out := make([]DeadLetter, len(ds))
	for i, d := range ds {
		out[i] = deadLetter(d)
	}
	writeJSON(w, http.StatusOK, map[string]any{"dead_letters": out})
	return nil
}

func (cp *ControlPlane) apiDeadLetter(w http.ResponseWriter, r *http.Request) error {
	group, topic, err := placeParams(r)
	if err != nil {
		return err
	}
	ctx, cancel := busCtx(r)
	defer cancel()
	d, err := cp.conn.DeadLetter(ctx, group, topic, r.PathValue("id"))
	if err != nil {
		return err
	}
	j := deadLetter(d)
	ev := eventJSON(storedEvent{topic: topic, header: d.Message.Header, body: d.Message.Body, size: len(d.Message.Body)},
		topicTypes(cp.state.snapshot(time.Now())))
	j.Event = &ev
	writeJSON(w, http.StatusOK, j)
	return nil
}

// ReplayRequest is the body of POST /api/deadletters/{group}/{topic}/replay:
// the IDs to replay, or all of them.
type ReplayRequest struct {
	IDs []string `json:"ids"`
	All bool     `json:"all"`
}

// ReplayReply says what a replay did.
type ReplayReply struct {
	Replayed   []string `json:"replayed"`
	NotRemoved []string `json:"not_removed"`
	Pending    []string `json:"pending"`
}

func (cp *ControlPlane) apiReplay(w http.ResponseWriter, r *http.Request) error {
	group, topic, err := placeParams(r)
	if err != nil {
		return err
	}
	var req ReplayRequest
	if id := r.PathValue("id"); id != "" {
		req.IDs = []string{id}
	} else {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			return invalid("read the body: %v", err)
		}
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return invalid(`malformed body: %v: want {"ids": ["ID", ...]} or {"all": true}`, err)
		}
		if req.All == (len(req.IDs) > 0) {
			return invalid(`say which dead letters to replay: {"ids": ["ID", ...]} or {"all": true}, not both`)
		}
	}
	ctx, cancel := busCtx(r)
	defer cancel()
	res, err := cp.conn.ReplayDeadLetters(ctx, group, topic, bus.DeadLetterFilter{IDs: req.IDs})
	if err != nil && res == nil {
		return err
	}
	rep := ReplayReply{Replayed: idsOf(res.Replayed), NotRemoved: idsOf(res.NotRemoved), Pending: idsOf(res.Pending)}
	if err != nil {
		var be *bus.Error
		code := bus.Internal
		if errors.As(err, &be) {
			code = be.Code
		}
		writeJSON(w, httpStatus(code), map[string]any{"error": APIError{Code: code.String(), Message: err.Error()}, "result": rep})
		return nil
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

func idsOf(ds []*bus.DeadLetter) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

// CallReply is the answer of POST /api/call/{service}/{endpoint}.
type CallReply struct {
	Service    string          `json:"service"`
	Endpoint   string          `json:"endpoint"`
	Instance   string          `json:"instance,omitempty"`
	DurationMS float64         `json:"duration_ms"`
	Reply      json.RawMessage `json:"reply"`
}

func (cp *ControlPlane) apiCall(w http.ResponseWriter, r *http.Request) error {
	svc, ep := r.PathValue("service"), r.PathValue("endpoint")
	if err := nameParam("service", svc); err != nil {
		return err
	}
	if err := nameParam("endpoint", ep); err != nil {
		return err
	}
	q := r.URL.Query()
	opts := []switchboard.CallOption{switchboard.WithTimeout(defaultTimeout)}
	if v := q.Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > maxCallTimeout {
			return invalid("invalid timeout %q: want a duration from 1ms to %s, such as 5s", v, maxCallTimeout)
		}
		opts = append(opts, switchboard.WithTimeout(d))
	}
	if v := q.Get("version"); v != "" {
		opts = append(opts, switchboard.WithVersion(v))
	}
	if v := q.Get("instance"); v != "" {
		if err := nameParam("instance", v); err != nil {
			return err
		}
		opts = append(opts, switchboard.WithInstance(v))
	}
	limit := cp.conn.MaxMessageSize()
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil {
		return invalid("read the body: %v", err)
	}
	if len(body) > limit {
		return &bus.Error{Code: bus.InvalidArgument, Message: fmt.Sprintf("body over the bus's message limit of %d bytes", limit)}
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		body = []byte("{}")
	}
	if !json.Valid(body) {
		var v any
		err := json.Unmarshal(body, &v)
		return invalid("malformed JSON body: %v", err)
	}
	start := time.Now()
	rep, err := cp.client.CallJSON(r.Context(), svc, ep, body, opts...)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, CallReply{Service: svc, Endpoint: ep, Instance: rep.Instance,
		DurationMS: float64(time.Since(start).Microseconds()) / 1000, Reply: rep.Body})
	return nil
}

var traceIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// traceStoreError explains that no trace store runs.
func traceStoreError(err error) error {
	if bus.ErrorCode(err) == bus.Unavailable {
		return &bus.Error{Code: bus.Unavailable, Message: "no trace store is running (service " + TraceStoreService +
			"): 'switchboard dev' starts one; elsewhere run package tracestore's collector"}
	}
	return err
}

func (cp *ControlPlane) apiTraces(w http.ResponseWriter, r *http.Request) error {
	ep := r.URL.Query().Get("endpoint")
	if ep != "" {
		svc, name, ok := strings.Cut(ep, ".")
		if !ok || wire.ValidateName("service", svc) != nil || topicParam(name) != nil {
			return invalid("invalid endpoint %q: want service.endpoint (or service.topic), e.g. trips.request_trip", ep)
		}
	}
	limit, err := intParam(r, "limit", 20, 1, maxLimit)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]any{"endpoint": ep, "limit": limit})
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	rep, err := cp.client.CallJSON(ctx, TraceStoreService, "recent", body)
	if err != nil {
		return traceStoreError(err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, err = w.Write(rep.Body)
	return err
}

func (cp *ControlPlane) apiTrace(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if !traceIDRE.MatchString(id) {
		return invalid("invalid trace id %q: want 32 lowercase hex digits", id)
	}
	wait, err := intParam(r, "wait_ms", 0, 0, 30000)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]any{"trace_id": id, "wait_ms": wait})
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second+time.Duration(wait)*time.Millisecond)
	defer cancel()
	rep, err := cp.client.CallJSON(ctx, TraceStoreService, "get_trace", body)
	if err != nil {
		if bus.ErrorCode(err) == bus.NotFound {
			return notFound("no trace %s in the trace store (not sampled, not arrived yet, or evicted)", id)
		}
		return traceStoreError(err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, err = w.Write(rep.Body)
	return err
}
