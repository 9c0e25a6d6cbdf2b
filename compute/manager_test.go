package compute_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/offshootdb/offshoot/compute"
	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/prometheus/client_golang/prometheus"
)

func TestMain(m *testing.M) {
	if os.Getenv("OFFSHOOT_COMPUTE_CHILD") != "" {
		child()
		return
	}
	pgtest.Main(m)
}

// env is a Manager over plain-directory volumes in a temp dir.
type env struct {
	dir  string
	vols compute.DirVolumes
	m    *compute.Manager
}

func newEnv(t *testing.T, cfg compute.Config) *env {
	t.Helper()
	dir := pgtest.Dir(t)
	e := &env{dir: dir, vols: compute.DirVolumes{Root: filepath.Join(dir, "branches")}}
	e.m = e.open(t, cfg)
	return e
}

func (e *env) open(t *testing.T, cfg compute.Config) *compute.Manager {
	t.Helper()
	cfg.Volumes = e.vols
	cfg.RunDir = filepath.Join(e.dir, "run")
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m, err := compute.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// branch makes an initdb'd branch.
func (e *env) branch(t *testing.T, project, branch string) {
	t.Helper()
	p, err := e.vols.Path(project, branch)
	if err != nil {
		t.Fatal(err)
	}
	pgtest.CopyTemplate(t, p)
}

func query(t *testing.T, l *compute.Lease, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, l.ConnString("postgres", "", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func run(t *testing.T, l *compute.Lease, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, l.ConnString("postgres", "", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func acquire(t *testing.T, m *compute.Manager, project, branch string) *compute.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := m.Acquire(ctx, project, branch)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

func TestAcquireUnknownAndInvalid(t *testing.T) {
	e := newEnv(t, compute.Config{})
	ctx := context.Background()
	if _, err := e.m.Acquire(ctx, "p", "nope"); !errors.Is(err, compute.ErrBranchNotFound) {
		t.Fatalf("unknown branch: %v", err)
	}
	for _, name := range []string{"", ".", "..", "a\x00b"} {
		if _, err := e.m.Acquire(ctx, "p", name); !errors.Is(err, compute.ErrInvalidName) {
			t.Fatalf("branch %q: %v", name, err)
		}
	}
}

// TestCrashLoopBackoff starts a branch whose pg_control is gone: the start
// fails with the log lines, and the third attempt in a row backs off.
func TestCrashLoopBackoff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, compute.Config{CrashBackoff: time.Hour})
	e.branch(t, "p", "broken")
	dir, _ := e.vols.Path("p", "broken")
	if err := os.Remove(filepath.Join(dir, "global", "pg_control")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 2 {
		_, err := e.m.Acquire(ctx, "p", "broken")
		if !errors.Is(err, compute.ErrStartFailed) || !strings.Contains(err.Error(), "pg_control") {
			t.Fatalf("attempt %d: want ErrStartFailed with the log line about pg_control, got %v", i, err)
		}
	}
	_, err := e.m.Acquire(ctx, "p", "broken")
	if !errors.Is(err, compute.ErrCrashLoop) || !strings.Contains(err.Error(), "pg_control") {
		t.Fatalf("third attempt: want ErrCrashLoop with log lines, got %v", err)
	}
	st := e.m.Status("p", "broken")
	if st.Crashes != 2 || st.Pid != 0 || st.State != compute.Suspended {
		t.Fatalf("status %+v", st)
	}
}

// kill9 SIGKILLs the postmaster of a running endpoint, waits until it is
// gone and returns its pid.
func kill9(t *testing.T, m *compute.Manager, project, branch string) int {
	t.Helper()
	pid := m.Status(project, branch).Pid
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for alive(pid) {
		time.Sleep(time.Millisecond)
	}
	return pid
}

// TestKill9Postmaster: the next Acquire after a kill -9 gets a working
// endpoint with the committed data.
func TestKill9Postmaster(t *testing.T) {
	t.Parallel()
	e := newEnv(t, compute.Config{})
	e.branch(t, "p", "main")
	l := acquire(t, e.m, "p", "main")
	run(t, l, "CREATE TABLE t AS SELECT 'committed'::text AS v")
	l.Release()
	pid := kill9(t, e.m, "p", "main")
	l = acquire(t, e.m, "p", "main")
	defer l.Release()
	if got := query(t, l, "SELECT v FROM t"); got != "committed" {
		t.Fatalf("got %q", got)
	}
	st := e.m.Status("p", "main")
	if st.Pid == pid || st.Crashes != 1 || st.Wakes != 2 || st.State != compute.Running {
		t.Fatalf("status after restart %+v", st)
	}
}

// TestWakeCapturesVerifiers: a role made in a session that ended in a
// crash (so no suspend captured it) is reported by the next wake, which
// captures the verifiers in the background, a while after the wake.
func TestWakeCapturesVerifiers(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	reported := map[string]string{}
	e := newEnv(t, compute.Config{Verifiers: func(_, _ string, v map[string]string) {
		mu.Lock()
		defer mu.Unlock()
		maps.Copy(reported, v)
	}})
	e.branch(t, "p", "main")
	l := acquire(t, e.m, "p", "main")
	run(t, l, "CREATE ROLE alice LOGIN PASSWORD 'pw'")
	l.Release()
	kill9(t, e.m, "p", "main")
	mu.Lock()
	_, early := reported["alice"]
	mu.Unlock()
	if early {
		t.Fatal("alice reported before the crash")
	}
	l = acquire(t, e.m, "p", "main")
	defer l.Release()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		v := reported["alice"]
		mu.Unlock()
		if strings.HasPrefix(v, "SCRAM-SHA-256$") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the wake after the crash did not report alice's verifier (got %q)", v)
		}
	}
}

// TestCapacityLRU: with two running endpoints allowed, a third wake
// suspends the least recently used idle one; with every endpoint in use
// the wake fails with ErrCapacity.
func TestCapacityLRU(t *testing.T) {
	t.Parallel()
	e := newEnv(t, compute.Config{MaxRunning: 2})
	for _, b := range []string{"a", "b", "c"} {
		e.branch(t, "p", b)
	}
	acquire(t, e.m, "p", "a").Release()
	acquire(t, e.m, "p", "b").Release()
	lc := acquire(t, e.m, "p", "c")
	defer lc.Release()
	if s := e.m.Status("p", "a").State; s != compute.Suspended {
		t.Fatalf("LRU endpoint a is %s, want suspended", s)
	}
	if s := e.m.Status("p", "b").State; s != compute.Running {
		t.Fatalf("b is %s, want running", s)
	}
	lb := acquire(t, e.m, "p", "b")
	defer lb.Release()
	_, err := e.m.Acquire(context.Background(), "p", "a")
	if !errors.Is(err, compute.ErrCapacity) {
		t.Fatalf("want ErrCapacity, got %v", err)
	}
	// The memory budget limits the same way.
	e2 := newEnv(t, compute.Config{MemoryBudget: 300 << 20, EndpointMemory: 200 << 20})
	e2.branch(t, "p", "x")
	e2.branch(t, "p", "y")
	lx := acquire(t, e2.m, "p", "x")
	defer lx.Release()
	if _, err := e2.m.Acquire(context.Background(), "p", "y"); !errors.Is(err, compute.ErrCapacity) {
		t.Fatalf("memory budget: want ErrCapacity, got %v", err)
	}
}

// TestBranchSettings: SetSettings gives one branch's postmaster its own
// settings from its next start (the Manager's own stay), and a larger
// shared_buffers counts against the memory budget.
func TestBranchSettings(t *testing.T) {
	t.Parallel()
	e := newEnv(t, compute.Config{MemoryBudget: 700 << 20, EndpointMemory: 200 << 20})
	for _, b := range []string{"big", "x", "y"} {
		e.branch(t, "p", b)
	}
	e.m.SetSettings("p", "big", map[string]string{"shared_buffers": "384MB", "work_mem": "7MB", "port": "1", "backend_flush_after": "0"})
	lb := acquire(t, e.m, "p", "big")
	if got := query(t, lb, "SELECT current_setting('shared_buffers') || ' ' || current_setting('work_mem') || ' ' || current_setting('backend_flush_after')"); got != "384MB 7MB 0" {
		t.Fatalf("big's settings: %q, want 384MB 7MB 0", got)
	}
	if got := query(t, lb, "SELECT current_setting('port')"); got == "1" {
		t.Fatal("SetSettings overrode the Manager's own port")
	}
	lx := acquire(t, e.m, "p", "x")
	if got := query(t, lx, "SELECT current_setting('shared_buffers') || ' ' || current_setting('backend_flush_after')"); got != "128MB 256kB" {
		t.Fatalf("x's shared_buffers and backend_flush_after: %q, want the defaults 128MB 256kB", got)
	}
	lx.Release()
	// big is assumed to use 200 + 256 MiB: with x's 200 the budget of 700
	// holds no third endpoint while big is leased (x is not, so it makes room).
	ly := acquire(t, e.m, "p", "y")
	if s := e.m.Status("p", "x").State; s != compute.Suspended {
		t.Fatalf("x is %s, want suspended to make room for y within the budget", s)
	}
	ly.Release()
	lb.Release()
	// Without its settings (and after a restart), big is an ordinary endpoint.
	e.m.SetSettings("p", "big", nil)
	if err := e.m.Suspend(context.Background(), "p", "big"); err != nil {
		t.Fatal(err)
	}
	lb = acquire(t, e.m, "p", "big")
	defer lb.Release()
	if got := query(t, lb, "SELECT current_setting('shared_buffers')"); got != "128MB" {
		t.Fatalf("big's shared_buffers after SetSettings(nil): %q, want 128MB", got)
	}
	// A branch whose shared_buffers alone exceeds the budget is refused.
	e.m.SetSettings("p", "x", map[string]string{"shared_buffers": "1GB"})
	if _, err := e.m.Acquire(context.Background(), "p", "x"); !errors.Is(err, compute.ErrCapacity) {
		t.Fatalf("shared_buffers over the budget: want ErrCapacity, got %v", err)
	}
}

// TestTimersAndMetrics walks one branch through every state on its own
// timers, with per-branch overrides, and checks the metrics.
func TestTimersAndMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, compute.Config{Timers: &compute.Timers{}}) // never, by default
	e.branch(t, "p", "main")
	l := acquire(t, e.m, "p", "main")
	run(t, l, "CREATE TABLE t AS SELECT 'v1'::text AS v")
	pid := e.m.Status("p", "main").Pid
	l.Release()

	e.m.SetTimers("p", "main", &compute.Timers{IdleAfter: 50 * time.Millisecond})
	waitState(t, e.m, "p", "main", compute.Idle)
	time.Sleep(200 * time.Millisecond) // SuspendAfter 0: stays idle
	if st := e.m.Status("p", "main"); st.State != compute.Idle || st.Pid != pid {
		t.Fatalf("with SuspendAfter 0: %+v", st)
	}
	e.m.SetTimers("p", "main", &compute.Timers{IdleAfter: 20 * time.Millisecond, SuspendAfter: 50 * time.Millisecond, StopAfter: 100 * time.Millisecond})
	waitState(t, e.m, "p", "main", compute.Stopped)
	st := e.m.Status("p", "main")
	if st.Pid != 0 || st.ComputeSeconds <= 0 {
		t.Fatalf("stopped: %+v", st)
	}
	l = acquire(t, e.m, "p", "main")
	if got := query(t, l, "SELECT v FROM t"); got != "v1" {
		t.Fatalf("after wake: %q", got)
	}
	defer l.Release()

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e.m.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			lbl := ""
			for _, lp := range mt.GetLabel() {
				lbl += "," + lp.GetName() + "=" + lp.GetValue()
			}
			v := mt.GetGauge().GetValue() + mt.GetCounter().GetValue() + float64(mt.GetHistogram().GetSampleCount())
			found[mf.GetName()+lbl] = v
		}
	}
	for k, want := range map[string]float64{
		"offshoot_compute_wake_seconds,from=stopped":                   2,
		"offshoot_compute_transitions_total,from=idle,to=suspended":    1,
		"offshoot_compute_transitions_total,from=suspended,to=stopped": 1,
		"offshoot_compute_endpoints,state=running":                     1,
		"offshoot_compute_transitions_total,from=running,to=idle":      1,
	} {
		if found[k] < want {
			t.Errorf("%s = %v, want >= %v (all: %v)", k, found[k], want, found)
		}
	}
}

