package health_test

import (
	"testing"

	"github.com/switchboard-dev/switchboard/bus"
	_ "github.com/switchboard-dev/switchboard/bus/amqpbus"
	"github.com/switchboard-dev/switchboard/health"
	"github.com/switchboard-dev/switchboard/internal/amqptest"
)

// TestBuiltinChecksOnRabbitMQ runs the built-in checks on the machine's
// RabbitMQ ($SWITCHBOARD_TEST_AMQP_URL, else 127.0.0.1:5672), under a
// prefix of its own: the bus check's round trip goes through the broker.
// Without a broker it skips, or fails when CI=true.
func TestBuiltinChecksOnRabbitMQ(t *testing.T) {
	busURL, _ := amqptest.Isolated(t, amqptest.URL(t), "1m")
	conn, err := bus.Open(ctxT(t), busURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	p := newPatient(t, conn)
	r := refresh(t, p.chk)
	wantCheck(t, r, "bus", health.Healthy, "connected to amqp://guest:xxxxx@127.0.0.1:5672/")
	if r.Status != health.Healthy {
		t.Errorf("report on RabbitMQ %+v, want healthy", r)
	}
}
