package natsbus

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/driver"
)

// ServerOptions configure an embedded NATS server. The zero value is a
// server on a free port of 127.0.0.1 with its data in a temporary directory.
type ServerOptions struct {
	// DataDir holds the server's data; JetStream keeps its store in
	// DataDir/jetstream. Empty means a temporary directory that Shutdown
	// removes.
	DataDir string
	// Host is the address to listen on (default 127.0.0.1: this machine
	// only).
	Host string
	// Port is the client port; 0 picks a free one. The default never takes
	// 4222, where another NATS server may run.
	Port int
	// SyncAlways makes JetStream fsync every write before acknowledging it:
	// nothing acknowledged is lost even if the machine fails, at a cost in
	// throughput. Without it, writes reach the operating system at once (a
	// crash of the process loses nothing) and the disk every SyncInterval.
	SyncAlways bool
	// SyncInterval is the time between fsyncs when SyncAlways is off
	// (default nats-server's, 2 minutes).
	SyncInterval time.Duration
	// Logger receives the server's notices, warnings and errors. Nil keeps
	// the server quiet.
	Logger *slog.Logger
}

// Server is a NATS server with JetStream running inside the process, for
// development and tests: `switchboard dev` runs one and writes its
// ClientURL where other processes find it.
type Server struct {
	ns      *server.Server
	opts    ServerOptions // as given, DataDir made absolute
	dataDir string
	temp    bool
	logs    *serverLog
	once    sync.Once
	down    chan struct{} // closed when Shutdown has finished

	// Guarded by embedded.mu.
	refs    int  // holders: the StartServer caller and embedded: connections
	closing bool // shutting down: wait for down, then start anew
}

// startTimeout bounds how long a server may take to be ready.
const startTimeout = 10 * time.Second

// StartServer starts an embedded server and returns once it accepts
// connections. It fails with a clear error when the port is taken, the data
// directory cannot be used, or another server of this process uses it.
//
// An embedded: URL naming the same data directory connects to this server
// instead of starting another; the server runs until Shutdown.
func StartServer(opts ServerOptions) (*Server, error) {
	if opts.DataDir == "" {
		return startServer(opts)
	}
	dir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("natsbus: embedded server: data directory: %w", err)
	}
	opts.DataDir = dir
	embedded.mu.Lock()
	defer embedded.mu.Unlock()
	if err := waitClosingLocked(dir); err != nil {
		return nil, err
	}
	s, err := startServer(opts)
	if err != nil {
		return nil, err
	}
	s.refs = 1
	embedded.servers[dir] = s
	return s, nil
}

// waitClosingLocked waits, with embedded.mu held, until no server of this
// process holds dir, or fails if one runs there.
func waitClosingLocked(dir string) error {
	for {
		s := embedded.servers[dir]
		if s == nil {
			return nil
		}
		if !s.closing {
			return fmt.Errorf("natsbus: embedded server: one already runs on %s in this process, at %s: %w", dir, s.ClientURL(), driver.ErrInvalid)
		}
		embedded.mu.Unlock()
		<-s.down
		embedded.mu.Lock()
	}
}

func startServer(opts ServerOptions) (*Server, error) {
	if opts.Port < 0 || opts.Port > 65535 {
		return nil, fmt.Errorf("natsbus: embedded server: invalid port %d", opts.Port)
	}
	if opts.SyncInterval < 0 {
		return nil, fmt.Errorf("natsbus: embedded server: invalid sync interval %s", opts.SyncInterval)
	}
	host := opts.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := opts.Port
	if port == 0 {
		port = server.RANDOM_PORT
	} else {
		// Check first: nats-server reports a taken port only through its log.
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return nil, fmt.Errorf("natsbus: embedded server: port %d: %w", port, err)
		}
		_ = l.Close()
	}
	s := &Server{opts: opts, logs: &serverLog{l: opts.Logger}, down: make(chan struct{})}
	if opts.DataDir == "" {
		dir, err := os.MkdirTemp("", "switchboard-nats-")
		if err != nil {
			return nil, fmt.Errorf("natsbus: embedded server: %w", err)
		}
		s.dataDir, s.temp = dir, true
	} else {
		dir, err := filepath.Abs(opts.DataDir)
		if err == nil {
			err = os.MkdirAll(dir, 0o755)
		}
		if err != nil {
			return nil, fmt.Errorf("natsbus: embedded server: data directory: %w", err)
		}
		s.dataDir = dir
	}
	s.opts.DataDir = s.dataDir
	ns, err := server.NewServer(&server.Options{
		ServerName:   "switchboard",
		Host:         host,
		Port:         port,
		JetStream:    true,
		StoreDir:     s.dataDir,
		SyncAlways:   opts.SyncAlways,
		SyncInterval: opts.SyncInterval,
		NoSigs:       true,
	})
	if err != nil {
		s.cleanup()
		return nil, fmt.Errorf("natsbus: embedded server: %w", err)
	}
	s.ns = ns
	ns.SetLoggerV2(s.logs, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(startTimeout) || !ns.JetStreamEnabled() {
		ns.Shutdown()
		ns.WaitForShutdown()
		s.cleanup()
		return nil, fmt.Errorf("natsbus: embedded server with data in %s did not start: %s", s.dataDir, s.logs.lastError())
	}
	return s, nil
}

