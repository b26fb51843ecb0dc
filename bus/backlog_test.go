package bus_test

import (
	"context"
	"testing"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/driver"
	"github.com/switchboard-dev/switchboard/bus/natsbus"
)

// backlogDriver replaces the embedded NATS driver's Backlogs with fixed
// figures, to test what package bus does around it.
type backlogDriver struct{ driver.Conn }

func (backlogDriver) Backlog(ctx context.Context, topic, group string) (driver.Backlog, error) {
	if group == "absent" {
		return driver.Backlog{}, driver.ErrNotFound
	}
	return driver.Backlog{Pending: 5, Unacked: 2}, nil
}

func TestBacklog(t *testing.T) {
	ctx := context.Background()
	plain, err := bus.Open(ctx, natsbus.EmbeddedScheme+"://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	// Embedding only driver.Conn hides the driver's Backlogs.
	without := bus.NewConn(struct{ driver.Conn }{plain.Driver()})
	if without.CanReportBacklog() {
		t.Error("CanReportBacklog is true for a driver without Backlogs")
	}
	if _, err := without.Backlog(ctx, "orders", "billing"); bus.ErrorCode(err) != bus.Unimplemented {
		t.Errorf("a driver without Backlogs: %v, want Unimplemented", err)
	}
	conn := bus.NewConn(backlogDriver{plain.Driver()})
	if !conn.CanReportBacklog() {
		t.Fatal("CanReportBacklog is false for a driver that implements it")
	}
	for _, tc := range []struct {
		name, topic, group string
		code               bus.Code
	}{
		{"a known group gets its figures", "orders", "billing", bus.OK},
		{"an unknown group is NotFound", "orders", "absent", bus.NotFound},
		{"an invalid group is InvalidArgument", "orders", "no spaces", bus.InvalidArgument},
		{"a wildcard topic is InvalidArgument", "orders.*", "billing", bus.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := conn.Backlog(ctx, tc.topic, tc.group)
			if bus.ErrorCode(err) != tc.code {
				t.Fatalf("Backlog: %v, want code %s", err, tc.code)
			}
			if err == nil && (b.Pending != 5 || b.Unacked != 2) {
				t.Errorf("Backlog = %+v, want 5 pending and 2 unacked", b)
			}
		})
	}
}
