package switchboard_test

// These tests speak to Switchboard services with nothing but nats.go and
// docs/protocol.md, as a program in another language would.

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus/natsbus"
)

// plainNATS starts an embedded server, runs svc on it through the SDK, and
// returns a plain nats.go connection to the same server.
func plainNATS(t *testing.T, svcs ...*switchboard.Service) *nats.Conn {
	t.Helper()
	srv, err := natsbus.StartServer(natsbus.ServerOptions{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	conn := open(t, srv.ClientURL())
	for _, s := range svcs {
		if err := s.Start(context.Background(), conn); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

type shipment struct {
	Order string `json:"order"`
	Items int    `json:"items"`
}

var (
	ship     = switchboard.Endpoint[*shipment, *shipment]("warehouse", "ship")
	shipped  = switchboard.Topic[*shipment]("shipment.sent")
	received = switchboard.Topic[*shipment]("shipment.received")
)

func warehouse(got chan<- *switchboard.EventInfo) *switchboard.Service {
	svc := switchboard.NewService("warehouse", "1.2.3", switchboard.WithDescription("ships orders"), switchboard.WithMetadata(map[string]string{"team": "logistics"}))
	ship.Handle(svc, func(ctx context.Context, req *shipment) (*shipment, error) {
		if req.Order == "" {
			return nil, switchboard.Errorf(switchboard.InvalidArgument, "order is required")
		}
		req.Items++
		return req, shipped.Publish(ctx, svc, req, switchboard.WithSubject(req.Order))
	})
	received.Subscribe(svc, "warehouse", func(ctx context.Context, ev *shipment) error {
		info, _ := switchboard.EventFrom(ctx)
		got <- info
		return nil
	})
	return svc
}

func TestPlainNATSClientSpeaksTheProtocol(t *testing.T) {
	got := make(chan *switchboard.EventInfo, 1)
	nc := plainNATS(t, warehouse(got))
	ctx := ctxT(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// protocol.md: durable topic T is subject sb.evt.T in stream SWITCHBOARD.
	cons, err := js.CreateConsumer(ctx, "SWITCHBOARD", jetstream.ConsumerConfig{
		FilterSubject: "sb.evt.shipment.sent", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("a request on sb.rpc.SERVICE.ENDPOINT with a JSON body gets a JSON reply", func(t *testing.T) {
		msg := nats.NewMsg("sb.rpc.warehouse.ship")
		msg.Header.Set("Content-Type", "application/json")
		msg.Header.Set("Sb-Timeout", "5000")
		msg.Header.Set("Sb-Caller", "python-shop")
		msg.Data = []byte(`{"order":"o-1","items":2}`)
		rep, err := nc.RequestMsg(msg, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if code := rep.Header.Get("Sb-Error-Code"); code != "" {
			t.Fatalf("error %s: %s", code, rep.Header.Get("Sb-Error-Message"))
		}
		var out shipment
		if err := json.Unmarshal(rep.Data, &out); err != nil || out.Items != 3 || out.Order != "o-1" {
			t.Fatalf("reply %s: %v", rep.Data, err)
		}
		if rep.Header.Get("Sb-Instance") == "" {
			t.Fatalf("reply headers %v", rep.Header)
		}
	})
	t.Run("errors come back as Sb-Error-Code and Sb-Error-Message headers", func(t *testing.T) {
		msg := nats.NewMsg("sb.rpc.warehouse.ship")
		msg.Data = []byte(`{"items":1}`)
		rep, err := nc.RequestMsg(msg, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Header.Get("Sb-Error-Code") != "InvalidArgument" || !strings.Contains(rep.Header.Get("Sb-Error-Message"), "order is required") {
			t.Fatalf("headers %v", rep.Header)
		}
	})
	t.Run("the event the call caused is consumed from JetStream with CloudEvents headers", func(t *testing.T) {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var m jetstream.Msg
		for m = range batch.Messages() {
		}
		if m == nil {
			t.Fatal("no event")
		}
		h := m.Headers()
		if h.Get("ce-specversion") != "1.0" || h.Get("ce-type") != "shipment.sent" || h.Get("ce-source") != "/switchboard/warehouse" ||
			h.Get("ce-subject") != "o-1" || h.Get("ce-id") == "" || h.Get("Content-Type") != "application/json" {
			t.Fatalf("headers %v", h)
		}
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("an event published with plain JetStream reaches the service's consumer group", func(t *testing.T) {
		msg := nats.NewMsg("sb.evt.shipment.received")
		for k, v := range map[string]string{"ce-specversion": "1.0", "ce-id": "ext-42", "ce-source": "/erp", "ce-type": "shipment.received", "Content-Type": "application/json"} {
			msg.Header.Set(k, v)
		}
		msg.Header.Set("Nats-Msg-Id", "ext-42")
		msg.Data = []byte(`{"order":"o-9","items":1}`)
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
		select {
		case info := <-got:
			if info.ID != "ext-42" || info.Source != "/erp" {
				t.Fatalf("event %+v", info)
			}
		case <-ctx.Done():
			t.Fatal("not consumed")
		}
	})
}

func TestNATSServicesProtocol(t *testing.T) {
	nc := plainNATS(t, warehouse(make(chan *switchboard.EventInfo, 1)))

	t.Run("$SRV.PING is answered with a ping_response", func(t *testing.T) {
		rep, err := nc.Request("$SRV.PING.warehouse", nil, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var ping micro.Ping
		if err := json.Unmarshal(rep.Data, &ping); err != nil {
			t.Fatal(err)
		}
		if ping.Type != micro.PingResponseType || ping.Name != "warehouse" || ping.Version != "1.2.3" || ping.ID == "" {
			t.Fatalf("ping %+v", ping)
		}
	})
	t.Run("$SRV.INFO lists the endpoints with their subjects", func(t *testing.T) {
		rep, err := nc.Request("$SRV.INFO", nil, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var info micro.Info
		if err := json.Unmarshal(rep.Data, &info); err != nil {
			t.Fatal(err)
		}
		if info.Type != micro.InfoResponseType || info.Description != "ships orders" || info.Metadata["team"] != "logistics" ||
			len(info.Endpoints) != 1 || info.Endpoints[0].Subject != "sb.rpc.warehouse.ship" || info.Endpoints[0].QueueGroup != "warehouse" {
			t.Fatalf("info %+v", info)
		}
	})
	t.Run("$SRV.STATS counts requests", func(t *testing.T) {
		if _, err := nc.Request("sb.rpc.warehouse.ship", []byte(`{"order":"s"}`), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		rep, err := nc.Request("$SRV.STATS.warehouse", nil, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var st micro.Stats
		if err := json.Unmarshal(rep.Data, &st); err != nil {
			t.Fatal(err)
		}
		if st.Type != micro.StatsResponseType || len(st.Endpoints) != 1 || st.Endpoints[0].NumRequests < 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}
