package natsbus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/driver"
)

// Dead letters on NATS are the stream's messages on the subject
// PREFIX._dlq.GROUP.TOPIC. They are read in place with the stream's message
// get API (next message on the subject from a sequence), which neither
// consumes them nor touches any consumer, and deleted one by one by
// sequence. A dead letter's ID is its stream sequence, in decimal.

var _ driver.DeadLetters = (*conn)(nil)

// dlqPrefix is the first token of every dead-letter topic.
const dlqPrefix = "_dlq."

// DeadLetterFeatures implements driver.DeadLetters: NATS supports all.
func (c *conn) DeadLetterFeatures() driver.DeadLetterFeatures {
	return driver.DeadLetterFeatures{ListPlaces: true, Browse: true, Delete: true, Replay: true}
}

func (c *conn) stream(ctx context.Context, op string) (jetstream.Stream, error) {
	if err := c.ready(ctx, op, c.opts.Stream); err != nil {
		return nil, err
	}
	s, err := c.js.Stream(ctx, c.opts.Stream)
	if err != nil {
		return nil, wrapErr(op+" stream", c.opts.Stream, err)
	}
	return s, nil
}

// DeadLetterPlaces implements driver.DeadLetters from the stream's
// per-subject counts under PREFIX._dlq.>.
func (c *conn) DeadLetterPlaces(ctx context.Context) ([]driver.DeadLetterPlace, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	s, err := c.stream(ctx, "list dead letters in")
	if err != nil {
		return nil, err
	}
	filter := c.prefix + dlqPrefix + ">"
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, wrapErr("list dead letters on", filter, err)
	}
	var out []driver.DeadLetterPlace
	for subj, n := range info.State.Subjects {
		group, topic, ok := strings.Cut(strings.TrimPrefix(subj, c.prefix+dlqPrefix), ".")
		if !ok || n == 0 {
			continue
		}
		out = append(out, driver.DeadLetterPlace{Group: group, Topic: topic, Count: int(n)})
	}
	return out, nil
}

func (c *conn) dlqSubject(group, topic string) string {
	return c.prefix + bus.DeadLetterTopic(group, topic)
}

// groupExists reports whether group has a consumer on topic.
func (c *conn) groupExists(ctx context.Context, group, topic string) (bool, error) {
	_, err := c.js.Consumer(ctx, c.opts.Stream, ConsumerName(group, topic))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		return false, nil
	}
	return false, wrapErr("look up group "+group+" on", c.prefix+topic, err)
}

// BrowseDeadLetters implements driver.DeadLetters, in stream order.
func (c *conn) BrowseDeadLetters(ctx context.Context, group, topic string, fn func(driver.DeadLetter) bool) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	s, err := c.stream(ctx, "browse dead letters in")
	if err != nil {
		return err
	}
	subject := c.dlqSubject(group, topic)
	found := false
	for seq := uint64(1); ; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return wrapErr("browse", subject, err)
		}
		found = true
		seq = m.Sequence + 1
		if !fn(c.rawDeadLetter(group, topic, m)) {
			return nil
		}
	}
	if found {
		return nil
	}
	ok, err := c.groupExists(ctx, group, topic)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("natsbus: no dead letters and no consumer group %s on topic %s: %w", group, topic, driver.ErrNotFound)
	}
	return nil
}

func (c *conn) rawDeadLetter(group, topic string, m *jetstream.RawStreamMsg) driver.DeadLetter {
	msg := fromNATS(strings.TrimPrefix(m.Subject, c.prefix), &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data})
	return driver.DeadLetter{ID: strconv.FormatUint(m.Sequence, 10), Message: msg}
}

// DeleteDeadLetters implements driver.DeadLetters: each ID is a sequence,
// deleted only if the message there is on the place's subject.
func (c *conn) DeleteDeadLetters(ctx context.Context, group, topic string, ids []string) ([]string, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	s, err := c.stream(ctx, "delete dead letters in")
	if err != nil {
		return nil, err
	}
	subject := c.dlqSubject(group, topic)
	var gone []string
	for _, id := range ids {
		seq, perr := strconv.ParseUint(id, 10, 64)
		if perr != nil || seq == 0 {
			continue
		}
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return gone, wrapErr("delete dead letter "+id+" on", subject, err)
		}
		if m.Subject != subject {
			continue
		}
		err = s.DeleteMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) || err != nil && strings.Contains(err.Error(), "no message found") {
			continue
		}
		if err != nil {
			return gone, wrapErr("delete dead letter "+id+" on", subject, err)
		}
		gone = append(gone, id)
	}
	return gone, nil
}

// PublishToGroup implements driver.DeadLetters. Groups share a topic's
// subject on NATS, so every group on the topic receives the message; package
// bus makes the others skip it by its Sb-Replay-Group header.
func (c *conn) PublishToGroup(ctx context.Context, group string, msg *driver.Message) error {
	cctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if err := c.ready(cctx, "publish", c.prefix+msg.Subject); err != nil {
		return err
	}
	ok, err := c.groupExists(cctx, group, msg.Subject)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("natsbus: consumer group %s does not consume topic %s (no consumer %s): %w",
			group, msg.Subject, ConsumerName(group, msg.Subject), driver.ErrNotFound)
	}
	return c.Publish(ctx, msg)
}
