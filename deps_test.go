package offshoot_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/offshootdb/offshoot/"

// forbidden lists, per layer, the layers its non-test code must not import.
// Dependencies point down (see ../shared/STYLE.md): the surfaces call the
// experiments facade, the facade calls storage, compute, vectors and evals,
// and storage imports none of them.
var forbidden = map[string][]string{
	"storage":     {"compute", "experiments", "vectors", "evals", "agentapi", "mcp", "cmd"},
	"compute":     {"experiments", "vectors", "evals", "agentapi", "mcp", "cmd"},
	"vectors":     {"storage", "compute", "experiments", "evals", "agentapi", "mcp", "cmd"},
	"evals":       {"storage", "compute", "experiments", "vectors", "agentapi", "mcp", "cmd"},
	"experiments": {"agentapi", "mcp", "cmd"},
	"agentapi":    {"mcp", "cmd"},
	"mcp":         {"agentapi", "cmd"},
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

func TestDependenciesPointDown(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		from := layer(fields[0])
		for _, imp := range fields[1:] {
			to := layer(imp)
			for _, bad := range forbidden[from] {
				if to == bad {
					t.Errorf("%s imports %s: %s must not depend on %s", fields[0], imp, from, bad)
				}
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("no imports checked: go list returned nothing")
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
