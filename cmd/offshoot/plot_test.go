package main

import (
	"context"
	"github.com/offshootdb/offshoot/experiments"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPlotCLI checks the plot verbs' errors against a server without
// runs; the charts themselves are tested in agentapi/web (TestCharts, and
// TestUI on real runs).
func TestPlotCLI(t *testing.T) {
	t.Parallel()
	srv, _ := serveAPI(t, experiments.Config{})
	ctx := context.Background()
	cli := func(args ...string) (string, string, int) {
		t.Helper()
		return run(t, ctx, append(args, "--server", srv)...)
	}
	out := filepath.Join(t.TempDir(), "x.svg")
	if _, errOut, code := cli("plot", "compare", "nope", "nada", out); code != exitNotFound {
		t.Errorf("plot compare of missing runs: exit %d %s", code, errOut)
	}
	if _, errOut, code := cli("plot", "sweep", "nope", out); code != exitNotFound {
		t.Errorf("plot sweep of a missing run: exit %d %s", code, errOut)
	}
	if _, errOut, code := cli("plot", "trend", "nope", out); code != exitNotFound {
		t.Errorf("plot trend of a missing schedule: exit %d %s", code, errOut)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed plot wrote a file")
	}
	if _, errOut, code := cli("plot", "compare", "a"); code == 0 || !strings.Contains(errOut, "3 arg") {
		t.Errorf("plot compare with one argument: exit %d %s", code, errOut)
	}
}
