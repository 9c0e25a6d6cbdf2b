// Package s3test runs a real S3 server (versitygw, Apache-2.0, installed by
// `scripts/setup --test`) on loopback for tests.
package s3test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Binary is where scripts/setup --test installs versitygw.
const Binary = "/var/cache/offshoot/versitygw-v1.8.0/versitygw"

// Credentials of the server's root user.
const (
	AccessKey = "offshoot-test"
	SecretKey = "offshoot-test-secret"
)

// Server is a running versitygw with a posix backend in a temp dir.
type Server struct {
	t    testing.TB
	Addr string // host:port
	Root string // one subdirectory per bucket
	cmd  *exec.Cmd
}

// Start starts a server with the named buckets; it fails the test, with
// the fix, when versitygw is not installed. Stopped at the end of the test.
func Start(t testing.TB, buckets ...string) *Server {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Fatalf("versitygw not installed at %s (run scripts/setup --test): %v", Binary, err)
	}
	s := &Server{t: t, Root: t.TempDir()}
	for _, b := range buckets {
		if err := os.MkdirAll(filepath.Join(s.Root, b), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	ln.Close()
	s.Resume()
	t.Cleanup(s.Stop)
	return s
}

// Stop kills the server; the buckets stay on disk for Resume.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Pause stops the server process (SIGSTOP) without closing its socket:
// connections are accepted by the kernel and then nothing answers, as from
// a hung object store. Continue undoes it; Stop works on a paused server.
func (s *Server) Pause() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		s.t.Fatal(err)
	}
}

// Continue resumes a paused server (SIGCONT).
func (s *Server) Continue() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		s.t.Fatal(err)
	}
}

// Resume restarts a stopped server on the same address and buckets.
func (s *Server) Resume() {
	s.t.Helper()
	cmd := exec.Command(Binary, "--access", AccessKey, "--secret", SecretKey, "--port", s.Addr, "posix", s.Root)
	log, err := os.Create(filepath.Join(s.t.TempDir(), "versitygw.log"))
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start versitygw: %v", err)
	}
	s.cmd = cmd
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", s.Addr)
		if err == nil {
			c.Close()
			return
		}
		if i > 200 {
			b, _ := os.ReadFile(log.Name())
			s.t.Fatalf("versitygw did not listen on %s: %v\n%s", s.Addr, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Endpoint is the server's URL.
func (s *Server) Endpoint() string { return fmt.Sprintf("http://%s", s.Addr) }
