package proxy_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/offshootdb/offshoot/compute"
	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/offshootdb/offshoot/compute/proxy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

type env struct {
	vols compute.DirVolumes
	m    *compute.Manager
	srv  *proxy.Server
	port int
	// mountPoint is branch main's mount on the store (newStoreEnv).
	mountPoint string
}

// quiet discards logs unless OFFSHOOT_TEST_LOG is set.
var quiet = func() *slog.Logger {
	if os.Getenv("OFFSHOOT_TEST_LOG") != "" {
		return slog.Default()
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}()

// newEnv runs a Manager (timers never, unless cfg says otherwise) and a
// proxy on an ephemeral port with default project "p", with the given
// branches of project p.
func newEnv(t testing.TB, cfg compute.Config, pcfg proxy.Config, branches ...string) *env {
	t.Helper()
	dir := pgtest.Dir(t)
	e := &env{vols: compute.DirVolumes{Root: filepath.Join(dir, "branches")}}
	for _, b := range branches {
		p, _ := e.vols.Path("p", b)
		pgtest.CopyTemplate(t, p)
	}
	cfg.Volumes = e.vols
	cfg.RunDir = filepath.Join(dir, "run")
	if cfg.Timers == nil {
		cfg.Timers = &compute.Timers{}
	}
	cfg.Logger = quiet
	m, err := compute.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	pcfg.Addr = "127.0.0.1:0"
	pcfg.SocketDir = dir
	pcfg.Manager = m
	pcfg.DefaultProject = "p"
	pcfg.Logger = quiet
	srv, err := proxy.New(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	e.m, e.srv, e.port = m, srv, srv.Addr().(*net.TCPAddr).Port
	return e
}

// dsn is a connection string through the proxy with the given options.
func (e *env) dsn(options string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable options='%s'", e.port, options)
}

func (e *env) connect(t testing.TB, options string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, e.dsn(options))
	if err != nil {
		var pgErr *pgconn.PgError
		errors.As(err, &pgErr)
		if pgErr != nil {
			t.Logf("detail: %s", pgErr.Detail)
		}
		t.Fatalf("connect with options %q: %v", options, err)
	}
	return conn
}

func scalar(t testing.TB, conn *pgx.Conn, sql string) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(context.Background(), sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func execSQL(t testing.TB, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func waitState(t *testing.T, m *compute.Manager, branch string, s compute.State) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for m.Status("p", branch).State != s {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %+v, want %s", branch, m.Status("p", branch), s)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestAutosuspendAndWake: a branch goes idle → suspended → stopped on its
// own, and a connection through the proxy wakes it from each state with
// its data. An open connection, idle in transaction, keeps it running.
func TestAutosuspendAndWake(t *testing.T) {
	t.Parallel()
	e := newEnv(t, compute.Config{}, proxy.Config{}, "main")
	ctx := context.Background()
	conn := e.connect(t, "endpoint=main")
	execSQL(t, conn, "CREATE TABLE t AS SELECT 'v1'::text AS v")
	execSQL(t, conn, "BEGIN")
	if n := e.m.Status("p", "main").Connections; n != 1 {
		t.Fatalf("connections %d, want 1", n)
	}
	e.m.SetTimers("p", "main", &compute.Timers{IdleAfter: 20 * time.Millisecond, SuspendAfter: 40 * time.Millisecond})
	time.Sleep(200 * time.Millisecond)
	if s := e.m.Status("p", "main").State; s != compute.Running {
		t.Fatalf("idle in transaction for 200ms with IdleAfter 20ms: %s, want running", s)
	}
	execSQL(t, conn, "COMMIT")
	conn.Close(ctx)

	check := func(from compute.State) {
		t.Helper()
		before := e.m.Status("p", "main")
		if before.State != from {
			t.Fatalf("want %s before connecting, got %+v", from, before)
		}
		c := e.connect(t, "project=p branch=main")
		defer c.Close(ctx)
		if got := scalar(t, c, "SELECT v FROM t"); got != "v1" {
			t.Fatalf("woken from %s: %q", from, got)
		}
		after := e.m.Status("p", "main")
		wantWakes := before.Wakes + 1
		if from == compute.Idle {
			wantWakes = before.Wakes
			if after.Pid != before.Pid {
				t.Fatalf("idle endpoint restarted: pid %d → %d", before.Pid, after.Pid)
			}
		}
		if after.State != compute.Running || after.Wakes != wantWakes {
			t.Fatalf("woken from %s: %+v, want running with %d wakes", from, after, wantWakes)
		}
	}
	// idle (never suspended)
	e.m.SetTimers("p", "main", &compute.Timers{IdleAfter: 20 * time.Millisecond})
	waitState(t, e.m, "main", compute.Idle)
	check(compute.Idle)
	// suspended (never stopped)
	e.m.SetTimers("p", "main", &compute.Timers{IdleAfter: 20 * time.Millisecond, SuspendAfter: 60 * time.Millisecond})
	waitState(t, e.m, "main", compute.Suspended)
	check(compute.Suspended)
	// stopped
	e.m.SetTimers("p", "main", &compute.Timers{IdleAfter: 20 * time.Millisecond, SuspendAfter: 60 * time.Millisecond, StopAfter: 100 * time.Millisecond})
	waitState(t, e.m, "main", compute.Stopped)
	check(compute.Stopped)
}

// TestTwoBranches: two branches at once through one proxy each see only
// their own writes.
func TestTwoBranches(t *testing.T) {
	t.Parallel()
	e := newEnv(t, compute.Config{}, proxy.Config{}, "main", "feature")
	ctx := context.Background()
	a := e.connect(t, "endpoint=main")
	defer a.Close(ctx)
	// The second client comes through the proxy's Unix socket.
	b, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres options='endpoint=feature -c application_name=feat'",
		filepath.Dir(e.srv.SocketPath()), e.port))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	execSQL(t, a, "CREATE TABLE t(v text); INSERT INTO t VALUES ('main')")
	execSQL(t, b, "CREATE TABLE t(v text); INSERT INTO t VALUES ('feature')")
	if got := scalar(t, a, "SELECT string_agg(v, ',') FROM t"); got != "main" {
		t.Fatalf("main sees %q", got)
	}
	if got := scalar(t, b, "SELECT string_agg(v, ',') FROM t"); got != "feature" {
		t.Fatalf("feature sees %q", got)
	}
	// Remaining options are forwarded.
	if got := scalar(t, b, "SHOW application_name"); got != "feat" {
		t.Fatalf("application_name %q", got)
	}
}

// TestCancel: a pgx context cancel (a CancelRequest through the proxy) and
// pg_cancel_backend both cancel a running pg_sleep(60).
func TestCancel(t *testing.T) {
	t.Parallel()
	e := newEnv(t, compute.Config{}, proxy.Config{}, "main")
	cfg, err := pgx.ParseConfig(e.dsn("endpoint=main"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		// Send a CancelRequest at once; only close the socket after a
		// minute, so a lost cancel shows as a different error.
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: time.Minute}
	}
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	_, err = conn.Exec(ctx, "SELECT pg_sleep(60)")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		t.Fatalf("want query_canceled (57014), got %v", err)
	}
	if got := scalar(t, conn, "SELECT 'still usable'"); got != "still usable" {
		t.Fatal(got)
	}

	// pg_cancel_backend from a second connection through the proxy.
	victim := e.connect(t, "endpoint=main")
	defer victim.Close(context.Background())
	pid := victim.PgConn().PID()
	errc := make(chan error, 1)
	go func() {
		_, err := victim.Exec(context.Background(), "SELECT pg_sleep(60)")
		errc <- err
	}()
	for {
		var n int
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND query LIKE '%pg_sleep%' AND state = 'active'", pid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	var ok bool
	if err := conn.QueryRow(context.Background(), "SELECT pg_cancel_backend($1)", pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_cancel_backend: %v %v", ok, err)
	}
	if err := <-errc; !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		t.Fatalf("pg_cancel_backend: want 57014, got %v", err)
	}
}

// TestCapacity: with two running endpoints allowed, waking a third
// suspends the least recently used idle one; with both in use, the client
// gets the capacity ErrorResponse.
func TestCapacity(t *testing.T) {
	t.Parallel()
	e := newEnv(t, compute.Config{MaxRunning: 2}, proxy.Config{}, "a", "b", "c")
	ctx := context.Background()
	e.connect(t, "endpoint=a").Close(ctx)
	e.connect(t, "endpoint=b").Close(ctx)
	c := e.connect(t, "endpoint=c")
	defer c.Close(ctx)
	if s := e.m.Status("p", "a").State; s != compute.Suspended {
		t.Fatalf("a is %s, want suspended", s)
	}
	b := e.connect(t, "endpoint=b")
	defer b.Close(ctx)
	_, err := pgx.Connect(ctx, e.dsn("endpoint=a"))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "53300" || !strings.Contains(pgErr.Message, "too many active branches") || pgErr.Hint == "" {
		t.Fatalf("want 53300 too many active branches with a hint, got %v", err)
	}
}

// TestKill9 through the proxy: the next connection restarts the endpoint
// and sees the committed data.
func TestKill9(t *testing.T) {
	t.Parallel()
	e := newEnv(t, compute.Config{}, proxy.Config{}, "main")
	ctx := context.Background()
	conn := e.connect(t, "endpoint=main")
	execSQL(t, conn, "CREATE TABLE t AS SELECT 'committed'::text AS v")
	conn.Close(ctx)
	pid := e.m.Status("p", "main").Pid
	if err := killAndWait(pid); err != nil {
		t.Fatal(err)
	}
	conn = e.connect(t, "endpoint=main")
	defer conn.Close(ctx)
	if got := scalar(t, conn, "SELECT v FROM t"); got != "committed" {
		t.Fatalf("got %q", got)
	}
}

func TestErrorResponses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, compute.Config{}, proxy.Config{}, "main")
	ctx := context.Background()
	for _, tc := range []struct{ options, code, msg string }{
		{"", "08004", "no endpoint=<branch>"},
		{"-c work_mem=1MB", "08004", "no endpoint=<branch>"},
		{"endpoint=main branch=other", "08004", "two different values"},
		{"endpoint=nope", "3D000", "branch not found: p/nope"},
		{"endpoint=main project=other", "3D000", "branch not found: other/main"},
	} {
		_, err := pgx.Connect(ctx, e.dsn(tc.options))
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != tc.code || !strings.Contains(pgErr.Message, tc.msg) || pgErr.Hint == "" {
			t.Errorf("options %q: want %s %q with a hint, got %v", tc.options, tc.code, tc.msg, err)
		}
	}
	// GSSEncRequest and SSLRequest get 'N' on one connection, then an
	// oversized packet gets 08P01.
	c, err := net.Dial("tcp", e.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	for _, code := range []uint32{80877104, 80877103} {
		c.Write(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), code))
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'N' {
			t.Fatalf("request %d: %q %v", code, b, err)
		}
	}
	c.Write(binary.BigEndian.AppendUint32(nil, 20000))
	if er := readError(t, c); er.Code != "08P01" || !strings.Contains(er.Message, "oversized") {
		t.Fatalf("oversized: %+v", er)
	}

	// Every refusal is counted by kind.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e.srv.Collector())
	want := `
# HELP offshoot_proxy_errors_total Connections refused or dropped before the splice, by kind.
# TYPE offshoot_proxy_errors_total counter
offshoot_proxy_errors_total{kind="no_route"} 3
offshoot_proxy_errors_total{kind="oversized"} 1
offshoot_proxy_errors_total{kind="unknown_branch"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "offshoot_proxy_errors_total"); err != nil {
		t.Fatal(err)
	}
}

// readError reads an ErrorResponse and expects the connection closed after it.
func readError(t *testing.T, c net.Conn) *pgproto3.ErrorResponse {
	t.Helper()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if len(b) < 5 || b[0] != 'E' || int(binary.BigEndian.Uint32(b[1:]))+1 != len(b) {
		t.Fatalf("want one ErrorResponse then EOF, got %q", b)
	}
	var er pgproto3.ErrorResponse
	if err := er.Decode(b[5:]); err != nil {
		t.Fatal(err)
	}
	return &er
}

// TestGarbage throws random bytes, bad lengths and truncated packets at
// the proxy, many at once; each gets an ErrorResponse or a close, never a
// hang, and the proxy then still serves.
func TestGarbage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, compute.Config{}, proxy.Config{StartupTimeout: 300 * time.Millisecond}, "main")
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := mrand.New(mrand.NewPCG(uint64(seed), 0))
	valid, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": "postgres", "options": "endpoint=main"}}).Encode(nil)
	var inputs [][]byte
	for range 150 {
		var b []byte
		switch rng.IntN(5) {
		case 0: // random bytes
			b = make([]byte, rng.IntN(300))
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
		case 1: // truncated valid packet
			b = valid[:rng.IntN(len(valid))]
		case 2: // valid length, random body
			n := 8 + rng.IntN(100)
			b = binary.BigEndian.AppendUint32(nil, uint32(n))
			for len(b) < n {
				b = append(b, byte(rng.Uint32()))
			}
		case 3: // bit flip in a valid packet
			b = append([]byte(nil), valid...)
			b[rng.IntN(len(b))] ^= 1 << rng.IntN(8)
		case 4: // huge or negative length
			b = binary.BigEndian.AppendUint32(nil, rng.Uint32()|0x40000000)
		}
		inputs = append(inputs, b)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(inputs))
	for i, in := range inputs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", e.srv.Addr().String())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write(in)
			if i%2 == 0 {
				c.(*net.TCPConn).CloseWrite() // the client gives up
			}
			// The proxy must answer or close: ReadAll ends with EOF (or a
			// reset), never with our deadline, unless the input happened
			// to be a valid login (ReadyForQuery seen): then the session
			// waits for queries.
			got, err := io.ReadAll(c)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !bytes.Contains(got, []byte{'Z', 0, 0, 0, 5}) {
				errs <- fmt.Errorf("input %d %q: proxy neither answered nor closed (got %q)", i, in, got)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	conn := e.connect(t, "endpoint=main")
	defer conn.Close(context.Background())
	if got := scalar(t, conn, "SELECT 'alive'"); got != "alive" {
		t.Fatal(got)
	}
}

// TestTLS: with a certificate configured, SSLRequest gets TLS; with
// RequireTLS a loopback peer may still use plain text (the refusal of
// other peers is tested end to end in cmd/offshoot, which binds off
// loopback).
func TestTLS(t *testing.T) {
	t.Parallel()
	if _, err := proxy.New(proxy.Config{Manager: &compute.Manager{}, RequireTLS: true}); err == nil {
		t.Fatal("RequireTLS without TLS accepted")
	}
	e := newEnv(t, compute.Config{}, proxy.Config{TLS: selfSigned(t), RequireTLS: true}, "main")
	plain := e.connect(t, "endpoint=main")
	if _, ok := plain.PgConn().Conn().(*tls.Conn); ok {
		t.Fatal("sslmode=disable gave a TLS connection")
	}
	if got := scalar(t, plain, "SELECT 'loopback'"); got != "loopback" {
		t.Fatal(got)
	}
	plain.Close(context.Background())
	conn, err := pgx.Connect(context.Background(), strings.Replace(e.dsn("endpoint=main"), "sslmode=disable", "sslmode=require", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, ok := conn.PgConn().Conn().(*tls.Conn); !ok {
		t.Fatalf("connection is %T, not TLS", conn.PgConn().Conn())
	}
	if got := scalar(t, conn, "SELECT 'secure'"); got != "secure" {
		t.Fatal(got)
	}
}

func selfSigned(t *testing.T) *tls.Config {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// killAndWait kills pid with SIGKILL and waits until it is dead (gone or a
// zombie).
func killAndWait(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return nil
		}
		s := string(b)
		if st := s[strings.LastIndexByte(s, ')')+2]; st == 'Z' || st == 'X' {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
}

// TestCloseWithOpenClients: closing the proxy and the manager while a
// client sits in a transaction disconnects it and stops Postgres.
func TestCloseWithOpenClients(t *testing.T) {
	t.Parallel()
	e := newEnv(t, compute.Config{StopTimeout: 10 * time.Second}, proxy.Config{}, "main")
	ctx := context.Background()
	conn := e.connect(t, "endpoint=main")
	defer conn.Close(ctx)
	execSQL(t, conn, "BEGIN; CREATE TABLE t(v int)")
	pid := e.m.Status("p", "main").Pid
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("client still served after Close")
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(b), ") Z") {
		t.Fatalf("postmaster %d still running after Close", pid)
	}
	if _, err := net.Dial("tcp", e.srv.Addr().String()); err == nil {
		t.Fatal("proxy still accepts after Close")
	}
}
