// Command ridehail runs the ride-hailing example's services as one process,
// or some of them, against a bus — by default the one a running
// `switchboard dev` recorded — and optionally its workload:
//
//	go run ./examples/ridehail/cmd/ridehail                          # all services
//	go run ./examples/ridehail/cmd/ridehail -services pricing,trips  # a second instance of two
//	go run ./examples/ridehail/cmd/ridehail -services none -workload 5
//
// Run several to see competing consumers share the load, or kill one while
// a workload runs to see the others carry on. It stops gracefully on Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/app"
	"github.com/switchboard-dev/switchboard/examples/ridehail"
	"github.com/switchboard-dev/switchboard/examples/ridehail/workload"
)

func main() { os.Exit(run()) }

func run() int {
	busURL := flag.String("bus", "", "bus URL (default $"+app.EnvBus+" or the running `switchboard dev`)")
	only := flag.String("services", "all", `comma-separated services to run, "all" or "none"`)
	rate := flag.Float64("workload", 0, "also run the workload at this many trips per second")
	flag.Parse()

	logger := slog.Default()
	var svcs []*switchboard.Service
	for _, s := range ridehail.Services(logger) {
		if *only == "all" || slices.Contains(strings.Split(*only, ","), s.Name()) {
			svcs = append(svcs, s)
		}
	}
	if len(svcs) == 0 && *only != "none" {
		fmt.Fprintf(os.Stderr, "ridehail: -services %q names no service; the services are customers, drivers, pricing, dispatch, trips, payments\n", *only)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var wg sync.WaitGroup
	if *rate > 0 {
		url, _, err := app.BusURL(*busURL)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ridehail:", err)
			return 1
		}
		client, err := switchboard.Dial(ctx, url, switchboard.WithCaller("workload"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "ridehail:", err)
			return 1
		}
		defer client.Close()
		wg.Go(func() { workload.Run(ctx, client, *rate, logger) })
	}
	var err error
	if len(svcs) > 0 {
		err = app.RunContext(ctx, *busURL, svcs...)
	} else {
		<-ctx.Done()
	}
	stop()
	wg.Wait()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ridehail:", err)
		return 1
	}
	return 0
}
