package switchboard

import (
	"context"
	"encoding/json"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/wire"
)

// Every instance also answers the NATS services protocol ("micro", schema
// io.nats.micro.v1) so that NATS tooling such as `nats micro ls` lists
// Switchboard services. The subjects are plain bus subjects: on NATS they
// are the protocol's own; on other brokers nobody asks.

const (
	microPing  = "io.nats.micro.v1.ping_response"
	microInfo  = "io.nats.micro.v1.info_response"
	microStats = "io.nats.micro.v1.stats_response"
)

type microIdentity struct {
	Name     string            `json:"name"`
	ID       string            `json:"id"`
	Version  string            `json:"version"`
	Metadata map[string]string `json:"metadata"`
	Type     string            `json:"type"`
}

type microEndpointInfo struct {
	Name       string            `json:"name"`
	Subject    string            `json:"subject"`
	QueueGroup string            `json:"queue_group"`
	Metadata   map[string]string `json:"metadata"`
}

type microInfoResponse struct {
	microIdentity
	Description string              `json:"description"`
	Endpoints   []microEndpointInfo `json:"endpoints"`
}

type microEndpointStats struct {
	Name                  string        `json:"name"`
	Subject               string        `json:"subject"`
	QueueGroup            string        `json:"queue_group"`
	NumRequests           int64         `json:"num_requests"`
	NumErrors             int64         `json:"num_errors"`
	LastError             string        `json:"last_error"`
	ProcessingTime        time.Duration `json:"processing_time"`
	AverageProcessingTime time.Duration `json:"average_processing_time"`
}

type microStatsResponse struct {
	microIdentity
	Started   time.Time            `json:"started"`
	Endpoints []microEndpointStats `json:"endpoints"`
}

func (s *Service) serveNATSMicro(ctx context.Context, serve func(subject, queue string, h bus.RequestHandler) error) error {
	verbs := map[string]func() any{
		"PING":  func() any { return s.microID(microPing) },
		"INFO":  s.microInfo,
		"STATS": s.microStats,
	}
	for verb, fn := range verbs {
		h := func(context.Context, *bus.Message) *bus.Message {
			b, err := json.Marshal(fn())
			if err != nil {
				return nil
			}
			return &bus.Message{Header: bus.Header{wire.HeaderContentType: wire.ContentTypeJSON}, Body: b}
		}
		for _, subj := range []string{"$SRV." + verb, "$SRV." + verb + "." + s.name, "$SRV." + verb + "." + s.name + "." + s.id} {
			if err := serve(subj, "", h); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Service) microID(typ string) microIdentity {
	md := s.cfg.metadata
	if md == nil {
		md = map[string]string{}
	}
	return microIdentity{Name: s.name, ID: s.id, Version: s.version, Metadata: md, Type: typ}
}

func (s *Service) microInfo() any {
	info := s.Info()
	r := microInfoResponse{microIdentity: s.microID(microInfo), Description: info.Description, Endpoints: []microEndpointInfo{}}
	for _, e := range info.Endpoints {
		r.Endpoints = append(r.Endpoints, microEndpointInfo{Name: e.Name, Subject: e.Subject, QueueGroup: wire.ServiceQueue(s.name),
			Metadata: map[string]string{"request_type": e.RequestType, "response_type": e.ReplyType}})
	}
	return r
}

func (s *Service) microStats() any {
	info := s.Info()
	r := microStatsResponse{microIdentity: s.microID(microStats), Started: info.Started.UTC(), Endpoints: []microEndpointStats{}}
	for _, e := range info.Endpoints {
		st := info.Stats[e.Name]
		es := microEndpointStats{Name: e.Name, Subject: e.Subject, QueueGroup: wire.ServiceQueue(s.name),
			NumRequests: st.Requests, NumErrors: st.Errors, LastError: st.LastError, ProcessingTime: time.Duration(st.ProcessingTime)}
		if st.Requests > 0 {
			es.AverageProcessingTime = es.ProcessingTime / time.Duration(st.Requests)
		}
		r.Endpoints = append(r.Endpoints, es)
	}
	return r
}
