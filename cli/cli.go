// Package cli implements the switchboard command: a thin layer over the SDK
// that starts a local platform (dev), lists and describes services, calls
// endpoints, and publishes and watches events on any bus.
//
// Each command is an options struct with Complete (read arguments and
// flags), Validate (reject bad input before touching the bus) and Run (do the
// work), as kubectl does, so commands are tested without a terminal: the
// streams they write to are injected through IOStreams. Errors carry the exit
// code the process ends with (see the Exit constants); Run never calls
// os.Exit, Main does.
//
// cmd/switchboard is only `os.Exit(cli.Main())`.
package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes of the switchboard command. Scripts may rely on them.
const (
	// ExitOK means the command did what was asked.
	ExitOK = 0
	// ExitFailed means the command ran but failed, e.g. the called endpoint
	// returned an error (its code and message are printed).
	ExitFailed = 1
	// ExitUsage means the command line was wrong: an unknown command or
	// flag, a missing or extra argument, malformed JSON, an invalid bus URL.
	// Running the same command again cannot succeed.
	ExitUsage = 2
	// ExitUnavailable means the bus could not be reached, or no bus was
	// given and no `switchboard dev` is running on this machine.
	ExitUnavailable = 3
	// ExitNotFound means a named service is not running (services,
	// describe), a named dead-letter place or dead letter does not
	// exist (dlq), or a trace is not in the collector (trace).
	ExitNotFound = 4
	// ExitUnhealthy means `switchboard health` found at least one instance
	// with an unhealthy check (degraded ones do not count: they serve).
	ExitUnhealthy = 5
)

// exitCodesHelp is the part of the root help that documents exit codes and
// error output.
const exitCodesHelp = `Exit codes:
  0  ok
  1  the command failed, e.g. the called endpoint returned an error
     (its code and message are printed)
  2  usage error: unknown command or flag, bad argument, malformed JSON,
     invalid bus URL (unknown scheme)
  3  bus unreachable (or lost during the command), or no bus given and
     no 'switchboard dev' running
  4  not found: the named service is not running, the named
     dead-letter group, topic or ID does not exist, or the trace is not
     in the traces collector
  5  unhealthy: 'switchboard health' found an instance with an unhealthy
     check (degraded instances still serve and exit 0)

Errors go to stderr as "switchboard: <what was wrong>" followed by
"hint: <what to try>". With -o json, stderr instead holds one JSON object:
  {"error":{"code":"Unavailable","message":"…","hint":"…","exit_code":3}}
where code is a Switchboard error code (InvalidArgument, NotFound,
Unavailable, Unimplemented, DeadlineExceeded, …). Stdout carries results
only, so with -o json it is always valid JSON (or empty on error).`

// IOStreams are the streams a command reads and writes. Tests pass buffers.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// Main runs the switchboard command with the process's arguments and
// streams and returns the exit code. SIGINT and SIGTERM cancel the running
// command gracefully; a second signal kills the process.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // restore default handling: a second Ctrl-C ends the process at once
	}()
	return Run(ctx, os.Args[1:], IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
}

// Run runs the switchboard command line args (without the program name)
// and returns the exit code. Errors are printed to streams.ErrOut.
func Run(ctx context.Context, args []string, streams IOStreams) int {
	g := &GlobalOptions{IO: streams}
	root := newRootCmd(g)
	root.SetArgs(args)
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	e := asExitError(err)
	g.printError(e)
	return e.Exit
}

// GlobalOptions are the flags every command takes, and its streams.
type GlobalOptions struct {
	// BusURL is --bus; empty means $SWITCHBOARD_BUS or the running dev
	// platform.
	BusURL string
	// Output is -o: "text" or "json".
	Output string
	// IO are the streams commands use.
	IO IOStreams
}

// Output formats.
const (
	OutputText = "text"
	OutputJSON = "json"
)

// JSON reports whether -o json was given.
func (g *GlobalOptions) JSON() bool { return g.Output == OutputJSON }

// Validate checks the global flags.
func (g *GlobalOptions) Validate() error {
	switch g.Output {
	case OutputText, OutputJSON:
		return nil
	}
	return usageErrorf("invalid output format %q: use -o text or -o json", g.Output)
}

