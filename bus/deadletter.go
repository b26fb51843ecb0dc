package bus

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/bus/driver"
)

// Headers package bus sets on a replayed dead letter. The Sb-Dead-* headers
// are removed; every other header of the original message is kept.
const (
	// HeaderReplayed counts the replays of the message: 1 on the first.
	HeaderReplayed = "Sb-Replayed"
	// HeaderReplayOf is the ID of the dead letter the replay came from.
	HeaderReplayOf = "Sb-Replay-Of"
	// HeaderReplayGroup is the only consumer group that handles the replay:
	// members of other groups acknowledge it without calling their handler.
	HeaderReplayGroup = "Sb-Replay-Group"
	// HeaderReplayOriginalID is the original message's ID (Message.ID), if
	// it had one. The replay gets an ID of its own (see ReplayDeadLetters).
	HeaderReplayOriginalID = "Sb-Replay-Original-Id"
)

// deadHeaderPrefix starts the headers set when dead-lettering.
const deadHeaderPrefix = "Sb-Dead-"

// DeadLetterPlace is where the dead letters of one consumer group on one
// topic are kept (the topic DeadLetterTopic(Group, Topic)), and how many it
// holds.
type DeadLetterPlace struct {
	Group string `json:"group"`
	Topic string `json:"topic"`
	Count int    `json:"count"`
}

// DeadLetterFeatures says which dead-letter operations the connection's
// driver supports; what it cannot do, Why explains (for the user, with
// what to do instead).
type DeadLetterFeatures struct {
	// ListPlaces: DeadLetterPlaces works.
	ListPlaces bool
	// Browse: DeadLetters and DeadLetter work.
	Browse bool
	// Delete: PurgeDeadLetters works.
	Delete bool
	// Replay: ReplayDeadLetters works.
	Replay bool
	// Why says what the missing operations would need.
	Why string
}

// DeadLetter is a stored dead letter, with the facts of its Sb-Dead-*
// headers parsed.
type DeadLetter struct {
	// ID names it within its place, stably: the stream sequence on NATS, a
	// digest of the message on RabbitMQ.
	ID string
	// Group and Topic are the place: the group that gave up and the topic
	// the message was published to.
	Group, Topic string
	// Reason is the last handler error.
	Reason string
	// Attempts is how many deliveries were made before giving up.
	Attempts int
	// Time is when it was dead-lettered (zero if the header is missing).
	Time time.Time
	// OriginalID is the original message's ID, if it had one.
	OriginalID string
	// Replayed is how many times the message had been replayed before it
	// was dead-lettered this time.
	Replayed int
	// Message is the dead letter as stored: the original headers and body
	// plus the Sb-Dead-* headers; Subject is the dead-letter topic.
	Message *Message
}

func newDeadLetter(group, topic string, d driver.DeadLetter) *DeadLetter {
	m := fromDriver(d.Message)
	h := m.Header
	dl := &DeadLetter{ID: d.ID, Group: group, Topic: topic, Reason: h.Get(HeaderDeadReason),
		OriginalID: h.Get(HeaderDeadID), Message: m}
	dl.Attempts, _ = strconv.Atoi(h.Get(HeaderDeadAttempts))
	dl.Replayed, _ = strconv.Atoi(h.Get(HeaderReplayed))
	if t, err := time.Parse(time.RFC3339Nano, h.Get(HeaderDeadTime)); err == nil {
		dl.Time = t
	}
	return dl
}

// DeadLetterFilter selects dead letters. The zero value selects all; each
// field set narrows the selection.
type DeadLetterFilter struct {
	// IDs, if any, are the only dead letters selected. Operations that act
	// on dead letters fail with NotFound, doing nothing, when one of them
	// is not stored.
	IDs []string
	// Reason, if set, must match the dead letter's reason.
	Reason *regexp.Regexp
	// Since and Until, if set, bound the time of dead-lettering (Since
	// inclusive, Until exclusive). A dead letter without a time matches
	// neither.
	Since, Until time.Time
	// Limit, if positive, bounds how many dead letters DeadLetters returns
	// (the oldest). ReplayDeadLetters and PurgeDeadLetters ignore it.
	Limit int
}

