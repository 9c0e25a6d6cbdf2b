// Package evalstest locates the shared BEIR datasets for tests. It imports
// only the standard library, so any package's tests may use it.
package evalstest

import (
	"os"
	"path/filepath"
	"testing"
)

// DatasetsDir returns ../shared/datasets relative to the module root (the
// nearest directory at or above the working directory holding go.mod), as
// CI lays it out. It fails the test when go.mod or the directory is
// missing; it never skips.
func DatasetsDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
	d := filepath.Join(dir, "..", "shared", "datasets")
	if _, err := os.Stat(d); err != nil {
		t.Fatalf("datasets missing (want them at ../shared/datasets from the module root): %v", err)
	}
	return d
}

// Cranfield returns the Cranfield collection's directory (BEIR layout)
// under DatasetsDir. It fails the test when the collection's corpus.jsonl
// is missing; it never skips.
func Cranfield(t testing.TB) string {
	t.Helper()
	p := filepath.Join(DatasetsDir(t), "cranfield")
	if _, err := os.Stat(filepath.Join(p, "corpus.jsonl")); err != nil {
		t.Fatalf("cranfield dataset missing (want it at ../shared/datasets/cranfield from the module root): %v", err)
	}
	return p
}
