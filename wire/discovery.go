package wire

import (
	"encoding/json"
	"time"
)

// Discovery subjects. Instances announce themselves on SubjectAnnounce when
// they start and every heartbeat, say goodbye on SubjectLeave, and answer a
// message sent to SubjectPing by announcing again. All are plain (not
// durable) sends; bodies are JSON InstanceInfo.
const (
	SubjectAnnounce = "sb.disc.announce"
	SubjectLeave    = "sb.disc.leave"
	SubjectPing     = "sb.disc.ping"
)

// InstanceInfo describes one running instance of a service: what discovery
// messages carry and what `switchboard describe` shows.
type InstanceInfo struct {
	Service     string            `json:"service"`
	ID          string            `json:"id"`
	Version     string            `json:"version"`
	Description string            `json:"description,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Host        string            `json:"host"`
	PID         int               `json:"pid"`
	Started     time.Time         `json:"started"`
	// HeartbeatMS is the announce interval; an instance silent for three
	// intervals is considered gone.
	HeartbeatMS int64          `json:"heartbeat_ms"`
	Endpoints   []EndpointInfo `json:"endpoints"`
	Publishes   []TopicInfo    `json:"publishes,omitempty"`
	Subscribes  []TopicInfo    `json:"subscribes,omitempty"`
	// Stats are counters since start, per endpoint name.
	Stats map[string]EndpointStats `json:"stats,omitempty"`
	// Faults are the faults injected into this instance right now (see
	// FaultSubject). Empty in normal operation.
	Faults []ActiveFault `json:"faults,omitempty"`
	// Status holds named parts of the instance's state that the service
	// reports (switchboard.WithStatus), e.g. "resilience": breaker states,
	// load-shedding limits and the retry budget.
	Status map[string]json.RawMessage `json:"status,omitempty"`
}

// EndpointInfo describes one endpoint with the JSON Schemas of its bodies.
type EndpointInfo struct {
	Name        string          `json:"name"`
	Subject     string          `json:"subject"`
	Description string          `json:"description,omitempty"`
	Request     json.RawMessage `json:"request_schema,omitempty"`
	Response    json.RawMessage `json:"response_schema,omitempty"`
	RequestType string          `json:"request_type,omitempty"`
	ReplyType   string          `json:"response_type,omitempty"`
	MaxInFlight int             `json:"max_in_flight,omitempty"`
}

// TopicInfo describes a topic an instance publishes or consumes.
type TopicInfo struct {
	Topic  string          `json:"topic"`
	Group  string          `json:"group,omitempty"`
	Type   string          `json:"type,omitempty"`
	Schema json.RawMessage `json:"schema,omitempty"`
}

// EndpointStats are an endpoint's counters since the instance started.
type EndpointStats struct {
	Requests       int64  `json:"num_requests"`
	Errors         int64  `json:"num_errors"`
	ProcessingTime int64  `json:"processing_time_ns"`
	LastError      string `json:"last_error,omitempty"`
}

// Heartbeat is the announce interval as a duration.
func (i *InstanceInfo) Heartbeat() time.Duration {
	return time.Duration(i.HeartbeatMS) * time.Millisecond
}
