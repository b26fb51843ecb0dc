package traffic_test

import (
	"fmt"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/traffic"
)

// Install a service's traffic counts before it starts; from then on its
// announcements carry them under InstanceInfo.Status["traffic"].
func ExampleInstall() {
	svc := switchboard.NewService("pricing", "1.0.0")
	if err := traffic.Install(svc); err != nil {
		fmt.Println(err)
	}
	fmt.Println(svc.Reports(traffic.StatusName))
	// Output: true
}

func ExampleCounter() {
	c := traffic.NewCounter()
	c.Observe("quote", "trips", false, 3*time.Millisecond)
	c.Observe("quote", "trips", true, 40*time.Millisecond)
	c.Observe("quote", "web", false, 400*time.Microsecond)
	r := c.Report().Endpoints["quote"]
	fmt.Printf("trips: %+v\nweb: %+v\n", r.Callers["trips"], r.Callers["web"])
	// Output:
	// trips: {Requests:2 Errors:1}
	// web: {Requests:1 Errors:0}
}
