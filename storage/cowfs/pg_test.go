package cowfs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/offshootdb/offshoot/compute/pg"
	"github.com/offshootdb/offshoot/storage"
)

// TestPostgresOnBranch: initdb on a mount, start, create and insert,
// checkpoint, stop, restart: data intact and pg_amcheck clean; the
// cluster has pgvector and a password; an export of a view starts on plain
// disk.
func TestPostgresOnBranch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f := newFixture(t, nil)
	pw := f.initProject("p")
	m := f.mount("main", f.head("p", "main"), MountOptions{})

	s := startPG(t, m.Dir(), f.dir, pw, nil)
	s.exec(ctx,
		"CREATE TABLE t (id int PRIMARY KEY, v text, e vector(3))",
		"INSERT INTO t SELECT g, md5(g::text), ARRAY[g, g*2, g*3]::vector FROM generate_series(1, 50000) g",
		"CREATE INDEX ON t (v)",
		"CHECKPOINT",
		"INSERT INTO t SELECT g, md5(g::text), NULL FROM generate_series(50001, 60000) g",
	)
	s.stop(pg.Fast)

	s = startPG(t, m.Dir(), f.dir, pw, nil)
	if n := s.queryInt(ctx, "SELECT count(*) FROM t"); n != 60000 {
		t.Fatalf("after restart: %d rows, want 60000", n)
	}
	if n := s.queryInt(ctx, "SELECT count(*) FROM t WHERE v = md5('4242')"); n != 1 {
		t.Fatalf("index lookup: %d rows", n)
	}
	if n := s.queryInt(ctx, "SELECT sum(e[2]::int) FROM (SELECT e::real[] AS e FROM t WHERE e IS NOT NULL) x"); n != 2*50000*50001/2 {
		t.Fatalf("vector column sum %d", n)
	}
	if _, err := s.client(ctx, "psql", "-w", "-d", "postgres", "-c", "SELECT 1"); err != nil {
		t.Fatalf("superuser password: %v", err)
	}
	s.amcheck(ctx)

	// An export of a view of the running branch starts on plain disk.
	exp := filepath.Join(f.dir, "export")
	if err := Export(ctx, f.view("p", "main", storage.AtHead()), exp); err != nil {
		t.Fatal(err)
	}
	e := startPG(t, exp, f.dir, pw, nil)
	if n := e.queryInt(ctx, "SELECT count(*) FROM t"); n != 60000 {
		t.Fatalf("export: %d rows, want 60000", n)
	}
	e.amcheck(ctx)
}

// TestForkUnderLoad forks a branch while pgbench writes to it, starts
// Postgres on the fork (crash recovery), and checks the fork: amcheck,
// pgbench's balance invariant, and isolation both ways.
func TestForkUnderLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f := newFixture(t, nil)
	pw := f.initProject("p")
	a := startPG(t, f.mount("a", f.head("p", "main"), MountOptions{}).Dir(), f.dir, pw, nil)
	a.pgbench(ctx, "-i", "-q", "-s", "1")

	done := make(chan float64, 1)
	go func() {
		out, err := a.client(ctx, "pgbench", "-c", "4", "-j", "2", "-T", "8", "postgres")
		if err != nil {
			t.Error(err)
		}
		done <- parseTPS(out)
	}()
	time.Sleep(4 * time.Second)
	start := time.Now()
	if _, err := f.s.Fork("p", "main", "b", storage.AtHead(), storage.BranchOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("fork took %v", time.Since(start))
	mb := f.mount("b", f.head("p", "b"), MountOptions{})
	removePidFile(t, mb.Dir())
	b := startPG(t, mb.Dir(), f.dir, pw, nil)
	t.Logf("fork answered its first query %v after the fork started", time.Since(start))
	b.amcheck(ctx)
	b.checkPgbenchInvariant(ctx)
	hb := b.queryInt(ctx, "SELECT count(*) FROM pgbench_history")

	tps := <-done
	t.Logf("pgbench on the parent: %.0f tps", tps)
	a.checkPgbenchInvariant(ctx)
	ha := a.queryInt(ctx, "SELECT count(*) FROM pgbench_history")
	if ha <= hb {
		t.Errorf("parent has %d history rows, fork %d: the parent should have kept running", ha, hb)
	}
	if n := b.queryInt(ctx, "SELECT count(*) FROM pgbench_history"); n != hb {
		t.Errorf("the parent's writes leaked into the fork: %d -> %d rows", hb, n)
	}
	a.exec(ctx, "CREATE TABLE only_a (x int)", "INSERT INTO only_a VALUES (1)")
	b.exec(ctx, "CREATE TABLE only_b (x int)", "INSERT INTO only_b VALUES (2)", "CHECKPOINT")
	if n := a.queryInt(ctx, "SELECT count(*) FROM pg_class WHERE relname = 'only_b'"); n != 0 {
		t.Error("the fork's table is visible on the parent")
	}
	if n := b.queryInt(ctx, "SELECT count(*) FROM pg_class WHERE relname = 'only_a'"); n != 0 {
		t.Error("the parent's table is visible on the fork")
	}
	a.amcheck(ctx)
}

