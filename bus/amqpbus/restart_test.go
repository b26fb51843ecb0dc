package amqpbus_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/amqpbus"
)

// nodeWait bounds starting and stopping the private RabbitMQ node, which
// takes seconds; like wait, it is a bound against hangs, not a speed
// requirement.
const nodeWait = 90 * time.Second

// rabbitNode is a RabbitMQ node that a test runs for itself, so that it can
// stop and start it without touching the machine's shared broker: its own
// node name, AMQP and distribution ports on 127.0.0.1, configuration,
// enabled-plugins file (none), Erlang cookie (a HOME of its own), and
// database and logs, all under a temporary directory. It uses the machine's
// epmd as any node does.
type rabbitNode struct {
	t        *testing.T
	server   string // the rabbitmq-server script
	dir      string
	name     string
	port     int
	distPort int
	env      []string
	log      *os.File // the node's console output, for failures

	mu     sync.Mutex
	cmd    *exec.Cmd     // the running script, nil when stopped
	exited chan struct{} // closed when the script has exited (and reaped the VM)
	reader sync.WaitGroup
	out    *os.File // the read end of the console pipe
}

// rabbitmqServer finds the rabbitmq-server start script: the one
// $SWITCHBOARD_TEST_RABBITMQ_SERVER names, else the package's. Debian's
// /usr/sbin/rabbitmq-server is a wrapper that runs the machine's node as
// the rabbitmq user, so it is resolved to the script behind it
// (/usr/lib/rabbitmq/bin/rabbitmq-server).
func rabbitmqServer() (string, error) {
	if p := os.Getenv("SWITCHBOARD_TEST_RABBITMQ_SERVER"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("SWITCHBOARD_TEST_RABBITMQ_SERVER: %w", err)
		}
		return p, nil
	}
	candidates := []string{"/usr/lib/rabbitmq/bin/rabbitmq-server"}
	if p, err := exec.LookPath("rabbitmq-server"); err == nil {
		candidates = append(candidates, p)
	}
	candidates = append(candidates, "/usr/sbin/rabbitmq-server", "/usr/local/sbin/rabbitmq-server",
		"/opt/homebrew/sbin/rabbitmq-server", "/usr/local/opt/rabbitmq/sbin/rabbitmq-server")
	for _, p := range candidates {
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			continue
		}
		if fi, err := os.Stat(real); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			continue
		}
		if filepath.Base(real) == "rabbitmq-script-wrapper" {
			continue
		}
		return p, nil
	}
	return "", errors.New("no rabbitmq-server found (looked for $SWITCHBOARD_TEST_RABBITMQ_SERVER, /usr/lib/rabbitmq/bin/rabbitmq-server and rabbitmq-server on $PATH)")
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// newRabbitNode prepares a private node and starts it; it is stopped, and
// checked to leave no process behind, when the test ends. Without a
// rabbitmq-server it skips, or fails when CI=true.
func newRabbitNode(t *testing.T) *rabbitNode {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the private RabbitMQ node is managed through /proc: Linux only")
	}
	server, err := rabbitmqServer()
	if err != nil {
		msg := err.Error() + ": install RabbitMQ (./scripts/test does, on Debian) or set SWITCHBOARD_TEST_RABBITMQ_SERVER"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if _, err := exec.LookPath("erl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("rabbitmq-server is at %s but erl is not on $PATH", server)
		}
		t.Skipf("rabbitmq-server is at %s but erl is not on $PATH", server)
	}
	dir := t.TempDir()
	n := &rabbitNode{
		t:        t,
		server:   server,
		dir:      dir,
		name:     fmt.Sprintf("sbtest-%08x@localhost", rand.Uint32()),
		port:     freePort(t),
		distPort: freePort(t),
	}
	for _, d := range []string{"home", "mnesia", "log"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		// Our own listener only: the machine's /etc/rabbitmq/rabbitmq.conf
		// may name 5672.
		"rabbitmq.conf":   fmt.Sprintf("listeners.tcp.1 = 127.0.0.1:%d\nlog.file.level = info\n", n.port),
		"enabled_plugins": "[].\n",
		// Nothing from /etc/rabbitmq/rabbitmq-env.conf (its NODENAME).
		"rabbitmq-env.conf": "",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "RABBITMQ_") || strings.HasPrefix(k, "ERL_") || k == "HOME" || k == "NOTIFY_SOCKET" {
			continue
		}
		n.env = append(n.env, kv)
	}
	n.env = append(n.env,
		"HOME="+filepath.Join(dir, "home"), // the node makes its own Erlang cookie here
		"RABBITMQ_NODENAME="+n.name,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(n.port),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(n.distPort),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq.conf"),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(dir, "rabbitmq-env.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
		"ERL_EPMD_ADDRESS=127.0.0.1",
	)
	if n.log, err = os.Create(filepath.Join(dir, "log", "console.log")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.cleanup)
	took := n.start()
	t.Logf("private RabbitMQ node %s (%s) on 127.0.0.1:%d (distribution %d), data in %s: started in %v",
		n.name, server, n.port, n.distPort, dir, took.Round(time.Millisecond))
	return n
}

