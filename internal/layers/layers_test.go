// Package layers holds the test that keeps the architecture honest: each
// layer imports only layers below it, and the portable layers import no
// broker client.
package layers

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/switchboard-dev/switchboard"

type pkg struct {
	ImportPath string
	Deps       []string
}

func listDeps(t *testing.T, patterns ...string) []pkg {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list", "-json=ImportPath,Deps"}, patterns...)...).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestPortableLayersImportNoBrokerClient(t *testing.T) {
	brokers := []string{"github.com/nats-io/", "github.com/rabbitmq/"}
	for _, p := range listDeps(t, mod+"/bus", mod+"/bus/driver", mod+"/wire", mod, mod+"/resilience") {
		for _, d := range p.Deps {
			for _, b := range brokers {
				if strings.HasPrefix(d, b) {
					t.Errorf("%s depends on broker client %s: portable layers must stay broker-neutral", p.ImportPath, d)
				}
			}
		}
	}
}

func TestLayersImportOnlyLayersBelow(t *testing.T) {
	// Each entry: a package (or tree) and the project packages it must not depend on.
	above := map[string][]string{
		mod + "/bus":  {mod + "/wire", mod + "/app", mod + "/cli", mod + "/examples/"},
		mod + "/wire": {mod + "/app", mod + "/cli", mod + "/examples/", mod + "/bus/natsbus"},
		mod:           {mod + "/app", mod + "/cli", mod + "/examples/", mod + "/bus/natsbus"},
		mod + "/app":  {mod + "/cli"},
	}
	for _, p := range listDeps(t, mod+"/bus", mod+"/wire", mod, mod+"/resilience", mod+"/app") {
		for _, d := range p.Deps {
			if d == mod && p.ImportPath != mod && strings.HasPrefix(p.ImportPath, mod+"/bus") {
				t.Errorf("%s imports the SDK: bus is below it", p.ImportPath)
			}
			for _, bad := range above[p.ImportPath] {
				if d == bad || strings.HasPrefix(d, bad) && strings.HasSuffix(bad, "/") {
					t.Errorf("%s depends on %s, a layer above it", p.ImportPath, d)
				}
			}
		}
	}
}
