package cowfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/offshootdb/offshoot/storage"
)

// runAs runs a program as uid:gid (with no supplementary groups) and
// returns its combined output.
func runAs(uid, gid uint32, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestOwner mounts a head whose files root wrote (stored uid 0) with an
// Owner: the owner sees everything as its own and a private root, another
// user is refused at the root, and the stored ownership is untouched.
func TestOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	f := newFixture(t, nil)
	if _, _, err := f.s.CreateProject("p"); err != nil {
		t.Fatal(err)
	}
	h := f.head("p", "main")
	plain := f.mount("plain", h, MountOptions{})
	if err := os.Mkdir(filepath.Join(plain.Dir(), "pg_wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(plain.Dir(), "pg_wal", "seg"), []byte("wal"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(plain.Dir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := plain.Unmount(t.Context()); err != nil {
		t.Fatal(err)
	}

	const owner, other = 65534, 65533
	m := f.mount("private", h, MountOptions{Owner: &Owner{UID: owner, GID: owner}})
	seg := filepath.Join(m.Dir(), "pg_wal", "seg")
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{m.Dir(), os.ModeDir | 0o700}, {filepath.Dir(seg), os.ModeDir | 0o700}, {seg, 0o600}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != owner || st.Gid != owner || fi.Mode() != c.mode {
			t.Errorf("%s: uid %d gid %d mode %v, want %d %d %v", c.path, st.Uid, st.Gid, fi.Mode(), owner, owner, c.mode)
		}
	}
	if out, err := runAs(owner, owner, "cat", seg); err != nil || out != "wal" {
		t.Errorf("owner reads %s: %q, %v", seg, out, err)
	}
	if out, err := runAs(owner, owner, "touch", filepath.Join(m.Dir(), "new")); err != nil {
		t.Errorf("owner creates a file: %s %v", out, err)
	}
	for _, args := range [][]string{{"cat", seg}, {"ls", m.Dir()}, {"touch", filepath.Join(m.Dir(), "x")}} {
		out, err := runAs(other, other, args[0], args[1:]...)
		if err == nil || !strings.Contains(out, "Permission denied") {
			t.Errorf("another user runs %v: %q, %v; want Permission denied", args, out, err)
		}
	}
	// Stored ownership is what root wrote; the new file carries its creator.
	for name, want := range map[string]uint32{"": 0, "new": owner} {
		ino := uint64(storage.RootIno)
		if name != "" {
			a, err := h.Lookup(storage.RootIno, name)
			if err != nil {
				t.Fatal(err)
			}
			ino = a.Ino
		}
		a, err := h.GetAttr(ino)
		if err != nil {
			t.Fatal(err)
		}
		if a.Uid != want {
			t.Errorf("stored uid of %q = %d, want %d", name, a.Uid, want)
		}
		if name == "" && a.Mode&0o7777 != 0o755 {
			t.Errorf("stored root mode %o, want 755 (only presented as 700)", a.Mode&0o7777)
		}
	}
}

// TestFUSEFdNotInherited: programs started while mounts are served do not
// inherit their /dev/fuse connections (which would let them read the
// mounts' requests and keep them alive after the server dies).
func TestFUSEFdNotInherited(t *testing.T) {
	f := newFixture(t, nil)
	if _, _, err := f.s.CreateProject("p"); err != nil {
		t.Fatal(err)
	}
	f.mount("a", f.head("p", "main"), MountOptions{})
	out, err := exec.Command("sh", "-c", "ls -l /proc/self/fd/").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if strings.Contains(string(out), "/dev/fuse") {
		t.Errorf("a child process holds a FUSE connection:\n%s", out)
	}
}