func waitState(t *testing.T, m *compute.Manager, project, branch string, s compute.State) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for m.Status(project, branch).State != s {
		if time.Now().After(deadline) {
			t.Fatalf("%s/%s: still %+v, want %s", project, branch, m.Status(project, branch), s)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// child runs in a subprocess for TestOrphanCleanup: it wakes a branch,
// prints the postmaster's pid and waits to be killed.
func child() {
	dir := os.Getenv("OFFSHOOT_COMPUTE_CHILD")
	vols, err := childVolumes(dir)
	var m *compute.Manager
	if err == nil {
		m, err = compute.New(compute.Config{Volumes: vols, RunDir: filepath.Join(dir, "run")})
	}
	if err == nil {
		err = m.Open(context.Background())
	}
	var l *compute.Lease
	if err == nil {
		l, err = m.Acquire(context.Background(), "p", "main")
	}
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("READY", m.Status("p", "main").Pid, l.Socket())
	select {}
}

// TestOrphanCleanup kills -9 a process running an endpoint; a new Manager
// on the same run dir stops the orphaned postmaster and serves the branch.
func TestOrphanCleanup(t *testing.T) {
	t.Parallel()
	dir := pgtest.Dir(t)
	e := &env{dir: dir, vols: compute.DirVolumes{Root: filepath.Join(dir, "branches")}}
	e.branch(t, "p", "main")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "OFFSHOOT_COMPUTE_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "READY ") {
		cmd.Process.Kill()
		t.Fatalf("child: %q %v", line, err)
	}
	f := strings.Fields(line)
	pid, _ := strconv.Atoi(f[1])
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if !alive(pid) {
		t.Fatal("postmaster died with its parent; nothing to clean")
	}
	e.m = e.open(t, compute.Config{})
	if alive(pid) {
		t.Fatalf("orphaned postmaster %d still running after Open", pid)
	}
	l := acquire(t, e.m, "p", "main")
	if got := query(t, l, "SELECT 'works'"); got != "works" {
		t.Fatal(got)
	}
	l.Release()
	newPid := e.m.Status("p", "main").Pid
	if err := e.m.Close(); err != nil {
		t.Fatal(err)
	}
	if alive(newPid) {
		t.Fatal("postmaster still running after Close")
	}
	if st := e.m.Status("p", "main"); st.State != compute.Stopped {
		t.Fatalf("after Close: %+v", st)
	}
}

// TestTCP: with Config.TCP the endpoint also answers on a loopback port.
func TestTCP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, compute.Config{TCP: true, TCPAuth: "trust"})
	e.branch(t, "p", "main")
	l := acquire(t, e.m, "p", "main")
	defer l.Release()
	st := e.m.Status("p", "main")
	if st.Port == 0 || st.Port != l.Port || !strings.HasSuffix(st.Socket, strconv.Itoa(st.Port)) {
		t.Fatalf("status %+v, lease port %d", st, l.Port)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", st.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var addr string
	if err := conn.QueryRow(ctx, "SELECT host(inet_server_addr())").Scan(&addr); err != nil || addr != "127.0.0.1" {
		t.Fatalf("server addr %q %v", addr, err)
	}
	if got := query(t, l, "SELECT 'unix too'"); got != "unix too" {
		t.Fatal(got)
	}
}

