package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
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
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/offshootdb/offshoot/evals/evalstest"
	"github.com/offshootdb/offshoot/storage"
)

// serverBin is the offshoot binary built by TestMain for the end-to-end
// tests, which run it as a separate process.
var serverBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "offshoot-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	serverBin = filepath.Join(dir, "offshoot")
	if out, err := exec.Command("go", "build", "-o", serverBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build offshoot: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// e2eServer is a running `offshoot serve` process on a temp data dir with
// ephemeral ports.
type e2eServer struct {
	t       testing.TB
	dataDir string
	cmd     *exec.Cmd
	done    chan error
	http    string // http://host:port
	proxy   string // host:port
	stdout  *bytes.Buffer
	stderr  *os.File
	args    []string // extra serve flags, after the defaults (so they win)
}

func newE2EServer(t testing.TB) *e2eServer {
	t.Helper()
	return newE2EServerArgs(t)
}

// newE2EServerArgs is newE2EServer with extra serve flags.
func newE2EServerArgs(t testing.TB, args ...string) *e2eServer {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test runs Postgres on FUSE; skipped with -short")
	}
	dir, err := os.MkdirTemp("", "offshoot-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &e2eServer{t: t, dataDir: dir, args: args}
	t.Cleanup(func() {
		if s.cmd != nil && s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.done:
			case <-time.After(time.Minute):
				_ = s.cmd.Process.Kill()
			}
		}
		os.RemoveAll(dir)
	})
	s.start()
	return s
}

// start runs the server and waits until it wrote its addresses.
func (s *e2eServer) start() {
	t := s.t
	t.Helper()
	addrFile := filepath.Join(s.dataDir, "addrs.json")
	os.Remove(addrFile)
	logf, err := os.OpenFile(filepath.Join(s.dataDir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	s.stderr = logf
	s.stdout = &bytes.Buffer{}
	s.cmd = exec.Command(serverBin, "serve", "--data-dir", s.dataDir, "--http-addr", "127.0.0.1:0", "--proxy-addr", "127.0.0.1:0",
		"--addr-file", addrFile, "--datasets-dir", evalstest.DatasetsDir(t), "--ttl-sweep", "200ms", "--max-branches", "200", "--price-compute-hour", "0.5", "--price-storage-gib-month", "0.1")
	s.cmd.Args = append(s.cmd.Args, s.args...)
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, logf
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	s.done = done
	go func() { done <- s.cmd.Wait() }()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		b, err := os.ReadFile(addrFile)
		if err == nil {
			var a struct{ HTTP, Proxy string }
			if err := json.Unmarshal(b, &a); err != nil {
				t.Fatalf("addr file: %v", err)
			}
			s.http, s.proxy = "http://"+a.HTTP, a.Proxy
			return
		}
		select {
		case err := <-done:
			t.Fatalf("server exited before ready: %v\n%s", err, s.log())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready after 3 min\n%s", s.log())
		}
	}
}

func (s *e2eServer) log() string {
	b, _ := os.ReadFile(filepath.Join(s.dataDir, "server.log"))
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

// logLines returns the lines of the whole server log that contain
// substr, HTTP request lines left out.
func (s *e2eServer) logLines(substr string) string {
	b, _ := os.ReadFile(filepath.Join(s.dataDir, "server.log"))
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, substr) && !strings.Contains(l, `msg="http request"`) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// stop sends SIGTERM and requires a clean exit (status 0) and no mount
// left under the data dir.
func (s *e2eServer) stop() {
	t := s.t
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("server exit after SIGTERM: %v\n%s", err, s.log())
		}
	case <-time.After(2 * time.Minute):
		_ = s.cmd.Process.Kill()
		t.Fatalf("server did not stop within 2 min of SIGTERM\n%s", s.log())
	}
	s.stderr.Close()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mi), s.dataDir) {
		t.Errorf("mounts left under %s after shutdown:\n%s", s.dataDir, mi)
	}
}

