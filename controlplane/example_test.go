package controlplane_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus/natsbus"
	"github.com/switchboard-dev/switchboard/controlplane"
)

// Start a control plane on a bus, and read the service catalogue from its
// API, as the dashboard does.
func ExampleStart() {
	srv, _ := natsbus.StartServer(natsbus.ServerOptions{})
	defer srv.Shutdown()
	ctx := context.Background()
	conn, _ := srv.Open(ctx, natsbus.Options{})
	defer conn.Close()

	cp, err := controlplane.Start(ctx, conn, controlplane.Options{HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cp.Shutdown(ctx)

	svc := switchboard.NewService("greeter", "1.0.0")
	_ = svc.Start(ctx, conn)
	defer svc.Shutdown(ctx)

	for range 100 { // announcements arrive asynchronously
		rsp, err := http.Get(cp.URL() + "api/services")
		if err != nil {
			fmt.Println(err)
			return
		}
		var r controlplane.ServicesReply
		_ = json.NewDecoder(rsp.Body).Decode(&r)
		rsp.Body.Close()
		var names []string
		for _, s := range r.Services {
			names = append(names, s.Name)
		}
		if slices.Contains(names, "greeter") {
			fmt.Println(names)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Output: [controlplane greeter]
}
