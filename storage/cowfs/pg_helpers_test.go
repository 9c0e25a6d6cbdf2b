package cowfs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/offshootdb/offshoot/compute/pg"
)

// server is a postmaster started by a test on some data directory.
type server struct {
	t        testing.TB
	p        *pg.Postmaster
	opts     pg.Options
	password string
	cs       string
}

// testSettings keep test clusters small.
var testSettings = map[string]string{
	"shared_buffers":  "32MB",
	"max_connections": "30",
	"max_wal_size":    "256MB",
}

// startPG starts Postgres on data with its socket and log in a fresh
// directory below dir, waits until it answers, and stops it (immediately)
// when the test ends if the test has not.
func startPG(t testing.TB, data, dir, password string, settings map[string]string) *server {
	t.Helper()
	return startPGWaiting(t, data, dir, password, settings, false)
}

// startPGAsCompute is startPG waiting as compute does (compute/start.go):
// until postmaster.pid says the server accepts connections, checked every
// 2 ms, without a connection of its own. Benchmarks that time a start use
// it: startPG's connection attempts back off to 100 ms apart, and a timed
// start would include up to that much of its polling.
func startPGAsCompute(t testing.TB, data, dir, password string, settings map[string]string) *server {
	t.Helper()
	return startPGWaiting(t, data, dir, password, settings, true)
}

// startPGWaiting starts Postgres on data (settings over testSettings), its
// socket and log in a new directory under dir, waits for it by
// connecting or, with pidFile, on postmaster.pid, and stops it
// (immediate) at cleanup.
func startPGWaiting(t testing.TB, data, dir, password string, settings map[string]string, pidFile bool) *server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run, err := os.MkdirTemp(dir, "pg-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(run, 0o755); err != nil {
		t.Fatal(err)
	}
	all := map[string]string{}
	for k, v := range testSettings {
		all[k] = v
	}
	for k, v := range settings {
		all[k] = v
	}
	opts := pg.Options{DataDir: data, SocketDir: filepath.Join(run, "sock"), LogFile: filepath.Join(run, "log"), Settings: all}
	p, err := pg.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, p: p, opts: opts, password: password, cs: p.ConnString("postgres", password, "postgres")}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer scancel()
		_ = p.Stop(sctx, pg.Immediate)
	})
	if pidFile {
		err = p.WaitPidReady(ctx)
	} else {
		err = p.WaitReady(ctx, s.cs)
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, pg.LastLines(opts.LogFile, 30))
	}
	return s
}

func (s *server) log(n int) string { return pg.LastLines(s.opts.LogFile, n) }

func (s *server) connect(ctx context.Context) *pgx.Conn {
	s.t.Helper()
	conn, err := pgx.Connect(ctx, s.cs)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// exec runs statements on a fresh connection.
func (s *server) exec(ctx context.Context, sqls ...string) {
	s.t.Helper()
	conn := s.connect(ctx)
	defer conn.Close(ctx)
	for _, q := range sqls {
		if _, err := conn.Exec(ctx, q); err != nil {
			s.t.Fatalf("%s: %v\n%s", q, err, s.log(20))
		}
	}
}

// queryInt runs a query returning one integer.
func (s *server) queryInt(ctx context.Context, q string) int64 {
	s.t.Helper()
	conn := s.connect(ctx)
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
		s.t.Fatalf("%s: %v", q, err)
	}
	return n
}

func (s *server) stop(mode pg.StopMode) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.p.Stop(ctx, mode); err != nil {
		s.t.Fatal(err)
	}
}

// client runs a PostgreSQL client program against the server.
func (s *server) client(ctx context.Context, prog string, args ...string) (string, error) {
	all := append([]string{"-h", s.opts.SocketDir, "-p", strconv.Itoa(s.opts.SocketPort()), "-U", "postgres"}, args...)
	cmd := exec.CommandContext(ctx, pg.Bin(prog), all...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+s.password, "PGSSLMODE=disable")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", prog, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// amcheck runs pg_amcheck on every database and fails the test on any
// corruption it reports.
func (s *server) amcheck(ctx context.Context) {
	s.t.Helper()
	out, err := s.client(ctx, "pg_amcheck", "--all", "--install-missing", "--heapallindexed", "--parent-check", "-d", "postgres")
	if err != nil {
		s.t.Fatalf("pg_amcheck: %v\n%s", err, s.log(10))
	}
	var report []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "NOTICE:") {
			report = append(report, l)
		}
	}
	if len(report) > 0 {
		s.t.Fatalf("pg_amcheck reported:\n%s", strings.Join(report, "\n"))
	}
}

var tpsRE = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// pgbench runs pgbench with args against database postgres and returns
// its tps.
func (s *server) pgbench(ctx context.Context, args ...string) float64 {
	s.t.Helper()
	tps, _ := s.pgbenchOut(ctx, args...)
	return tps
}

// pgbenchOut is pgbench that also returns pgbench's report.
func (s *server) pgbenchOut(ctx context.Context, args ...string) (float64, string) {
	s.t.Helper()
	out, err := s.client(ctx, "pgbench", append(args, "postgres")...)
	if err != nil {
		s.t.Fatalf("%v\n%s", err, s.log(20))
	}
	m := tpsRE.FindStringSubmatch(out)
	if m == nil {
		return 0, out
	}
	tps, _ := strconv.ParseFloat(m[1], 64)
	return tps, out
}

// checkPgbenchInvariant checks TPC-B's balance invariant: every committed
// transaction added its delta to one account and one history row.
func (s *server) checkPgbenchInvariant(ctx context.Context) {
	s.t.Helper()
	a := s.queryInt(ctx, "SELECT coalesce(sum(abalance),0) FROM pgbench_accounts")
	h := s.queryInt(ctx, "SELECT coalesce(sum(delta),0) FROM pgbench_history")
	b := s.queryInt(ctx, "SELECT coalesce(sum(bbalance),0) FROM pgbench_branches")
	tl := s.queryInt(ctx, "SELECT coalesce(sum(tbalance),0) FROM pgbench_tellers")
	if a != h || b != h || tl != h {
		s.t.Fatalf("pgbench invariant broken: accounts %d branches %d tellers %d history %d", a, b, tl, h)
	}
	s.t.Logf("pgbench invariant holds: sum = %d over %d history rows", h, s.queryInt(ctx, "SELECT count(*) FROM pgbench_history"))
}

// pgxConnect connects to database db as the superuser.
func pgxConnect(ctx context.Context, s *server, db string) (*pgx.Conn, error) {
	return pgx.Connect(ctx, s.p.ConnString("postgres", s.password, db))
}
