package natsbus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-dev/switchboard/bus/driver"
)

var _ driver.Backlogs = (*conn)(nil)

// Backlog implements driver.Backlogs from the group's durable consumer:
// num_pending (stored, not yet delivered to the group) and num_ack_pending
// (delivered, not yet acknowledged). One consumer info request.
func (c *conn) Backlog(ctx context.Context, topic, group string) (driver.Backlog, error) {
	subject := c.prefix + topic
	if err := c.ready(ctx, "backlog", subject); err != nil {
		return driver.Backlog{}, err
	}
	cctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	cons, err := c.js.Consumer(cctx, c.opts.Stream, ConsumerName(group, topic))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return driver.Backlog{}, fmt.Errorf("natsbus: backlog of group %s on %s: %w", group, subject, driver.ErrNotFound)
	}
	if err != nil {
		return driver.Backlog{}, wrapErr("backlog", subject, err)
	}
	info := cons.CachedInfo()
	return driver.Backlog{Pending: int64(info.NumPending), Unacked: int64(info.NumAckPending)}, nil
}