// url is the node's AMQP URL with the given query.
func (n *rabbitNode) url(query string) string {
	return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/?%s", n.port, query)
}

// start starts the node and waits until it says it is ready ("Starting
// broker... completed"), failing the test if it exits first.
func (n *rabbitNode) start() time.Duration {
	n.t.Helper()
	begin := time.Now()
	r, w, err := os.Pipe()
	if err != nil {
		n.t.Fatal(err)
	}
	cmd := exec.Command(n.server)
	cmd.Dir = n.dir
	cmd.Env = n.env
	cmd.Stdout, cmd.Stderr = w, w
	// A process group of its own: the cleanup can find and end everything
	// the script started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("start %s: %v", n.server, err)
	}
	_ = w.Close()
	ready, exited := make(chan struct{}), make(chan struct{})
	n.mu.Lock()
	n.cmd, n.exited, n.out = cmd, exited, r
	n.mu.Unlock()
	n.reader.Go(func() {
		var once sync.Once
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(n.log, line)
			if strings.Contains(line, "Starting broker") && strings.Contains(line, "completed") {
				once.Do(func() { close(ready) })
			}
		}
	})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case <-ready:
	case <-exited:
		n.t.Fatalf("the RabbitMQ node exited while starting (%v):\n%s", cmd.ProcessState, n.tail())
	case <-time.After(nodeWait):
		n.t.Fatalf("the RabbitMQ node did not start within %v:\n%s", nodeWait, n.tail())
	}
	return time.Since(begin)
}

// stop stops the node: gracefully (SIGTERM, which the script passes on
// and RabbitMQ handles as `rabbitmqctl stop`), or, with crash, by killing
// the Erlang VM with SIGKILL. It returns once the script exited, which it
// does after reaping the VM.
func (n *rabbitNode) stop(crash bool) time.Duration {
	n.t.Helper()
	begin := time.Now()
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil {
		n.t.Fatal("stop: the node is not running")
	}
	if crash {
		if vms := killVMs(cmd.Process.Pid); vms != 1 {
			n.t.Fatalf("crash: found %d Erlang VMs under the script (pid %d), want 1", vms, cmd.Process.Pid)
		}
	} else if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		n.t.Fatalf("stop: %v", err)
	}
	select {
	case <-exited:
	case <-time.After(nodeWait):
		n.t.Fatalf("the RabbitMQ node did not stop within %v:\n%s", nodeWait, n.tail())
	}
	n.finish()
	return time.Since(begin)
}

// killVMs kills with SIGKILL the Erlang VMs the script at pid started
// (children of the script, so that it reaps them and exits) and returns
// how many it found.
func killVMs(pid int) int {
	vms := 0
	for _, p := range groupMembers(pid) {
		if p.ppid == pid && strings.HasPrefix(p.comm, "beam") {
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
			vms++
		}
	}
	return vms
}

