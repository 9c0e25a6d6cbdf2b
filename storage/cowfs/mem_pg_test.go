package cowfs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/offshootdb/offshoot/compute/pg"
	"github.com/offshootdb/offshoot/compute/pg/pgtest"
)

func TestMemPostgres(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := pgtest.Dir(t)
	mnt := filepath.Join(dir, "data")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	m, err := Mount(mnt, newMemFS(), MountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Unmount(context.Background()); err != nil {
			t.Error(err)
		}
	})
	start := time.Now()
	if err := pg.InitDB(ctx, pg.InitOptions{DataDir: mnt}); err != nil {
		t.Fatal(err)
	}
	t.Logf("initdb %v", time.Since(start))
	opts := pg.Options{DataDir: mnt, SocketDir: filepath.Join(dir, "sock"), LogFile: filepath.Join(dir, "log")}
	p, err := pg.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(ctx, pg.Fast)
	cs := p.ConnString("postgres", "", "postgres")
	if err := p.WaitReady(ctx, cs); err != nil {
		t.Fatalf("%v\n%s", err, pg.LastLines(opts.LogFile, 30))
	}
	conn, err := pgx.Connect(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		"CREATE EXTENSION vector",
		"CREATE TABLE t (id int primary key, v text)",
		"INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 100000) g",
		"CHECKPOINT",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 100000 {
		t.Fatal(n, err)
	}
}

func TestMemInitExport(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := pgtest.Dir(t)
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	fs := newMemFS()
	pw, err := InitProject(ctx, fs, mnt, InitOptions{LogFile: filepath.Join(dir, "initlog")})
	if err != nil {
		t.Fatal(err)
	}
	exp := filepath.Join(dir, "export")
	if err := Export(ctx, fs, exp); err != nil {
		t.Fatal(err)
	}
	opts := pg.Options{DataDir: exp, SocketDir: filepath.Join(dir, "sock"), LogFile: filepath.Join(dir, "log")}
	p, err := pg.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(ctx, pg.Fast)
	cs := p.ConnString("postgres", pw, "postgres")
	if err := p.WaitReady(ctx, cs); err != nil {
		t.Fatalf("%v\n%s", err, pg.LastLines(opts.LogFile, 30))
	}
	conn, err := pgx.Connect(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, "SELECT extversion FROM pg_extension WHERE extname='vector'").Scan(&v); err != nil {
		t.Fatal(err)
	}
	t.Log("vector", v)
}
