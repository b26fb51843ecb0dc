// Package amqpbus is the RabbitMQ (AMQP 0.9.1) driver of package bus, on
// github.com/rabbitmq/amqp091-go. Import it for its side effect and open a
// URL:
//
//	import _ "github.com/switchboard-dev/switchboard/bus/amqpbus"
//
//	conn, err := bus.Open(ctx, "amqp://guest:guest@127.0.0.1:5672/")
//
// # URLs
//
//	amqp://[user:pass@]host[:port][,host[:port]...][/vhost][?param=value&...]
//	amqps://...   the same over TLS (port 5671 by default)
//
// The path is the vhost ("/" when empty; write a vhost containing '/' as
// %2F). Several hosts name the nodes of a cluster: the driver connects to
// the first that answers and, after losing a connection, tries them in turn.
// Opening fails within connect_timeout per host with an Unavailable error
// naming the URL; once open, the connection is replaced whenever it is lost
// (see Connection recovery).
//
// Parameters:
//
//	name=NAME              connection name shown by the broker (default switchboard)
//	prefix=P               prefix of every exchange and queue name (default sb);
//	                       dot-separated letters, digits, '_' and '-', not amq.*
//	queue_type=quorum      type of consumer-group queues: quorum (default) or classic
//	prefetch=N             prefetch of Serve, Listen and Tail consumers (default 128);
//	                       a group member's prefetch comes from bus.SubscribeOptions
//	heartbeat=DUR          AMQP heartbeat, at least 1s (default 10s)
//	connect_timeout=DUR    bound on connecting to one host (default 5s)
//	max_message_size=N     largest message in bytes, 1024 to 536870912 (default
//	                       8 MiB); keep it at most the broker's max_message_size
//	queue_expires=DUR      delete consumer-group queues unused for this long
//	                       (x-expires; default never). For tests and throw-away
//	                       environments: the queues go with what they hold.
//	cacertfile=, certfile=, keyfile=, server_name_indication=
//	                       TLS settings, amqps:// only (as in amqp091-go)
//
// Unknown or repeated parameters are rejected with an InvalidArgument error
// naming them.
//
// # Mapping to AMQP
//
// This is the protocol a plain AMQP client speaks to interoperate. Names
// use the prefix P (default sb). The driver declares, on every connection,
// two durable topic exchanges:
//
//	P.msg    live messages: requests (Request, Serve) and sends (Send, Listen)
//	P.evt    durable topics (Publish, Subscribe, Tail)
//
// Requests and sends share P.msg because they share one subject space on
// NATS, and Switchboard relies on it: a Send reaches the Serve and Listen
// subscriptions of its subject alike (discovery pings are sent to servers),
// and a Listen sees requests too.
//
// A bus subject or topic is the routing key unchanged: its dots are AMQP
// word separators. In binding keys a pattern's '*' stays '*' and a final '>'
// (one or more tokens) becomes "*.#"; a literal token '#' is refused. Routing
// keys, queue names, header names and message ids are at most 255 bytes.
//
// Messages: Message.ID is the message_id property. The headers of the
// envelope travel in basic properties where the property gives them back
// exactly, every other header as one entry of the AMQP headers table (same
// name, a string value), so that headers round-trip exactly and a typical
// request, reply and event carries an empty table, which costs less to
// encode, decode and route: Content-Type is content_type; on a request
// Sb-Timeout is the expiration and Sb-Caller the app_id; on a reply
// Sb-Instance is the app_id; on a CloudEvent (ce-specversion 1.0) ce-type is
// the type property, ce-id the message_id, ce-source the app_id and a
// ce-time of a whole second the timestamp. On receipt these properties
// become their headers unless the table has them, so messages from other
// clients that set the properties get the headers (docs/protocol.md has the
// exact rules). Header names starting with Sb-Amqp- (the driver's) and the
// broker's x-death, x-delivery-count, x-first-death-* and x-last-death-*
// are reserved: they are refused on publish and removed on delivery.
// Durable publishes are persistent (delivery_mode 2), everything else
// transient.
//
// Request publishes to P.msg with the mandatory flag, reply_to
// amq.rabbitmq.reply-to (RabbitMQ's direct reply-to, consumed on the
// publishing channel), a fresh correlation_id and expiration set to the
// milliseconds left before the caller's deadline (or the request's smaller
// Sb-Timeout), so that a request nobody took in time dies in its queue.
// When no queue is bound to the subject the broker returns the request
// (basic.return, 312 NO_ROUTE) and Request fails at once with no
// responders. Each request in flight has a channel of its own, reused by
// later requests (up to 64 idle channels are kept), and reads its reply or
// return straight from it, so concurrent requests do not wait for each
// other and a reply takes no extra goroutine hop.
//
// Serve(subject, queue) with a queue name consumes the queue
// P.serve.QUEUE.SUBJECT, shared by every server of that queue group so that
// each request goes to one of them. It is a classic queue, durable (the
// broker deprecates transient shared queues) and auto-delete, with
// x-expires 300000: when the last server stops it is deleted, its binding
// with it, so requests are returned at once rather than held. Serve without
// a queue consumes an exclusive, auto-delete, server-named queue of its own
// (every server gets every request). The binding key is the subject. A
// request is acknowledged as it is handed to the handler: when no other
// request is waiting behind it, before the hand-over (with one basic.ack,
// multiple, for any still pending); in a burst of requests already
// buffered, every prefetch/2 of them and when the burst ends, which saves a
// frame and a write per request under load. The reply is published to the
// default exchange with routing key reply_to and the request's
// correlation_id.
//
// Send publishes to P.msg without confirmation or mandatory flag (nobody
// listening: dropped); all sends of a connection share one channel and keep
// their order. Listen consumes an exclusive, auto-delete, server-named
// classic queue bound to P.msg with the pattern.
//
// Publish publishes to P.evt in confirm mode with the mandatory flag and
// returns after the broker's basic.ack (a nack is an error); for a quorum
// queue the ack means a majority of its replicas stored the message.
// Publishing is spread over a pool of confirm-mode channels; each publish
// waits for the confirmation of its own delivery tag, resolved by
// amqp091-go's reader. Delayed redeliveries and replays, which must reach a
// queue (a return fails them), use a confirm-mode channel of their own that
// matches returns to confirmations in order.
//
// A topic no group subscribes to has no queue bound, so the broker returns
// a publish to it and stores it nowhere. The driver still reports success,
// logging the first such publish per topic at debug level: the bus contract
// gives a group
// only what was published after it first existed, so no group is owed the
// message (the NATS driver keeps it in the stream, where no group will read
// it either). Failing instead would make every publisher depend on its
// consumers being deployed first. A return does fail the driver's own
// publishes that must reach a queue (the delayed copies below).
//
// Subscribe(topic, group) consumes the durable queue P.group.GROUP.TOPIC,
// x-queue-type quorum (or classic with queue_type=classic), bound to P.evt
// with the topic as binding key; members share it. A new group gets what is
// published after its first subscription. Each member has a channel of its
// own with basic.qos prefetch = its Prefetch (per consumer, so members do
// not cap each other) and manual acks.
//
// The group's dead-letter topic _dlq.GROUP.TOPIC (bus.DeadLetterTopic) gets
// its queue P.group.GROUP._dlq.GROUP.TOPIC at the same time: the queue that
// group GROUP would consume on that topic. So dead letters are kept from the
// moment the group exists, even before anyone reads them; subscribing as
// GROUP to the dead-letter topic reads (and can replay) them all, while
// other groups on it start from the time they were made, as usual.
//
// Redelivery: Nak without a delay is basic.nack with requeue. Nak with a
// delay publishes, in confirm mode and mandatory, a copy with the header
// Sb-Amqp-Attempt (the next attempt number) and expiration = the delay to
// the queue P.retry.GROUP.TOPIC through the default exchange, then acks the
// original; if the copy is not confirmed the original is requeued instead.
// The retry queue has no consumer and no binding: x-dead-letter-exchange ""
// and x-dead-letter-routing-key P.group.GROUP.TOPIC send each copy back to
// the group queue when it expires (for quorum queues with
// x-dead-letter-strategy at-least-once and x-overflow reject-publish, so the
// copy leaves the retry queue only once the group queue has it). It is
// declared on first use, of the group's queue type. Messages expire in
// order, so a short delay behind a longer one waits for it: a redelivery
// comes after its delay and at most the longest delay in use later (30s
// with the default backoff).
//
// Attempt is Sb-Amqp-Attempt (1 when absent) plus the broker's
// redeliveries of that copy: x-delivery-count on quorum queues, the
// redelivered flag (so at most one) on classic ones. After MaxAttempts
// package bus publishes the message to the dead-letter topic with the
// Sb-Dead-* headers (reason, attempts, original topic, group, time, id) and
// then acks it.
//
// AckWait is not applied: RabbitMQ redelivers a member's unacknowledged
// messages as soon as its channel or connection closes, and a handler that
// hangs is bounded by the broker's consumer_timeout (30 minutes by default).
// From RabbitMQ 4.0 quorum queues have a default delivery-limit of 20
// returns, after which they drop (or dead-letter) a message; Nak with a
// delay does not count toward it (the copy is a new message), only Nak
// without one, crashes and stops do.
//
// Tail(pattern) consumes an exclusive, auto-delete, server-named classic
// queue bound to P.evt with the pattern: it sees what is published from
// then on, without affecting any group, and reports the routing key as the
// topic.
//
// # Connection recovery
//
// amqp091-go does not replace a lost connection by default (its
// experimental recovery retries a bounded number of times and replays
// topology on its own terms), so the driver does it: it watches the
// connection, and when it is lost reconnects with backoff (100ms doubling to
// 5s, jittered) for as long as it is open, trying the URL's hosts in turn,
// re-declares the exchanges and restarts every consumer (declaring and
// binding its queue again). A channel lost alone (a broker error, a queue
// deleted under a consumer) is replaced the same way. While disconnected,
// every call fails at once with Unavailable (driver.ErrDisconnected);
// requests and publishes waiting when the connection went fail the same way,
// never with success for a message the broker did not confirm.
// Unacknowledged deliveries go back to their queue; their acks made after
// the loss fail and the messages come again.
package amqpbus

import "github.com/switchboard-dev/switchboard/bus"

// Scheme is the URL scheme of a RabbitMQ broker or cluster.
const Scheme = "amqp"

// SchemeTLS is the URL scheme of a RabbitMQ broker or cluster over TLS.
const SchemeTLS = "amqps"

func init() {
	bus.Register(Scheme, openURL)
	bus.Register(SchemeTLS, openURL)
}
