// Package pgtest gives tests a real, throwaway PostgreSQL 15 cluster with
// pgvector, on local disk, running as the postgres OS user.
package pgtest

import (
	"context"
	"os"
	"path/filepath"
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
