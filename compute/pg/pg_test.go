package pg_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/compute/pg"
	"github.com/offshootdb/offshoot/compute/pg/pgtest"
)

func TestClusterWithPasswordAndRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := pgtest.Dir(t)
	data := filepath.Join(dir, "data")
	if err := pg.InitDB(ctx, pg.InitOptions{DataDir: data, Password: "s3cr'et"}); err != nil {
		t.Fatal(err)
	}
	opts := pg.Options{DataDir: data, SocketDir: filepath.Join(dir, "sock"), LogFile: filepath.Join(dir, "log"),
		Settings: map[string]string{"shared_buffers": "16MB"}}
	p, err := pg.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitReady(ctx, p.ConnString("postgres", "s3cr'et", "postgres")); err != nil {
		t.Fatalf("%v\n%s", err, pg.LastLines(opts.LogFile, 20))
	}
	// SCRAM is enforced on the socket: a wrong password fails.
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
	err = p.WaitReady(wctx, p.ConnString("postgres", "wrong", "postgres"))
	wcancel()
	if err == nil {
		t.Fatal("wrong password accepted")
	}
	// Settings travel on the command line, not in PGDATA.
	conf, err := os.ReadFile(filepath.Join(data, "postgresql.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if string(conf) == "" || strings.Contains(string(conf), opts.SocketDir) {
		t.Fatal("socket dir written into postgresql.conf")
	}
	if err := p.Stop(ctx, pg.Fast); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("postmaster.pid after fast stop: %v", err)
	}
	p2, err := pg.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Stop(ctx, pg.Fast)
	if err := p2.WaitReady(ctx, p2.ConnString("postgres", "s3cr'et", "postgres")); err != nil {
		t.Fatal(err)
	}
}

func TestStartFailureIsReported(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := pgtest.Dir(t)
	p, err := pg.Start(ctx, pg.Options{DataDir: filepath.Join(dir, "missing"), SocketDir: filepath.Join(dir, "sock")})
	if err != nil {
		t.Fatal(err)
	}
	err = p.WaitReady(ctx, p.ConnString("postgres", "", "postgres"))
	if !errors.Is(err, pg.ErrExited) {
		t.Fatalf("want ErrExited, got %v", err)
	}
}

func TestPgtestClusterHasVector(t *testing.T) {
	c := pgtest.New(t, nil)
	var d float64
	if err := c.Connect(t).QueryRow(context.Background(), "SELECT '[1,2,3]'::vector <-> '[4,6,3]'::vector").Scan(&d); err != nil {
		t.Fatal(err)
	}
	if d != 5 {
		t.Fatalf("distance %v, want 5", d)
	}
}
