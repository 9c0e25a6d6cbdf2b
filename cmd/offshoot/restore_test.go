package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

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
