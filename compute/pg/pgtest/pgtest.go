// Package pgtest gives tests a real, throwaway PostgreSQL 15 cluster with
// pgvector, on local disk, running as the postgres OS user.
package pgtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/offshootdb/offshoot/compute/pg"
)

// Cluster is a running throwaway cluster. Superuser "postgres", trust auth
// on its private Unix socket only.
type Cluster struct {
	Dir        string // parent of data/, sock/ and log
	Postmaster *pg.Postmaster
	// ConnString connects as the superuser to database "postgres".
	ConnString string
}

// Dir makes a temporary directory the postgres user can traverse, removed
// when the test ends. (t.TempDir's parents are private to root.)
func Dir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "offshoot-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// New initializes and starts a cluster, creates the vector extension in
// database postgres, and stops and removes it all when the test ends.
// settings are extra -c options.
func New(t testing.TB, settings map[string]string) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := Dir(t)
	data := filepath.Join(dir, "data")
	if err := pg.InitDB(ctx, pg.InitOptions{DataDir: data}); err != nil {
		t.Fatal(err)
	}
	opts := pg.Options{DataDir: data, SocketDir: filepath.Join(dir, "sock"), Settings: settings, LogFile: filepath.Join(dir, "log")}
	p, err := pg.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer scancel()
		_ = p.Stop(sctx, pg.Immediate)
	})
	c := &Cluster{Dir: dir, Postmaster: p, ConnString: p.ConnString("postgres", "", "postgres")}
	if err := p.WaitReady(ctx, c.ConnString); err != nil {
		t.Fatalf("%v\n%s", err, pg.LastLines(opts.LogFile, 20))
	}
	conn := c.Connect(t)
	if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS vector"); err != nil {
		t.Fatal(err)
	}
	return c
}

// Connect opens a pgx connection closed when the test ends.
func (c *Cluster) Connect(t testing.TB) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), c.ConnString)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

var template struct {
	once sync.Once
	dir  string
	err  error
}

// Main runs the tests of a package that uses CopyTemplate and removes the
// shared template cluster afterwards. Call it from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	if template.dir != "" {
		os.RemoveAll(template.dir)
	}
	os.Exit(code)
}

// CopyTemplate makes dst an initdb'd cluster (superuser "postgres", trust
// auth, stopped) by copying a template that is initialized once per test
// binary; initdb takes seconds, a copy milliseconds. dst must not exist and
// its parent must be traversable by the postgres user. Safe for concurrent
// use. Packages using it should call Main from TestMain so the template is
// removed.
func CopyTemplate(t testing.TB, dst string) {
	t.Helper()
	template.once.Do(func() {
		d, err := os.MkdirTemp("", "offshoot-template-")
		if err == nil {
			err = os.Chmod(d, 0o755)
		}
		if err != nil {
			template.err = err
			return
		}
		template.dir = d
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		template.err = pg.InitDB(ctx, pg.InitOptions{DataDir: filepath.Join(d, "data")})
	})
	if template.err != nil {
		t.Fatalf("template cluster: %v", template.err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(template.dir, "data"), dst).CombinedOutput(); err != nil {
		t.Fatalf("copy template: %v: %s", err, out)
	}
}
