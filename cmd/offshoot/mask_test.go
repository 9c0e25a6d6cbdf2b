package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/offshootdb/offshoot/experiments"
	"github.com/offshootdb/offshoot/storage"
)

// TestMaskCLI: mask set, show and clear round-trip a policy through the
// HTTP API, and branch create --masked asks the server for a masked fork
// (which this server, without compute, refuses and rolls back).
func TestMaskCLI(t *testing.T) {
	t.Parallel()
	st, err := storage.Open(filepath.Join(t.TempDir(), "store"), &storage.Options{GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, _, err := st.CreateProject("demo"); err != nil {
		t.Fatal(err)
	}
	srv, _ := serveAPI(t, experiments.Config{Store: st, SweepInterval: -1})
	ctx := context.Background()
	cli := func(args ...string) (string, string, int) {
		t.Helper()
		return run(t, ctx, append(args, "--server", srv, "-p", "demo")...)
	}
	file := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(file, []byte(`{"rules": [
		{"table": "public.customers", "column": "id", "method": "hash"},
		{"table": "customers", "column": "email", "method": "fake", "format": "email"},
		{"table": "customers", "column": "note", "method": "fixed", "value": "n/a"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := cli("mask", "set", file); code != 0 || !strings.Contains(out, "email") {
		t.Fatalf("mask set: exit %d %s %s", code, out, errOut)
	}
	out, errOut, code := cli("mask", "show")
	if code != 0 || !strings.Contains(out, "public.customers  id") || !strings.Contains(out, `"n/a"`) {
		t.Errorf("mask show: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code := cli("branch", "create", "agent-1", "--masked"); code == 0 || !strings.Contains(errOut, "masking needs compute") {
		t.Errorf("branch create --masked without compute: exit %d %s", code, errOut)
	}
	if out, errOut, code := cli("mask", "clear"); code != 0 || !strings.Contains(out, "removed") {
		t.Errorf("mask clear: exit %d %s %s", code, out, errOut)
	}
	if _, errOut, code := cli("mask", "show"); code == 0 || !strings.Contains(errOut, "no masking policy") {
		t.Errorf("mask show after clear: exit %d %s", code, errOut)
	}
}
