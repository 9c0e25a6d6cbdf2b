package evals

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportsStayLeaf keeps evals a leaf of the project: experiments calls
// evals, never the reverse, and evals needs neither storage, compute nor
// vectors (DESIGN.md "Dependencies point down"). The one exception is
// evals' own test helper evalstest, which tests may import and which itself
// imports no project package.
func TestImportsStayLeaf(t *testing.T) {
	const helper = "github.com/offshootdb/offshoot/evals/evalstest"
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	helperFiles, err := filepath.Glob("evalstest/*.go")
	if err != nil {
		t.Fatal(err)
	}
	if len(helperFiles) == 0 {
		t.Fatal("evalstest/*.go: no files")
	}
	files = append(files, helperFiles...)
	fset := token.NewFileSet()
	for _, f := range files {
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if p == helper && strings.HasSuffix(f, "_test.go") && filepath.Dir(f) == "." {
				continue
			}
			if strings.HasPrefix(p, "github.com/offshootdb/offshoot") {
				t.Errorf("%s imports %s: evals must not depend on other project packages", f, p)
			}
		}
	}
}
