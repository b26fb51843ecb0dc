package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/wire"
)

// maxBodySize bounds a JSON body read from stdin; the bus refuses larger
// messages anyway, with a clear error.
const maxBodySize = 64 << 20

// CallOptions are the options of `switchboard call`.
type CallOptions struct {
	*GlobalOptions
	Service  string
	Endpoint string
	// Body is the JSON request body.
	Body []byte
	// bodyArg is the BODY argument as given: JSON, "-" for stdin, or ""
	// for an empty object.
	bodyArg string
	// Version targets instances whose version matches a constraint.
	Version string
	// Instance targets one instance by id.
	Instance string
	// Timeout bounds the call.
	Timeout time.Duration
}

func newCallCmd(g *GlobalOptions) *cobra.Command {
	o := &CallOptions{GlobalOptions: g}
	cmd := &cobra.Command{
		Use:   "call SERVICE ENDPOINT [JSON|-]",
		Short: "Call an endpoint with a JSON body and print the reply",
		Long: `Call an endpoint of a running service with a JSON request body and print
the JSON reply. Any endpoint can be called with JSON, whatever its Go or
protobuf types ('switchboard describe SERVICE' shows the schemas).

The body is the third argument, '-' to read it from stdin, or {} if
omitted. By default any running instance serves the call; --version sends
it to an instance whose version matches ("2" or "2.x": any 2.*.*; "2.3" or
"2.3.x": any 2.3.*; "2.3.1": exactly), --instance to one instance by id.

With -o json the output is {"reply": …, "instance": "…", "version": "…"}.
An error returned by the endpoint is printed as "Code: message" and ends
the command with exit code 1; malformed JSON in the body with exit code 2
before anything is sent.`,
		Example: `  switchboard call pricing quote '{"pickup":{"lat":52.37,"lng":4.89},"dropoff":{"lat":52.36,"lng":4.92}}'
  echo '{"customerId": "ada"}' | switchboard call customers get_customer -
  switchboard call customers get_customer '{"customerId": "ada"}' --version 1.x --timeout 2s
  switchboard call customers get_customer '{"customerId": "ada"}' -o json | jq .reply`,
		Args: argsBetween(2, 3, "SERVICE ENDPOINT [JSON|-]"),
		RunE: runCommand(o),
	}
	f := cmd.Flags()
	f.StringVar(&o.Version, "version", "", `call an instance whose version matches, e.g. "2", "2.x", "2.3", "2.3.1"`)
	f.StringVar(&o.Instance, "instance", "", "call this instance (an id from 'switchboard describe SERVICE')")
	f.DurationVar(&o.Timeout, "timeout", 10*time.Second, "give up waiting for the reply after this long")
	return cmd
}

// Complete reads the arguments, and the body from stdin when it is "-".
func (o *CallOptions) Complete(args []string) error {
	if len(args) >= 2 {
		o.Service, o.Endpoint = args[0], args[1]
	}
	if len(args) >= 3 {
		o.bodyArg = args[2]
	}
	body, err := readBody(o.bodyArg, o.IO.In)
	if err != nil {
		return err
	}
	o.Body = body
	return nil
}

// readBody returns the JSON body an argument stands for: the argument
// itself, stdin for "-", or {} when it is empty.
func readBody(arg string, stdin io.Reader) ([]byte, error) {
	switch arg {
	case "":
		return []byte("{}"), nil
	case "-":
		if stdin == nil {
			return nil, usageErrorf("no stdin to read the JSON body from")
		}
		b, err := io.ReadAll(io.LimitReader(stdin, maxBodySize+1))
		if err != nil {
			return nil, &ExitError{Exit: ExitFailed, Code: "Unknown", Message: "read JSON body from stdin: " + err.Error(), Err: err}
		}
		if len(b) > maxBodySize {
			return nil, usageErrorf("JSON body on stdin is larger than %d bytes", maxBodySize)
		}
		return b, nil
	}
	return []byte(arg), nil
}

// Validate checks the names, the JSON body and the flags.
func (o *CallOptions) Validate() error {
	if err := wire.ValidateName("service", o.Service); err != nil {
		return usageErrorf("invalid service name %q: use letters, digits, '_' and '-'", o.Service)
	}
	if err := wire.ValidateName("endpoint", o.Endpoint); err != nil {
		return usageErrorf("invalid endpoint name %q: use letters, digits, '_' and '-'", o.Endpoint)
	}
	if err := checkJSON("request body", o.Body); err != nil {
		return err
	}
	if o.Version != "" && o.Instance != "" {
		return usageErrorf("--version and --instance cannot be used together: an instance has one version")
	}
	if o.Instance != "" {
		if err := wire.ValidateName("instance", o.Instance); err != nil {
			return usageErrorf("invalid instance id %q: use an id from 'switchboard describe %s'", o.Instance, o.Service)
		}
	}
	if o.Timeout <= 0 {
		return usageErrorf("invalid --timeout %s: want a positive duration, e.g. 5s", o.Timeout)
	}
	return nil
}

