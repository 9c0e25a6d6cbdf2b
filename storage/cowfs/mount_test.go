package cowfs

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/storage"
)

// serveEnv makes the test binary, re-executed by startServer, serve a
// branch head until it is killed instead of running tests. Its value is a
// JSON serveSpec.
const serveEnv = "COWFS_TEST_SERVE"

type serveSpec struct {
	Store, Project, Branch, Mount string
	LocalWAL                      string   `json:",omitempty"`
	Volatile                      []string `json:",omitempty"`
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(serveEnv); spec != "" {
		if err := serveChild(spec); err != nil {
			fmt.Fprintln(os.Stderr, "serve:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serveChild mounts what spec names, prints "ready" and serves until killed.
func serveChild(spec string) error {
	var sp serveSpec
	if err := json.Unmarshal([]byte(spec), &sp); err != nil {
		return err
	}
	s, err := storage.Open(sp.Store, nil)
	if err != nil {
		return err
	}
	h, err := s.OpenHead(sp.Project, sp.Branch)
	if err != nil {
		return err
	}
	m, err := Mount(sp.Mount, h, MountOptions{NoWritebackCache: testNoWriteback, LocalWAL: sp.LocalWAL, Volatile: sp.Volatile})
	if err != nil {
		return err
	}
	fmt.Println("ready")
	<-m.Done()
	return nil
}

// child is a FUSE server running in another process.
type child struct {
	cmd *exec.Cmd
}

// startServer re-executes the test binary to serve spec and waits until
// its mount is up.
func startServer(t *testing.T, sp serveSpec) *child {
	t.Helper()
	spec, err := json.Marshal(sp)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serveEnv+"="+string(spec))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd}
	t.Cleanup(c.kill)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("server child: %q %v", line, err)
	}
	return c
}

// kill SIGKILLs the server, as a crash would.
func (c *child) kill() {
	if c.cmd.ProcessState == nil {
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
	}
}

func mountedAt(t *testing.T, dir string) bool {
	t.Helper()
	ms, err := readMountInfo()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.dir == dir {
			return true
		}
	}
	return false
}

// newHead creates project "p" and opens its main head.
func newHead(t *testing.T) (*fixture, *storage.Head) {
	f := newFixture(t, nil)
	if _, _, err := f.s.CreateProject("p"); err != nil {
		t.Fatal(err)
	}
	return f, f.head("p", "main")
}

func TestUnmountBusyIsLazy(t *testing.T) {
	_, h := newHead(t)
	mnt := t.TempDir()
	m, err := Mount(mnt, h, MountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(mnt, "f"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Unmount(context.Background()) }()
	// The path is released at once although f still holds the mount.
	for deadline := time.Now().Add(10 * time.Second); mountedAt(t, mnt); {
		if time.Now().After(deadline) {
			t.Fatal("still mounted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("Unmount returned %v while a file is open", err)
	default:
	}
	b := make([]byte, 5)
	if _, err := f.ReadAt(b, 0); err != nil || string(b) != "hello" {
		t.Fatalf("read through detached mount: %q %v", b, err)
	}
	f.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := m.Unmount(context.Background()); err != nil {
		t.Fatalf("second Unmount: %v", err)
	}
}

func TestUnmountAbortsAfterContext(t *testing.T) {
	_, h := newHead(t)
	mnt := t.TempDir()
	m, err := Mount(mnt, h, MountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(mnt)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = m.Unmount(ctx)
	switch {
	case fusectlMounted() && err != nil:
		// Unmount mounts fusectl as root and aborts the connection.
		t.Fatalf("Unmount with fusectl: %v, want the connection aborted", err)
	case !fusectlMounted() && err == nil:
		// Without fusectl the connection cannot be aborted, so
		// Unmount must report that it gave up waiting.
		t.Fatal("Unmount returned nil while the mount is still held")
	case err != nil && !errors.Is(err, context.DeadlineExceeded):
		t.Fatal(err)
	}
	f.Close()
	<-m.Done()
}

func TestCleanStaleAfterCrash(t *testing.T) {
	f, _ := newHead(t)
	f.close()
	run := t.TempDir()
	mnt := filepath.Join(run, "ep", "data")
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	c := startServer(t, serveSpec{Store: f.storeDir, Project: "p", Branch: "main", Mount: mnt})
	wf, err := os.Create(filepath.Join(mnt, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wf.WriteString("x"); err != nil {
		t.Fatal(err)
	}
	if err := wf.Sync(); err != nil {
		t.Fatal(err)
	}
	c.kill()
	wf.Close()
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(mnt, &sfs); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("statfs of crashed mount: %v, want ENOTCONN", err)
	}
	var st syscall.Stat_t
	f.open()
	if _, _, err := f.s.CreateProject("q"); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir() // not under run: left alone
	om, err := Mount(other, f.head("q", "main"), MountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer om.Unmount(context.Background())

	cleaned, err := CleanStale(run)
	if err != nil {
		t.Fatal(err)
	}
	if len(cleaned) != 1 || cleaned[0] != mnt {
		t.Fatalf("cleaned %q, want [%s]", cleaned, mnt)
	}
	if err := syscall.Stat(mnt, &st); err != nil {
		t.Fatalf("stat after cleanup: %v", err)
	}
	if !mountedAt(t, other) {
		t.Fatal("CleanStale detached a mount outside the run dir")
	}
	// The mount point is usable again, and what was written before the
	// crash and synced is there.
	m, err := Mount(mnt, f.head("p", "main"), MountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || string(b) != "x" {
		t.Errorf("after remount: %q %v", b, err)
	}
	if err := m.Unmount(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestMountDetachesStale(t *testing.T) {
	f, _ := newHead(t)
	f.close()
	mnt := t.TempDir()
	c := startServer(t, serveSpec{Store: f.storeDir, Project: "p", Branch: "main", Mount: mnt})
	c.kill()
	f.open()
	m, err := Mount(mnt, f.head("p", "main"), MountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unmount(context.Background())
	if _, err := os.ReadDir(mnt); err != nil {
		t.Fatal(err)
	}
	if _, err := Mount(mnt, f.view("p", "main", storage.AtHead()), MountOptions{}); !errors.Is(err, ErrMounted) {
		t.Fatalf("mount over a live mount: %v, want ErrMounted", err)
	}
}

func TestParseMountInfo(t *testing.T) {
	in := `22 1 0:21 / /proc rw,nosuid shared:12 - proc proc rw
36 35 98:0 /mnt1 /tmp/a\040b rw,noatime master:1 - fuse.offshoot offshoot rw,user_id=0
37 35 98:0 / /x rw - ext4 /dev/vda rw
`
	ms, err := parseMountInfo(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []mountInfo{{"/proc", "proc", 21}, {"/tmp/a b", FSType, 0}, {"/x", "ext4", 0}}
	if fmt.Sprint(ms) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", ms, want)
	}
	if _, err := parseMountInfo(strings.NewReader("1 2 3\n")); !errors.Is(err, ErrBadMountInfo) {
		t.Fatalf("malformed line: %v", err)
	}
}
