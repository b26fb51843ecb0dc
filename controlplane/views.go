package controlplane

import (
	"context"
	"slices"
	"sort"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/wire"
)

// ServiceSummary is one service in the catalogue: what its running
// instances announce, summed.
type ServiceSummary struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Versions    []string `json:"versions"`
	Instances   int      `json:"instances"`
	// Health is the worst health its instances report: healthy, degraded,
	// unhealthy, or unknown when none reports.
	Health    string   `json:"health"`
	Endpoints []string `json:"endpoints"`
	// Requests and Errors are counted since each instance started.
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	// RequestsPerS and ErrorsPerS are the 1-minute rates over all its
	// endpoints.
	RequestsPerS float64 `json:"requests_per_s"`
	ErrorsPerS   float64 `json:"errors_per_s"`
	// Faults says a fault is injected into one of its instances.
	Faults bool `json:"faults,omitempty"`
}

// ServiceDetail is one service with its endpoints, topics and instances.
type ServiceDetail struct {
	ServiceSummary
	EndpointInfo []wire.EndpointInfo `json:"endpoint_info"`
	Publishes    []wire.TopicInfo    `json:"publishes"`
	Subscribes   []wire.TopicInfo    `json:"subscribes"`
	InstanceList []InstanceDetail    `json:"instance_list"`
	Stats        []EndpointStats     `json:"stats"`
}

// InstanceDetail is one running instance.
type InstanceDetail struct {
	Service       string                        `json:"service"`
	ID            string                        `json:"id"`
	Version       string                        `json:"version"`
	Host          string                        `json:"host"`
	PID           int                           `json:"pid"`
	Started       time.Time                     `json:"started"`
	UptimeSeconds float64                       `json:"uptime_seconds"`
	LastSeen      time.Time                     `json:"last_seen"`
	Metadata      map[string]string             `json:"metadata,omitempty"`
	Health        string                        `json:"health"`
	Checks        []HealthCheck                 `json:"checks,omitempty"`
	Stats         map[string]wire.EndpointStats `json:"stats,omitempty"`
	Faults        []wire.ActiveFault            `json:"faults,omitempty"`
}

func instanceDetail(v instanceView, now time.Time) InstanceDetail {
	in := v.Info
	d := InstanceDetail{Service: in.Service, ID: in.ID, Version: in.Version, Host: in.Host, PID: in.PID,
		Started: in.Started, UptimeSeconds: max(now.Sub(in.Started), 0).Seconds(), LastSeen: v.LastSeen,
		Metadata: in.Metadata, Health: HealthUnknown, Stats: in.Stats, Faults: in.Faults}
	if v.Health != nil {
		d.Health, d.Checks = v.Health.Status, v.Health.Checks
	}
	return d
}

