package controlplane

import (
	"bytes"
	"cmp"
	"encoding/json"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/wire"
)

// eventTail keeps the last events of each topic, from a live tail: at most
// perTopic events of at most maxBody bytes each, for at most maxTopics
// topics.
type eventTail struct {
	perTopic, maxTopics, maxBody int

	mu      sync.Mutex
	seq     int64
	topics  map[string]*topicTail
	evicted int64
}

type topicTail struct {
	ring  []storedEvent // circular, len <= perTopic
	next  int
	seen  int64
	last  time.Time
	total int // events in ring
}

type storedEvent struct {
	seq       int64
	received  time.Time
	topic     string
	header    bus.Header
	body      []byte
	size      int
	truncated bool
}

func newEventTail(perTopic, maxTopics, maxBody int) *eventTail {
	return &eventTail{perTopic: perTopic, maxTopics: maxTopics, maxBody: maxBody, topics: map[string]*topicTail{}}
}

func (cp *ControlPlane) observeEvent(m *bus.Message) { cp.events.add(m, time.Now()) }

func (t *eventTail) add(m *bus.Message, now time.Time) {
	body := m.Body
	ev := storedEvent{received: now, topic: m.Subject, header: m.Header.Clone(), size: len(body)}
	if len(body) > t.maxBody {
		body, ev.truncated = body[:t.maxBody], true
	}
	hsize := 0
	for k, v := range ev.header {
		hsize += len(k) + len(v)
	}
	if hsize > t.maxBody { // headers are bounded too: keep the event's attributes
		for k := range wire.OtherHeaders(ev.header) {
			delete(ev.header, k)
		}
		for k, v := range ev.header {
			if len(v) > 1024 {
				ev.header[k] = v[:1024]
			}
		}
		ev.truncated = true
	}
	ev.body = bytes.Clone(body)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seq++
	ev.seq = t.seq
	tt := t.topics[m.Subject]
	if tt == nil {
		if len(t.topics) >= t.maxTopics {
			var quiet string
			var at time.Time
			for name, o := range t.topics {
				if quiet == "" || o.last.Before(at) {
					quiet, at = name, o.last
				}
			}
			delete(t.topics, quiet)
			t.evicted++
		}
		tt = &topicTail{ring: make([]storedEvent, t.perTopic)}
		t.topics[m.Subject] = tt
	}
	tt.ring[tt.next] = ev
	tt.next = (tt.next + 1) % len(tt.ring)
	tt.total = min(tt.total+1, len(tt.ring))
	tt.seen++
	tt.last = now
}

// TopicSummary is one topic the tail has seen.
type TopicSummary struct {
	Topic string `json:"topic"`
	// Seen counts the events seen since the control plane started; Kept is
	// how many of the latest it keeps.
	Seen     int64     `json:"seen"`
	Kept     int       `json:"kept"`
	LastSeen time.Time `json:"last_seen"`
}

func (t *eventTail) summaries() []TopicSummary {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]TopicSummary, 0, len(t.topics))
	for name, tt := range t.topics {
		out = append(out, TopicSummary{Topic: name, Seen: tt.seen, Kept: tt.total, LastSeen: tt.last})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Topic < out[j].Topic })
	return out
}

// recent returns up to limit events of topic ("" for every topic) newer
// than seq since, the newest first.
func (t *eventTail) recent(topic string, since int64, limit int) []storedEvent {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []storedEvent
	collect := func(tt *topicTail) {
		for i := 0; i < tt.total; i++ {
			ev := tt.ring[(tt.next-1-i+2*len(tt.ring))%len(tt.ring)]
			if ev.seq <= since {
				break
			}
			out = append(out, ev)
		}
	}
	if topic != "" {
		if tt := t.topics[topic]; tt != nil {
			collect(tt)
		}
	} else {
		for _, tt := range t.topics {
			collect(tt)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq > out[j].seq })
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

func (t *eventTail) size() (topics, events int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tt := range t.topics {
		events += tt.total
	}
	return len(t.topics), events
}

// Event is one event of the tail, in the CloudEvents JSON format with the
// topic and the other headers, as `switchboard watch -o json` prints it.
type Event struct {
	// Seq orders the events the control plane saw; ask for newer ones
	// with ?since=Seq.
	Seq             int64      `json:"seq"`
	Topic           string     `json:"topic"`
	Received        time.Time  `json:"received"`
	ID              string     `json:"id,omitempty"`
	Type            string     `json:"type,omitempty"`
	Source          string     `json:"source,omitempty"`
	Subject         string     `json:"subject,omitempty"`
	Time            *time.Time `json:"time,omitempty"`
	DataContentType string     `json:"datacontenttype,omitempty"`
	// Data is the body when it is JSON, or protobuf decoded to JSON when
	// the services announce the topic's type and this binary knows it
	// (ProtoType); DataBase64 otherwise.
	Data       json.RawMessage   `json:"data,omitempty"`
	DataBase64 []byte            `json:"data_base64,omitempty"`
	ProtoType  string            `json:"proto_type,omitempty"`
	Size       int               `json:"size"`
	Truncated  bool              `json:"truncated,omitempty"`
	Headers    map[string]string `json:"headers,omitempty"`
}

// eventJSON renders a stored message; types maps topics to the protobuf
// message types services announce for them.
func eventJSON(ev storedEvent, types map[string]string) Event {
	ce, _ := wire.DecodeEvent(ev.header)
	e := Event{Seq: ev.seq, Topic: ev.topic, Received: ev.received, ID: ce.ID, Type: ce.Type, Source: ce.Source,
		Subject: ce.Subject, DataContentType: ce.DataContentType, Size: ev.size, Truncated: ev.truncated}
	if !ce.Time.IsZero() {
		e.Time = &ce.Time
	}
	switch {
	case ev.truncated:
		e.DataBase64 = ev.body
	case ce.DataContentType == wire.ContentTypeJSON && json.Valid(ev.body):
		e.Data = ev.body
	case ce.DataContentType == wire.ContentTypeProto:
		topic := cmp.Or(ev.header.Get(bus.HeaderDeadTopic), ev.topic) // a dead letter keeps its topic's type
		if data, ok := decodeProto(types[topic], ev.body); ok {
			e.Data, e.ProtoType = data, types[topic]
		} else {
			e.DataBase64 = ev.body
		}
	case len(ev.body) > 0:
		e.DataBase64 = ev.body
	}
	e.Headers = wire.OtherHeaders(ev.header)
	return e
}

// decodeProto decodes body as the protobuf message type name, if this
// binary has it (the example domain's types are linked into switchboard).
func decodeProto(name string, body []byte) (json.RawMessage, bool) {
	if name == "" {
		return nil, false
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(name))
	if err != nil {
		return nil, false
	}
	msg := mt.New().Interface()
	if proto.Unmarshal(body, msg) != nil {
		return nil, false
	}
	b, err := protojson.Marshal(msg)
	if err != nil {
		return nil, false
	}
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return nil, false
	}
	return buf.Bytes(), true
}

// topicTypes maps each topic to the protobuf type its services announce.
func topicTypes(insts []instanceView) map[string]string {
	out := map[string]string{}
	for _, in := range insts {
		for _, ti := range append(append([]wire.TopicInfo(nil), in.Info.Publishes...), in.Info.Subscribes...) {
			if ti.Type != "" {
				out[ti.Topic] = ti.Type
			}
		}
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
