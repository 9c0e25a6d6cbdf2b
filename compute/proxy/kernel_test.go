package proxy_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/offshootdb/offshoot/compute"
	"github.com/offshootdb/offshoot/compute/pg"
	"github.com/offshootdb/offshoot/compute/proxy"
	"github.com/prometheus/client_golang/prometheus"
)

// The kernel path's tests: every plain-text TCP connection below must be
// forwarded by the kernel (splices counts it), and behave as on the copy
// path.

// requireKernel fails the test when this host cannot forward in the
// kernel: the kernel path's tests would otherwise test the copy loop.
func requireKernel(t *testing.T, srv *proxy.Server) {
	t.Helper()
	if err := proxy.KernelPath(); err != nil {
		t.Fatalf("kernel path unavailable (needs root and a kernel with BPF sockmap): %v", err)
	}
	if path, why := srv.Path(); path != "kernel" {
		t.Fatalf("proxy path %s (%s), want kernel", path, why)
	}
}

// counters returns a counter vector of the proxy's metrics by its labels'
// values joined with "/".
func counters(t *testing.T, srv *proxy.Server, name string) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(srv.Collector())
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetValue())
			}
			out[strings.Join(ls, "/")] = m.GetCounter().GetValue()
		}
	}
	return out
}

// waitConns waits until the branch's endpoint counts n connections (the
// proxy holds one lease per open connection).
func waitConns(t *testing.T, m *compute.Manager, branch string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for m.Status("p", branch).Connections != n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d connections, want %d", branch, m.Status("p", branch).Connections, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestKernelPgbench runs pgbench's TPC-B through the kernel path and
// checks its invariant: every transaction adds the same delta to one
// account, teller and branch and logs it once, so the four sums agree and
// the history has one row per transaction.
func TestKernelPgbench(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(pg.BinDir(), "pgbench")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("pgbench not installed: %v", err)
	}
	e := newEnv(t, compute.Config{}, proxy.Config{}, "main")
	requireKernel(t, e.srv)
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(e.port), "-U", "postgres"}, args...)...)
		cmd.Env = append(os.Environ(), "PGSSLMODE=disable", "PGOPTIONS=endpoint=main")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("pgbench %v: %v\n%s", args, err, out)
		}
	}
	run("-i", "-q", "-s", "1", "postgres")
	const clients, perClient = 4, 250
	run("-c", strconv.Itoa(clients), "-j", "2", "-t", strconv.Itoa(perClient), "postgres")

	conn := e.connect(t, "endpoint=main")
	var a, b, tl, h, n int64
	if err := conn.QueryRow(context.Background(), `SELECT
		(SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(bbalance) FROM pgbench_branches),
		(SELECT sum(tbalance) FROM pgbench_tellers), (SELECT coalesce(sum(delta), 0) FROM pgbench_history),
		(SELECT count(*) FROM pgbench_history)`).Scan(&a, &b, &tl, &h, &n); err != nil {
		t.Fatal(err)
	}
	if a != b || b != tl || tl != h || n != clients*perClient {
		t.Fatalf("balances accounts %d branches %d tellers %d history %d, %d transactions; want equal sums and %d", a, b, tl, h, n, clients*perClient)
	}
	conn.Close(context.Background())
	waitConns(t, e.m, "main", 0)
	// pgbench -i, its run's clients and the check: all on the kernel path.
	sp := counters(t, e.srv, "offshoot_proxy_splices_total")
	if sp["kernel/"] < clients+2 || len(sp) != 1 {
		t.Fatalf("splices %v, want only kernel, at least %d", sp, clients+2)
	}
	kb := counters(t, e.srv, "offshoot_proxy_kernel_bytes_total")
	if kb["to_endpoint"] < 100*clients*perClient || kb["to_client"] < 100*clients*perClient {
		t.Fatalf("kernel bytes %v: less than the transactions' queries and answers", kb)
	}
}

// TestKernelLargeTransfers moves tens of megabytes each way on the kernel
// path: a COPY FROM STDIN and a large result, checked byte for byte by
// Postgres' own aggregates.
func TestKernelLargeTransfers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, compute.Config{}, proxy.Config{}, "main")
	requireKernel(t, e.srv)
	ctx := context.Background()
	conn := e.connect(t, "endpoint=main")
	defer conn.Close(ctx)
	execSQL(t, conn, "CREATE TABLE t(i int, v text)")
	const rows = 20000
	var sb strings.Builder
	for i := range rows {
		fmt.Fprintf(&sb, "%d\t%s\n", i, strings.Repeat(strconv.Itoa(i%10), 1000))
	}
	tag, err := conn.PgConn().CopyFrom(ctx, strings.NewReader(sb.String()), "COPY t FROM STDIN")
	if err != nil || tag.RowsAffected() != rows {
		t.Fatalf("copy: %v, %v", tag, err)
	}
	want := scalar(t, conn, "SELECT md5(string_agg(i || v, ',' ORDER BY i)) FROM t")
	rs, err := conn.Query(ctx, "SELECT i, v FROM t ORDER BY i")
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for rs.Next() {
		var i int
		var v string
		if err := rs.Scan(&i, &v); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, strconv.Itoa(i)+v)
	}
	if rs.Err() != nil {
		t.Fatal(rs.Err())
	}
	var got string
	if err := conn.QueryRow(ctx, "SELECT md5($1)", strings.Join(parts, ",")).Scan(&got); err != nil || got != want {
		t.Fatalf("%d rows read back: md5 %s, want %s (%v)", len(parts), got, want, err)
	}
	if sp := counters(t, e.srv, "offshoot_proxy_splices_total"); sp["kernel/"] != 1 || len(sp) != 1 {
		t.Fatalf("splices %v, want one on the kernel path", sp)
	}
}

