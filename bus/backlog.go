package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/switchboard-dev/switchboard/bus/driver"
)

// Backlog is what a consumer group has yet to finish on a topic: its
// consumer lag and the queue depth an operator watches.
type Backlog struct {
	// Pending counts stored messages not yet delivered to the group.
	Pending int64
	// Unacked counts messages delivered and not yet acknowledged.
	Unacked int64
	// UnackedUnknown says the broker cannot tell Unacked (RabbitMQ).
	UnackedUnknown bool
}

// CanReportBacklog reports whether the connection's driver implements
// driver.Backlogs, so that Backlog can succeed.
func (c *Conn) CanReportBacklog() bool {
	_, ok := c.drv.(driver.Backlogs)
	return ok
}

// Backlog returns the backlog of group on topic. It fails with
// Unimplemented when the broker's driver cannot tell (see
// CanReportBacklog), NotFound when the group does not consume the topic.
func (c *Conn) Backlog(ctx context.Context, topic, group string) (Backlog, error) {
	if err := validateSubject(topic, false); err != nil {
		return Backlog{}, err
	}
	if !ValidName(group) {
		return Backlog{}, Errorf(InvalidArgument, "bus: invalid consumer group %q: use letters, digits, '_' and '-'", group)
	}
	if c.isClosed() {
		return Backlog{}, ErrClosed
	}
	d, ok := c.drv.(driver.Backlogs)
	if !ok {
		return Backlog{}, Errorf(Unimplemented, "bus: this broker's driver cannot tell the backlog of group %s on %s; watch it on the broker", group, topic)
	}
	b, err := d.Backlog(ctx, topic, group)
	if errors.Is(err, driver.ErrNotFound) {
		return Backlog{}, &Error{Code: NotFound, Message: fmt.Sprintf("bus: group %s does not consume %s", group, topic), Err: err}
	}
	if err != nil {
		return Backlog{}, wrapDriver("backlog", topic, err)
	}
	return Backlog(b), nil
}
