package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/cli"
)

// TestDevServesOneAdminPortForAllServices runs `switchboard dev` in this
// process and checks its admin server: ready once every example service's
// checks pass, and /metrics counting a call made to one of them.
func TestDevServesOneAdminPortForAllServices(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("SWITCHBOARD_BUS", "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	devCtx, stopDev := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	exit := make(chan int, 1)
	go func() {
		exit <- cli.Run(devCtx, []string{"dev", "--data", t.TempDir(), "--port", "0", "--workload-rate", "0", "--quiet", "-o", "json"},
			cli.IOStreams{In: strings.NewReader(""), Out: pw, ErrOut: &stderr})
		pw.Close()
	}()
	var info cli.DevInfo
	if err := json.NewDecoder(pr).Decode(&info); err != nil {
		t.Fatalf("dev printed no JSON: %v", err)
	}
	go io.Copy(io.Discard, pr)
	if !strings.HasPrefix(info.AdminURL, "http://127.0.0.1:") {
		t.Fatalf("admin_url %q, want http://127.0.0.1:PORT", info.AdminURL)
	}

	res, body := get(t, info.AdminURL+"/readyz")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/readyz %d, want 200:\n%s", res.StatusCode, body)
	}
	var rd struct {
		Ready    bool `json:"ready"`
		Services []struct {
			Service string `json:"service"`
		} `json:"services"`
	}
	if err := json.Unmarshal(body, &rd); err != nil || !rd.Ready || len(rd.Services) < 5 {
		t.Errorf("/readyz body %s (%v): want ready with every example service", body, err)
	}

	conn, err := bus.Open(ctx, info.BusURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl := switchboard.NewClient(conn, switchboard.WithCaller("admintest"))
	defer cl.Close()
	for range 3 {
		if _, err := cl.CallJSON(ctx, "pricing", "quote", []byte(`{"pickup":{"lat":52.37,"lng":4.89},"dropoff":{"lat":52.36,"lng":4.92}}`)); err != nil {
			t.Fatal(err)
		}
	}
	res, body = get(t, info.AdminURL+"/metrics")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	var got float64
	for _, m := range fams["switchboard_rpc_server_requests_total"].GetMetric() {
		l := labels(m.GetLabel())
		if l["service"] == "pricing" && l["endpoint"] == "quote" && l["caller"] == "admintest" && l["code"] == "OK" {
			got = m.GetCounter().GetValue()
		}
	}
	if got != 3 {
		t.Errorf("pricing.quote requests from admintest = %g, want 3", got)
	}

	stopDev()
	if code := <-exit; code != 0 {
		t.Fatalf("dev exited %d:\n%s", code, stderr.String())
	}
	if _, err := http.Get(info.AdminURL + "/healthz"); err == nil {
		t.Error("the admin server still answers after dev stopped")
	}
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, b
}

func labels(ls []*dto.LabelPair) map[string]string {
	m := map[string]string{}
	for _, l := range ls {
		m[l.GetName()] = l.GetValue()
	}
	return m
}
