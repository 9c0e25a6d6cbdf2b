package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/offshootdb/offshoot/evals/evalstest"
)

// TestE2EMaterializationCLI: through the real server, the same spec run
// twice reuses the first run's materialization (the CLI says so), --cold
// rebuilds, and materialization list, show, pin and delete work.
func TestE2EMaterializationCLI(t *testing.T) {
	s := newE2EServer(t)
	cli := func(wantCode int, args ...string) string {
		t.Helper()
		out, errOut, code := run(t, context.Background(), append(args, "--server", s.http)...)
		if code != wantCode {
			t.Fatalf("offshoot %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, wantCode, out, errOut)
		}
		return out
	}
	spec := filepath.Join(t.TempDir(), "spec.yaml")
	if err := os.WriteFile(spec, fmt.Appendf(nil, "name: mat\nproject: main\nbase: {branch: main}\ndataset: {beir: %s}\n"+
		"metrics: [ndcg_cut.10]\nvariants: [{name: v, embedder: \"hash-bow?dims=32\", index: {type: hnsw, m: 8}}]\n",
		evalstest.Cranfield(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	first := cli(0, "experiment", "run", spec)
	kept := regexp.MustCompile(`v: kept as materialization ([0-9a-f]{16})\n`).FindStringSubmatch(first)
	if kept == nil {
		t.Fatalf("first run:\n%s", first)
	}
	id := kept[1]
	if out := cli(0, "experiment", "run", spec); !strings.Contains(out, "v: reused materialization "+id+" (built by run ") {
		t.Errorf("second run:\n%s", out)
	}
	if out := cli(0, "run", "start", spec, "--wait", "--cold"); !strings.Contains(out, "v: kept as materialization "+id) {
		t.Errorf("cold run:\n%s", out)
	}
	if out := cli(0, "materialization", "list"); !strings.Contains(out, id) || !strings.Contains(out, "hnsw m=8") {
		t.Errorf("materialization list:\n%s", out)
	}
	cli(0, "materialization", "pin", id)
	if out := cli(0, "materialization", "show", id); !strings.Contains(out, "pinned") || !strings.Contains(out, "true") ||
		!strings.Contains(out, "1400 docs") || !strings.Contains(out, "snapshot mat."+id) || !strings.Contains(out, "expires     never") {
		t.Errorf("materialization show:\n%s", out)
	}
	cli(0, "materialization", "delete", id)
	cli(exitNotFound, "materialization", "show", id)
	if out := cli(0, "materialization", "list"); strings.Contains(out, id) {
		t.Errorf("list after delete:\n%s", out)
	}
}
