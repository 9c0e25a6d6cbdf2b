package cowfs

import (
	"os"
	"path/filepath"
	"testing"
)

// TestWALWatch: the watch reports a change for the first absorb, for every
// kind of change of the directory or a watched subdirectory (a write, a
// new file, a rename, a removal, a new directory), and for an absorb after
// one that failed; and none when nothing happened since an absorb that
// succeeded.
func TestWALWatch(t *testing.T) {
	dir := t.TempDir()
	seg := filepath.Join(dir, "000000010000000000000001")
	if err := os.WriteFile(seg, make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	ww, err := newWALWatch(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ww.close()
	if !ww.changed() {
		t.Fatal("the first absorb must walk")
	}
	ww.absorbed()
	// An absorb that finds nothing calls nothing back (localWAL.absorb):
	// the one after it has nothing to look at either.
	for i := range 3 {
		if ww.changed() {
			t.Fatalf("nothing happened, yet a change (check %d)", i)
		}
	}
	sub := filepath.Join(dir, "archive_status")
	for _, c := range []struct {
		what string
		do   func() error
	}{
		{"write", func() error {
			f, err := os.OpenFile(seg, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt([]byte("x"), 4096)
			return err
		}},
		{"create", func() error { return os.WriteFile(filepath.Join(dir, "00000002.history"), []byte("1\n"), 0o600) }},
		{"rename", func() error { return os.Rename(filepath.Join(dir, "00000002.history"), filepath.Join(dir, "h")) }},
		{"remove", func() error { return os.Remove(filepath.Join(dir, "h")) }},
		{"mkdir", func() error { return os.Mkdir(sub, 0o700) }},
		{"create in a subdirectory", func() error {
			if err := ww.add(sub); err != nil { // what the walk does when it meets the directory
				return err
			}
			ww.absorbed()
			return os.WriteFile(filepath.Join(sub, "000000010000000000000001.ready"), nil, 0o600)
		}},
	} {
		if err := c.do(); err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if !ww.changed() {
			t.Fatalf("%s: no change reported", c.what)
		}
		ww.absorbed()
		for call := range 2 { // changed has effects: ask twice
			if ww.changed() {
				t.Fatalf("%s: absorbed, and nothing since, yet a change at call %d", c.what, call+1)
			}
		}
	}
	// An absorb that failed (absorbed not called) leaves the next one to walk.
	if err := os.WriteFile(seg, make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	if !ww.changed() {
		t.Fatal("write: no change reported")
	}
	if !ww.changed() {
		t.Fatal("after an absorb that did not succeed, the next one must walk")
	}
	ww.absorbed()
	for call := range 2 {
		if ww.changed() {
			t.Fatalf("nothing happened since a successful absorb, yet a change at call %d", call+1)
		}
	}
}
