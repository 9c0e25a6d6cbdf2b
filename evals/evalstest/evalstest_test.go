package evalstest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// fatalTB records the first fatal message and stops the goroutine like
// testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	runtime.Goexit()
}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// fails runs fn against a fatalTB and returns the fatal message ("" if fn
// returned normally).
func fails(t *testing.T, fn func(testing.TB) string) string {
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f.msg
}

func TestCranfieldFound(t *testing.T) {
	d := Cranfield(t)
	if filepath.Base(d) != "cranfield" || filepath.Base(filepath.Dir(d)) != "datasets" {
		t.Fatalf("Cranfield = %s", d)
	}
}

func TestMissingFailsClearly(t *testing.T) {
	root := t.TempDir()
	mod := filepath.Join(root, "mod")
	if err := os.MkdirAll(filepath.Join(mod, "pkg"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Join(mod, "pkg"))
	if msg := fails(t, DatasetsDir); !strings.Contains(msg, "go.mod not found") {
		t.Errorf("no go.mod: %q", msg)
	}
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte("module m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if msg := fails(t, DatasetsDir); !strings.Contains(msg, "datasets missing") {
		t.Errorf("no datasets: %q", msg)
	}
	if err := os.MkdirAll(filepath.Join(root, "shared", "datasets", "cranfield"), 0o755); err != nil {
		t.Fatal(err)
	}
	if msg := fails(t, Cranfield); !strings.Contains(msg, "cranfield dataset missing") {
		t.Errorf("no corpus.jsonl: %q", msg)
	}
	if err := os.WriteFile(filepath.Join(root, "shared", "datasets", "cranfield", "corpus.jsonl"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if msg := fails(t, Cranfield); msg != "" {
		t.Errorf("complete layout failed: %q", msg)
	}
}
