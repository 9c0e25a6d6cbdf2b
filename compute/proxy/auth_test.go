package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/offshootdb/offshoot/compute"
	"github.com/offshootdb/offshoot/compute/proxy"
	"github.com/offshootdb/offshoot/compute/proxy/scram"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// verifierStore is the test's stand-in for the server's verifier store:
// a map of real verifiers (made by package scram or read from pg_authid).
type verifierStore struct {
	mu sync.Mutex
	m  map[[3]string]string // project, branch, role → verifier
}

func newStore() *verifierStore { return &verifierStore{m: map[[3]string]string{}} }

func (s *verifierStore) Verifier(_ context.Context, project, branch, role string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[[3]string{project, branch, role}]
	return v, ok
}

// setPassword stores a verifier of password made by scram.NewVerifier.
func (s *verifierStore) setPassword(t testing.TB, project, branch, role, password string) {
	t.Helper()
	v, err := scram.NewVerifier(password)
	if err != nil {
		t.Fatal(err)
	}
	s.set(project, branch, map[string]string{role: v})
}

// set merges verifiers of a branch; it is also the compute.Config.Verifiers
// callback.
func (s *verifierStore) set(project, branch string, vs map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for role, v := range vs {
		s.m[[3]string{project, branch, role}] = v
	}
}

// authDSN is a connection string through the proxy's TCP port.
func (e *env) authDSN(user, password, options string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s password='%s' dbname=postgres sslmode=disable options='%s'", e.port, user, password, options)
}

// connectFrom connects through the proxy from the local address ip.
func (e *env) connectFrom(ctx context.Context, ip, dsn string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	cfg.DialFunc = d.DialContext
	return pgx.ConnectConfig(ctx, cfg)
}

func pgError(t testing.TB, err error) *pgconn.PgError {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Fatalf("want a Postgres error, got %v", err)
	}
	return pgErr
}