// Match reports whether d is selected by f.
func (f *DeadLetterFilter) Match(d *DeadLetter) bool {
	if len(f.IDs) > 0 && !slices.Contains(f.IDs, d.ID) {
		return false
	}
	if f.Reason != nil && !f.Reason.MatchString(d.Reason) {
		return false
	}
	if !f.Since.IsZero() && (d.Time.IsZero() || d.Time.Before(f.Since)) {
		return false
	}
	if !f.Until.IsZero() && (d.Time.IsZero() || !d.Time.Before(f.Until)) {
		return false
	}
	return true
}

// deadLetters returns the driver's dead-letter operations, or an
// Unimplemented error saying what to do instead.
func (c *Conn) deadLetters(group, topic string) (driver.DeadLetters, error) {
	if c.isClosed() {
		return nil, ErrClosed
	}
	d, ok := c.drv.(driver.DeadLetters)
	if !ok {
		return nil, Errorf(Unimplemented, "bus: this broker's driver cannot inspect dead letters in place; read them by subscribing to topic %s as group %s",
			DeadLetterTopic(cmpOr(group, "GROUP"), cmpOr(topic, "TOPIC")), cmpOr(group, "GROUP"))
	}
	return d, nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// DeadLetterSupport reports which dead-letter operations the connection's
// driver supports. A driver without any reports all false.
func (c *Conn) DeadLetterSupport() DeadLetterFeatures {
	if d, ok := c.drv.(driver.DeadLetters); ok {
		return DeadLetterFeatures(d.DeadLetterFeatures())
	}
	return DeadLetterFeatures{Why: "this broker's driver cannot inspect dead letters in place"}
}

func unsupported(what string, f driver.DeadLetterFeatures) error {
	msg := "bus: this broker cannot " + what
	if f.Why != "" {
		msg += ": " + f.Why
	}
	return &Error{Code: Unimplemented, Message: msg}
}

// wrapDead classifies a driver error of a dead-letter operation.
func wrapDead(op, what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, driver.ErrNotFound) {
		return &Error{Code: NotFound, Message: fmt.Sprintf("bus: %s %s: %v", op, what, err), Err: err}
	}
	return wrapDriver(op, what, err)
}

func validPlace(group, topic string) error {
	if !ValidName(group) {
		return Errorf(InvalidArgument, "bus: invalid consumer group %q: use letters, digits, '_' and '-'", group)
	}
	return validateSubject(topic, false)
}

func placeName(group, topic string) string { return "group " + group + " on topic " + topic }

// DeadLetterPlaces lists the places holding dead letters, sorted by group
// and topic. It fails with Unimplemented when the broker cannot enumerate
// them (then name the place: see DeadLetters).
func (c *Conn) DeadLetterPlaces(ctx context.Context) ([]DeadLetterPlace, error) {
	d, err := c.deadLetters("", "")
	if err != nil {
		return nil, err
	}
	if f := d.DeadLetterFeatures(); !f.ListPlaces {
		return nil, unsupported("list dead-letter places", f)
	}
	ps, err := d.DeadLetterPlaces(ctx)
	if err != nil {
		return nil, wrapDead("list", "dead-letter places", err)
	}
	out := make([]DeadLetterPlace, len(ps))
	for i, p := range ps {
		out[i] = DeadLetterPlace(p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Group != out[j].Group {
			return out[i].Group < out[j].Group
		}
		return out[i].Topic < out[j].Topic
	})
	return out, nil
}