// finish forgets the stopped node's script and waits for its console to
// be read to the end.
func (n *rabbitNode) finish() {
	n.mu.Lock()
	cmd, out := n.cmd, n.out
	n.cmd, n.out = nil, nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	// What the script started and outlived it (it should be nothing) ends
	// now, so that the pipe closes and a restart finds its port and files
	// free.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	done := make(chan struct{})
	go func() { n.reader.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(nodeWait):
		_ = out.Close() // something outside the group holds the pipe
		<-done
	}
	_ = out.Close()
}

// cleanup stops the node if it runs and fails the test if any process of
// its groups is left.
func (n *rabbitNode) cleanup() {
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	if cmd != nil {
		// The VM first, so that the script reaps it and exits; then
		// whatever is left of the group.
		pgid := cmd.Process.Pid
		killVMs(pgid)
		select {
		case <-n.exited:
		case <-time.After(wait):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			select {
			case <-n.exited:
			case <-time.After(nodeWait):
				n.t.Errorf("the RabbitMQ node's script (pid %d) did not exit after SIGKILL", pgid)
			}
		}
		n.finish()
		// Its processes were killed; wait until the system has reaped them.
		deadline := time.Now().Add(nodeWait)
		for len(groupMembers(pgid)) > 0 && time.Now().Before(deadline) {
			<-time.After(20 * time.Millisecond) // polling a condition the kernel offers no signal for
		}
		if left := groupMembers(pgid); len(left) > 0 {
			n.t.Errorf("processes of the private RabbitMQ node outlived it: %v", left)
		}
	}
	if strays := processesWith(n.name, n.dir); len(strays) > 0 {
		n.t.Errorf("processes of the private RabbitMQ node %s are still running: %v", n.name, strays)
		for _, p := range strays {
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
	}
	_ = n.log.Close()
}

// tail is the end of the node's console output and log, for failures.
func (n *rabbitNode) tail() string {
	var b bytes.Buffer
	for _, f := range []string{filepath.Join(n.dir, "log", "console.log"), filepath.Join(n.dir, "log", n.name+".log")} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		fmt.Fprintf(&b, "--- %s (end)\n%s\n", f, data)
	}
	return b.String()
}

// proc is a process seen in /proc.
type proc struct {
	pid, ppid, pgid int
	comm            string
}

func (p proc) String() string { return fmt.Sprintf("%d(%s)", p.pid, p.comm) }

// processes lists the processes of the machine from /proc, with their
// parents and process groups.
func processes() []proc {
	ents, _ := os.ReadDir("/proc")
	var ps []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 3 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		pgid, _ := strconv.Atoi(f[2])
		ps = append(ps, proc{pid: pid, ppid: ppid, pgid: pgid, comm: s[open+1 : end]})
	}
	return ps
}

// groupMembers lists the live processes of process group pgid.
func groupMembers(pgid int) []proc {
	var ps []proc
	for _, p := range processes() {
		if p.pgid == pgid && !zombie(p.pid) {
			ps = append(ps, p)
		}
	}
	return ps
}

func zombie(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true // gone
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) == 0 || f[0] == "Z" || f[0] == "X"
}

// processesWith lists the live processes whose environment or command line
// mentions any of words (the node's name, its directory).
func processesWith(words ...string) []proc {
	var ps []proc
	for _, p := range processes() {
		if p.pid == os.Getpid() || zombie(p.pid) {
			continue
		}
		for _, f := range []string{"environ", "cmdline"} {
			b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.pid), f))
			if err != nil {
				continue
			}
			found := false
			for _, w := range words {
				if bytes.Contains(b, []byte(w)) {
					found = true
				}
			}
			if found {
				ps = append(ps, p)
				break
			}
		}
	}
	return ps
}

