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
// vectors (DESIGN.md "Dependencies point down").
func TestImportsStayLeaf(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(p, "github.com/offshootdb/offshoot") {
				t.Errorf("%s imports %s: evals must not depend on other project packages", f, p)
			}
		}
	}
}
