package bus

import (
	"maps"
	"regexp"
	"testing"
	"time"
)

func TestDeadLetterFilterMatch(t *testing.T) {
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	d := &DeadLetter{ID: "7", Reason: "order o-2: amount missing", Time: at}
	undated := &DeadLetter{ID: "8", Reason: "x"}
	for _, tc := range []struct {
		name string
		f    DeadLetterFilter
		d    *DeadLetter
		want bool
	}{
		{"the zero filter selects everything", DeadLetterFilter{}, d, true},
		{"the zero filter selects a dead letter without a time", DeadLetterFilter{}, undated, true},
		{"a listed ID is selected", DeadLetterFilter{IDs: []string{"1", "7"}}, d, true},
		{"an unlisted ID is not", DeadLetterFilter{IDs: []string{"1"}}, d, false},
		{"a matching reason is selected", DeadLetterFilter{Reason: regexp.MustCompile(`amount`)}, d, true},
		{"another reason is not", DeadLetterFilter{Reason: regexp.MustCompile(`^timeout`)}, d, false},
		{"since is inclusive", DeadLetterFilter{Since: at}, d, true},
		{"since later is not", DeadLetterFilter{Since: at.Add(time.Nanosecond)}, d, false},
		{"until is exclusive", DeadLetterFilter{Until: at}, d, false},
		{"until later is", DeadLetterFilter{Until: at.Add(time.Second)}, d, true},
		{"a time bound excludes a dead letter without a time", DeadLetterFilter{Since: at}, undated, false},
		{"every condition must hold", DeadLetterFilter{IDs: []string{"7"}, Reason: regexp.MustCompile(`nope`)}, d, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.f.Match(tc.d); got != tc.want {
				t.Errorf("Match = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestReplayMessageKeepsTheOriginalAndMarksTheReplay(t *testing.T) {
	for _, tc := range []struct {
		name string
		dl   *DeadLetter
		want Message
	}{
		{
			name: "a first replay",
			dl: &DeadLetter{ID: "42", Group: "billing", Topic: "order.placed", OriginalID: "o-2", Message: &Message{
				Subject: "_dlq.billing.order.placed", Body: []byte(`{"order":"o-2"}`),
				Header: Header{"ce-id": "o-2", "ce-type": "order.placed", HeaderDeadReason: "boom", HeaderDeadAttempts: "3",
					HeaderDeadTopic: "order.placed", HeaderDeadGroup: "billing", HeaderDeadTime: "2026-12-01T12:00:00Z", HeaderDeadID: "o-2"}}},
			want: Message{Subject: "order.placed", Body: []byte(`{"order":"o-2"}`), ID: "sb-replay:billing:42",
				Header: Header{"ce-id": "o-2", "ce-type": "order.placed", HeaderReplayed: "1", HeaderReplayOf: "42",
					HeaderReplayGroup: "billing", HeaderReplayOriginalID: "o-2"}},
		},
		{
			name: "a second replay without an original ID",
			dl: &DeadLetter{ID: "a1b2", Group: "g", Topic: "t", Replayed: 1, Message: &Message{
				Subject: "_dlq.g.t", Body: []byte("x"),
				Header: Header{"k": "v", HeaderReplayed: "1", HeaderReplayOf: "old", HeaderReplayGroup: "g",
					HeaderReplayOriginalID: "stale", HeaderDeadReason: "again"}}},
			want: Message{Subject: "t", Body: []byte("x"), ID: "sb-replay:g:a1b2",
				Header: Header{"k": "v", HeaderReplayed: "2", HeaderReplayOf: "a1b2", HeaderReplayGroup: "g"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := replayMessage(tc.dl)
			if got.Subject != tc.want.Subject || string(got.Body) != string(tc.want.Body) || got.ID != tc.want.ID || !maps.Equal(got.Header, tc.want.Header) {
				t.Errorf("replayMessage = %+v\nwant %+v", *got, tc.want)
			}
			if _, ok := tc.dl.Message.Header[HeaderReplayed]; ok && tc.dl.Message.Header[HeaderReplayed] != "1" {
				t.Errorf("replayMessage changed the dead letter's headers")
			}
		})
	}
}

func TestSkipReplay(t *testing.T) {
	for _, tc := range []struct {
		h     Header
		group string
		want  bool
	}{
		{Header{}, "billing", false},
		{nil, "billing", false},
		{Header{HeaderReplayGroup: "billing"}, "billing", false},
		{Header{HeaderReplayGroup: "billing"}, "audit", true},
	} {
		if got := skipReplay(tc.h, tc.group); got != tc.want {
			t.Errorf("skipReplay(%v, %q) = %v, want %v", tc.h, tc.group, got, tc.want)
		}
	}
}
