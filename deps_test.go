package offshoot_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/offshootdb/offshoot/"

// forbidden lists, per package path inside the module (the longest prefix
// that matches applies), the layers its non-test code must not import.
// Dependencies point down (see ../shared/STYLE.md): the surfaces call the
// experiments facade, the facade calls storage, compute, vectors and evals,
// and storage imports none of them. Inside compute, only package compute
// itself mounts branch storage; the proxy and the process layer do not.
var forbidden = map[string][]string{
	"storage":       {"compute", "experiments", "vectors", "evals", "agentapi", "mcp", "cmd"},
	"compute/pg":    {"storage", "experiments", "vectors", "evals", "agentapi", "mcp", "cmd"},
	"compute/proxy": {"storage", "experiments", "vectors", "evals", "agentapi", "mcp", "cmd"},
	"compute":       {"experiments", "vectors", "evals", "agentapi", "mcp", "cmd"},
	"vectors":       {"storage", "compute", "experiments", "evals", "agentapi", "mcp", "cmd"},
	"evals":         {"storage", "compute", "experiments", "vectors", "agentapi", "mcp", "cmd"},
	"experiments":   {"agentapi", "mcp", "cmd"},
	"agentapi":      {"mcp", "cmd"},
	"mcp":           {"agentapi", "cmd"},
}

// layer is the top-level package of an import path inside the module.
func layer(path string) string {
	rest, ok := strings.CutPrefix(path, module)
	if !ok {
		return ""
	}
	top, _, _ := strings.Cut(rest, "/")
	return top
}

// rulesFor returns the forbidden layers of the longest matching prefix.
func rulesFor(path string) []string {
	rel, ok := strings.CutPrefix(path, module)
	if !ok {
		return nil
	}
	best := ""
	for prefix := range forbidden {
		if (rel == prefix || strings.HasPrefix(rel, prefix+"/")) && len(prefix) > len(best) {
			best = prefix
		}
	}
	return forbidden[best]
}

func TestDependenciesPointDown(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		rules := rulesFor(fields[0])
		for _, imp := range fields[1:] {
			to := layer(imp)
			for _, bad := range rules {
				if to == bad {
					t.Errorf("%s imports %s: it must not depend on %s", fields[0], imp, bad)
				}
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("no imports checked: go list returned nothing")
	}
}

func TestRulesFor(t *testing.T) {
	if r := rulesFor(module + "compute/pg/pgtest"); len(r) == 0 || r[0] != "storage" {
		t.Errorf("compute/pg/pgtest rules %v", r)
	}
	if r := rulesFor(module + "compute"); len(r) == 0 || r[0] != "experiments" {
		t.Errorf("compute rules %v", r)
	}
	if r := rulesFor(module + "storage/cowfs"); len(r) == 0 || r[0] != "compute" {
		t.Errorf("storage/cowfs rules %v", r)
	}
}

func TestLayerOf(t *testing.T) {
	for path, want := range map[string]string{
		module + "storage":        "storage",
		module + "storage/cowfs":  "storage",
		module + "compute/proxy":  "compute",
		"github.com/jackc/pgx/v5": "",
		module + "cmd/offshoot":   "cmd",
	} {
		if got := layer(path); got != want {
			t.Errorf("layer(%q) = %q, want %q", path, got, want)
		}
	}
}
