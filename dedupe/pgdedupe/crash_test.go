package pgdedupe_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	switchboard "github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/natsbus"
	"github.com/switchboard-dev/switchboard/dedupe"
	"github.com/switchboard-dev/switchboard/dedupe/pgdedupe"
	"github.com/switchboard-dev/switchboard/internal/pgtest"
)

// The consumer child process's environment.
const (
	envChild = "SWITCHBOARD_PGDEDUPE_TEST_CHILD"
	envPG    = "SWITCHBOARD_PGDEDUPE_TEST_PG"
	envBus   = "SWITCHBOARD_PGDEDUPE_TEST_BUS"
	envTopic = "SWITCHBOARD_PGDEDUPE_TEST_TOPIC"
)

// The lease is longer than AckWait, so that the broker's redelivery of an
// event whose consumer was killed meets the dead consumer's live lease.
const (
	crashLease   = 3 * time.Second
	crashAckWait = time.Second
)

type job struct {
	N    int  `json:"n"`
	Slow bool `json:"slow"`
}

func TestMain(m *testing.M) {
	if os.Getenv(envChild) != "" {
		os.Exit(consumerChild())
	}
	os.Exit(m.Run())
}

// consumer starts one instance of the "ledger" group. Its handler records
// the job's effect in the effects table in the transaction that marks the
// event done (Store.CompleteTx); in the child, a slow job blocks first, so
// that the child can be killed mid-handler. Fast jobs may be killed anywhere,
// between the effect and the mark included.
func consumer(ctx context.Context, pgURL, busURL, topic string, child bool, out func(string)) (stop func(), err error) {
	pool, err := pgxpool.New(ctx, pgURL)
	if err != nil {
		return nil, err
	}
	store, err := pgdedupe.New(ctx, pool, pgdedupe.Options{Table: "dedupe"})
	if err != nil {
		pool.Close()
		return nil, err
	}
	conn, err := bus.Open(ctx, busURL)
	if err != nil {
		pool.Close()
		return nil, err
	}
	obs := dedupe.WithObserver(func(key string, o dedupe.Outcome, _ error) { out(string(o) + " " + key) })
	svc := switchboard.NewService("ledger", "1.0.0", switchboard.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	switchboard.Topic[*job](topic).Subscribe(svc, "ledger", dedupe.Handler(store, func(ctx context.Context, j *job) error {
		if child && j.Slow {
			out("running " + strconv.Itoa(j.N))
			<-ctx.Done() // until killed
			return ctx.Err()
		}
		// The effect and the mark commit together: a kill between the
		// two leaves neither, and the redelivery runs the job again.
		tx, err := pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		if _, err := tx.Exec(ctx, `INSERT INTO effects (n, pid) VALUES ($1, $2)`, j.N, os.Getpid()); err != nil {
			return err
		}
		if err := store.CompleteTx(ctx, tx); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}, obs, dedupe.WithLease(crashLease)),
		switchboard.Concurrency(4), switchboard.AckWait(crashAckWait),
		switchboard.Backoff(func(int) time.Duration { return 50 * time.Millisecond }))
	stop = func() { _ = svc.Shutdown(context.Background()); _ = conn.Close(); pool.Close() }
	if err := svc.Start(ctx, conn); err != nil {
		stop()
		return nil, err
	}
	return stop, nil
}

func consumerChild() int {
	var mu sync.Mutex
	out := func(s string) { mu.Lock(); fmt.Println(s); mu.Unlock() }
	if _, err := consumer(context.Background(), os.Getenv(envPG), os.Getenv(envBus), os.Getenv(envTopic), true, out); err != nil {
		fmt.Fprintln(os.Stderr, "consumer child:", err)
		return 2
	}
	out("ready")
	select {} // until killed
}

// Two consumer processes share a pgdedupe table; duplicates of events are
// published under fresh message ids; one process is killed with SIGKILL in
// the middle of handlers. Every job's effect is recorded exactly once: the
// duplicates are dropped across processes, the killed process's events are
// run by the other once its leases expire, and an effect whose transaction
// the kill cut short is rolled back with its mark.
func TestConsumersInTwoProcessesWithOneKilledMidHandler(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a consumer process; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pgURL := pgtest.Schema(t)
	pool := pgtest.Pool(t, pgURL)
	if _, err := pool.Exec(ctx, `CREATE TABLE effects (n integer NOT NULL, pid integer NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	srv, err := natsbus.StartServer(natsbus.ServerOptions{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	topic := fmt.Sprintf("ledger.jobs%d", time.Now().UnixNano())

	var mu sync.Mutex
	outcomes := map[string]map[dedupe.Outcome]int{"parent": {}, "child": {}}
	running := make(chan int, 100)
	record := func(who, line string) {
		if n, ok := strings.CutPrefix(line, "running "); ok {
			i, _ := strconv.Atoi(n)
			running <- i
			return
		}
		if o, _, ok := strings.Cut(line, " "); ok {
			mu.Lock()
			outcomes[who][dedupe.Outcome(o)]++
			mu.Unlock()
		}
	}
	stop, err := consumer(ctx, pgURL, srv.ClientURL(), topic, false, func(s string) { record("parent", s) })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"=1", envPG+"="+pgURL, envBus+"="+srv.ClientURL(), envTopic+"="+topic)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	ready, outDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(outDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "ready" {
				close(ready)
				continue
			}
			record("child", sc.Text())
		}
	}()
	select {
	case <-ready:
	case <-ctx.Done():
		t.Fatal("the consumer child did not start")
	}

	conn, err := bus.Open(ctx, srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	publish := func(j job, copyN int) {
		id := "job-" + strconv.Itoa(j.N)
		h := bus.Header{"ce-specversion": "1.0", "ce-id": id, "ce-source": "/switchboard/jobs", "ce-type": topic, "Content-Type": "application/json"}
		body := fmt.Sprintf(`{"n":%d,"slow":%v}`, j.N, j.Slow)
		if err := conn.Publish(ctx, &bus.Message{Subject: topic, Header: h, ID: fmt.Sprintf("%s#%d", id, copyN), Body: []byte(body)}); err != nil {
			t.Fatal(err)
		}
	}
	const jobs, slow = 200, 20
	copies := 0
	for n := range jobs {
		publish(job{N: n}, 0)
		if n%4 == 0 { // a duplicate the broker cannot recognise
			publish(job{N: n}, 1)
			copies++
		}
	}
	for n := jobs; n < jobs+slow; n++ {
		publish(job{N: n, Slow: true}, 0)
	}
	// Kill the child as soon as it is in the middle of a slow handler.
	var killedIn int
	select {
	case killedIn = <-running:
	case <-ctx.Done():
		t.Fatal("no slow job reached the child")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-outDone
	err = cmd.Wait()
	var ee *exec.ExitError
	if ws, ok := exitStatus(err, &ee); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the fault did not fire: the child ended with %v", err)
	}
	runningInChild := 1 + len(running)

	// Wait for every job's effect (the parent runs what the child left).
	var rows, distinct int
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for distinct < jobs+slow {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("only %d of %d jobs have an effect", distinct, jobs+slow)
		}
		if err := pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT n) FROM effects`).Scan(&rows, &distinct); err != nil {
			t.Fatal(err)
		}
	}
	var byChild int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM effects WHERE pid <> $1`, os.Getpid()).Scan(&byChild); err != nil {
		t.Fatal(err)
	}
	var slowByParent int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM effects WHERE n >= $1 AND pid = $2`, jobs, os.Getpid()).Scan(&slowByParent); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	p, c := outcomes["parent"], outcomes["child"]
	t.Logf("ledger: jobs=%d (slow %d) published=%d (copies under new message ids %d) effects=%d (by the child %d) duplicates dropped=%d (parent %d, child %d) refused while the killed child's lease lived=%d; child killed in job %d with %d slow handlers running, slow jobs then run by the parent=%d; lost=%d",
		jobs+slow, slow, jobs+slow+copies, copies, rows, byChild, p[dedupe.Duplicate]+c[dedupe.Duplicate], p[dedupe.Duplicate], c[dedupe.Duplicate],
		p[dedupe.InFlight], killedIn, runningInChild, slowByParent, jobs+slow-distinct)
	if rows != jobs+slow {
		t.Fatalf("%d effects for %d jobs: some ran twice", rows, jobs+slow)
	}
	if p[dedupe.InFlight] == 0 {
		t.Fatalf("no redelivery met the killed child's lease; the lease expiry path was not exercised")
	}
	if byChild == 0 {
		t.Logf("the child recorded no effect this run: the sharing across processes was not exercised")
	}
}

func exitStatus(err error, ee **exec.ExitError) (syscall.WaitStatus, bool) {
	if !errors.As(err, ee) {
		return 0, false
	}
	ws, ok := (*ee).Sys().(syscall.WaitStatus)
	return ws, ok
}
