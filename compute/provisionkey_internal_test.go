package compute

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProvisionKeyFollowsControlFile checks that the provisioning key
// follows pgvector's control file while the process runs (an upgrade by
// scripts/setup under a running server), and that a marker written for
// the old key no longer counts.
func TestProvisionKeyFollowsControlFile(t *testing.T) {
	dir := t.TempDir()
	control := filepath.Join(dir, "vector.control")
	saved := vectorControl
	vectorControl = func() string { return control }
	t.Cleanup(func() { vectorControl = saved })
	if got := provisionKey(); got != "" {
		t.Fatalf("key without a control file: %q, want none", got)
	}
	write := func(v string) {
		t.Helper()
		if err := os.WriteFile(control, []byte("comment = 'vector data type'\ndefault_version = '"+v+"'\nrelocatable = true\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("0.8.0")
	old := provisionKey()
	if !strings.Contains(old, "vector 0.8.0") {
		t.Fatalf("key %q", old)
	}
	data := t.TempDir()
	if err := markProvisioned(data, old); err != nil {
		t.Fatal(err)
	}
	if !provisioned(data) {
		t.Fatal("not provisioned after the marker was written")
	}
	write("0.8.7")
	if got := provisionKey(); got == old || !strings.Contains(got, "vector 0.8.7") {
		t.Fatalf("key after the upgrade %q (before %q)", got, old)
	}
	if provisioned(data) {
		t.Fatal("a marker of the old pgvector still counts after the upgrade")
	}
}