// services summarizes the running services, sorted by name.
func (cp *ControlPlane) services(now time.Time) []ServiceSummary {
	insts := cp.state.snapshot(now)
	rates := cp.rates(now)
	by := map[string]*ServiceSummary{}
	var out []ServiceSummary
	for _, v := range insts {
		s := by[v.Info.Service]
		if s == nil {
			s = &ServiceSummary{Name: v.Info.Service, Description: v.Info.Description, Health: HealthUnknown,
				Versions: []string{}, Endpoints: []string{}}
			by[s.Name] = s
		}
		addInstance(s, v)
	}
	for _, s := range by {
		r := rates[s.Name]
		s.RequestsPerS, s.ErrorsPerS = r[0], r[1]
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func addInstance(s *ServiceSummary, v instanceView) {
	s.Instances++
	if !slices.Contains(s.Versions, v.Info.Version) {
		s.Versions = append(s.Versions, v.Info.Version)
		sort.Strings(s.Versions)
	}
	h := HealthUnknown
	if v.Health != nil {
		h = v.Health.Status
	}
	s.Health = worseHealth(s.Health, h)
	for _, e := range v.Info.Endpoints {
		if !slices.Contains(s.Endpoints, e.Name) {
			s.Endpoints = append(s.Endpoints, e.Name)
			sort.Strings(s.Endpoints)
		}
	}
	for _, st := range v.Info.Stats {
		s.Requests += st.Requests
		s.Errors += st.Errors
	}
	if len(v.Info.Faults) > 0 {
		s.Faults = true
	}
}

// rates returns each service's 1-minute request and error rates.
func (cp *ControlPlane) rates(now time.Time) map[string][2]float64 {
	out := map[string][2]float64{}
	for _, es := range cp.stats.query("", "", 0, now) {
		r := out[es.Service]
		r[0] += es.Rate.M1
		r[1] += es.ErrorRate.M1
		out[es.Service] = r
	}
	return out
}

// detailPoints is how many buckets of history a service's detail carries
// per endpoint.
const detailPoints = 60

// service describes one running service; ok is false if none of its
// instances runs.
func (cp *ControlPlane) service(name string, now time.Time) (ServiceDetail, bool) {
	d := ServiceDetail{ServiceSummary: ServiceSummary{Name: name, Health: HealthUnknown, Versions: []string{}, Endpoints: []string{}},
		EndpointInfo: []wire.EndpointInfo{}, Publishes: []wire.TopicInfo{}, Subscribes: []wire.TopicInfo{}, InstanceList: []InstanceDetail{}}
	// The newest version's description of an endpoint wins.
	var insts []instanceView
	for _, v := range cp.state.snapshot(now) {
		if v.Info.Service == name {
			insts = append(insts, v)
		}
	}
	if len(insts) == 0 {
		return d, false
	}
	sort.SliceStable(insts, func(i, j int) bool { return semverLess(insts[j].Info.Version, insts[i].Info.Version) })
	for _, v := range insts {
		if d.Description == "" {
			d.Description = v.Info.Description
		}
		addInstance(&d.ServiceSummary, v)
		d.InstanceList = append(d.InstanceList, instanceDetail(v, now))
		for _, e := range v.Info.Endpoints {
			if !slices.ContainsFunc(d.EndpointInfo, func(o wire.EndpointInfo) bool { return o.Name == e.Name }) {
				d.EndpointInfo = append(d.EndpointInfo, e)
			}
		}
		for _, t := range v.Info.Publishes {
			if !slices.ContainsFunc(d.Publishes, func(o wire.TopicInfo) bool { return o.Topic == t.Topic }) {
				d.Publishes = append(d.Publishes, t)
			}
		}
		for _, t := range v.Info.Subscribes {
			if !slices.ContainsFunc(d.Subscribes, func(o wire.TopicInfo) bool { return o.Topic == t.Topic && o.Group == t.Group }) {
				d.Subscribes = append(d.Subscribes, t)
			}
		}
	}
	sort.Slice(d.EndpointInfo, func(i, j int) bool { return d.EndpointInfo[i].Name < d.EndpointInfo[j].Name })
	sort.Slice(d.InstanceList, func(i, j int) bool { return d.InstanceList[i].ID < d.InstanceList[j].ID })
	d.Stats = cp.stats.query(name, "", detailPoints, now)
	if d.Stats == nil {
		d.Stats = []EndpointStats{}
	}
	for _, es := range d.Stats {
		d.RequestsPerS += es.Rate.M1
		d.ErrorsPerS += es.ErrorRate.M1
	}
	return d, true
}

// semverLess orders versions numerically where they parse, as strings
// otherwise.
func semverLess(a, b string) bool {
	pa, oka := parseSemver(a)
	pb, okb := parseSemver(b)
	if !oka || !okb {
		return a < b
	}
	return slices.Compare(pa[:], pb[:]) < 0
}

func parseSemver(v string) ([3]int, bool) {
	var out [3]int
	part, n := 0, 0
	seen := false
	for _, r := range v {
		switch {
		case r >= '0' && r <= '9':
			n = n*10 + int(r-'0')
			seen = true
		case r == '.' && part < 2 && seen:
			out[part], part, n, seen = n, part+1, 0, false
		case r == '-' || r == '+':
			if part != 2 || !seen {
				return out, false
			}
			out[2] = n
			return out, true
		default:
			return out, false
		}
	}
	if part != 2 || !seen {
		return out, false
	}
	out[2] = n
	return out, true
}

// Graph is the service graph: services (and the outside callers of them)
// with the calls and events between them.
type Graph struct {
	Nodes []GraphNode `json:"nodes"`
	Edges []GraphEdge `json:"edges"`
}

// Node kinds of a Graph.
const (
	// NodeService is a service running now (or recently called).
	NodeService = "service"
	// NodeClient is a caller that is not a service: the workload, the
	// CLI, the dashboard.
	NodeClient = "client"
)

// GraphNode is one service or caller.
type GraphNode struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// Running says the service has instances now.
	Running      bool    `json:"running"`
	Health       string  `json:"health"`
	Instances    int     `json:"instances"`
	RequestsPerS float64 `json:"requests_per_s"`
	ErrorsPerS   float64 `json:"errors_per_s"`
}

// Edge kinds of a Graph.
const (
	// EdgeCall is calls from one service (or client) to another, as the
	// callee's traffic report counts them by caller.
	EdgeCall = "call"
	// EdgeEvent is a topic one service publishes and another consumes, as
	// both announce it.
	EdgeEvent = "event"
)

// GraphEdge is the traffic from one node to another over the last minute.
type GraphEdge struct {
	From string `json:"from"`
	To   string `json:"to"`
	Kind string `json:"kind"`
	// Endpoints are the callee's endpoints called (call edges); Topic the
	// topic (event edges).
	Endpoints    []string `json:"endpoints,omitempty"`
	Topic        string   `json:"topic,omitempty"`
	Requests     int64    `json:"requests_1m"`
	Errors       int64    `json:"errors_1m"`
	RequestsPerS float64  `json:"requests_per_s"`
	// Health is the callee's health: edges are coloured by it.
	Health string `json:"health"`
}

func (cp *ControlPlane) graph(now time.Time) Graph {
	g := Graph{Nodes: []GraphNode{}, Edges: []GraphEdge{}}
	nodes := map[string]*GraphNode{}
	for _, s := range cp.services(now) {
		nodes[s.Name] = &GraphNode{ID: s.Name, Kind: NodeService, Running: true, Health: s.Health, Instances: s.Instances,
			RequestsPerS: s.RequestsPerS, ErrorsPerS: s.ErrorsPerS}
	}
	node := func(id string) *GraphNode {
		if n := nodes[id]; n != nil {
			return n
		}
		n := &GraphNode{ID: id, Kind: NodeClient, Health: HealthUnknown}
		nodes[id] = n
		return n
	}
	type key struct{ from, to string }
	calls := map[key]*GraphEdge{}
	for _, es := range cp.stats.query("", "", 0, now) {
		for _, c := range es.Callers {
			if c.Requests == 0 {
				continue
			}
			k := key{c.Caller, es.Service}
			e := calls[k]
			if e == nil {
				e = &GraphEdge{From: c.Caller, To: es.Service, Kind: EdgeCall}
				calls[k] = e
			}
			e.Endpoints = append(e.Endpoints, es.Endpoint)
			e.Requests += c.Requests
			e.Errors += c.Errors
			e.RequestsPerS += c.RequestsPerS
		}
	}
	for _, e := range calls {
		node(e.From)
		if n := nodes[e.To]; n == nil {
			nodes[e.To] = &GraphNode{ID: e.To, Kind: NodeService, Health: HealthUnknown}
		}
		sort.Strings(e.Endpoints)
		e.Health = nodes[e.To].Health
		g.Edges = append(g.Edges, *e)
	}
	// Event edges: topics declared published by one service and consumed
	// by another.
	pubs, subs := map[string][]string{}, map[string][]string{}
	for _, v := range cp.state.snapshot(now) {
		for _, t := range v.Info.Publishes {
			if !slices.Contains(pubs[t.Topic], v.Info.Service) {
				pubs[t.Topic] = append(pubs[t.Topic], v.Info.Service)
			}
		}
		for _, t := range v.Info.Subscribes {
			if !slices.Contains(subs[t.Topic], v.Info.Service) {
				subs[t.Topic] = append(subs[t.Topic], v.Info.Service)
			}
		}
	}
	for topic, ps := range pubs {
		for _, p := range ps {
			for _, s := range subs[topic] {
				g.Edges = append(g.Edges, GraphEdge{From: p, To: s, Kind: EdgeEvent, Topic: topic, Health: nodes[s].Health})
			}
		}
	}
	for _, n := range nodes {
		g.Nodes = append(g.Nodes, *n)
	}
	sort.Slice(g.Nodes, func(i, j int) bool { return g.Nodes[i].ID < g.Nodes[j].ID })
	sort.Slice(g.Edges, func(i, j int) bool {
		a, b := g.Edges[i], g.Edges[j]
		if a.From != b.From {
			return a.From < b.From
		}
		if a.To != b.To {
			return a.To < b.To
		}
		return a.Topic < b.Topic
	})
	return g
}

// The control plane's own endpoints on the bus, the same figures as the
// HTTP API for programs that speak the bus rather than HTTP.
var (
	// ListServices returns the service catalogue.
	ListServices = switchboard.Endpoint[*ServicesRequest, *ServicesReply](ServiceName, "services")
	// GetGraph returns the service graph.
	GetGraph = switchboard.Endpoint[*GraphRequest, *Graph](ServiceName, "graph")
	// GetStats returns endpoint stats.
	GetStats = switchboard.Endpoint[*StatsRequest, *StatsReply](ServiceName, "stats")
)

// ServicesRequest asks for the service catalogue.
type ServicesRequest struct{}

// ServicesReply is the service catalogue.
type ServicesReply struct {
	Services []ServiceSummary `json:"services"`
}

// GraphRequest asks for the service graph.
type GraphRequest struct{}

// StatsRequest asks for the stats of a service's endpoints ("" for all).
type StatsRequest struct {
	Service  string `json:"service,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
	// Points is how many buckets of history to return per endpoint.
	Points int `json:"points,omitempty"`
}

// StatsReply holds endpoint stats.
type StatsReply struct {
	BucketSeconds float64         `json:"bucket_seconds"`
	Endpoints     []EndpointStats `json:"endpoints"`
}

func (cp *ControlPlane) handleEndpoints() {
	ListServices.Handle(cp.svc, func(ctx context.Context, _ *ServicesRequest) (*ServicesReply, error) {
		return &ServicesReply{Services: orEmpty(cp.services(time.Now()))}, nil
	}, switchboard.Describe("The running services: versions, instances, health, rates"))
	GetGraph.Handle(cp.svc, func(ctx context.Context, _ *GraphRequest) (*Graph, error) {
		g := cp.graph(time.Now())
		return &g, nil
	}, switchboard.Describe("The service graph: who calls whom over the last minute, and which events flow"))
	GetStats.Handle(cp.svc, func(ctx context.Context, r *StatsRequest) (*StatsReply, error) {
		if r.Points < 0 || r.Points > cp.stats.n {
			return nil, switchboard.Errorf(switchboard.InvalidArgument, "points %d: want 0 to %d", r.Points, cp.stats.n)
		}
		return &StatsReply{BucketSeconds: cp.opts.Bucket.Seconds(), Endpoints: orEmpty(cp.stats.query(r.Service, r.Endpoint, r.Points, time.Now()))}, nil
	}, switchboard.Describe("Request and error rates (1, 5, 15 minutes) and latency per endpoint, with history"))
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