// DeadLetters returns the dead letters of group on topic that f selects,
// oldest first, without consuming or changing them. A place that does not
// exist is NotFound; an existing empty one gives none. Copies of one dead
// letter (same ID, as an interrupted read on RabbitMQ can leave) are listed
// once; removing the ID removes them all.
func (c *Conn) DeadLetters(ctx context.Context, group, topic string, f DeadLetterFilter) ([]*DeadLetter, error) {
	all, err := c.browse(ctx, group, topic, f)
	if err != nil {
		return nil, err
	}
	if f.Limit > 0 && len(all) > f.Limit {
		all = all[:f.Limit]
	}
	return all, nil
}

// browse reads the place and returns what f selects (ignoring f.Limit),
// oldest first, failing with NotFound when an ID f names is not there.
func (c *Conn) browse(ctx context.Context, group, topic string, f DeadLetterFilter) ([]*DeadLetter, error) {
	if err := validPlace(group, topic); err != nil {
		return nil, err
	}
	d, err := c.deadLetters(group, topic)
	if err != nil {
		return nil, err
	}
	if ft := d.DeadLetterFeatures(); !ft.Browse {
		return nil, unsupported("browse dead letters", ft)
	}
	var out []*DeadLetter
	found := map[string]bool{}
	err = d.BrowseDeadLetters(ctx, group, topic, func(m driver.DeadLetter) bool {
		dl := newDeadLetter(group, topic, m)
		if found[dl.ID] {
			return true // a copy of one already seen: the same message
		}
		found[dl.ID] = true
		if f.Match(dl) {
			out = append(out, dl)
		}
		return true
	})
	if err != nil {
		return nil, wrapDead("browse dead letters of", placeName(group, topic), err)
	}
	var missing []string
	for _, id := range f.IDs {
		if !found[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		return nil, (&Error{Code: NotFound, Message: fmt.Sprintf("bus: no dead letter %s in %s (see the IDs it holds with DeadLetters)",
			strings.Join(missing, ", "), placeName(group, topic))}).WithDetail("id", missing[0])
	}
	// Oldest first; the broker's order where times tie or are missing.
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Time.IsZero() || out[j].Time.IsZero() {
			return false
		}
		return out[i].Time.Before(out[j].Time)
	})
	return out, nil
}

// DeadLetter returns one dead letter of group on topic by ID, or NotFound.
func (c *Conn) DeadLetter(ctx context.Context, group, topic, id string) (*DeadLetter, error) {
	ds, err := c.browse(ctx, group, topic, DeadLetterFilter{IDs: []string{id}})
	if err != nil {
		return nil, err
	}
	return ds[0], nil
}

// ReplayResult says what ReplayDeadLetters did with each selected dead
// letter.
type ReplayResult struct {
	// Replayed were published to their topic for their group, confirmed,
	// and then removed.
	Replayed []*DeadLetter
	// NotRemoved were published and confirmed but could not be removed:
	// they are still dead letters (a later replay would repeat them).
	NotRemoved []*DeadLetter
	// Pending were not published because the replay stopped at an error:
	// they are still dead letters.
	Pending []*DeadLetter
}

// replayBatch bounds how many replays wait to have their dead letters
// removed: a crash repeats at most this many.
const replayBatch = 100

