package compute

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestLogTail reads the tail of the log where start writes it.
func TestLogTail(t *testing.T) {
	m := &Manager{cfg: Config{RunDir: t.TempDir()}, endpoints: map[key]*endpoint{}}
	if got, err := m.LogTail("p", "feature/x", 5); err != nil || len(got) != 0 {
		t.Fatalf("never started: %q, %v", got, err)
	}
	if _, err := m.LogTail("p", "feature/x", 0); err == nil {
		t.Error("0 lines accepted")
	}
	path := m.logFile(m.endpoint(key{"p", "feature/x"}))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i := range 3000 { // longer than the 1 MiB window
		b.WriteString("line " + strconv.Itoa(i) + " " + strings.Repeat("x", 400) + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := m.LogTail("p", "feature/x", 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || !strings.HasPrefix(got[0], "line 2997 ") || !strings.HasPrefix(got[2], "line 2999 ") {
		t.Errorf("tail: %.20q", got)
	}
	all, err := m.LogTail("p", "feature/x", 100000)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) == 0 || len(all) >= 3000 || !strings.HasPrefix(all[0], "line ") {
		t.Errorf("windowed tail: %d lines, first %.20q", len(all), all[0])
	}
	if other, _ := m.LogTail("p", "other", 3); len(other) != 0 {
		t.Errorf("other branch sees %q", other)
	}
}
