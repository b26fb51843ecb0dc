package health

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
)

// Thresholds of the built-in checks.
const (
	// SlowBus: a bus round trip slower than this is Degraded.
	SlowBus = time.Second
	// BusyShare: an endpoint with this share of its MaxInFlight busy is
	// Degraded (near its limit; at the limit calls are refused).
	BusyShare = 0.8
	// MinLatencySamples is how many calls the latency check needs in its
	// window before it judges a percentile.
	MinLatencySamples = 20
	// BacklogLimit: a consumer group with more messages than this waiting
	// to be delivered to it is Degraded (where the driver can tell).
	BacklogLimit = 10000
)

// checkBus sends a request to the instance itself through the broker: it
// answers only if the connection is up and the broker routes, which is what
// serving needs.
func (c *Checker) checkBus(ctx context.Context) Result {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		return Unhealthyf("not connected")
	}
	start := time.Now()
	_, err := conn.Request(ctx, &bus.Message{Subject: CheckSubject(c.svc.ID()), Header: bus.Header{}})
	took := time.Since(start)
	switch {
	case err == nil && took > SlowBus:
		return Degradedf("the broker at %s answered in %s (slow: over %s)", where(conn), took.Round(time.Millisecond), SlowBus)
	case err == nil:
		return OK("connected to %s (round trip %s)", where(conn), roundDur(took))
	case bus.IsNoResponders(err):
		return Unhealthyf("connected to %s, but the instance's own subscriptions are gone", where(conn))
	}
	return Unhealthyf("no round trip through %s: %v", where(conn), strings.TrimPrefix(err.Error(), "bus: "))
}

// checkCapacity compares each endpoint's in-flight handlers with its
// MaxInFlight, counts calls refused because the endpoint was full, and,
// where the driver can tell, each consumer group's backlog.
func (c *Checker) checkCapacity(ctx context.Context) Result {
	var busy, refused []string
	loads := c.svc.Load()
	backlog, deep := c.backlogs(ctx)
	if len(loads) == 0 && backlog == "" {
		return OK("no endpoints")
	}
	worst := 0.0
	for _, l := range loads {
		share := 0.0
		if l.MaxInFlight > 0 {
			share = float64(l.InFlight) / float64(l.MaxInFlight)
		}
		worst = max(worst, share)
		if share >= BusyShare {
			busy = append(busy, fmt.Sprintf("%s %d/%d in flight", l.Endpoint, l.InFlight, l.MaxInFlight))
		}
		if c.win != nil {
			if n := c.win.endpoint(l.Endpoint).refused; n > 0 {
				refused = append(refused, fmt.Sprintf("%s refused %d calls as ResourceExhausted (full at MaxInFlight %d, or shedding load)", l.Endpoint, n, l.MaxInFlight))
			}
		}
	}
	if len(busy) > 0 || len(refused) > 0 || deep {
		parts := append(busy, refused...)
		if backlog != "" {
			parts = append(parts, backlog)
		}
		return Degradedf("%s", strings.Join(parts, "; "))
	}
	if len(loads) == 0 {
		return OK("no endpoints; %s", backlog)
	}
	msg := fmt.Sprintf("%d endpoints, busiest at %.0f%% of its MaxInFlight", len(loads), worst*100)
	if backlog != "" {
		msg += "; " + backlog
	}
	return OK("%s", msg)
}

// backlogs describes the backlog of each of the service's consumer groups
// ("" if the driver cannot tell or there are none), and whether one
// exceeds BacklogLimit.
func (c *Checker) backlogs(ctx context.Context) (string, bool) {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	subs := c.svc.Consumers()
	if conn == nil || len(subs) == 0 || !conn.CanReportBacklog() {
		return "", false
	}
	var parts []string
	deep := false
	for _, tg := range subs {
		b, err := conn.Backlog(ctx, tg.Topic, tg.Group)
		if err != nil {
			parts = append(parts, fmt.Sprintf("%s (group %s): backlog unknown (%v)", tg.Topic, tg.Group, strings.TrimPrefix(err.Error(), "bus: ")))
			continue
		}
		deep = deep || b.Pending > BacklogLimit
		if b.UnackedUnknown {
			parts = append(parts, fmt.Sprintf("%s (group %s): %d pending", tg.Topic, tg.Group, b.Pending))
		} else {
			parts = append(parts, fmt.Sprintf("%s (group %s): %d pending, %d unacked", tg.Topic, tg.Group, b.Pending, b.Unacked))
		}
	}
	return "backlog " + strings.Join(parts, ", "), deep
}

// checkLatency compares each endpoint's observed 99th percentile over the
// last one to two intervals with what it declared (ExpectLatency).
func (c *Checker) checkLatency(context.Context) Result {
	if c.win == nil {
		return OK("not tracked: health was attached after the service started")
	}
	var slow, fine []string
	declared := 0
	for _, l := range c.svc.Load() {
		if l.ExpectP99 <= 0 {
			continue
		}
		declared++
		st := c.win.endpoint(l.Endpoint)
		if st.n < MinLatencySamples {
			fine = append(fine, fmt.Sprintf("%s: %d calls, too few to judge", l.Endpoint, st.n))
			continue
		}
		p99 := st.quantile(0.99)
		if p99 > l.ExpectP99 {
			slow = append(slow, fmt.Sprintf("%s p99 %s > expected %s (%d calls)", l.Endpoint, roundDur(p99), l.ExpectP99, st.n))
		} else {
			fine = append(fine, fmt.Sprintf("%s p99 %s <= %s", l.Endpoint, roundDur(p99), l.ExpectP99))
		}
	}
	switch {
	case declared == 0:
		return OK("no endpoint declares an expected latency (switchboard.ExpectLatency)")
	case len(slow) > 0:
		return Degradedf("%s", strings.Join(slow, "; "))
	}
	return OK("%s", strings.Join(fine, "; "))
}

// checkEvents reports events dead-lettered or retried by the service's
// consumers over the last one to two intervals.
func (c *Checker) checkEvents(context.Context) Result {
	subs := c.svc.Consumers()
	if len(subs) == 0 {
		return OK("no consumers")
	}
	if c.win == nil {
		return OK("%d consumers; not tracked: health was attached after the service started", len(subs))
	}
	ts := c.win.topics()
	sort.Slice(ts, func(i, j int) bool { return ts[i].Topic+ts[i].Group < ts[j].Topic+ts[j].Group })
	var dead, retried []string
	for _, t := range ts {
		if n := t.dead + t.dropped; n > 0 {
			dead = append(dead, fmt.Sprintf("%s (group %s): %d dead-lettered", t.Topic, t.Group, n))
		}
		if t.retried > 0 {
			retried = append(retried, fmt.Sprintf("%s (group %s): %d retried", t.Topic, t.Group, t.retried))
		}
	}
	if len(dead) > 0 {
		return Degradedf("%s", strings.Join(append(dead, retried...), "; "))
	}
	if len(retried) > 0 {
		return OK("%d consumers; %s", len(subs), strings.Join(retried, "; "))
	}
	return OK("%d consumers, no failures", len(subs))
}

// where names the broker for messages: its URL (password redacted), or
// "the broker" for a connection made without one.
func where(conn *bus.Conn) string {
	if u := conn.URL(); u != "" {
		return u
	}
	return "the broker"
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