// logger returns a logger writing to stderr at level.
func (g *GlobalOptions) logger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(g.IO.ErrOut, &slog.HandlerOptions{Level: level}))
}

// newRootCmd builds the command tree. Every subcommand is added here, from
// a constructor taking the global options.
func newRootCmd(g *GlobalOptions) *cobra.Command {
	root := &cobra.Command{
		Use:   "switchboard",
		Short: "Run, inspect and call Switchboard services",
		Long: `Switchboard runs a business as small services that talk over a message bus.
This command starts a complete local platform (dev), lists and describes the
services running on a bus, calls their endpoints with JSON, and publishes
and watches events.

The bus is --bus URL if given, else $SWITCHBOARD_BUS, else the
'switchboard dev' running on this machine (found through the state file it
writes to ./.switchboard/dev.json and to your user config directory).

` + exitCodesHelp,
		Example: `  # terminal 1: start the platform with the example services
  switchboard dev

  # terminal 2: look around and call something
  switchboard services
  switchboard describe trips
  switchboard call pricing quote '{"pickup":{"lat":52.37,"lng":4.89},"dropoff":{"lat":52.36,"lng":4.92}}'
  switchboard watch 'trip.>'

  # any other bus
  switchboard --bus nats://10.0.0.5:4222 services -o json`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return g.Validate()
		},
	}
	root.PersistentFlags().StringVar(&g.BusURL, "bus", "", "bus URL, e.g. nats://127.0.0.1:4222 (default $SWITCHBOARD_BUS, else the running 'switchboard dev')")
	root.PersistentFlags().StringVarP(&g.Output, "output", "o", OutputText, "output format: text or json")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &ExitError{Exit: ExitUsage, Code: "InvalidArgument", Message: err.Error(),
			Hint: fmt.Sprintf("see '%s --help'", cmd.CommandPath())}
	})
	for _, add := range []func(*GlobalOptions) *cobra.Command{
		newServicesCmd,
		newDescribeCmd,
		newCallCmd,
		newPublishCmd,
		newWatchCmd,
		newDLQCmd,
		newDevCmd,
		newBenchCmd,
		newFaultCmd,
		newControlPlaneCmd,
		newTraceCmd,
		newHealthCmd,
	} {
		root.AddCommand(add(g))
	}
	classifyErrors(root)
	return root
}

// classifyErrors makes every error a command returns an *ExitError (see
// failed), so that Run can tell them from cobra's own usage errors.
func classifyErrors(cmd *cobra.Command) {
	if run := cmd.RunE; run != nil {
		cmd.RunE = func(cmd *cobra.Command, args []string) error { return failed(run(cmd, args)) }
	}
	for _, c := range cmd.Commands() {
		classifyErrors(c)
	}
}

// argsBetween is cobra.ExactArgs with a usage error that names the arguments.
func argsBetween(min, max int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) >= min && len(args) <= max {
			return nil
		}
		want := fmt.Sprintf("%d", min)
		if max > min {
			want = fmt.Sprintf("%d to %d", min, max)
		}
		return &ExitError{Exit: ExitUsage, Code: "InvalidArgument",
			Message: fmt.Sprintf("%s takes %s argument(s) (%s), got %d", cmd.CommandPath(), want, names, len(args)),
			Hint:    fmt.Sprintf("usage: %s; see '%s --help'", cmd.UseLine(), cmd.CommandPath())}
	}
}

// trimPrefix drops the "switchboard: " prefix SDK messages carry, since
// every error line already starts with it.
func trimPrefix(msg string) string {
	for _, p := range []string{"switchboard: ", "bus: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return msg
}

// command is the kubectl-style shape of every command's options: complete
// them from the arguments, validate them, run.
type command interface {
	Complete(args []string) error
	Validate() error
	Run(ctx context.Context) error
}

// runCommand adapts a command's options to cobra.
func runCommand(o command) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := o.Complete(args); err != nil {
			return err
		}
		if err := o.Validate(); err != nil {
			return err
		}
		return o.Run(cmd.Context())
	}
}
