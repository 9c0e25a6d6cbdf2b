package pg_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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

// TestEnsureUser creates one OS user from several goroutines at once: all
// get the same account, a system user with a group of its own.
func TestEnsureUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	const name = "osk_pgtest_ensure"
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	exec.Command("userdel", name).Run()
	users := make([]pg.OSUser, 4)
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			users[i], errs[i] = pg.EnsureUser(context.Background(), name)
		}()
	}
	wg.Wait()
	for i := range users {
		if errs[i] != nil || users[i] != users[0] {
			t.Fatalf("EnsureUser %d: %+v, %v; want %+v", i, users[i], errs[i], users[0])
		}
	}
	u := users[0]
	if u.Name != name || u.UID == 0 || u.UID >= 1000 || u.GID == 0 {
		t.Errorf("user %+v, want a system account named %s", u, name)
	}
	if pgu, err := pg.PostgresUser(); err == nil && u.GID == pgu.GID {
		t.Errorf("group %d is postgres', want a group of its own", u.GID)
	}
}

// TestPidReady: only a status line (the 8th) that says "ready" counts;
// a missing, short or starting postmaster.pid does not.
func TestPidReady(t *testing.T) {
	dir := t.TempDir()
	if pg.PidReady(dir) {
		t.Fatal("ready without postmaster.pid")
	}
	head := "123\n" + dir + "\n1700000000\n5432\n/tmp\n\n  1 2\n"
	for _, c := range []struct {
		content string
		want    bool
	}{
		{head, false},
		{head + "starting\n", false},
		{head + "ready   \n", true},
		{"123\nready\n", false},
	} {
		if err := os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte(c.content), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := pg.PidReady(dir); got != c.want {
			t.Errorf("PidReady with %q = %v, want %v", c.content, got, c.want)
		}
	}
}