// TestAuthConnect: with the right password, pgx and psql get through the
// proxy's SCRAM exchange to a woken endpoint, and cancel requests still
// reach the backend.
func TestAuthConnect(t *testing.T) {
	t.Parallel()
	store := newStore()
	store.setPassword(t, "p", "main", "postgres", "s3cret")
	store.setPassword(t, "p", "main", compute.RoleRead, "r34d")
	e := newEnv(t, compute.Config{}, proxy.Config{Auth: store}, "main")
	ctx := context.Background()

	conn, err := pgx.Connect(ctx, e.authDSN("postgres", "s3cret", "endpoint=main"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if got := scalar(t, conn, "SELECT current_user"); got != "postgres" {
		t.Fatalf("current_user %q", got)
	}
	// The role is the startup packet's user; the database defaults to it
	// as in Postgres (offshoot_read has none, so name postgres).
	ro, err := pgx.Connect(ctx, e.authDSN(compute.RoleRead, "r34d", "endpoint=main"))
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close(ctx)
	if got := scalar(t, ro, "SELECT current_user || ' ' || current_setting('transaction_read_only')"); got != "offshoot_read on" {
		t.Fatalf("read role: %q", got)
	}

	psql := exec.Command("/usr/lib/postgresql/15/bin/psql", "-w", "-XAtc", "SELECT 'psql ' || current_user",
		fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable options='endpoint=main'", e.port))
	psql.Env = append(os.Environ(), "PGPASSWORD=s3cret")
	out, err := psql.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "psql postgres" {
		t.Fatalf("psql: %v: %s", err, out)
	}

	// A CancelRequest through the proxy cancels a query of a connection
	// authenticated at the proxy.
	cfg, err := pgx.ParseConfig(e.authDSN("postgres", "s3cret", "endpoint=main"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: time.Minute}
	}
	victim, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close(ctx)
	qctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(300*time.Millisecond, cancel)
	_, err = victim.Exec(qctx, "SELECT pg_sleep(60)")
	if pgErr := pgError(t, err); pgErr.Code != "57014" {
		t.Fatalf("want query_canceled (57014), got %v", err)
	}
	if got := scalar(t, victim, "SELECT 'still usable'"); got != "still usable" {
		t.Fatal(got)
	}
	// Authenticated at the proxy, every one of them went on in the kernel.
	if sp := counters(t, e.srv, "offshoot_proxy_splices_total"); sp["kernel/"] != 4 || len(sp) != 1 {
		t.Fatalf("splices %v, want 4 on the kernel path", sp)
	}
}

// TestAuthFailuresLookAlike: a wrong or empty password, an unknown role,
// an unknown branch (even one whose data exists) and an unknown project
// all get the same answer, and nothing wakes.
func TestAuthFailuresLookAlike(t *testing.T) {
	t.Parallel()
	store := newStore()
	store.setPassword(t, "p", "main", "postgres", "right")
	e := newEnv(t, compute.Config{}, proxy.Config{Auth: store, MaxAuthFailures: 1000}, "main", "other")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.authDSN("postgres", "right", "endpoint=main"))
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if err := e.m.Suspend(ctx, "p", "main"); err != nil {
		t.Fatal(err)
	}
	mainBefore, otherBefore := e.m.Status("p", "main"), e.m.Status("p", "other")
	if mainBefore.State != compute.Suspended || mainBefore.Wakes != 1 || otherBefore.State != compute.Stopped {
		t.Fatalf("before: main %+v, other %+v", mainBefore, otherBefore)
	}

	var first *pgconn.PgError
	for _, tc := range []struct{ name, user, password, options string }{
		{"wrong password", "postgres", "wrong", "endpoint=main"},
		{"empty password", "postgres", "", "endpoint=main"},
		{"role in the cluster, not in the store", compute.RoleRead, "right", "endpoint=main"},
		{"unknown role", "postgres2", "right", "endpoint=main"},
		{"branch on disk, not in the store", "postgres", "right", "endpoint=other"},
		{"unknown branch", "postgres", "right", "endpoint=nope"},
		{"unknown project", "postgres", "right", "endpoint=main project=q"},
		{"invalid branch name", "postgres", "right", "endpoint=../main"},
	} {
		for range 2 { // the same answer on every attempt
			_, err := pgx.Connect(ctx, e.authDSN(tc.user, tc.password, tc.options))
			pgErr := pgError(t, err)
			if pgErr.Code != "28P01" || pgErr.Message != fmt.Sprintf("password authentication failed for user %q", tc.user) {
				t.Errorf("%s: got %s %q", tc.name, pgErr.Code, pgErr.Message)
			}
			if first == nil {
				first = pgErr
			}
			if pgErr.Severity != first.Severity || pgErr.Hint != first.Hint || pgErr.Detail != first.Detail {
				t.Errorf("%s: %+v differs from %+v", tc.name, pgErr, first)
			}
		}
	}
	// psql without a password gives up at the SASL request.
	psql := exec.Command("/usr/lib/postgresql/15/bin/psql", "-w", "-XAtc", "SELECT 1",
		fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable options='endpoint=main'", e.port))
	psql.Env = append(os.Environ(), "PGPASSWORD=")
	if out, err := psql.CombinedOutput(); err == nil || !strings.Contains(string(out), "password") {
		t.Fatalf("psql without a password: %v: %s", err, out)
	}

	if after := e.m.Status("p", "main"); after.State != compute.Suspended || after.Wakes != mainBefore.Wakes {
		t.Fatalf("main woken by failed authentications: %+v", after)
	}
	if after := e.m.Status("p", "other"); after.State != compute.Stopped || after.Wakes != 0 {
		t.Fatalf("other woken by failed authentications: %+v", after)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e.srv.Collector())
	want := `
# HELP offshoot_proxy_auth_failures_total Failed authentications at the proxy, by reason (wrong_password, unknown: both look the same to the client; protocol).
# TYPE offshoot_proxy_auth_failures_total counter
offshoot_proxy_auth_failures_total{reason="unknown"} 12
offshoot_proxy_auth_failures_total{reason="wrong_password"} 4
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "offshoot_proxy_auth_failures_total"); err != nil {
		t.Fatal(err)
	}
}

// TestAuthSameSalt: the SCRAM server-first-message of an unknown role
// carries the same salt and iteration count on every attempt, as a real
// role's does.
func TestAuthSameSalt(t *testing.T) {
	t.Parallel()
	store := newStore()
	store.setPassword(t, "p", "main", "postgres", "right")
	e := newEnv(t, compute.Config{}, proxy.Config{Auth: store}, "main")
	for _, user := range []string{"postgres", "stranger"} {
		var salts []string
		for range 2 {
			c := startRaw(t, e, "127.0.0.1", user)
			writeMsg(t, c, &pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=abcdef")})
			msg := readBackend(t, c)
			sc, ok := msg.(*pgproto3.AuthenticationSASLContinue)
			if !ok {
				t.Fatalf("%s: want SASLContinue, got %T", user, msg)
			}
			parts := strings.SplitN(string(sc.Data), ",", 2)
			salts = append(salts, parts[1])
			c.Close()
		}
		if salts[0] != salts[1] || !strings.HasSuffix(salts[0], ",i=4096") {
			t.Errorf("%s: salts %q", user, salts)
		}
	}
}

// startRaw dials the proxy from ip, sends a startup packet for branch main
// and reads the AuthenticationSASL request.
func startRaw(t testing.TB, e *env, ip, user string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", e.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(time.Minute))
	writeMsg(t, c, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": user, "options": "endpoint=main"}})
	if msg := readBackend(t, c); fmt.Sprintf("%T", msg) != "*pgproto3.AuthenticationSASL" {
		t.Fatalf("want AuthenticationSASL, got %#v", msg)
	}
	return c
}

func writeMsg(t testing.TB, c net.Conn, m pgproto3.FrontendMessage) {
	t.Helper()
	b, err := m.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// readBackend reads one backend message from c.
func readBackend(t testing.TB, c net.Conn) pgproto3.BackendMessage {
	t.Helper()
	fe := pgproto3.NewFrontend(c, io.Discard)
	msg, err := fe.Receive()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return msg
}

// TestAuthRateLimit: after MaxAuthFailures failures from one address,
// even the right password is refused from there (not from elsewhere)
// until the window has passed on the proxy's clock; nothing wakes.
func TestAuthRateLimit(t *testing.T) {
	t.Parallel()
	store := newStore()
	store.setPassword(t, "p", "main", "postgres", "right")
	store.setPassword(t, "p", "main", "offshoot_read", "its-own")
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	e := newEnv(t, compute.Config{}, proxy.Config{Auth: store, MaxAuthFailures: 3, AuthFailureWindow: time.Minute, Now: clock}, "main")
	ctx := context.Background()
	try := func(ip, password string) error {
		c, err := e.connectFrom(ctx, ip, e.authDSN("postgres", password, "endpoint=main"))
		if err == nil {
			c.Close(ctx)
		}
		return err
	}
	for i := range 3 {
		if pgErr := pgError(t, try("127.0.0.1", "wrong")); pgErr.Code != "28P01" {
			t.Fatalf("failure %d: %v", i, pgErr)
		}
		advance(10 * time.Second)
	}
	// The failures were at 0, 10 and 20 s; now is 30 s.
	pgErr := pgError(t, try("127.0.0.1", "right"))
	if pgErr.Code != "28000" || pgErr.Message != "offshoot proxy: too many failed authentication attempts from 127.0.0.1 for role postgres on branch main of project p; retry in 30 s" || pgErr.Hint == "" {
		t.Fatalf("want 28000 retry in 30 s, got %s %q", pgErr.Code, pgErr.Message)
	}
	if st := e.m.Status("p", "main"); st.Wakes != 0 || st.State != compute.Stopped {
		t.Fatalf("woken while rate-limited: %+v", st)
	}
	if err := try("127.0.0.2", "right"); err != nil {
		t.Fatalf("another address is limited too: %v", err)
	}
	// Nor is another role from the same address: one client failing
	// for its role (a replica with a rotated password) locks out no other.
	c, err := e.connectFrom(ctx, "127.0.0.1", e.authDSN("offshoot_read", "its-own", "endpoint=main"))
	if err != nil {
		t.Fatalf("another role from the limited address: %v", err)
	}
	c.Close(ctx)
	// Failures for targets that do not exist count for the source alone,
	// which may fail six times MaxAuthFailures over all targets.
	for i := range 6 * 3 {
		if _, err := e.connectFrom(ctx, "127.0.0.3", e.authDSN("postgres", "wrong", fmt.Sprintf("endpoint=nope%d", i))); err == nil {
			t.Fatal("an unknown branch let a client in")
		}
	}
	if pgErr := pgError(t, try("127.0.0.3", "right")); pgErr.Code != "28000" || !strings.Contains(pgErr.Message, "for any role or branch") {
		t.Fatalf("a source past its own limit: %s %q", pgErr.Code, pgErr.Message)
	}
	// Unix socket clients are one source of their own, "local".
	local, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres password=right dbname=postgres options='endpoint=main'",
		filepath.Dir(e.srv.SocketPath()), e.port))
	if err != nil {
		t.Fatalf("Unix socket client limited by a TCP address: %v", err)
	}
	local.Close(ctx)
	advance(29 * time.Second)
	if pgErr := pgError(t, try("127.0.0.1", "right")); pgErr.Code != "28000" || !strings.HasSuffix(pgErr.Message, "retry in 1 s") {
		t.Fatalf("at 59 s: %v", pgErr)
	}
	advance(time.Second) // the first failure leaves the window; two remain
	if err := try("127.0.0.1", "right"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	if pgErr := pgError(t, try("127.0.0.1", "wrong")); pgErr.Code != "28P01" {
		t.Fatalf("third failure in the window: %v", pgErr)
	}
	if pgErr := pgError(t, try("127.0.0.1", "right")); pgErr.Code != "28000" || !strings.HasSuffix(pgErr.Message, "retry in 10 s") {
		t.Fatalf("limited again: %v", pgErr)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e.srv.Collector())
	want := `
# HELP offshoot_proxy_auth_rate_limited_total Authentication attempts refused because their source failed too often.
# TYPE offshoot_proxy_auth_rate_limited_total counter
offshoot_proxy_auth_rate_limited_total 4
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "offshoot_proxy_auth_rate_limited_total"); err != nil {
		t.Fatal(err)
	}
}

// TestStalledClients: 200 connections that send a startup packet and then
// never answer the SASL request hold no Postgres slot: a well-behaved
// client still connects. The per-source and total bounds refuse more.
func TestStalledClients(t *testing.T) {
	t.Parallel()
	store := newStore()
	store.setPassword(t, "p", "main", "postgres", "right")
	e := newEnv(t, compute.Config{}, proxy.Config{Auth: store, MaxUnauthenticated: 201, MaxUnauthenticatedPerSource: 200}, "main")
	ctx := context.Background()
	for range 200 {
		startRaw(t, e, "127.0.0.2", "postgres")
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e.srv.Collector())
	gauge := func(want int) {
		t.Helper()
		exp := fmt.Sprintf(`
# HELP offshoot_proxy_connections_unauthenticated Client connections that have not authenticated yet.
# TYPE offshoot_proxy_connections_unauthenticated gauge
offshoot_proxy_connections_unauthenticated %d
`, want)
		if err := testutil.GatherAndCompare(reg, strings.NewReader(exp), "offshoot_proxy_connections_unauthenticated"); err != nil {
			t.Fatal(err)
		}
	}
	gauge(200)
	_, err := e.connectFrom(ctx, "127.0.0.2", e.authDSN("postgres", "right", "endpoint=main"))
	if pgErr := pgError(t, err); pgErr.Code != "53300" || !strings.Contains(pgErr.Message, "too many connections are authenticating: 200 from 127.0.0.2") {
		t.Fatalf("201st from one source: %v", pgErr)
	}
	conn, err := e.connectFrom(ctx, "127.0.0.1", e.authDSN("postgres", "right", "endpoint=main"))
	if err != nil {
		t.Fatalf("well-behaved client behind 200 stalled ones: %v", err)
	}
	defer conn.Close(ctx)
	if got := scalar(t, conn, "SELECT 'served'"); got != "served" {
		t.Fatal(got)
	}
	gauge(200)
	startRaw(t, e, "127.0.0.3", "postgres") // the 201st
	_, err = e.connectFrom(ctx, "127.0.0.4", e.authDSN("postgres", "right", "endpoint=main"))
	if pgErr := pgError(t, err); pgErr.Code != "53300" || !strings.Contains(pgErr.Message, "201 in total") {
		t.Fatalf("beyond the total: %v", pgErr)
	}
	want := `
# HELP offshoot_proxy_unauthenticated_refused_total Connections refused because too many had not authenticated, by limit (source, total).
# TYPE offshoot_proxy_unauthenticated_refused_total counter
offshoot_proxy_unauthenticated_refused_total{limit="source"} 1
offshoot_proxy_unauthenticated_refused_total{limit="total"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "offshoot_proxy_unauthenticated_refused_total"); err != nil {
		t.Fatal(err)
	}
}

// TestAuthTimeout: a client that stalls inside the SASL exchange is
// answered and closed after StartupTimeout, and leaves the pre-auth count.
func TestAuthTimeout(t *testing.T) {
	t.Parallel()
	store := newStore()
	store.setPassword(t, "p", "main", "postgres", "right")
	e := newEnv(t, compute.Config{}, proxy.Config{Auth: store, StartupTimeout: 300 * time.Millisecond}, "main")
	c := startRaw(t, e, "127.0.0.1", "postgres")
	if er := readError(t, c); er.Code != "08P01" || !strings.Contains(er.Message, "timed out during authentication") {
		t.Fatalf("got %+v", er)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e.srv.Collector())
	want := `
# HELP offshoot_proxy_connections_unauthenticated Client connections that have not authenticated yet.
# TYPE offshoot_proxy_connections_unauthenticated gauge
offshoot_proxy_connections_unauthenticated 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "offshoot_proxy_connections_unauthenticated"); err != nil {
		t.Fatal(err)
	}
}

// TestSASLProtocol: channel binding, a foreign mechanism and a password
// message instead of SASL are refused with 08P01 naming the cause.
func TestSASLProtocol(t *testing.T) {
	t.Parallel()
	store := newStore()
	store.setPassword(t, "p", "main", "postgres", "right")
	e := newEnv(t, compute.Config{}, proxy.Config{Auth: store}, "main")
	for _, tc := range []struct {
		msg  pgproto3.FrontendMessage
		want string
	}{
		{&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256-PLUS", Data: []byte("p=tls-server-end-point,,n=,r=abc")}, "channel binding"},
		{&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("p=tls-server-end-point,,n=,r=abc")}, "channel binding"},
		{&pgproto3.SASLInitialResponse{AuthMechanism: "PLAIN", Data: []byte("x")}, `mechanism "PLAIN"`},
		{&pgproto3.PasswordMessage{Password: "right"}, "expected a SASLInitialResponse"},
		{&pgproto3.Query{String: "SELECT 1"}, "expected a SASL response"},
		{&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,r=abc")}, "malformed SCRAM message"},
	} {
		c := startRaw(t, e, "127.0.0.1", "postgres")
		writeMsg(t, c, tc.msg)
		if er := readError(t, c); er.Code != "08P01" || !strings.Contains(er.Message, tc.want) {
			t.Errorf("%#v: got %s %q", tc.msg, er.Code, er.Message)
		}
	}
	if st := e.m.Status("p", "main"); st.Wakes != 0 {
		t.Fatalf("woken: %+v", st)
	}
}

// TestConnCaps: past authentication, connections are capped per branch
// and in total with 53300; a closed connection frees its place.
func TestConnCaps(t *testing.T) {
	t.Parallel()
	store := newStore()
	store.setPassword(t, "p", "a", "postgres", "pw")
	store.setPassword(t, "p", "b", "postgres", "pw")
	e := newEnv(t, compute.Config{}, proxy.Config{Auth: store, MaxConnsPerBranch: 2, MaxConns: 3}, "a", "b")
	ctx := context.Background()
	open := func(branch string) (*pgx.Conn, error) {
		return pgx.Connect(ctx, e.authDSN("postgres", "pw", "endpoint="+branch))
	}
	a1, err := open("a")
	if err != nil {
		t.Fatal(err)
	}
	defer a1.Close(ctx)
	a2, err := open("a")
	if err != nil {
		t.Fatal(err)
	}
	_, err = open("a")
	if pgErr := pgError(t, err); pgErr.Code != "53300" || !strings.Contains(pgErr.Message, "branch p/a") || !strings.Contains(pgErr.Message, "per branch") || pgErr.Hint == "" {
		t.Fatalf("third to a: %v", pgErr)
	}
	b1, err := open("b")
	if err != nil {
		t.Fatal(err)
	}
	defer b1.Close(ctx)
	_, err = open("b")
	if pgErr := pgError(t, err); pgErr.Code != "53300" || !strings.Contains(pgErr.Message, "MaxConns") {
		t.Fatalf("fourth in total: %v", pgErr)
	}
	a2.Close(ctx)
	// The proxy counts the connection out once its splice ends.
	deadline := time.Now().Add(30 * time.Second)
	for {
		b2, err := open("b")
		if err == nil {
			b2.Close(ctx)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after closing one: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := testutil.CollectAndCount(e.srv.Collector(), "offshoot_proxy_cap_refused_total"); n != 2 {
		t.Fatalf("cap_refused series: %d", n)
	}
	// The caps counted connections on the kernel path.
	if sp := counters(t, e.srv, "offshoot_proxy_splices_total"); sp["kernel/"] < 4 || len(sp) != 1 {
		t.Fatalf("splices %v, want every connection on the kernel path", sp)
	}
}

// TestVerifiersFromPostgres checks the verifier format both ways against
// real Postgres: a verifier captured from pg_authid (after ALTER ROLE ...
// PASSWORD 'pw', reported by the Manager before the suspend) authenticates
// at the proxy, and one made by scram.NewVerifier, set with ALTER ROLE,
// lets pgx log in to Postgres directly with the password.
func TestVerifiersFromPostgres(t *testing.T) {
	t.Parallel()
	store := newStore()
	store.setPassword(t, "p", "main", "postgres", "boot")
	e := newEnv(t, compute.Config{Verifiers: store.set, TCP: true}, proxy.Config{Auth: store}, "main")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.authDSN("postgres", "boot", "endpoint=main"))
	if err != nil {
		t.Fatal(err)
	}
	made, err := scram.NewVerifier("m4de")
	if err != nil {
		t.Fatal(err)
	}
	execSQL(t, conn, "ALTER ROLE offshoot_write PASSWORD 'pw'")
	execSQL(t, conn, "ALTER ROLE offshoot_read PASSWORD '"+made+"'")
	if got := scalar(t, conn, "SELECT rolpassword FROM pg_authid WHERE rolname = 'offshoot_read'"); got != made {
		t.Fatalf("Postgres stored %q for %q", got, made)
	}
	// Directly over the endpoint's TCP port (scram-sha-256 in pg_hba).
	direct, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=offshoot_read password=m4de dbname=postgres sslmode=disable", e.m.Status("p", "main").Port))
	if err != nil {
		t.Fatalf("Postgres refuses the password of a scram.NewVerifier verifier: %v", err)
	}
	direct.Close(ctx)
	conn.Close(ctx)
	if err := e.m.Suspend(ctx, "p", "main"); err != nil {
		t.Fatal(err)
	}
	wakes := e.m.Status("p", "main").Wakes
	w, err := pgx.Connect(ctx, e.authDSN(compute.RoleWrite, "pw", "endpoint=main"))
	if err != nil {
		t.Fatalf("verifier from pg_authid: %v", err)
	}
	defer w.Close(ctx)
	if got := scalar(t, w, "SELECT current_user"); got != compute.RoleWrite {
		t.Fatal(got)
	}
	if st := e.m.Status("p", "main"); st.Wakes != wakes+1 {
		t.Fatalf("wakes %d → %d", wakes, st.Wakes)
	}
}

// TestEndpointAsksPassword: an endpoint whose pg_hba.conf asks local
// clients for a password (not what the Manager writes) gets a clear
// internal error instead of a second, unanswerable password request.
func TestEndpointAsksPassword(t *testing.T) {
	t.Parallel()
	store := newStore()
	store.setPassword(t, "p", "main", "postgres", "pw")
	e := newEnv(t, compute.Config{}, proxy.Config{Auth: store}, "main")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.authDSN("postgres", "pw", "endpoint=main"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	hba := scalar(t, conn, "SHOW hba_file")
	if err := os.WriteFile(hba, []byte("local all all scram-sha-256\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	execSQL(t, conn, "SELECT pg_reload_conf()")
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := pgx.Connect(ctx, e.authDSN("postgres", "pw", "endpoint=main"))
		if err == nil { // the postmaster has not reloaded yet
			c.Close(ctx)
			if time.Now().After(deadline) {
				t.Fatal("pg_hba.conf never reloaded")
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if pgErr := pgError(t, err); pgErr.Code != "XX000" || !strings.Contains(pgErr.Message, "not configured for proxy authentication") {
			t.Fatalf("got %s %q", pgErr.Code, pgErr.Message)
		}
		break
	}
}