// kill sends SIGKILL and waits for the server to exit.
func (s *e2eServer) kill() {
	s.t.Helper()
	if err := s.cmd.Process.Kill(); err != nil {
		s.t.Fatal(err)
	}
	<-s.done
	s.stderr.Close()
}

// api calls the HTTP API and returns the status and body.
func (s *e2eServer) api(method, path string, body any) (int, []byte) {
	s.t.Helper()
	return s.apiAs("", method, path, body)
}

// must calls the API and requires status want, decoding the body into out.
func (s *e2eServer) must(want int, method, path string, body, out any) {
	s.t.Helper()
	s.mustAs("", want, method, path, body, out)
}

func branchPath(b string) string { return "/v1/projects/main/branches/" + url.PathEscape(b) }

// conn connects to a branch through the proxy with the URI the API gives.
func (s *e2eServer) conn(branch string) *pgx.Conn {
	s.t.Helper()
	var c struct{ URI string }
	s.must(200, "GET", branchPath(branch)+"/connection?password=true", nil, &c)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URI)
	if err != nil {
		s.t.Fatalf("connect to %s through the proxy: %v\n%s", branch, err, s.log())
	}
	s.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func (s *e2eServer) exec(branch string, sqls ...string) {
	s.t.Helper()
	c := s.conn(branch)
	defer c.Close(context.Background())
	for _, q := range sqls {
		if _, err := c.Exec(context.Background(), q); err != nil {
			s.t.Fatalf("%s on %s: %v", q, branch, err)
		}
	}
}

// ids returns the ordered ids of table items on branch.
func (s *e2eServer) ids(branch string) string {
	s.t.Helper()
	c := s.conn(branch)
	defer c.Close(context.Background())
	var got string
	if err := c.QueryRow(context.Background(), "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM items").Scan(&got); err != nil {
		s.t.Fatalf("ids on %s: %v", branch, err)
	}
	return got
}