// ReplayDeadLetters re-publishes the dead letters of group on topic that f
// selects to topic, oldest first, for group alone, and removes each only
// after the broker confirmed its replay. A failure part way loses nothing:
// what was not confirmed is still stored, and the result says which were
// replayed. The error is the first failure.
//
// A replay keeps the original body and headers (CloudEvents attributes
// included) without the Sb-Dead-* headers, and adds HeaderReplayed (the
// replay count), HeaderReplayOf (the dead letter's ID), HeaderReplayGroup
// and, if the original had an ID, HeaderReplayOriginalID. Its Message.ID
// is "sb-replay:GROUP:ID", so that on a de-duplicating broker a replay
// repeated after a crash within the window is stored once. The group's
// handler sees Delivery.Attempt start from 1 again; a replay that fails
// MaxAttempts times is dead-lettered anew (with a new ID).
//
// The group must still consume the topic: otherwise it fails with
// NotFound and replays nothing.
func (c *Conn) ReplayDeadLetters(ctx context.Context, group, topic string, f DeadLetterFilter) (*ReplayResult, error) {
	d, err := c.deadLetters(group, topic)
	if err != nil {
		return nil, err
	}
	if ft := d.DeadLetterFeatures(); !ft.Replay || !ft.Delete {
		return nil, unsupported("replay dead letters", ft)
	}
	sel, err := c.browse(ctx, group, topic, f)
	if err != nil {
		return nil, err
	}
	res := &ReplayResult{}
	for start := 0; start < len(sel); start += replayBatch {
		batch := sel[start:min(start+replayBatch, len(sel))]
		var published []*DeadLetter
		var perr error
		for _, dl := range batch {
			m := replayMessage(dl)
			if perr = c.checkSize("replay", m); perr == nil {
				perr = wrapDead("replay to", placeName(group, topic), d.PublishToGroup(ctx, group, toDriver(m)))
			}
			if perr != nil {
				break
			}
			published = append(published, dl)
		}
		removed, derr := c.remove(ctx, d, group, topic, published)
		for _, dl := range published {
			if removed[dl.ID] {
				res.Replayed = append(res.Replayed, dl)
			} else {
				res.NotRemoved = append(res.NotRemoved, dl)
			}
		}
		if perr != nil || derr != nil {
			res.Pending = append(res.Pending, sel[start+len(published):]...)
			return res, cmpErr(perr, derr)
		}
	}
	return res, nil
}

func cmpErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// remove deletes ds from the place and reports which IDs went.
func (c *Conn) remove(ctx context.Context, d driver.DeadLetters, group, topic string, ds []*DeadLetter) (map[string]bool, error) {
	if len(ds) == 0 {
		return nil, nil
	}
	ids := make([]string, len(ds))
	for i, dl := range ds {
		ids[i] = dl.ID
	}
	gone, err := d.DeleteDeadLetters(ctx, group, topic, ids)
	removed := make(map[string]bool, len(gone))
	for _, id := range gone {
		removed[id] = true
	}
	return removed, wrapDead("remove dead letters of", placeName(group, topic), err)
}

// replayMessage is the message that replays dl.
func replayMessage(dl *DeadLetter) *Message {
	h := dl.Message.Header.Clone()
	for k := range h {
		if strings.HasPrefix(k, deadHeaderPrefix) {
			delete(h, k)
		}
	}
	h[HeaderReplayed] = strconv.Itoa(dl.Replayed + 1)
	h[HeaderReplayOf] = dl.ID
	h[HeaderReplayGroup] = dl.Group
	delete(h, HeaderReplayOriginalID)
	if dl.OriginalID != "" {
		h[HeaderReplayOriginalID] = dl.OriginalID
	}
	return &Message{Subject: dl.Topic, Header: h, Body: dl.Message.Body, ID: "sb-replay:" + dl.Group + ":" + dl.ID}
}

// PurgeDeadLetters deletes, for good, the dead letters of group on topic
// that f selects, and returns those it deleted. A failure part way leaves
// the rest stored.
func (c *Conn) PurgeDeadLetters(ctx context.Context, group, topic string, f DeadLetterFilter) ([]*DeadLetter, error) {
	d, err := c.deadLetters(group, topic)
	if err != nil {
		return nil, err
	}
	if ft := d.DeadLetterFeatures(); !ft.Delete {
		return nil, unsupported("delete dead letters", ft)
	}
	sel, err := c.browse(ctx, group, topic, f)
	if err != nil {
		return nil, err
	}
	removed, err := c.remove(ctx, d, group, topic, sel)
	var out []*DeadLetter
	for _, dl := range sel {
		if removed[dl.ID] {
			out = append(out, dl)
		}
	}
	return out, err
}

// skipReplay reports whether a delivery to group is a replay addressed to
// another group, which the group acknowledges without handling.
func skipReplay(h Header, group string) bool {
	g, ok := h[HeaderReplayGroup]
	return ok && g != group
}
