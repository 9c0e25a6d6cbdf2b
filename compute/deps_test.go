package compute_test

import (
	"go/build"
	"strings"
	"testing"
)

// TestImports keeps compute below the layers that use it: compute and its
// subpackages import no offshoot package outside compute/, except that
// package compute itself (not proxy or pg) may use storage and
// storage/cowfs for its copy-on-write volumes and project initialization.
func TestImports(t *testing.T) {
	const mod = "github.com/offshootdb/offshoot/"
	for _, dir := range []string{".", "proxy", "pg", "pg/pgtest"} {
		pkg, err := build.ImportDir(dir, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range append(pkg.Imports, pkg.TestImports...) {
			if dir == "." && (imp == mod+"storage" || imp == mod+"storage/cowfs") {
				continue
			}
			if strings.HasPrefix(imp, mod) && !strings.HasPrefix(imp, mod+"compute") {
				t.Errorf("compute/%s imports %s", dir, imp)
			}
		}
	}
}