// outage is one stop and start of the node during a run.
type outage struct {
	crash bool
	// filled in by the run
	stopTook, startTook, down time.Duration // down: from the stop until every client reconnected and consumes again
	probes                    []probe
	held                      *probe // the request waiting for its reply when the node stopped
}

// probe is a call made while the node was down.
type probe struct {
	what string
	took time.Duration
	err  error
}

// TestBrokerRestartLosesNoConfirmedMessage runs a RabbitMQ node of its own
// and, in the middle of a numbered run, stops and starts it twice: first a
// clean stop, then a crash (SIGKILL of the Erlang VM). Four publishers
// share a connection and publish the sequence, each publish waiting for
// the broker's confirm; a consumer group of two members consumes it. Every
// confirmed message must be consumed after the restarts; every client must
// notice the outage and reconnect; calls during the outage must fail at
// once with Unavailable, including a request that was waiting for its reply
// when the node stopped. Once with quorum queues (the default) and once
// with classic ones.
func TestBrokerRestartLosesNoConfirmedMessage(t *testing.T) {
	begin := time.Now()
	node := newRabbitNode(t)
	for _, qt := range []string{"quorum", "classic"} {
		t.Run(qt+" queues", func(t *testing.T) {
			runRestarts(t, node, qt, []*outage{{crash: false}, {crash: true}})
		})
	}
	t.Run("a connection fails over to the next host of its URL", func(t *testing.T) {
		failOver(t, node)
	})
	t.Logf("the whole test took %v", time.Since(begin).Round(time.Millisecond))
}

// failOver starts a second node and opens a server and a client with the
// URL amqp://…@A,B/: connected to A, they move to B when A stops, and
// calls work again there. (Two separate nodes, not a cluster: what matters
// is the driver trying the hosts in turn.) It leaves A stopped.
func failOver(t *testing.T, a *rabbitNode) {
	begin := time.Now()
	b := newRabbitNode(t)
	url := fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d,127.0.0.1:%d/?name=failover-test&prefix=sbfailover", a.port, b.port)
	server, client := open(t, url), open(t, url)
	if _, err := server.Serve(ctxWait(t), "failover.echo", "echo", func(_ context.Context, req *bus.Message) *bus.Message { return req }); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Request(ctxWait(t), &bus.Message{Subject: "failover.echo", Body: []byte("on A")}); err != nil {
		t.Fatalf("Request on the first host: %v", err)
	}
	stopAt := time.Now()
	a.stop(false)
	for _, c := range []*bus.Conn{server, client} {
		if !amqpbus.WaitConsumers(c, nodeWait) {
			t.Fatalf("a client did not reconnect to the second host within %v", nodeWait)
		}
	}
	t.Logf("server and client were on the second host %v after the first stopped", time.Since(stopAt).Round(time.Millisecond))
	if _, err := client.Request(ctxWait(t), &bus.Message{Subject: "failover.echo", Body: []byte("on B")}); err != nil {
		t.Errorf("Request after failing over: %v", err)
	}
	for _, c := range []*bus.Conn{server, client} {
		if host := amqpbus.Host(c); host != fmt.Sprintf("127.0.0.1:%d", b.port) {
			t.Errorf("connected to %s after the first host stopped, want the second, 127.0.0.1:%d", host, b.port)
		}
	}
	t.Logf("failover took %v in all, starting the second node included", time.Since(begin).Round(time.Millisecond))
}

