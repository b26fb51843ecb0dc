package admin_test

import (
	"context"
	"fmt"
	"net/http"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/admin"
	"github.com/switchboard-dev/switchboard/bus"
)

// One admin server per process: attach each service before it starts,
// start its checker after. app.Run does this when $SWITCHBOARD_ADMIN_ADDR
// is set.
func ExampleServer() {
	ctx := context.Background()
	conn, err := bus.Open(ctx, "embedded://"+tempDir())
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	srv := admin.New()
	if err := srv.Listen("127.0.0.1:0"); err != nil {
		panic(err)
	}
	defer srv.Shutdown(ctx)

	svc := switchboard.NewService("pricing", "1.0.0")
	checker := srv.Attach(svc)
	_ = svc.Start(ctx, conn)
	defer svc.Shutdown(ctx)
	_ = checker.Start(ctx)
	defer checker.Stop(ctx)

	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		res, err := http.Get(srv.URL() + path)
		if err != nil {
			panic(err)
		}
		res.Body.Close()
		fmt.Println(path, res.StatusCode)
	}
	// Output:
	// /healthz 200
	// /readyz 200
	// /metrics 200
}