// TestKernelCancel: a CancelRequest, routed by the key the proxy saw
// before the switch, cancels a pg_sleep on a kernel-path connection, which
// stays usable.
func TestKernelCancel(t *testing.T) {
	t.Parallel()
	e := newEnv(t, compute.Config{}, proxy.Config{}, "main")
	requireKernel(t, e.srv)
	cfg, err := pgx.ParseConfig(e.dsn("endpoint=main"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: time.Minute}
	}
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for i := range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		_, err = conn.Exec(ctx, "SELECT pg_sleep(60)")
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
			t.Fatalf("cancel %d: want query_canceled (57014), got %v", i, err)
		}
		if got := scalar(t, conn, "SELECT 'still usable'"); got != "still usable" {
			t.Fatal(got)
		}
	}
	if sp := counters(t, e.srv, "offshoot_proxy_splices_total"); sp["kernel/"] != 1 {
		t.Fatalf("splices %v, want the connection on the kernel path", sp)
	}
}

// TestKernelClientGoneMidQuery: a client that vanishes during a query
// releases its lease at once, and the proxy closes the endpoint's side so
// the backend ends (it checks its socket every 50 ms) instead of
// finishing a 60 s sleep.
func TestKernelClientGoneMidQuery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, compute.Config{}, proxy.Config{}, "main")
	requireKernel(t, e.srv)
	ctx := context.Background()
	watch := e.connect(t, "endpoint=main")
	defer watch.Close(ctx)
	conn := e.connect(t, "endpoint=main")
	pid := conn.PgConn().PID()
	execSQL(t, conn, "SET client_connection_check_interval = '50ms'")
	go conn.Exec(ctx, "SELECT pg_sleep(60)")
	active := func() int {
		var n int
		if err := watch.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var n int
		if err := watch.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'", pid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("pg_sleep never started")
		}
	}
	waitConns(t, e.m, "main", 2)
	conn.PgConn().Conn().Close() // gone, without a Terminate
	waitConns(t, e.m, "main", 1)
	for deadline := time.Now().Add(30 * time.Second); active() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("backend %d still there 30 s after its client left", pid)
		}
	}
	if sp := counters(t, e.srv, "offshoot_proxy_splices_total"); sp["kernel/"] != 2 {
		t.Fatalf("splices %v, want both connections on the kernel path", sp)
	}
}

// TestKernelEndpointRestart: an endpoint suspended (fast shutdown) under a
// kernel-path connection: the client gets Postgres' FATAL 57P01, whose
// bytes the kernel forwards as the endpoint closes, its lease is
// released, and the next connection wakes the endpoint. Then the same
// with the postmaster killed (SIGKILL).
func TestKernelEndpointRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, compute.Config{}, proxy.Config{}, "main")
	requireKernel(t, e.srv)
	ctx := context.Background()
	conn := e.connect(t, "endpoint=main")
	execSQL(t, conn, "CREATE TABLE t AS SELECT 'kept'::text AS v")
	if err := e.m.Suspend(ctx, "p", "main"); err != nil {
		t.Fatal(err)
	}
	waitConns(t, e.m, "main", 0)
	_, err := conn.Exec(ctx, "SELECT 1")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57P01" {
		t.Fatalf("after suspend: want admin_shutdown (57P01), got %v", err)
	}
	conn.Close(ctx)

	conn = e.connect(t, "endpoint=main")
	if got := scalar(t, conn, "SELECT v FROM t"); got != "kept" {
		t.Fatalf("after wake: %q", got)
	}
	if err := killAndWait(e.m.Status("p", "main").Pid); err != nil {
		t.Fatal(err)
	}
	waitConns(t, e.m, "main", 0)
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("query answered by a killed endpoint")
	}
	conn.Close(ctx)
	conn = e.connect(t, "endpoint=main")
	defer conn.Close(ctx)
	if got := scalar(t, conn, "SELECT v FROM t"); got != "kept" {
		t.Fatalf("after kill: %q", got)
	}
	if sp := counters(t, e.srv, "offshoot_proxy_splices_total"); sp["kernel/"] != 3 || len(sp) != 1 {
		t.Fatalf("splices %v, want 3 on the kernel path", sp)
	}
}