func runRestarts(t *testing.T, node *rabbitNode, queueType string, outages []*outage) {
	begin := time.Now()
	url := node.url("name=restart-test&prefix=sbrestart." + queueType + "&queue_type=" + queueType)
	var conns []*bus.Conn
	openConn := func() *bus.Conn {
		c := open(t, url)
		conns = append(conns, c)
		return c
	}
	pub := openConn()
	members := []*bus.Conn{openConn(), openConn()}
	server := openConn()

	const topic, group, n, publishers = "restart.seq", "restart", 3000, 4
	var mu sync.Mutex
	consumed := map[int]int{}
	changed := make(chan struct{}, 1)
	for _, m := range members {
		if _, err := m.Subscribe(ctxWait(t), topic, group, func(_ context.Context, d *bus.Delivery) error {
			i, err := strconv.Atoi(string(d.Body))
			if err != nil {
				return err
			}
			mu.Lock()
			consumed[i]++
			mu.Unlock()
			select {
			case changed <- struct{}{}:
			default:
			}
			return nil
		}, bus.SubscribeOptions{Concurrency: 4}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := server.Serve(ctxWait(t), "restart.echo", "echo", func(_ context.Context, req *bus.Message) *bus.Message { return req }); err != nil {
		t.Fatal(err)
	}
	// restart.hold keeps its request until the test releases it, so that a
	// request is waiting for its reply when the node stops.
	held, release := make(chan struct{}, 1), make(chan struct{}, len(outages))
	if _, err := server.Serve(ctxWait(t), "restart.hold", "hold", func(ctx context.Context, req *bus.Message) *bus.Message {
		held <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// The publishers: each takes the next number and publishes it, waiting
	// for the confirm; after an error it waits for the connection to be up
	// again, as a real publisher would back off.
	var (
		next              atomic.Int64
		confirmed         = map[int]bool{}
		errored           []int
		errorsByCode      = map[bus.Code]int{}
		progress          = make(chan struct{}, n)
		pubDone, pubsDone = make(chan struct{}), sync.WaitGroup{}
	)
	for range publishers {
		pubsDone.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := pub.Publish(ctx, &bus.Message{Subject: topic, Body: []byte(strconv.Itoa(i))})
				cancel()
				mu.Lock()
				if err != nil {
					errored = append(errored, i)
					errorsByCode[bus.ErrorCode(err)]++
				} else {
					confirmed[i] = true
				}
				mu.Unlock()
				progress <- struct{}{}
				if err != nil && !amqpbus.WaitState(pub, true, nodeWait) {
					t.Errorf("publisher: the connection did not come back within %v", nodeWait)
					return
				}
			}
		})
	}
	go func() { pubsDone.Wait(); close(pubDone) }()

	// fast checks that a call made during the outage failed at once with
	// Unavailable: its deadline is 10s, so failing within 3s is not waiting
	// for it.
	fast := func(o *outage, what string, call func(context.Context) error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		err := call(ctx)
		o.probes = append(o.probes, probe{what, time.Since(start), err})
	}
	request := func(ctx context.Context) error {
		_, err := pub.Request(ctx, &bus.Message{Subject: "restart.echo", Body: []byte("during the outage")})
		return err
	}
	publish := func(ctx context.Context) error {
		return pub.Publish(ctx, &bus.Message{Subject: topic, Body: []byte("-1")})
	}

	completed := 0
	for k, o := range outages {
		for completed < (k+1)*n/(len(outages)+1) {
			select {
			case <-progress:
				completed++
			case <-time.After(wait):
				t.Fatalf("the publishers made no progress for %v before outage %d", wait, k+1)
			}
		}
		// A request waiting for its reply when the node goes.
		type result struct {
			err  error
			when time.Time
		}
		inflight := make(chan result, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := pub.Request(ctx, &bus.Message{Subject: "restart.hold"})
			inflight <- result{err, time.Now()}
		}()
		select {
		case <-held:
		case r := <-inflight:
			t.Fatalf("before outage %d, the request to hold returned at once: %v", k+1, r.err)
		case <-time.After(wait):
			t.Fatalf("before outage %d, the request to hold never reached its server", k+1)
		}

		stopAt := time.Now()
		o.stopTook = node.stop(o.crash)
		for _, c := range conns {
			waitState(t, c, false, "every client to notice the node stopped")
		}
		select {
		case r := <-inflight:
			o.held = &probe{"request waiting for its reply", r.when.Sub(stopAt), r.err}
		case <-time.After(wait):
			t.Fatalf("the request waiting for its reply did not return within %v after the node stopped", wait)
		}
		release <- struct{}{}
		fast(o, "request while the node is down", request)
		fast(o, "publish while the node is down", publish)

		// Start it again, and call while it boots.
		started := make(chan time.Duration, 1)
		go func() { started <- node.start() }()
		fast(o, "request while the node starts", request)
		fast(o, "publish while the node starts", publish)
		select {
		case o.startTook = <-started:
		case <-time.After(nodeWait + wait):
			t.Fatal("the node did not start again")
		}
		for _, c := range conns {
			if !amqpbus.WaitConsumers(c, nodeWait) {
				t.Fatalf("a client did not reconnect and restore its subscriptions within %v after the node started again", nodeWait)
			}
		}
		o.down = time.Since(stopAt)
	}
	go func() {
		for range progress {
		}
	}()
	select {
	case <-pubDone:
	case <-time.After(nodeWait):
		t.Fatal("the publishers did not finish")
	}
	close(progress)

	// Wait until every confirmed message was consumed, or give up and
	// report what is missing.
	lost := func() []int {
		mu.Lock()
		defer mu.Unlock()
		var missing []int
		for i := range n {
			if confirmed[i] && consumed[i] == 0 {
				missing = append(missing, i)
			}
		}
		return missing
	}
	deadline := time.After(nodeWait)
waiting:
	for len(lost()) > 0 {
		select {
		case <-changed:
		case <-deadline:
			t.Errorf("timed out after %v waiting for confirmed messages to be consumed", nodeWait)
			break waiting
		}
	}

	missing := lost()
	mu.Lock()
	dups, consumedAll, consumedErrored := 0, 0, 0
	for i, c := range consumed {
		if i < 0 {
			t.Errorf("a publish made while the node was down was consumed")
			continue
		}
		consumedAll++
		dups += c - 1
		if !confirmed[i] {
			consumedErrored++
		}
	}
	t.Logf("ledger (%s queues): attempted=%d confirmed=%d errored=%d (by code %v) consumed=%d (of which published with an error: %d) duplicates=%d lost=%d",
		queueType, n, len(confirmed), len(errored), errorsByCode, consumedAll, consumedErrored, dups, len(missing))
	nErrored := len(errored)
	mu.Unlock()
	for k, o := range outages {
		kind := "clean stop"
		if o.crash {
			kind = "crash (SIGKILL)"
		}
		t.Logf("outage %d, %s: stopping took %v, starting %v; clients were back (subscriptions restored) %v after the stop",
			k+1, kind, o.stopTook.Round(time.Millisecond), o.startTook.Round(time.Millisecond), o.down.Round(time.Millisecond))
		for _, p := range append([]probe{*o.held}, o.probes...) {
			t.Logf("  %s: %v after %v", p.what, p.err, p.took.Round(time.Microsecond))
			bound := 3 * time.Second
			if p.what == "request waiting for its reply" {
				bound = 15 * time.Second // its deadline is 30s; the node's shutdown takes seconds
			}
			if bus.ErrorCode(p.err) != bus.Unavailable || p.took > bound {
				t.Errorf("outage %d: %s: %v after %v, want Unavailable within %v", k+1, p.what, p.err, p.took, bound)
			}
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d confirmed messages were never consumed, first %v", len(missing), missing[:min(10, len(missing))])
	}
	for _, c := range conns {
		if d := amqpbus.Disconnects(c); d < int64(len(outages)) {
			t.Errorf("a connection noticed %d disconnections, want %d: the outages did not fire", d, len(outages))
		}
	}
	if nErrored == 0 {
		t.Errorf("no publish of the sequence failed: the outages did not reach the publishers")
	}
	// After the restarts, calls work again.
	if _, err := pub.Request(ctxWait(t), &bus.Message{Subject: "restart.echo", Body: []byte("after")}); err != nil {
		t.Errorf("Request after the restarts: %v", err)
	}
	t.Logf("run with %s queues took %v", queueType, time.Since(begin).Round(time.Millisecond))
}
