package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/storage"
	"github.com/offshootdb/offshoot/storage/objstore"
	"github.com/offshootdb/offshoot/storage/objstore/s3test"
)

// uploadOnce uploads one round of a store with a project to
// s3://bkt/prefix.
func uploadOnce(t *testing.T, srv *s3test.Server, prefix string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := storage.Open(filepath.Join(dir, "store"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, _, err := st.CreateProject("p"); err != nil {
		t.Fatal(err)
	}
	cfg := objstore.Config{Endpoint: srv.Endpoint(), Bucket: "bkt", Prefix: prefix,
		AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey, PathStyle: true}
	u, err := objstore.New(ctx, cfg, []objstore.Source{{Name: "store", Checkpoint: st.Checkpoint}}, filepath.Join(dir, "objstore"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if err := u.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreExitCodes: restore exits with the codes the README documents
// (2 bad input, 3 no server, 4 auth, 5 not found, 6 conflict), and makes
// the data dir as serve does.
func TestRestoreExitCodes(t *testing.T) {
	srv := s3test.Start(t, "bkt")
	t.Setenv("OFFSHOOT_S3_ACCESS_KEY", s3test.AccessKey)
	t.Setenv("OFFSHOOT_S3_SECRET_KEY", s3test.SecretKey)
	t.Setenv("OFFSHOOT_S3_ENDPOINT", "")
	ctx := context.Background()
	uploadOnce(t, srv, "full")
	nonEmpty := t.TempDir()
	if err := os.WriteFile(filepath.Join(nonEmpty, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	from := func(prefix string, more ...string) []string {
		return append([]string{"restore", "--from", "s3://bkt/" + prefix, "--s3-endpoint", srv.Endpoint(), "--s3-path-style"}, more...)
	}
	for _, c := range []struct {
		name string
		args []string
		dir  string // default a new dir
		env  [2]string
		code int
		want string
	}{
		{name: "non-empty dir", args: from("full"), dir: nonEmpty, code: exitConflict, want: "not empty"},
		{name: "wrong credentials", args: from("full"), env: [2]string{"OFFSHOOT_S3_SECRET_KEY", "wrong"}, code: exitAuth, want: "access denied"},
		{name: "missing generation", args: from("full", "--generation", "99"), code: exitNotFound, want: "generation 99"},
		{name: "empty prefix", args: from("empty"), code: exitNotFound, want: "no upload found"},
		{name: "list of an empty prefix", args: from("empty", "--list"), code: exitNotFound, want: "nothing to list"},
		{name: "missing bucket", args: []string{"restore", "--from", "s3://nope/x", "--s3-endpoint", srv.Endpoint(), "--s3-path-style"}, code: exitNotFound, want: "bucket does not exist"},
		{name: "missing endpoint", args: []string{"restore", "--from", "s3://bkt/full"}, code: exitBadInput, want: "no endpoint"},
		{name: "no server", args: []string{"restore", "--from", "s3://bkt/full", "--s3-endpoint", "http://127.0.0.1:1"}, code: exitNoServer, want: "unreachable"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.env[0] != "" {
				t.Setenv(c.env[0], c.env[1])
			}
			dir := c.dir
			if dir == "" {
				dir = filepath.Join(t.TempDir(), "d")
			}
			_, errOut, code := run(t, ctx, append(c.args, "--data-dir", dir)...)
			if code != c.code || !strings.Contains(strings.ToLower(errOut), c.want) {
				t.Errorf("exit %d %q, want %d and an error with %q", code, errOut, c.code, c.want)
			}
		})
	}

	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "restored")
	if _, errOut, code := run(t, ctx, append(from("full"), "--data-dir", dir)...); code != 0 {
		t.Fatalf("restore: exit %d %s", code, errOut)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("restored data dir has mode %v, want 0755 as serve makes it", fi.Mode().Perm())
	}
}

// TestRestoreUnfinished: restore stops on SIGINT with a message (a hung
// object store holds it); serve refuses a data dir that holds an
// unfinished restore, before writing to it; a second restore into it
// replaces it, and serve's check then passes.
func TestRestoreUnfinished(t *testing.T) {
	srv := s3test.Start(t, "bkt")
	t.Setenv("OFFSHOOT_S3_ACCESS_KEY", s3test.AccessKey)
	t.Setenv("OFFSHOOT_S3_SECRET_KEY", s3test.SecretKey)
	ctx := context.Background()
	uploadOnce(t, srv, "full")
	from := []string{"restore", "--from", "s3://bkt/full", "--s3-endpoint", srv.Endpoint(), "--s3-path-style"}

	srv.Pause()
	cmd := exec.Command(serverBin, append(from, "--data-dir", filepath.Join(t.TempDir(), "d"))...)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // restore waits for the paused server
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("restore still running 20 s after SIGINT")
	}
	srv.Continue()
	if !strings.Contains(errOut.String(), "restore interrupted") {
		t.Errorf("restore after SIGINT: exit %d %q, want it to say it was interrupted", cmd.ProcessState.ExitCode(), errOut.String())
	}

	// What a restore killed mid-download leaves: the marker, part of the
	// files.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, objstore.RestoringMarker), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "control"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, errS, code := run(t, ctx, "serve", "--data-dir", dir)
	if code != exitConflict || !strings.Contains(errS, "unfinished restore") || !strings.Contains(errS, "offshoot restore again") {
		t.Errorf("serve on an unfinished restore: exit %d %q, want %d and how to go on", code, errS, exitConflict)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("serve wrote into the unfinished restore: %d entries", len(ents))
	}
	if _, errR, code := run(t, ctx, append(from, "--data-dir", dir)...); code != 0 {
		t.Fatalf("restore into an unfinished restore: exit %d %s", code, errR)
	}
	if err := objstore.CheckRestored(dir); err != nil {
		t.Errorf("after the second restore: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "store")); err != nil {
		t.Errorf("second restore: %v", err)
	}
}

// TestE2EObjectStorePrefixTaken: another data dir uploads a newer
// generation to a running server's prefix; the server stops uploading and
// says so in its log, its metrics and /readyz, and, restarted on the
// prefix, refuses to start and names the fix.
func TestE2EObjectStorePrefixTaken(t *testing.T) {
	srv := s3test.Start(t, "bkt")
	t.Setenv("OFFSHOOT_S3_ACCESS_KEY", s3test.AccessKey)
	t.Setenv("OFFSHOOT_S3_SECRET_KEY", s3test.SecretKey)
	s3 := []string{"--s3", "s3://bkt/two", "--s3-interval", "5s", "--s3-endpoint", srv.Endpoint(), "--s3-path-style"}
	s := newE2EServerArgs(t, s3...)
	if code, b := s.apiAs("", "GET", "/readyz", nil); code != 200 {
		t.Fatalf("/readyz: %d %s", code, b)
	}
	s.waitRounds("", 1)
	uploadOnce(t, srv, "two") // right after the server's round: no race
	deadline := time.Now().Add(time.Minute)
	for {
		code, b := s.apiAs("", "GET", "/readyz", nil)
		if code == 503 && strings.Contains(string(b), "another data dir") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %s a minute after another data dir uploaded\n%s", code, b, s.log())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if v := s.metric("", "offshoot_objstore_prefix_taken"); v != 1 {
		t.Errorf("offshoot_objstore_prefix_taken = %v, want 1", v)
	}
	if l := s.logLines("object store upload stopped"); !strings.Contains(l, "another prefix") {
		t.Errorf("no error in the log naming the fix:\n%s", s.log())
	}
	s.stop()

	cmd := exec.Command(serverBin, append([]string{"serve", "--data-dir", s.dataDir, "--http-addr", "127.0.0.1:0", "--proxy-addr", "127.0.0.1:0"}, s3...)...)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	err := cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != exitConflict || !strings.Contains(errOut.String(), "another prefix") {
		t.Errorf("serve restarted on the taken prefix: %v exit %d\n%s", err, code, errOut.String())
	}
}