func parseTPS(out string) float64 {
	m := tpsRE.FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	var v float64
	fmt.Sscan(m[1], &v)
	return v
}

// TestCrashSafety SIGKILLs the process serving the mount while a client
// commits rows and records each id once COMMIT has returned; after a
// restart every acknowledged row is there.
func TestCrashSafety(t *testing.T) { crashSafety(t, "") }

// TestCrashSafetyLocalWAL is TestCrashSafety with the WAL on local disk
// (MountOptions.LocalWAL). Commits do not wait for the store then, so they
// go on after the kill until Postgres is stopped too; the restarted
// mount finds the local directory, the store absorbs it, and every
// acknowledged row is there, also those committed after the kill.
func TestCrashSafetyLocalWAL(t *testing.T) { crashSafety(t, "mount") }

// TestCrashSafetyAbsorbLocalWAL: the same crash, recovered as the server
// recovers at start-up: AbsorbLocalWAL takes the local directory into the
// store and removes it, and the branch then runs without the tier, from
// the store alone.
func TestCrashSafetyAbsorbLocalWAL(t *testing.T) { crashSafety(t, "absorb") }

// crashSafety runs the crash test with the WAL through the mount
// (recovery ""), or on local disk, recovered by the next Mount ("mount")
// or by AbsorbLocalWAL ("absorb").
func crashSafety(t *testing.T, recovery string) {
	localWAL := recovery != ""
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f := newFixture(t, nil)
	pw := f.initProject("p")
	f.close()
	run := filepath.Join(f.dir, "run")
	mnt := f.mountDir("run/data")
	// postmaster.pid volatile, as compute mounts a branch.
	sp := serveSpec{Store: f.storeDir, Project: "p", Branch: "main", Mount: mnt, Volatile: []string{"postmaster.pid"}}
	if localWAL {
		sp.LocalWAL = filepath.Join(f.dir, "wal-main")
	}
	srv := startServer(t, sp)
	s := startPG(t, mnt, f.dir, pw, nil)
	s.exec(ctx, "CREATE TABLE acked (id int PRIMARY KEY, pad text)")

	var acked []int32
	errc := make(chan error, 1)
	go func() {
		conn, err := pgx.Connect(ctx, s.cs)
		if err != nil {
			errc <- err
			return
		}
		defer conn.Close(context.Background())
		for id := int32(1); ; id++ {
			if _, err := conn.Exec(ctx, "INSERT INTO acked VALUES ($1, repeat('x', 500))", id); err != nil {
				errc <- err
				return
			}
			acked = append(acked, id) // COMMIT returned
		}
	}()
	time.Sleep(3 * time.Second)
	srv.kill()
	if localWAL {
		time.Sleep(time.Second)
		s.stop(pg.Immediate)
	}
	err := <-errc
	t.Logf("client stopped after %d acknowledged commits: %v", len(acked), err)
	if len(acked) < 50 {
		t.Fatalf("only %d commits before the crash", len(acked))
	}
	if !localWAL {
		s.stop(pg.Immediate)
	}

	cleaned, err := CleanStale(run)
	if err != nil || len(cleaned) != 1 {
		t.Fatalf("clean stale: %v %v", cleaned, err)
	}
	f.open()
	h := f.head("p", "main")
	o := MountOptions{LocalWAL: sp.LocalWAL, Volatile: sp.Volatile}
	if recovery == "absorb" {
		if err := AbsorbLocalWAL(h, sp.LocalWAL, slog.Default()); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(sp.LocalWAL); !os.IsNotExist(err) {
			t.Fatalf("the local WAL directory after AbsorbLocalWAL: %v", err)
		}
		o = MountOptions{Volatile: sp.Volatile}
	}
	m := f.mount("run/data", h, o)
	s = startPG(t, m.Dir(), f.dir, pw, nil)
	conn := s.connect(ctx)
	var n int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM acked WHERE id = ANY($1)", acked).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != int64(len(acked)) {
		t.Fatalf("%d of %d acknowledged commits survived the crash", n, len(acked))
	}
	s.amcheck(ctx)
}