type problemBody struct {
	Type   string `json:"type"`
	Status int    `json:"status"`
	Code   string `json:"code"`
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

func (s *e2eServer) problem(want int, method, path string, body any) problemBody {
	s.t.Helper()
	code, b := s.api(method, path, body)
	var p problemBody
	if code != want || json.Unmarshal(b, &p) != nil || p.Status != want || !strings.HasSuffix(p.Type, "/"+p.Code) {
		s.t.Fatalf("%s %s: %d %s, want a %d problem+json", method, path, code, b, want)
	}
	return p
}

// TestE2E drives the real server binary through the product's main path:
// fork, write through the proxy, diff, snapshot, restore, fork in time,
// reset, delete, errors, and a restart that keeps everything.
func TestE2E(t *testing.T) {
	s := newE2EServer(t)
	if !strings.Contains(s.stdout.String(), "psql 'postgresql://") {
		t.Errorf("serve did not print a psql command:\n%s", s.stdout)
	}
	var projects struct{ Projects []struct{ Name string } }
	s.must(200, "GET", "/v1/projects", nil, &projects)
	if len(projects.Projects) != 1 || projects.Projects[0].Name != "main" {
		t.Fatalf("projects on a fresh data dir: %+v, want just main", projects)
	}
	s.exec("main", "CREATE TABLE items (id int PRIMARY KEY, name text, emb vector(2))", "INSERT INTO items VALUES (1, 'one', '[1,1]')")

	s.must(201, "POST", "/v1/projects/main/branches", map[string]any{"name": "feature/x", "labels": map[string]string{"team": "a"}}, nil)
	s.exec("feature/x", "INSERT INTO items VALUES (2, 'two', '[2,2]')", "CREATE INDEX items_name ON items (name)")

	var d struct {
		Schema struct {
			Changed bool
			Unified string
		}
		Tables []struct {
			Table                   string
			Added, Removed, Changed int
		}
	}
	s.must(200, "GET", branchPath("feature/x")+"/diff?against=main", nil, &d)
	if !d.Schema.Changed || !strings.Contains(d.Schema.Unified, "items_name") {
		t.Errorf("schema diff misses the new index: %+v", d.Schema)
	}
	if len(d.Tables) != 1 || d.Tables[0].Added != 1 || d.Tables[0].Removed != 0 {
		t.Errorf("data diff: %+v, want one table with one added row", d.Tables)
	}

	// The endpoint log tail: Postgres' own lines, over HTTP and the CLI.
	var lg struct{ Lines []string }
	s.must(200, "GET", branchPath("feature/x")+"/endpoint/log?lines=200", nil, &lg)
	if !strings.Contains(strings.Join(lg.Lines, "\n"), "database system is ready to accept connections") {
		t.Errorf("endpoint log of feature/x lacks the ready line:\n%s", strings.Join(lg.Lines, "\n"))
	}
	if p := s.problem(400, "GET", branchPath("feature/x")+"/endpoint/log?lines=5000", nil); p.Field != "lines" {
		t.Errorf("lines=5000: %+v", p)
	}
	if out, errOut, code := run(t, context.Background(), "branch", "log", "feature/x", "-n", "200", "--server", s.http); code != 0 ||
		!strings.Contains(out, "database system is ready to accept connections") {
		t.Errorf("offshoot branch log: exit %d\n%s%s", code, out, errOut)
	}
	if code, page := s.api("GET", "/ui/projects/main/branches/feature/x", nil); code != 200 ||
		!strings.Contains(string(page), `id="endpoint-log"`) || !strings.Contains(string(page), "database system is ready to accept connections") {
		t.Errorf("branch page lacks the endpoint log (%d):\n%s", code, page)
	}

	s.must(201, "POST", branchPath("feature/x")+"/snapshots", map[string]any{"name": "snap1"}, nil)
	// The store records a history tick every second; let one pass so the
	// fork point in time below falls after snap1's writes.
	time.Sleep(1500 * time.Millisecond)
	asOf := time.Now()
	time.Sleep(1500 * time.Millisecond)
	s.exec("feature/x", "INSERT INTO items VALUES (3, 'three', '[3,3]')")
	if got := s.ids("feature/x"); got != "1,2,3" {
		t.Fatalf("feature/x ids %q", got)
	}

	s.must(201, "POST", "/v1/projects/main/snapshots/snap1/restore", map[string]any{"new_branch": "restored"}, nil)
	if got := s.ids("restored"); got != "1,2" {
		t.Errorf("branch restored from snap1 has ids %q, want 1,2", got)
	}
	s.must(201, "POST", "/v1/projects/main/branches", map[string]any{"name": "as-of", "parent_id": "feature/x", "parent_timestamp": asOf}, nil)
	if got := s.ids("as-of"); got != "1,2" {
		t.Errorf("branch forked as of %s has ids %q, want 1,2", asOf.Format(time.RFC3339Nano), got)
	}

	var page struct {
		Branches []struct {
			Name  string
			Depth int
		}
	}
	s.must(200, "GET", "/v1/projects/main/branches?label=team%3Da", nil, &page)
	if len(page.Branches) != 1 || page.Branches[0].Name != "feature/x" {
		t.Errorf("label filter: %+v", page)
	}
	var desc struct {
		Endpoint struct{ State string }
		Usage    struct {
			LogicalBytes uint64 `json:"logical_bytes"`
		}
	}
	s.must(200, "GET", branchPath("feature/x"), nil, &desc)
	if desc.Endpoint.State == "" || desc.Usage.LogicalBytes == 0 {
		t.Errorf("describe: %+v", desc)
	}

	code, metrics := s.api("GET", "/metrics", nil)
	for _, m := range []string{"offshoot_compute_endpoints", "offshoot_proxy_connections_total", "offshoot_http_request_duration_seconds"} {
		if code != 200 || !strings.Contains(string(metrics), m) {
			t.Errorf("/metrics (%d) lacks %s", code, m)
		}
	}

	s.must(200, "POST", branchPath("feature/x")+"/reset", map[string]any{"snapshot": "before-reset"}, nil)
	if got := s.ids("feature/x"); got != "1" {
		t.Errorf("after reset to main feature/x has ids %q, want 1", got)
	}
	var snaps struct{ Snapshots []struct{ Name string } }
	s.must(200, "GET", "/v1/projects/main/snapshots", nil, &snaps)
	if fmt.Sprint(snaps.Snapshots) != "[{snap1} {before-reset}]" {
		t.Errorf("snapshots %v, want snap1 and before-reset", snaps.Snapshots)
	}

	s.must(200, "PATCH", branchPath("restored"), map[string]any{"protected": true}, nil)
	if p := s.problem(409, "DELETE", branchPath("restored"), nil); p.Code != "conflict" || !strings.Contains(p.Detail, "protected") {
		t.Errorf("delete protected: %+v", p)
	}
	s.problem(409, "POST", "/v1/projects/main/branches", map[string]any{"name": "restored"})
	s.problem(404, "GET", branchPath("nope"), nil)
	s.problem(400, "POST", "/v1/projects/main/branches", map[string]any{"name": "Bad Name"})
	s.must(200, "PATCH", branchPath("restored"), map[string]any{"protected": false}, nil)
	s.must(204, "DELETE", branchPath("restored"), nil, nil)
	s.problem(404, "GET", branchPath("restored"), nil)

	projectDeleteSteps(s)

	// A branch the proxy does not know gets a Postgres ErrorResponse.
	var c struct{ URI string }
	s.must(200, "GET", branchPath("main")+"/connection?password=true", nil, &c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := pgx.Connect(ctx, strings.Replace(c.URI, "endpoint%3Dmain", "endpoint%3Dno-such-branch", 1))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Errorf("connect to an unknown branch: %v, want a Postgres ErrorResponse", err)
	}

	s.stop()
	s.start()
	s.must(200, "GET", "/v1/projects/main/branches", nil, &page)
	var names []string
	for _, b := range page.Branches {
		names = append(names, b.Name)
	}
	if fmt.Sprint(names) != "[main feature/x as-of]" { // tree order: as-of is a child of feature/x
		t.Errorf("branches after restart: %v", names)
	}
	if got := s.ids("as-of"); got != "1,2" {
		t.Errorf("as-of after restart: %q", got)
	}
	if got := s.ids("main"); got != "1" {
		t.Errorf("main after restart: %q", got)
	}
	s.stop()
	st, err := storage.Open(filepath.Join(s.dataDir, "store"), &storage.Options{GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Check(); err != nil {
		t.Error(err)
	}
}

// TestE2ETTLAndConcurrency: a 1 s TTL branch is swept while a protected
// one stays; 50 parallel forks (each name raced twice) and deletes of one
// parent leave a clean catalog with no duplicates.
func TestE2ETTLAndConcurrency(t *testing.T) {
	s := newE2EServer(t)
	cli := func(wantCode int, args ...string) string {
		t.Helper()
		out, errOut, code := run(t, context.Background(), append(args, "--server", s.http)...)
		if code != wantCode {
			t.Fatalf("offshoot %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, wantCode, out, errOut)
		}
		return out
	}
	cli(0, "branch", "create", "cli/a", "--label", "k=v", "--ttl", "1h")
	if out := cli(0, "branch", "list"); !strings.Contains(out, "  cli/a") || !strings.Contains(out, "k=v") {
		t.Errorf("branch list:\n%s", out)
	}
	if out := cli(0, "branch", "show", "cli/a"); !strings.Contains(out, "endpoint") || !strings.Contains(out, "expires") {
		t.Errorf("branch show:\n%s", out)
	}
	cli(0, "branch", "protect", "cli/a")
	cli(exitConflict, "branch", "delete", "cli/a")
	cli(0, "branch", "protect", "cli/a", "--off")
	cli(0, "snapshot", "create", "cli/a", "cli-snap")
	cli(0, "snapshot", "restore", "cli-snap", "cli/b")
	if out := cli(0, "snapshot", "list"); !strings.Contains(out, "cli-snap") {
		t.Errorf("snapshot list:\n%s", out)
	}
	cli(0, "branch", "rename", "cli/b", "cli/c")
	cli(exitNotFound, "branch", "show", "cli/b")
	if out := cli(0, "branch", "list"); !strings.Contains(out, "\n    cli/c") {
		t.Errorf("renamed branch is not a child of cli/a (its snapshot's branch):\n%s", out)
	}
	if out := cli(0, "snapshot", "restore", "cli-snap", "--onto", "cli/c"); !strings.Contains(out, "kept as snapshot cli/c.pre-restore.") {
		t.Errorf("restore --onto does not name the snapshot keeping the old head:\n%s", out)
	}
	for range 2 { // twice in a row, nothing written between
		if out := cli(0, "branch", "reset", "cli/c"); !strings.Contains(out, "old head kept as snapshot cli/c.reset.") {
			t.Errorf("branch reset:\n%s", out)
		}
	}
	cli(exitBadInput, "branch", "ttl", "main", "1h")
	if out := cli(0, "usage"); !strings.Contains(out, "cli/c") || !strings.Contains(out, "total") || !strings.Contains(out, "EST. COST") || !strings.Contains(out, "USD") {
		t.Errorf("usage:\n%s", out)
	}
	if out := cli(0, "project", "list"); !strings.Contains(out, "main") {
		t.Errorf("project list:\n%s", out)
	}
	cli(exitConflict, "branch", "delete", "cli/a")
	cli(0, "branch", "delete", "cli/a", "--cascade")
	cli(0, "snapshot", "delete", "cli-snap")
	s.must(201, "POST", "/v1/projects/main/branches", map[string]any{"name": "ttl-a", "ttl": "1s"}, nil)
	s.must(201, "POST", "/v1/projects/main/branches", map[string]any{"name": "ttl-b", "ttl": "1s", "protected": true}, nil)
	deadline := time.Now().Add(time.Minute)
	for {
		// Poll the list, not GET ttl-a: describing a branch while it is
		// deleted trips a storage bug (a Usage pin makes DeleteBranch keep
		// the timeline, and unpinning never drops it; Check then reports
		// "detached and unreferenced").
		var page struct{ Branches []struct{ Name string } }
		s.must(200, "GET", "/v1/projects/main/branches?prefix=ttl-a", nil, &page)
		if len(page.Branches) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ttl-a still there a minute after its 1 s TTL\n%s", s.log())
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.must(200, "GET", branchPath("ttl-b"), nil, nil)
	var audit struct {
		Entries []struct {
			KeyID  string `json:"key_id"`
			Action string
			Target string
			Result string
		}
	}
	s.must(200, "GET", "/v1/audit?limit=1000", nil, &audit)
	swept := false
	for _, e := range audit.Entries {
		swept = swept || (e.KeyID == "ttl-sweeper" && e.Action == "branch.delete" && e.Target == "main/ttl-a" && e.Result == "ok")
	}
	if !swept {
		t.Errorf("no audit entry of the sweeper deleting ttl-a: %+v", audit.Entries)
	}

	const n = 50
	var mu sync.Mutex
	created := map[string]int{}
	var wg sync.WaitGroup
	for i := 0; i < 2*n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			name := fmt.Sprintf("par-%d", i%n)
			code, b := s.api("POST", "/v1/projects/main/branches", map[string]any{"name": name})
			mu.Lock()
			defer mu.Unlock()
			switch code {
			case 201:
				created[name]++
			case 409:
			default:
				t.Errorf("fork %s: %d %s", name, code, b)
			}
		}(i)
	}
	wg.Wait()
	for i := 0; i < n; i++ {
		if name := fmt.Sprintf("par-%d", i); created[name] != 1 {
			t.Errorf("%s created %d times, want exactly once", name, created[name])
		}
	}
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if code, b := s.api("DELETE", branchPath(fmt.Sprintf("par-%d", i)), nil); code != 204 {
				t.Errorf("delete par-%d: %d %s", i, code, b)
			}
		}(i)
	}
	wg.Wait()
	var page struct{ Branches []struct{ Name string } }
	s.must(200, "GET", "/v1/projects/main/branches", nil, &page)
	if len(page.Branches) != 2 {
		t.Errorf("branches left: %+v, want main and ttl-b", page.Branches)
	}

	// kill -9 with an endpoint running and a client connected: the restart
	// stops the orphaned postmaster, detaches the stale mount, and the
	// committed row is there.
	s.exec("main", "CREATE TABLE crash (id int)", "INSERT INTO crash VALUES (7)")
	_ = s.conn("main")
	// Under load: a client writing on another branch while the server dies.
	s.must(201, "POST", "/v1/projects/main/branches", map[string]any{"name": "busy"}, nil)
	s.exec("busy", "CREATE TABLE load (id int)")
	busy := s.conn("busy")
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		for i := 0; ; i++ {
			if _, err := busy.Exec(context.Background(), "INSERT INTO load VALUES ($1)", i); err != nil {
				return // the server died
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	before := endpointProcs(t, s.dataDir)
	if len(before) < 4 {
		t.Fatalf("%d endpoint processes before the kill, want two clusters' worth", len(before))
	}
	s.kill()
	<-loadDone
	s.start()
	var got int
	if err := s.conn("main").QueryRow(context.Background(), "SELECT id FROM crash").Scan(&got); err != nil || got != 7 {
		t.Errorf("after kill -9 and restart: %d %v\n%s", got, err, s.log())
	}
	// Nothing of the old endpoints is left, in any state (a process stuck
	// in D on a dead FUSE connection included).
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		left := survivors(before)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("processes of the killed server's endpoints still there after the restart: %v", left)
			break
		}
	}
	s.stop()
	st, err := storage.Open(filepath.Join(s.dataDir, "store"), &storage.Options{GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Check(); err != nil {
		t.Error(err)
		bs, _ := st.Branches("main")
		for _, b := range bs {
			t.Logf("branch %+v", b)
		}
		for id := uint64(1); id < 2000; id++ {
			if tl, ok := st.Timeline(id); ok {
				t.Logf("timeline %+v", tl)
			}
		}
		sns, _ := st.Snapshots("main")
		t.Logf("snapshots %+v", sns)
	}
}

// endpointProcs lists the processes (pid → start time) whose working
// directory or command line is under dir: the postmasters and backends of
// the endpoints of a server on that data dir.
func endpointProcs(t *testing.T, dir string) map[int]string {
	t.Helper()
	out := map[int]string{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if !strings.HasPrefix(cwd, dir) && !bytes.Contains(cmd, []byte(dir)) {
			continue
		}
		if st := procStart(pid); st != "" {
			out[pid] = st
		}
	}
	return out
}

// procStart is field 22 of /proc/<pid>/stat (start time), "" when gone.
func procStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// survivors are the processes of procs still alive (same pid and start
// time), with their state.
func survivors(procs map[int]string) []string {
	var left []string
	for pid, st := range procs {
		if procStart(pid) != st {
			continue
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		state := ""
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "State:") {
				state = strings.TrimSpace(strings.TrimPrefix(l, "State:"))
			}
		}
		left = append(left, fmt.Sprintf("%d (%s)", pid, state))
	}
	return left
}
