package controlplane_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	neturl "net/url"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	_ "github.com/switchboard-dev/switchboard/bus/amqpbus"
	"github.com/switchboard-dev/switchboard/controlplane"
	"github.com/switchboard-dev/switchboard/internal/amqptest"
)

// TestDeadLettersOnRabbitMQ: RabbitMQ cannot list its dead-letter places,
// so the control plane looks in those of the consumer groups that running
// services announce.
func TestDeadLettersOnRabbitMQ(t *testing.T) {
	u, err := neturl.Parse(amqptest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("queue_expires", "1m") // what the test declares goes away after it
	u.RawQuery = q.Encode()
	ctx := context.Background()
	conn, err := bus.Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cp, err := controlplane.Start(ctx, conn, controlplane.Options{Poll: 200 * time.Millisecond, Bucket: time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Shutdown(ctx)
	e := &apiEnv{conn: conn, cp: cp}

	suffix := fmt.Sprintf("%08x", rand.Uint32())
	group, topic := "audit_"+suffix, "cptest.greeting_"+suffix
	ev := switchboard.Topic[*greeted](topic)
	svc := switchboard.NewService("auditor-"+suffix, "1.0.0", switchboard.WithLogger(log))
	ev.Subscribe(svc, group, func(context.Context, *greeted) error { return errors.New("cannot audit") },
		switchboard.MaxAttempts(1))
	if err := svc.Start(ctx, conn); err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(ctx)
	cl := switchboard.NewClient(conn, switchboard.WithCaller("tester"))
	defer cl.Close()
	if err := ev.Publish(ctx, cl, &greeted{Name: "poison"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the place from discovery", func() error {
		var r struct {
			Places []bus.DeadLetterPlace
			Source string
		}
		e.do(t, "GET", "/api/deadletters", "", 200, &r)
		for _, p := range r.Places {
			if p.Group == group && p.Topic == topic && p.Count == 1 && r.Source == "discovery" {
				return nil
			}
		}
		return fmt.Errorf("%+v", r)
	})
	var list struct {
		DeadLetters []controlplane.DeadLetter `json:"dead_letters"`
	}
	e.do(t, "GET", "/api/deadletters/"+group+"/"+topic, "", 200, &list)
	if len(list.DeadLetters) != 1 || list.DeadLetters[0].Reason == "" {
		t.Fatalf("%+v", list)
	}
	var rep controlplane.ReplayReply
	e.do(t, "POST", "/api/deadletters/"+group+"/"+topic+"/replay", `{"all": true}`, 200, &rep)
	if len(rep.Replayed) != 1 {
		t.Errorf("replay: %+v", rep)
	}
}