// checkJSON reports a body that is not exactly one JSON value as a usage
// error naming the byte offset where it went wrong.
func checkJSON(what string, b []byte) error {
	if json.Valid(b) {
		return nil
	}
	var v any
	err := json.Unmarshal(b, &v)
	var syn *json.SyntaxError
	if !errors.As(err, &syn) {
		return usageErrorf("malformed JSON %s: %v", what, err)
	}
	// Offset counts the bytes read up to and including the offending one,
	// so it is also that byte's 1-based position.
	off := int(syn.Offset)
	line, col := 1, 0
	for _, c := range b[:min(max(off, 1), len(b))] {
		if c == '\n' {
			line, col = line+1, 0
		} else {
			col++
		}
	}
	e := usageErrorf("malformed JSON %s at byte offset %d (line %d, column %d): %v", what, off, line, max(col, 1), syn)
	e.Details = map[string]string{"offset": fmt.Sprint(off)}
	if strings.TrimSpace(string(b)) == "" {
		e.Message = fmt.Sprintf("malformed JSON %s at byte offset %d: the body is empty", what, off)
	}
	return e.withHint(`pass one JSON value in single quotes, e.g. '{"name": "Ada"}', or '-' to read it from stdin`)
}

// CallResult is what `call -o json` prints.
type CallResult struct {
	Reply    json.RawMessage `json:"reply"`
	Instance string          `json:"instance"`
	Version  string          `json:"version"`
}

// Run makes the call.
func (o *CallOptions) Run(ctx context.Context) error {
	conn, err := o.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := switchboard.NewClient(conn, switchboard.WithCaller("cli"))
	defer client.Close()
	opts := []switchboard.CallOption{switchboard.WithTimeout(o.Timeout)}
	if o.Version != "" {
		// A fresh client's discovery would route on the first instance that
		// answers; hear from all of them before choosing by version.
		if _, err := client.Discovery().List(ctx, defaultWait); err != nil {
			return fmt.Errorf("find the instances of %s: %w", o.Service, err)
		}
		opts = append(opts, switchboard.WithVersion(o.Version))
	}
	if o.Instance != "" {
		opts = append(opts, switchboard.WithInstance(o.Instance))
	}
	rep, err := client.CallJSON(ctx, o.Service, o.Endpoint, o.Body, opts...)
	if err != nil {
		return o.explain(err)
	}
	body := rep.Body
	if len(body) == 0 {
		body = []byte("null")
	}
	if o.JSON() {
		if !json.Valid(body) { // not JSON after all: keep the output valid
			body, _ = json.Marshal(string(body))
		}
		return writeJSON(o.IO.Out, CallResult{Reply: body, Instance: rep.Instance, Version: instanceVersion(ctx, client, o.Service, rep.Instance)})
	}
	_, err = fmt.Fprintln(o.IO.Out, indentJSON(body, ""))
	return err
}

// explain classifies a failed call, with a hint that names the service.
func (o *CallOptions) explain(err error) error {
	var e *ExitError
	if !errors.As(failed(err), &e) {
		return err
	}
	switch e.Code {
	case bus.Unimplemented.String():
		e.Hint = fmt.Sprintf("run 'switchboard describe %s' to see its endpoints", o.Service)
	case bus.InvalidArgument.String():
		e.Hint = fmt.Sprintf("run 'switchboard describe %s' to see the request schema of %s", o.Service, o.Endpoint)
	case bus.Unavailable.String():
		if o.Version != "" || o.Instance != "" {
			e.Hint = fmt.Sprintf("run 'switchboard describe %s' to see its instances and versions", o.Service)
		}
	}
	return e
}

// instanceVersion looks up the version of the instance that answered in
// discovery (replies do not carry it, to keep every call's headers small).
func instanceVersion(ctx context.Context, client *switchboard.Client, service, id string) string {
	insts, _ := client.Discovery().Lookup(ctx, service)
	for _, in := range insts {
		if in.ID == id {
			return in.Version
		}
	}
	return ""
}
