package switchboard

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/wire"
)

// Discovery is a cache of running instances, kept from their announcements
// on the bus: there is no registry server. An instance silent for three
// heartbeats, or that said goodbye, is dropped. It starts listening on first
// use. Safe for concurrent use.
type Discovery struct {
	conn *bus.Conn

	mu      sync.Mutex
	started bool
	err     error
	sub     *bus.Subscription
	byID    map[string]*seen
	changed chan struct{} // closed and replaced on every change
}

type seen struct {
	info wire.InstanceInfo
	last time.Time
}

// NewDiscovery returns a discovery cache on conn.
func NewDiscovery(conn *bus.Conn) *Discovery {
	return &Discovery{conn: conn, byID: map[string]*seen{}, changed: make(chan struct{})}
}

func (d *Discovery) start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started {
		return d.err
	}
	d.started = true
	d.sub, d.err = d.conn.Listen(ctx, "sb.disc.*", d.observe)
	return d.err
}

func (d *Discovery) observe(m *bus.Message) {
	var info wire.InstanceInfo
	if json.Unmarshal(m.Body, &info) != nil || info.ID == "" {
		return // not ours to fix; a malformed announcement is ignored
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch m.Subject {
	case wire.SubjectAnnounce:
		d.byID[info.ID] = &seen{info: info, last: time.Now()}
	case wire.SubjectLeave:
		delete(d.byID, info.ID)
	default:
		return
	}
	close(d.changed)
	d.changed = make(chan struct{})
}

// Close stops listening.
func (d *Discovery) Close() {
	d.mu.Lock()
	sub := d.sub
	d.sub = nil
	d.mu.Unlock()
	if sub != nil {
		_ = sub.Stop(context.Background())
	}
}

// live returns the instances of service (all services if "") still alive.
func (d *Discovery) live(service string) []wire.InstanceInfo {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	var out []wire.InstanceInfo
	for id, s := range d.byID {
		hb := s.info.Heartbeat()
		if hb <= 0 {
			hb = 5 * time.Second
		}
		if now.Sub(s.last) > 3*hb {
			delete(d.byID, id)
			continue
		}
		if service == "" || s.info.Service == service {
			out = append(out, s.info)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return out[i].ID < out[j].ID
	})
	return out
}

func (d *Discovery) ping(ctx context.Context, service string) error {
	h := bus.Header{}
	if service != "" {
		h[wire.HeaderService] = service
	}
	return d.conn.Send(ctx, &bus.Message{Subject: wire.SubjectPing, Header: h})
}

// Lookup returns the live instances of service. When none is known it asks
// them to announce and collects answers until none came for a short quiet
// period (so that every instance, not just the fastest, is seen), up to one
// second or ctx's end. An empty result is not an error.
func (d *Discovery) Lookup(ctx context.Context, service string) ([]wire.InstanceInfo, error) {
	if err := d.start(ctx); err != nil {
		return nil, err
	}
	if insts := d.live(service); len(insts) > 0 {
		return insts, nil
	}
	return d.Refresh(ctx, service)
}

// lookupQuiet is how long Refresh waits after the last answer for more.
const lookupQuiet = 150 * time.Millisecond

// Refresh asks the instances of service ("" for all) to announce now and
// returns the live ones once answers stopped arriving for a short quiet
// period, or after one second, or when ctx ends.
func (d *Discovery) Refresh(ctx context.Context, service string) ([]wire.InstanceInfo, error) {
	if err := d.start(ctx); err != nil {
		return nil, err
	}
	if err := d.ping(ctx, service); err != nil {
		return nil, err
	}
	deadline := time.NewTimer(time.Second)
	defer deadline.Stop()
	var quiet <-chan time.Time
	for {
		d.mu.Lock()
		ch := d.changed
		d.mu.Unlock()
		select {
		case <-ch:
			if len(d.live(service)) > 0 {
				quiet = time.After(lookupQuiet)
			}
		case <-quiet:
			return d.live(service), nil
		case <-deadline.C:
			return d.live(service), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// List asks every instance to announce itself and returns all instances
// heard from within wait. It always waits the whole window: under load a
// slow instance's answer can trail the others by hundreds of milliseconds.
func (d *Discovery) List(ctx context.Context, wait time.Duration) ([]wire.InstanceInfo, error) {
	if err := d.start(ctx); err != nil {
		return nil, err
	}
	if err := d.ping(ctx, ""); err != nil {
		return nil, err
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return d.live(""), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ServiceSummary groups instances of one service.
type ServiceSummary struct {
	Name        string              `json:"name"`
	Description string              `json:"description,omitempty"`
	Versions    []string            `json:"versions"`
	Instances   []wire.InstanceInfo `json:"instances"`
	Endpoints   []string            `json:"endpoints"`
}

// Summarize groups instances by service, sorted by name.
func Summarize(insts []wire.InstanceInfo) []ServiceSummary {
	by := map[string]*ServiceSummary{}
	var names []string
	for _, in := range insts {
		s := by[in.Service]
		if s == nil {
			s = &ServiceSummary{Name: in.Service, Description: in.Description}
			by[in.Service] = s
			names = append(names, in.Service)
		}
		s.Instances = append(s.Instances, in)
		if !slices.Contains(s.Versions, in.Version) {
			s.Versions = append(s.Versions, in.Version)
		}
		for _, e := range in.Endpoints {
			if !slices.Contains(s.Endpoints, e.Name) {
				s.Endpoints = append(s.Endpoints, e.Name)
			}
		}
	}
	sort.Strings(names)
	out := make([]ServiceSummary, 0, len(names))
	for _, n := range names {
		s := by[n]
		sort.Strings(s.Versions)
		sort.Strings(s.Endpoints)
		out = append(out, *s)
	}
	return out
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
