package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/offshootdb/offshoot/compute/pg"
	"github.com/offshootdb/offshoot/experiments"
)

// connTo connects to a branch of any project through the proxy as role
// (read, write, superuser; "" the strongest).
func (s *e2eServer) connTo(project, branch, role string) *pgx.Conn {
	s.t.Helper()
	var c struct{ URI string }
	q := url.Values{"password": {"true"}}
	if role != "" {
		q.Set("role", role)
	}
	s.must(200, "GET", "/v1/projects/"+url.PathEscape(project)+"/branches/"+url.PathEscape(branch)+"/connection?"+q.Encode(), nil, &c)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URI)
	if err != nil {
		s.t.Fatalf("connect to %s/%s through the proxy: %v\n%s", project, branch, err, s.log())
	}
	s.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// waitRow waits until the replica (project rep on b) sees items row id,
// and returns how long that took.
func waitRow(t *testing.T, b *e2eServer, project string, id int) time.Duration {
	t.Helper()
	start := time.Now()
	c := b.connTo(project, "main", "read")
	defer c.Close(context.Background())
	for {
		var n int
		if err := c.QueryRow(context.Background(), "SELECT count(*) FROM items WHERE id = $1", id).Scan(&n); err != nil {
			t.Fatalf("read the replica: %v", err)
		}
		if n == 1 {
			return time.Since(start)
		}
		if time.Since(start) > time.Minute {
			var r experiments.Replica
			b.must(200, "GET", "/v1/replicas/"+project, nil, &r)
			t.Fatalf("row %d not on the replica after 1 min; replica %+v lag %+v\n%s\nreplica log:\n%s", id, r, r.Lag, b.log(), b.endpointLogs())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// slots counts the replication slots named slot on a's main branch.
func slots(t *testing.T, a *e2eServer, slot string) int {
	t.Helper()
	c := a.connTo("main", "main", "superuser")
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitSlot waits for a replica slot to appear on a's main branch and
// returns its name.
func waitSlot(t *testing.T, a *e2eServer) string {
	t.Helper()
	c := a.connTo("main", "main", "superuser")
	defer c.Close(context.Background())
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		var name string
		err := c.QueryRow(context.Background(), "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'offshoot\\_%'").Scan(&name)
		if err == nil {
			return name
		}
		if !errors.Is(err, pgx.ErrNoRows) || time.Now().After(deadline) {
			t.Fatalf("no replica slot on the source: %v", err)
		}
	}
}

// TestE2EReplica runs two servers on this machine: server b keeps a
// replica of server a's main branch. It checks bad sources, that reads on
// b see commits on a (under pgbench load too), that the replica follows
// again after a restart of b and of a and stays readable while a is down,
// that a fork of it is writable, that promote makes it writable with the
// pgbench invariant intact and drops the slot on a, and that deleting a
// following replica drops its slot.
func TestE2EReplica(t *testing.T) {
	a := newE2EServer(t)
	b := newE2EServer(t)
	ctx := context.Background()
	a.exec("main", "CREATE TABLE items (id int PRIMARY KEY)", "INSERT INTO items VALUES (1), (2)")
	var src struct{ URI string }
	a.must(200, "GET", branchPath("main")+"/connection?password=true&role=replication", nil, &src)
	if !strings.Contains(src.URI, "offshoot_replication:") {
		t.Fatalf("replication URI %s", src.URI)
	}
	// The replication role reads no table through queries.
	rc, err := pgx.Connect(ctx, src.URI)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Exec(ctx, "SELECT * FROM items"); !isSQLState(err, "42501") {
		t.Fatalf("offshoot_replication read a table: %v", err)
	}
	rc.Close(ctx)

	// Bad sources: a clear error, and nothing left behind.
	if p := b.problem(400, "POST", "/v1/replicas", map[string]any{"project": "rep", "source": "not a uri"}); p.Field != "source" {
		t.Fatalf("bad URI: %+v", p)
	}
	u, _ := url.Parse(src.URI)
	u.User = url.User(u.User.Username())
	if p := b.problem(400, "POST", "/v1/replicas", map[string]any{"project": "rep", "source": u.String()}); !strings.Contains(p.Detail, "password") {
		t.Fatalf("no password: %+v", p)
	}
	u.User = url.UserPassword(u.User.Username(), "wrong")
	if p := b.problem(503, "POST", "/v1/replicas", map[string]any{"project": "rep", "source": u.String()}); !strings.Contains(p.Detail, "password authentication failed") {
		t.Fatalf("wrong password: %+v", p)
	}
	b.problem(404, "GET", "/v1/projects/rep", nil)
	b.problem(404, "GET", "/v1/replicas/rep", nil)

	if p := b.problem(400, "POST", "/v1/replicas", map[string]any{"project": "rep", "source": src.URI, "max_rate": "10"}); p.Field != "max_rate" {
		t.Fatalf("max_rate below 32 kB/s: %+v", p)
	}
	b.problem(404, "GET", "/v1/projects/rep", nil)

	var out string
	// Create with the CLI, the password kept off its command line.
	t.Setenv("OFFSHOOT_REPLICA_SOURCE", src.URI)
	out, err = runCLI(t, "replica", "create", "rep", "--server", b.http)
	if err != nil || !strings.Contains(out, "source branch") {
		t.Fatalf("replica create: %v\n%s", err, out)
	}
	if strings.Contains(out, u.User.Username()+":") {
		t.Fatalf("replica create printed the password:\n%s", out)
	}
	var r experiments.Replica
	b.must(200, "GET", "/v1/replicas/rep", nil, &r)
	if r.Slot == "" || r.SourceBranch != "main" || r.SystemID == "" || slots(t, a, r.Slot) != 1 {
		t.Fatalf("replica %+v; slot on the source: %d", r, slots(t, a, r.Slot))
	}
	b.problem(409, "POST", "/v1/replicas", map[string]any{"project": "rep", "source": src.URI})
	if got := b.idsIn("rep"); got != "1,2" {
		t.Fatalf("replica reads %q, want 1,2", got)
	}
	w := b.connTo("rep", "main", "write")
	if _, err := w.Exec(ctx, "INSERT INTO items VALUES (100)"); !isSQLState(err, "25006") {
		t.Fatalf("write on the replica: %v, want read_only_sql_transaction", err)
	}
	w.Close(ctx)
	// The query API reads it without --read-only; a write is a query
	// failure that says to promote, not an internal error.
	var qr experiments.QueryResult
	b.must(200, "POST", "/v1/projects/rep/branches/main/query", map[string]any{"sql": "SELECT count(*) FROM items"}, &qr)
	if len(qr.Results) != 1 || len(qr.Results[0].Rows) != 1 || fmt.Sprint(qr.Results[0].Rows[0][0]) != "2" {
		t.Fatalf("query on the replica: %+v", qr)
	}
	if p := b.problem(422, "POST", "/v1/projects/rep/branches/main/query", map[string]any{"sql": "INSERT INTO items VALUES (100)"}); !strings.Contains(p.Detail, "read-only replica") {
		t.Fatalf("write through the query API on the replica: %+v", p)
	}
	out, errOut, code := run(t, ctx, "query", "main", "SELECT count(*) FROM items", "-p", "rep", "--server", b.http)
	if code != 0 || !strings.Contains(out, "(1 row)") {
		t.Fatalf("offshoot query on the replica: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code = run(t, ctx, "query", "main", "INSERT INTO items VALUES (100)", "-p", "rep", "--server", b.http); code != exitQueryFailed || !strings.Contains(errOut, "promote") {
		t.Fatalf("offshoot query writing on the replica: exit %d\n%s", code, errOut)
	}

	// It follows, under pgbench load too.
	a.exec("main", "INSERT INTO items VALUES (3)")
	lag := waitRow(t, b, "rep", 3)
	t.Logf("row 3 on the replica after %v", lag)
	var srcURI struct{ URI string }
	a.must(200, "GET", branchPath("main")+"/connection?password=true", nil, &srcURI)
	pgbench := filepath.Join(pg.BinDir(), "pgbench")
	if out, err := exec.Command(pgbench, "-i", "-s", "1", "-q", srcURI.URI).CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	if out, err := exec.Command(pgbench, "-n", "-c", "2", "-T", "5", srcURI.URI).CombinedOutput(); err != nil {
		t.Fatalf("pgbench: %v\n%s", err, out)
	}
	a.exec("main", "INSERT INTO items VALUES (4)")
	waitRow(t, b, "rep", 4)
	b.must(200, "GET", "/v1/replicas/rep", nil, &r)
	if r.State != "streaming" || r.Lag == nil || r.Lag.ReplayedLSN == "" {
		t.Fatalf("replica after the load: %s %+v", r.State, r.Lag)
	}
	code, page := b.api("GET", "/ui/", nil)
	if code != 200 || !strings.Contains(string(page), `data-replica="rep"`) || !strings.Contains(string(page), "st-streaming") {
		t.Errorf("landing page (%d) does not list replica rep as streaming", code)
	}
	code, page = b.api("GET", "/ui/projects/rep/branches/main", nil)
	if code != 200 || !strings.Contains(string(page), `id="replica-info"`) || !strings.Contains(string(page), r.Slot) || !strings.Contains(string(page), "source at") {
		t.Errorf("replica's branch page (%d) shows no replica, slot or lag", code)
	}
	out, err = runCLI(t, "replica", "list", "--server", b.http)
	if err != nil || !strings.Contains(out, "rep") || !strings.Contains(out, "streaming") {
		t.Fatalf("replica list: %v\n%s", err, out)
	}

	// A restart of the replica's server: it follows again.
	b.stop()
	b.start()
	a.exec("main", "INSERT INTO items VALUES (5)")
	waitRow(t, b, "rep", 5)

	// The source's server down: the replica stays readable; it follows
	// again once the source is back (on the same address).
	a.args = append(a.args, "--proxy-addr", a.proxy)
	a.stop()
	if got := b.idsIn("rep"); got != "1,2,3,4,5" {
		t.Fatalf("replica with the source down reads %q", got)
	}
	deadline := time.Now().Add(time.Minute)
	for b.must(200, "GET", "/v1/replicas/rep", nil, &r); r.State == "streaming"; b.must(200, "GET", "/v1/replicas/rep", nil, &r) {
		if time.Now().After(deadline) {
			t.Fatal("replica still streaming 1 min after its source stopped")
		}
		time.Sleep(200 * time.Millisecond)
	}
	a.start()
	a.exec("main", "INSERT INTO items VALUES (6)")
	waitRow(t, b, "rep", 6)

	// A fork of the replica is an ordinary writable branch.
	b.must(201, "POST", "/v1/projects/rep/branches", map[string]any{"name": "scratch"}, nil)
	fc := b.connTo("rep", "scratch", "write")
	if _, err := fc.Exec(ctx, "INSERT INTO items VALUES (200)"); err != nil {
		t.Fatalf("write on a fork of the replica: %v", err)
	}
	fc.Close(ctx)

	// A following replica cannot be reset (it would stop following).
	if p := b.problem(409, "POST", "/v1/projects/rep/branches/main/reset", map[string]any{}); !strings.Contains(p.Detail, "replica") {
		t.Fatalf("reset of a following replica: %+v", p)
	}

	// Promote: writable, slot dropped on the source, pgbench invariant.
	out, err = runCLI(t, "replica", "promote", "rep", "--server", b.http)
	if err != nil || !strings.Contains(out, "promoted") || strings.Contains(out, "warning") {
		t.Fatalf("replica promote: %v\n%s", err, out)
	}
	if n := slots(t, a, r.Slot); n != 0 {
		t.Fatalf("%d slots %s on the source after promote", n, r.Slot)
	}
	b.problem(409, "POST", "/v1/replicas/rep/promote", nil)
	pc := b.connTo("rep", "main", "write")
	if _, err := pc.Exec(ctx, "INSERT INTO items VALUES (7)"); err != nil {
		t.Fatalf("write on the promoted replica: %v", err)
	}
	checkPgbenchInvariant(t, pc, "on the promoted replica")
	pc.Close(ctx)

	// Deleting a following replica drops its slot on the source.
	var r2 experiments.Replica
	b.must(201, "POST", "/v1/replicas", map[string]any{"project": "rep2", "source": src.URI}, &r2)
	if slots(t, a, r2.Slot) != 1 {
		t.Fatalf("no slot %s on the source", r2.Slot)
	}
	var deleted experiments.Replica
	b.must(200, "DELETE", "/v1/replicas/rep2", nil, &deleted)
	if len(deleted.Warnings) != 0 || slots(t, a, r2.Slot) != 0 {
		t.Fatalf("delete: warnings %v, slots left %d", deleted.Warnings, slots(t, a, r2.Slot))
	}
	b.problem(404, "GET", "/v1/projects/rep2", nil)
	// Nor does its password to the source stay on disk (the promoted
	// replica's went at its promotion).
	if left, _ := filepath.Glob(filepath.Join(b.dataDir, "run", "compute", "*", "primary.pgpass")); len(left) != 0 {
		t.Fatalf("a deleted replica's password to its source is left: %v", left)
	}

	// A crash of the replica's server during the initial copy (slowed
	// down with max_rate): the next start removes the project, its
	// records and the slot the copy created on the source.
	created := make(chan string, 1)
	go func() {
		body := strings.NewReader(fmt.Sprintf(`{"project":"rep4","source":%q,"max_rate":"32k"}`, src.URI))
		resp, err := http.Post(b.http+"/v1/replicas", "application/json", body)
		if err != nil {
			created <- err.Error()
			return
		}
		resp.Body.Close()
		created <- resp.Status
	}()
	slot := waitSlot(t, a)
	var seeding experiments.Replica
	b.must(200, "GET", "/v1/replicas/rep4", nil, &seeding)
	if seeding.State != "seeding" || seeding.Slot != slot {
		t.Fatalf("replica during its copy: %+v, want seeding with slot %s", seeding, slot)
	}
	b.problem(409, "DELETE", "/v1/replicas/rep4", nil)
	b.problem(409, "POST", "/v1/replicas/rep4/promote", nil)
	b.kill()
	t.Logf("create cut by the kill: %s", <-created)
	b.start()
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		c1, _ := b.api("GET", "/v1/replicas/rep4", nil)
		c2, _ := b.api("GET", "/v1/projects/rep4", nil)
		n := slots(t, a, slot)
		if c1 == 404 && c2 == 404 && n == 0 {
			t.Logf("after the restart:\n%s", b.logLines("left"))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("2 min after a crash during the copy: replica %d, project %d, slots %d\n%s", c1, c2, n, b.logLines("replica"))
		}
	}

	// Nor is the copy's mount left behind (its FUSE server died with the
	// server): the restart detached it.
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if init := filepath.Join(b.dataDir, "run", "init"); strings.Contains(string(mounts), " "+init+"/") {
		t.Fatalf("a mount under %s survived the restart:\n%s", init, mounts)
	}

	// MCP (a key makes the API require keys from here on).
	var admin struct {
		Token string `json:"token"`
	}
	b.must(201, "POST", "/v1/keys", map[string]any{"name": "admin", "scopes": []string{"admin"}}, &admin)
	mc := b.mcpAs(admin.Token)
	if text, isErr := mcpCall(t, mc, "list_replicas", map[string]any{}); isErr || !strings.Contains(text, "rep: promoted") {
		t.Fatalf("list_replicas: %s", text)
	}
	if text, isErr := mcpCall(t, mc, "create_replica", map[string]any{"project": "rep3", "source": "postgresql://x@127.0.0.1:1/postgres"}); !isErr || !strings.Contains(text, "password") {
		t.Fatalf("create_replica without a password: %s", text)
	}
}

func isSQLState(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

// idsIn returns the ordered ids of table items on project's main branch.
func (s *e2eServer) idsIn(project string) string {
	s.t.Helper()
	c := s.connTo(project, "main", "read")
	defer c.Close(context.Background())
	var got string
	if err := c.QueryRow(context.Background(), "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM items").Scan(&got); err != nil {
		s.t.Fatalf("ids on %s: %v", project, err)
	}
	return got
}

// endpointLogs returns the tails of the server's endpoint logs.
func (s *e2eServer) endpointLogs() string {
	var b strings.Builder
	logs, _ := filepath.Glob(filepath.Join(s.dataDir, "run", "compute", "*", "postgres.log"))
	for _, l := range logs {
		fmt.Fprintf(&b, "== %s\n%s\n", l, pg.LastLines(l, 15))
	}
	return b.String()
}
