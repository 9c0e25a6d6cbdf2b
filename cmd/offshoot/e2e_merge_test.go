package main

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/compute/pg"
)

// TestE2EMerge merges through the server binary's surfaces: the CLI
// previews and merges a fork into main while pgbench writes to main
// through the proxy (the pgbench invariant holds and amcheck is clean
// afterwards), and an agent resolves a conflict over MCP with a write
// key, completes the merge and undoes it.
func TestE2EMerge(t *testing.T) {
	s := newE2EServer(t)
	var c struct{ URI string }
	s.must(200, "GET", branchPath("main")+"/connection?password=true", nil, &c)
	pgbench := filepath.Join(pg.BinDir(), "pgbench")
	if out, err := exec.Command(pgbench, "-i", "-s", "2", "-q", c.URI).CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	s.exec("main",
		`CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, emb vector(2))`,
		`INSERT INTO items SELECT g, 'item ' || g, ARRAY[g, 0]::vector FROM generate_series(1, 1000) g`)
	s.must(201, "POST", "/v1/projects/main/branches", map[string]any{"name": "fix"}, nil)
	s.exec("fix",
		`ALTER TABLE items ADD COLUMN rank int`,
		`UPDATE items SET rank = id % 10, name = upper(name) WHERE id <= 300`,
		`DELETE FROM items WHERE id > 990`,
		`INSERT INTO items SELECT g, 'new ' || g, NULL, 1 FROM generate_series(2001, 2100) g`,
		`CREATE INDEX items_rank ON items (rank)`)

	out, err := runCLI(t, "branch", "merge", "fix", "--into", "main", "--dry-run", "--server", s.http)
	if err != nil || !strings.Contains(squash(out), "status preview") || !strings.Contains(squash(out), "public.items 100 300 10") {
		t.Fatalf("merge --dry-run: %v\n%s", err, out)
	}

	bench := exec.Command(pgbench, "-n", "-c", "2", "-T", "20", c.URI)
	var benchOut strings.Builder
	bench.Stdout, bench.Stderr = &benchOut, &benchOut
	if err := bench.Start(); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, "branch", "merge", "fix", "--into", "main", "--server", s.http)
	if err != nil || !strings.Contains(squash(out), "status merged") {
		t.Fatalf("merge under pgbench: %v\n%s", err, out)
	}
	if err := bench.Wait(); err != nil {
		t.Fatalf("pgbench during the merge: %v\n%s", err, benchOut.String())
	}
	conn := s.conn("main")
	ctx := context.Background()
	checkPgbenchInvariant(t, conn, "after the merge")
	if _, err := conn.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS amcheck`); err != nil {
		t.Fatal(err)
	}
	var checked int
	if err := conn.QueryRow(ctx, `SELECT count(bt_index_check(c.oid, true)) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_am a ON a.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace WHERE a.amname = 'btree' AND n.nspname = 'public'`).Scan(&checked); err != nil || checked != 5 {
		t.Fatalf("amcheck after the merge: %d indexes checked, want 5 (3 of pgbench, items_pkey, items_rank): %v", checked, err)
	}
	var got string
	if err := conn.QueryRow(ctx, `SELECT count(*) || ' ' || count(rank) || ' ' || max(name) FROM items`).Scan(&got); err != nil || got != "1090 400 new 2100" {
		t.Fatalf("items on main after the merge: %q %v", got, err)
	}

	// An agent with a write key on main resolves a conflict over MCP.
	s.must(201, "POST", "/v1/projects/main/branches", map[string]any{"name": "agent-1"}, nil)
	s.exec("agent-1", `UPDATE items SET name = 'agent' WHERE id = 7`, `UPDATE items SET name = 'agent only' WHERE id = 8`)
	s.exec("main", `UPDATE items SET name = 'main' WHERE id = 7`)
	var admin, agent, reader struct {
		Token string `json:"token"`
	}
	s.must(201, "POST", "/v1/keys", map[string]any{"name": "admin", "scopes": []string{"admin"}}, &admin)
	s.mustAs(admin.Token, 201, "POST", "/v1/keys", map[string]any{"name": "agent", "scopes": []string{"write:main"}}, &agent)
	s.mustAs(admin.Token, 201, "POST", "/v1/keys", map[string]any{"name": "reader", "scopes": []string{"read:main"}}, &reader)
	mc := s.mcpAs(agent.Token)
	text, isErr := mcpCall(t, mc, "merge_branch", map[string]any{"source": "agent-1", "target": "main", "dry_run": true})
	if isErr || !strings.Contains(squash(text), "status preview") || !strings.Contains(squash(text), "(row, OPEN)") {
		t.Fatalf("merge_branch preview: %s", text)
	}
	var m struct {
		ID        string
		Conflicts []struct{ ID string }
	}
	text, isErr = mcpCall(t, mc, "merge_branch", map[string]any{"source": "agent-1", "target": "main", "strategy": "manual"})
	if isErr {
		t.Fatalf("merge_branch manual: %s", text)
	}
	s.mustAs(agent.Token, 200, "GET", "/v1/projects/main/merges", nil, nil)
	var list struct{ Merges []json.RawMessage }
	s.mustAs(agent.Token, 200, "GET", "/v1/projects/main/merges", nil, &list)
	if len(list.Merges) != 2 {
		t.Fatalf("%d merges listed, want 2 (the CLI's merge and the session; previews are not kept)", len(list.Merges))
	}
	_ = json.Unmarshal(list.Merges[0], &m)
	s.mustAs(agent.Token, 200, "GET", "/v1/projects/main/merges/"+m.ID, nil, &m)
	if len(m.Conflicts) != 1 {
		t.Fatalf("session %s: %d conflicts", m.ID, len(m.Conflicts))
	}
	// The web page shows the conflict's three sides and its resolve
	// actions, and where the source's changes came from (agent-1 wrote
	// none of its pages back yet: its WAL).
	code, page := s.apiAs(agent.Token, "GET", "/ui/projects/main/merges/"+m.ID, nil)
	for _, want := range []string{"conflict-" + m.Conflicts[0].ID, "unwritten changes read from its WAL", "Keep target (ours)", "Resolve with values", `&#34;name&#34;: &#34;agent&#34;`, `&#34;name&#34;: &#34;main&#34;`, `&#34;name&#34;: &#34;ITEM 7&#34;`} {
		if code != 200 || !strings.Contains(string(page), want) {
			t.Errorf("merge page (%d): no %q", code, want)
		}
	}
	if code, page := s.apiAs(agent.Token, "GET", "/ui/projects/main/merges", nil); code != 200 || !strings.Contains(string(page), m.ID) {
		t.Errorf("merges page (%d) does not list %s", code, m.ID)
	}
	text, isErr = mcpCall(t, mc, "resolve_conflict", map[string]any{"merge": m.ID, "conflict": m.Conflicts[0].ID, "choice": "custom", "values": map[string]any{"name": "both"}})
	if isErr || !strings.Contains(squash(text), "resolved: custom") {
		t.Fatalf("resolve_conflict: %s", text)
	}
	text, isErr = mcpCall(t, mc, "complete_merge", map[string]any{"merge": m.ID})
	if isErr || !strings.Contains(squash(text), "status merged") {
		t.Fatalf("complete_merge: %s", text)
	}
	if err := conn.QueryRow(ctx, `SELECT string_agg(name, ',' ORDER BY id) FROM items WHERE id IN (7, 8)`).Scan(&got); err != nil || got != "both,agent only" {
		t.Fatalf("items 7 and 8 after the agent's merge: %q %v", got, err)
	}
	conn.Close(ctx)
	text, isErr = mcpCall(t, mc, "undo_merge", map[string]any{"merge": m.ID})
	if isErr || !strings.Contains(squash(text), "status undone") {
		t.Fatalf("undo_merge: %s", text)
	}
	if conn, err = pgx.Connect(ctx, c.URI); err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SELECT string_agg(name, ',' ORDER BY id) FROM items WHERE id IN (7, 8)`).Scan(&got); err != nil || got != "main,ITEM 8" {
		t.Fatalf("items 7 and 8 after undo: %q %v", got, err)
	}
	// Every step is in the audit log, with the key that took it.
	code, audit := s.apiAs(admin.Token, "GET", "/v1/audit?limit=200", nil)
	for _, action := range []string{"branch.merge", "merge.resolve", "merge.complete", "merge.undo"} {
		if code != 200 || !strings.Contains(string(audit), `"action":"`+action+`"`) {
			t.Errorf("audit log (%d) has no %s", code, action)
		}
	}
	// A read key may not merge.
	if code, body := s.apiAs(reader.Token, "POST", branchPath("agent-1")+"/merge", map[string]any{"target": "main"}); code != 403 {
		t.Errorf("merge with a read key: %d %s", code, body)
	}
}

// squash collapses the runs of white space of tabular output.
func squash(s string) string { return strings.Join(strings.Fields(s), " ") }

// checkPgbenchInvariant checks pgbench TPC-B's balance invariant on conn:
// the accounts, branches, tellers and history sum to the same, and some
// transactions ran.
func checkPgbenchInvariant(t testing.TB, conn *pgx.Conn, where string) {
	t.Helper()
	var ok bool
	if err := conn.QueryRow(context.Background(), `SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT sum(bbalance) FROM pgbench_branches)
  AND (SELECT sum(bbalance) FROM pgbench_branches) = (SELECT sum(tbalance) FROM pgbench_tellers)
  AND (SELECT sum(tbalance) FROM pgbench_tellers) = (SELECT sum(delta) FROM pgbench_history)
  AND (SELECT count(*) FROM pgbench_history) > 0`).Scan(&ok); err != nil || !ok {
		t.Fatalf("pgbench invariant %s: %t %v", where, ok, err)
	}
}
