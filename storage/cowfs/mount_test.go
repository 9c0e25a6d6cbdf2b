package cowfs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serveEnv makes the test binary, re-executed by startServer, serve a
// mount until it is killed instead of running tests. Its value is
// "mem:<mountpoint>" or "store:<storedir>:<project>:<branch>:<mountpoint>".
const serveEnv = "COWFS_TEST_SERVE"

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
	kind, rest, _ := strings.Cut(spec, ":")
	var files Files
	var mnt string
	switch kind {
	case "mem":
		files, mnt = newMemFS(), rest
	default:
		f, dir, err := openChildFiles(kind, rest)
		if err != nil {
			return err
		}
		files, mnt = f, dir
	}
	m, err := Mount(mnt, files, MountOptions{})
	if err != nil {
		return err
	}
	fmt.Println("ready")
	<-m.Done()
	return nil
}

// openChildFiles is replaced once the store can be opened by a child.
var openChildFiles = func(kind, rest string) (Files, string, error) {
	return nil, "", fmt.Errorf("unknown serve spec %q", kind)
}

// child is a FUSE server running in another process.
type child struct {
	cmd *exec.Cmd
}

// startServer re-executes the test binary to serve spec and waits until
// its mount is up.
func startServer(t *testing.T, spec string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serveEnv+"="+spec)
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

func TestUnmountBusyIsLazy(t *testing.T) {
	mnt := t.TempDir()
	m, err := Mount(mnt, newMemFS(), MountOptions{})
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
	mnt := t.TempDir()
	m, err := Mount(mnt, newMemFS(), MountOptions{})
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
	if _, ferr := os.Stat("/sys/fs/fuse/connections/1"); ferr != nil && err == nil {
		// Without fusectl the connection cannot be aborted, so
		// Unmount must report that it gave up waiting.
		t.Fatal("Unmount returned nil while the mount is still held")
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	f.Close()
	<-m.Done()
}

func TestCleanStaleAfterCrash(t *testing.T) {
	run := t.TempDir()
	mnt := filepath.Join(run, "ep", "data")
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	c := startServer(t, "mem:"+mnt)
	if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.kill()
	var st syscall.Stat_t
	if err := syscall.Stat(mnt, &st); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("stat of crashed mount: %v, want ENOTCONN", err)
	}
	other := t.TempDir() // not under run: left alone
	om, err := Mount(other, newMemFS(), MountOptions{})
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
	// The mount point is usable again.
	m, err := Mount(mnt, newMemFS(), MountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Unmount(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestMountDetachesStale(t *testing.T) {
	mnt := t.TempDir()
	c := startServer(t, "mem:"+mnt)
	c.kill()
	m, err := Mount(mnt, newMemFS(), MountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unmount(context.Background())
	if _, err := os.ReadDir(mnt); err != nil {
		t.Fatal(err)
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
	want := []mountInfo{{"/proc", "proc"}, {"/tmp/a b", FSType}, {"/x", "ext4"}}
	if fmt.Sprint(ms) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", ms, want)
	}
	if _, err := parseMountInfo(strings.NewReader("1 2 3\n")); !errors.Is(err, ErrBadMountInfo) {
		t.Fatalf("malformed line: %v", err)
	}
}
