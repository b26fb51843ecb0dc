package driver

import "context"

// Backlog is what a consumer group has yet to finish on a topic.
type Backlog struct {
	// Pending counts stored messages not yet delivered to the group.
	Pending int64
	// Unacked counts messages delivered to members of the group and not
	// yet acknowledged (being handled, or waiting out AckWait).
	Unacked int64
	// UnackedUnknown says the broker cannot tell Unacked (RabbitMQ over
	// AMQP 0.9.1 reports only ready messages); Unacked is then 0.
	UnackedUnknown bool
}

// Backlogs is implemented, optionally, by a Conn whose broker can tell a
// consumer group's backlog cheaply (NATS: the durable consumer's
// num_pending and num_ack_pending; RabbitMQ: the group queue's message
// count from a passive declare). Package bus exposes it as Conn.Backlog,
// for metrics and health. Safe for concurrent use; it blocks until the
// broker answered and never retries. A group that does not consume the
// topic is ErrNotFound.
type Backlogs interface {
	Backlog(ctx context.Context, topic, group string) (Backlog, error)
}