// ClientURL is the URL other processes connect with, e.g.
// nats://127.0.0.1:40123.
func (s *Server) ClientURL() string {
	host := s.opts.Host
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "nats://" + net.JoinHostPort(host, strconv.Itoa(s.Port()))
}

// Port is the TCP port the server listens on.
func (s *Server) Port() int {
	if a, ok := s.ns.Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

// DataDir is the directory holding the server's data.
func (s *Server) DataDir() string { return s.dataDir }

// Connect returns a NATS connection to the server that does not go
// through TCP. opts come after the defaults and may override them.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	return nats.Connect(s.ClientURL(), append([]nats.Option{nats.InProcessServer(s.ns), nats.Name(DefaultName)}, opts...)...)
}

// Open returns a bus connection to the server that does not go through TCP.
// Closing it leaves the server running.
func (s *Server) Open(ctx context.Context, opts Options) (*bus.Conn, error) {
	nc, err := connect(ctx, s.ClientURL(), s.ClientURL(), DefaultName, nats.InProcessServer(s.ns))
	if err != nil {
		return nil, err
	}
	c, err := newConn(ctx, nc, opts, true)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return bus.NewConn(c), nil
}

// Shutdown stops the server gracefully: clients are disconnected and
// JetStream flushes its store to disk before Shutdown returns. A temporary
// data directory is removed. It is safe to call more than once.
func (s *Server) Shutdown() {
	s.once.Do(func() {
		embedded.mu.Lock()
		s.closing = true
		embedded.mu.Unlock()
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
		s.cleanup()
		embedded.mu.Lock()
		if embedded.servers[s.dataDir] == s {
			delete(embedded.servers, s.dataDir)
		}
		embedded.mu.Unlock()
		close(s.down)
	})
}

func (s *Server) cleanup() {
	if s.temp {
		_ = os.RemoveAll(s.dataDir)
	}
}

// serverLog adapts nats-server's logger to slog and remembers the last
// error, for StartServer's message.
type serverLog struct {
	l    *slog.Logger
	mu   sync.Mutex
	last string
}

func (g *serverLog) log(level slog.Level, format string, v []any) {
	msg := fmt.Sprintf(format, v...)
	if level >= slog.LevelError {
		g.mu.Lock()
		g.last = msg
		g.mu.Unlock()
	}
	if g.l != nil {
		g.l.Log(context.Background(), level, msg, "component", "nats-server")
	}
}

func (g *serverLog) lastError() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.last == "" {
		return "no error logged"
	}
	return g.last
}

func (g *serverLog) Noticef(format string, v ...any) { g.log(slog.LevelInfo, format, v) }
func (g *serverLog) Warnf(format string, v ...any)   { g.log(slog.LevelWarn, format, v) }
func (g *serverLog) Fatalf(format string, v ...any)  { g.log(slog.LevelError, format, v) }
func (g *serverLog) Errorf(format string, v ...any)  { g.log(slog.LevelError, format, v) }
func (g *serverLog) Debugf(format string, v ...any)  { g.log(slog.LevelDebug, format, v) }
func (g *serverLog) Tracef(format string, v ...any)  { g.log(slog.LevelDebug, format, v) }

// The servers of this process by data directory: embedded: URLs of one
// directory share its server, started by StartServer or by the first of
// them, and a server started for URLs shuts down when the last connection
// closes.
var embedded = struct {
	mu      sync.Mutex
	servers map[string]*Server
}{servers: map[string]*Server{}}

// acquireServer returns the server for r's data directory, starting it when
// needed, and the function that lets go of it.
func acquireServer(r *embeddedURL) (*Server, func(), error) {
	if r.server.DataDir == "" { // a throwaway server of its own
		srv, err := startServer(r.server)
		if err != nil {
			return nil, nil, err
		}
		return srv, srv.Shutdown, nil
	}
	dir := r.server.DataDir
	embedded.mu.Lock()
	defer embedded.mu.Unlock()
	s := embedded.servers[dir]
	for s != nil && s.closing { // let it finish, then start anew or join another
		embedded.mu.Unlock()
		<-s.down
		embedded.mu.Lock()
		s = embedded.servers[dir]
	}
	if s == nil {
		var err error
		if s, err = startServer(r.server); err != nil {
			return nil, nil, err
		}
		embedded.servers[dir] = s
	} else {
		o := s.opts
		if r.portSet && r.server.Port != 0 && r.server.Port != s.Port() ||
			r.syncSet && (r.server.SyncAlways != o.SyncAlways || r.server.SyncInterval != o.SyncInterval) {
			return nil, nil, fmt.Errorf("an embedded server for %s already runs in this process, at %s and with other settings than asked: %w",
				dir, s.ClientURL(), driver.ErrInvalid)
		}
	}
	s.refs++
	return s, sync.OnceFunc(func() {
		embedded.mu.Lock()
		s.refs--
		last := s.refs == 0 && !s.closing
		if last {
			s.closing = true // no one may join it now
		}
		embedded.mu.Unlock()
		if last {
			s.Shutdown()
		}
	}), nil
}
