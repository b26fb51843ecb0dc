package switchboard

import (
	"context"
	"sort"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/wire"
)

// KnownDeadLetterPlaces counts the dead letters of every consumer group
// that insts announce (their Subscribes), leaving out the places that hold
// none or do not exist yet, sorted by group and topic. It stands in for
// conn.DeadLetterPlaces on a broker that cannot list them (RabbitMQ over
// AMQP, where it reports Unimplemented): the places of the groups of
// stopped services are not in it.
func KnownDeadLetterPlaces(ctx context.Context, conn *bus.Conn, insts []wire.InstanceInfo) ([]bus.DeadLetterPlace, error) {
	seen := map[[2]string]bool{}
	var out []bus.DeadLetterPlace
	for _, in := range insts {
		for _, t := range in.Subscribes {
			k := [2]string{t.Group, t.Topic}
			if t.Group == "" || seen[k] {
				continue
			}
			seen[k] = true
			ds, err := conn.DeadLetters(ctx, t.Group, t.Topic, bus.DeadLetterFilter{})
			if bus.ErrorCode(err) == bus.NotFound {
				continue // not declared yet on the broker
			}
			if err != nil {
				return nil, err
			}
			if len(ds) > 0 {
				out = append(out, bus.DeadLetterPlace{Group: t.Group, Topic: t.Topic, Count: len(ds)})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Group != out[j].Group {
			return out[i].Group < out[j].Group
		}
		return out[i].Topic < out[j].Topic
	})
	return out, nil
}
