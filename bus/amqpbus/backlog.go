package amqpbus

import (
	"context"
	"errors"

	"github.com/switchboard-dev/switchboard/bus/driver"
)

var _ driver.Backlogs = (*conn)(nil)

// Backlog implements driver.Backlogs with passive declares of the group's
// queue and its retry queue, on a channel of its own: Pending is their
// ready messages (waiting for a member, or for their redelivery delay).
// AMQP 0.9.1 does not tell how many a queue has delivered and not yet had
// acknowledged, so UnackedUnknown is set; the management API does.
func (c *conn) Backlog(ctx context.Context, topic, group string) (driver.Backlog, error) {
	if _, err := routingKey(topic); err != nil {
		return driver.Backlog{}, err
	}
	queue := queueName(c.cfg.prefix, "group", group, topic)
	if err := ctx.Err(); err != nil {
		return driver.Backlog{}, wrapErr("backlog", queue, err)
	}
	ch, err := c.channelFor("backlog", queue)
	if err != nil {
		return driver.Backlog{}, err
	}
	defer ch.Close()
	ready, err := passive(ch, "backlog", queue, "group "+group+" does not consume "+topic)
	if err != nil {
		return driver.Backlog{}, err
	}
	b := driver.Backlog{Pending: int64(ready), UnackedUnknown: true}
	retry := queueName(c.cfg.prefix, "retry", group, topic)
	ch2, err := c.channelFor("backlog", retry)
	if err != nil {
		return driver.Backlog{}, err
	}
	defer ch2.Close()
	n, err := passive(ch2, "backlog", retry, "no retries yet")
	switch {
	case errors.Is(err, driver.ErrNotFound): // made on the first retry
	case err != nil:
		return driver.Backlog{}, err
	default:
		b.Pending += int64(n)
	}
	return b, nil
}