// TestDiscard: Discard stops a running endpoint without a shutdown
// checkpoint (the log shows an immediate shutdown, and the next start
// runs crash recovery) and releases it; committed data is still there if
// the branch is used again. Discarding a stopped or unknown endpoint is a
// no-op.
func TestDiscard(t *testing.T) {
	e := newEnv(t, compute.Config{})
	ctx := context.Background()
	e.branch(t, "p", "b")
	l := acquire(t, e.m, "p", "b")
	run(t, l, "CREATE TABLE t AS SELECT generate_series(1, 1000) AS x")
	pid := e.m.Status("p", "b").Pid
	l.Release()
	if err := e.m.Discard(ctx, "p", "b"); err != nil {
		t.Fatal(err)
	}
	if st := e.m.Status("p", "b"); st.State != compute.Stopped || alive(pid) {
		t.Fatalf("after discard: %s, postmaster %d alive %v", st.State, pid, alive(pid))
	}
	lines, err := e.m.LogTail("p", "b", 50)
	if err != nil {
		t.Fatal(err)
	}
	log := strings.Join(lines, "\n")
	if !strings.Contains(log, "immediate shutdown request") || strings.Contains(log, "checkpoint starting: shutdown") {
		t.Errorf("log of a discarded endpoint:\n%s", log)
	}
	l = acquire(t, e.m, "p", "b")
	defer l.Release()
	if n := query(t, l, "SELECT count(*)::text FROM t"); n != "1000" {
		t.Errorf("after discard and restart: %s rows", n)
	}
	lines, _ = e.m.LogTail("p", "b", 50)
	if log := strings.Join(lines, "\n"); !strings.Contains(log, "was interrupted") && !strings.Contains(log, "not properly shut down") {
		t.Errorf("restart after discard ran no crash recovery:\n%s", log)
	}
	if err := e.m.Discard(ctx, "p", "nope"); err != nil {
		t.Errorf("discard of an unknown endpoint: %v", err)
	}
}