// TestFallbackTLS: a TLS connection takes the copy path (the proxy must
// decrypt), counted with reason tls, and works, large results included.
func TestFallbackTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, compute.Config{}, proxy.Config{TLS: selfSigned(t)}, "main")
	requireKernel(t, e.srv)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, strings.Replace(e.dsn("endpoint=main"), "sslmode=disable", "sslmode=require", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, ok := conn.PgConn().Conn().(*tls.Conn); !ok {
		t.Fatalf("connection is %T, not TLS", conn.PgConn().Conn())
	}
	if got := scalar(t, conn, "SELECT sum(length(repeat('x', i)))::text FROM generate_series(1, 3000) i"); got != "4501500" {
		t.Fatal(got)
	}
	if got := scalar(t, conn, "SELECT length(string_agg(repeat('y', 1000), '')) FROM generate_series(1, 5000)"); got != "5000000" {
		t.Fatal(got)
	}
	if sp := counters(t, e.srv, "offshoot_proxy_splices_total"); sp["copy/tls"] != 1 || len(sp) != 1 {
		t.Fatalf("splices %v, want one copy/tls", sp)
	}
}

// TestFallbackUnixClientAndCopyOnly: a client on the proxy's Unix socket
// takes the copy path (unix_client), and Config.CopyOnly sends every
// connection there (disabled), which Path reports.
func TestFallbackUnixClientAndCopyOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, compute.Config{}, proxy.Config{}, "main")
	requireKernel(t, e.srv)
	ctx := context.Background()
	u, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres options='endpoint=main'",
		filepath.Dir(e.srv.SocketPath()), e.port))
	if err != nil {
		t.Fatal(err)
	}
	if got := scalar(t, u, "SELECT 'unix'"); got != "unix" {
		t.Fatal(got)
	}
	u.Close(ctx)
	if sp := counters(t, e.srv, "offshoot_proxy_splices_total"); sp["copy/unix_client"] != 1 || len(sp) != 1 {
		t.Fatalf("splices %v, want one copy/unix_client", sp)
	}

	c := newEnv(t, compute.Config{}, proxy.Config{CopyOnly: true}, "main")
	if path, why := c.srv.Path(); path != "copy" || why == "" {
		t.Fatalf("CopyOnly: path %q (%q), want copy with a reason", path, why)
	}
	conn := c.connect(t, "endpoint=main")
	defer conn.Close(ctx)
	if got := scalar(t, conn, "SELECT 'copied'"); got != "copied" {
		t.Fatal(got)
	}
	if sp := counters(t, c.srv, "offshoot_proxy_splices_total"); sp["copy/disabled"] != 1 || len(sp) != 1 {
		t.Fatalf("splices %v, want one copy/disabled", sp)
	}
}

// TestPipelinedStartupTakesCopyPath: a client that sends its first query
// before ReadyForQuery (pipelining) cannot be switched without risking
// the order of the answers; it stays on the copy path (pipelined) and gets
// every answer in order.
func TestPipelinedStartupTakesCopyPath(t *testing.T) {
	t.Parallel()
	e := newEnv(t, compute.Config{}, proxy.Config{}, "main")
	requireKernel(t, e.srv)
	// Wake the endpoint first, so the startup below is quick.
	e.connect(t, "endpoint=main").Close(context.Background())
	c, err := net.Dial("tcp", e.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	fe := pgproto3.NewFrontend(c, c)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "postgres", "database": "postgres", "options": "endpoint=main"}})
	fe.Send(&pgproto3.Query{String: "SELECT 42"})
	fe.Send(&pgproto3.Query{String: "SELECT 43"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var rows []string
	for ready := 0; ready < 3; {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("after %d ReadyForQuery: %v", ready, err)
		}
		switch m := msg.(type) {
		case *pgproto3.ReadyForQuery:
			ready++
		case *pgproto3.DataRow:
			rows = append(rows, fmt.Sprintf("%d:%s", ready, m.Values[0]))
		case *pgproto3.ErrorResponse:
			t.Fatalf("error: %+v", m)
		}
	}
	if strings.Join(rows, ",") != "1:42,2:43" {
		t.Fatalf("rows %v, want 42 after the first ReadyForQuery and 43 after the second", rows)
	}
	fe.Send(&pgproto3.Terminate{})
	_ = fe.Flush()
	sp := counters(t, e.srv, "offshoot_proxy_splices_total")
	if sp["copy/pipelined"] != 1 || sp["kernel/"] != 1 {
		t.Fatalf("splices %v, want the pipelining client on copy/pipelined (and the first on the kernel path)", sp)
	}
}
