package experiments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/experiments/merge"
)

// exec runs sql (several statements allowed) read-write on a branch of p.
func exec(t *testing.T, s *Service, ctx context.Context, branch, sql string) {
	t.Helper()
	if _, err := s.Query(ctx, QueryRequest{Project: "p", Branch: branch, SQL: sql}); err != nil {
		t.Fatalf("%s on %s: %v", sql, branch, err)
	}
}

// super runs sql as the superuser on a branch of p, outside any
// transaction block the caller does not write (VACUUM, CHECKPOINT).
func super(tb testing.TB, s *Service, ctx context.Context, branch, sql string) {
	tb.Helper()
	c, release, err := s.connect(ctx, "p", branch, Superuser)
	if err != nil {
		tb.Fatal(err)
	}
	defer release()
	if _, err := c.Exec(ctx, sql); err != nil {
		tb.Fatalf("%s on %s: %v", sql, branch, err)
	}
}

// mergeProject is a store service with project p whose main branch holds
// customers (unique email; JSON, array and vector columns) and orders
// (foreign key to customers, serial key), and a fork f of main.
func mergeProject(t *testing.T) (*Service, context.Context) {
	t.Helper()
	s := storeService(t, "p", nil)
	ctx := WithCaller(context.Background(), LocalCaller)
	exec(t, s, ctx, "main", `
CREATE TABLE customers (id integer PRIMARY KEY, email text UNIQUE NOT NULL, name text,
  doc jsonb, tags text[], emb vector(3));
CREATE TABLE orders (id serial PRIMARY KEY, customer_id integer NOT NULL REFERENCES customers (id), total numeric CHECK (total >= 0));
INSERT INTO customers SELECT i, 'c' || i || '@x', 'Customer ' || i, jsonb_build_object('n', i), ARRAY['t' || i], ARRAY[i, i, i]::vector
  FROM generate_series(1, 50) i;
INSERT INTO orders (customer_id, total) SELECT 1 + i % 50, i FROM generate_series(1, 100) i;
CREATE TABLE big (id bigint PRIMARY KEY, pad text);
INSERT INTO big SELECT i, repeat('x', 200) FROM generate_series(1, 20000) i;
CREATE TABLE wide (id bigint PRIMARY KEY, pad text);
INSERT INTO wide SELECT i, repeat('w', 200) FROM generate_series(1, 5000) i`)
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "f", ParentID: "main"}); err != nil {
		t.Fatal(err)
	}
	return s, ctx
}

// val is the first column of the first row of a read-only query, as text.
func val(t *testing.T, s *Service, ctx context.Context, branch, sql string) string {
	t.Helper()
	res, err := s.Query(ctx, QueryRequest{Project: "p", Branch: branch, SQL: sql, ReadOnly: true})
	if err != nil {
		t.Fatalf("%s on %s: %v", sql, branch, err)
	}
	rs := res.Results[len(res.Results)-1].Rows
	if len(rs) == 0 || len(rs[0]) == 0 {
		t.Fatalf("%s on %s: no rows", sql, branch)
	}
	return fmt.Sprint(rs[0][0])
}

// dump is every row of customers and orders of a branch, as JSON.
func dump(t *testing.T, s *Service, ctx context.Context, branch string) string {
	t.Helper()
	return val(t, s, ctx, branch, `SELECT (SELECT json_agg(c ORDER BY id) FROM customers c)::text || (SELECT json_agg(o ORDER BY id) FROM orders o)::text`)
}

// TestMergeForkIntoParent: a fork that inserts, updates and deletes rows
// (vector, JSON and array values included), adds a column, an index and
// a table and draws from a sequence, merged into its unchanged parent:
// a preview changes nothing, the merge leaves no difference between the
// two, sequences cover both sides, and undo brings the parent back
// exactly.
func TestMergeForkIntoParent(t *testing.T) {
	t.Parallel()
	s, ctx := mergeProject(t)
	before := dump(t, s, ctx, "main")
	exec(t, s, ctx, "f", `
ALTER TABLE customers ADD COLUMN score integer DEFAULT 7;
CREATE INDEX customers_name ON customers (name);
CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL);
INSERT INTO notes (body) VALUES ('one'), ('two');
INSERT INTO customers (id, email, name, doc, tags, emb) VALUES (51, 'c51@x', 'New', '{"new": true}', '{a,b}', '[0.5,0.25,1]');
UPDATE customers SET name = 'Renamed', doc = doc || '{"k": [1, 2]}', tags = tags || 'x'::text, emb = '[9,9,9]', score = 1 WHERE id IN (3, 4);
DELETE FROM orders WHERE customer_id = 5;
DELETE FROM customers WHERE id = 5;
INSERT INTO orders (customer_id, total) VALUES (51, 12.5), (51, 0);
SELECT count(*) FROM big; -- sets hint bits on every page of big
UPDATE wide SET pad = 'moved' WHERE id % 97 = 0;
DELETE FROM wide WHERE id % 101 = 0;
INSERT INTO wide SELECT i, 'new' FROM generate_series(5001, 5010) i`)

	pre, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "f", Target: "main", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if pre.Status != MergePreview || pre.OpenConflicts != 0 || len(pre.Schema) == 0 {
		t.Fatalf("preview: %+v", pre)
	}
	// Every phase ran and is inside the total; the block comparison's
	// set-up is inside the rows phase.
	tm := pre.Timings
	if tm.BaseStart <= 0 || tm.Rows <= 0 || tm.Prepare <= 0 || tm.Prepare > tm.Rows ||
		tm.BaseFork+tm.BaseStart+tm.SidesStart+tm.Schema+tm.Rows+tm.Sequences > tm.Total {
		t.Fatalf("preview timings: %+v", tm)
	}
	counts := map[string]merge.TableCounts{}
	for _, c := range pre.Tables {
		counts[c.Table] = c
	}
	if c := counts["public.customers"]; c.Inserted != 1 || c.Updated != 2 || c.Deleted != 1 {
		t.Errorf("preview customers %+v, want 1 inserted, 2 updated, 1 deleted", c)
	}
	if c := counts["public.orders"]; c.Inserted != 2 || c.Deleted != 2 {
		t.Errorf("preview orders %+v, want 2 inserted, 2 deleted", c)
	}
	if c := counts["public.wide"]; c.Inserted != 10 || c.Updated != 51 || c.Deleted != 49 {
		t.Errorf("preview wide %+v, want 10 inserted, 51 updated, 49 deleted", c)
	}
	// Storage shows big untouched (but for hint bits, which f's read set on
	// every page): never read. customers, orders and wide are read only
	// where their blocks changed.
	// f wrote none of it back yet: its changes come from its WAL.
	if pre.SourceChanges != MergeFromWAL {
		t.Errorf("preview found the source's changes from %q, want its WAL", pre.SourceChanges)
	}
	if pre.SkippedByBlocks != 1 || pre.NarrowedByBlocks != 3 || pre.UnchangedTables != 1 {
		t.Errorf("preview: %d tables skipped and %d narrowed by blocks, %d unchanged; want 1, 3 and 1", pre.SkippedByBlocks, pre.NarrowedByBlocks, pre.UnchangedTables)
	}
	full, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "f", Target: "main", DryRun: true, FullCompare: true})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := fmt.Sprint(full.Tables, full.Schema), fmt.Sprint(pre.Tables, pre.Schema); a != b || full.SkippedByBlocks+full.NarrowedByBlocks != 0 {
		t.Errorf("a full comparison found\n%s\nthe block comparison\n%s", a, b)
	}
	if got := dump(t, s, ctx, "main"); got != before {
		t.Fatal("a preview changed the target")
	}
	if pre.Snapshot != "" {
		t.Errorf("a preview kept snapshot %s", pre.Snapshot)
	}

	m, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "f", Target: "main"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != MergeMerged || m.Snapshot != "pre-merge."+m.ID || len(m.Conflicts) != 0 {
		t.Fatalf("merge: %+v", m)
	}
	if !strings.Contains(m.Next, "undo") {
		t.Errorf("next after a merge: %q", m.Next)
	}
	d, err := s.Diff(ctx, DiffRequest{Project: "p", Branch: "f", Against: "main"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Schema.Changed || len(d.Tables) != 0 {
		t.Errorf("after the merge main differs from f: schema\n%s\ntables %+v", d.Schema.Unified, d.Tables)
	}
	// Both sides drew from orders_id_seq and notes_id_seq: the next value
	// on main follows the highest either side used.
	if got := val(t, s, ctx, "main", `SELECT last_value >= (SELECT max(id) FROM orders) FROM orders_id_seq`); got != "true" {
		t.Errorf("orders_id_seq on main after the merge: %s", got)
	}
	exec(t, s, ctx, "main", `INSERT INTO orders (customer_id, total) VALUES (1, 1); INSERT INTO notes (body) VALUES ('three')`)
	// The base branch is gone once the merge is done.
	if _, err := s.cfg.Store.Branch("p", "merge-base."+m.ID); err == nil {
		t.Error("the merge base branch outlived the merge")
	}

	u, err := s.UndoMerge(ctx, "p", m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if u.Status != MergeUndone {
		t.Errorf("undo: status %s", u.Status)
	}
	if got := dump(t, s, ctx, "main"); got != before {
		t.Errorf("after undo main is not back where it was:\n%s\nwant\n%s", got, before)
	}
	if got := val(t, s, ctx, "main", `SELECT count(*) FROM pg_class WHERE relname IN ('notes', 'customers_name')`); got != "0" {
		t.Errorf("after undo the merged schema is still there: %s", got)
	}
	if _, err := s.UndoMerge(ctx, "p", m.ID); !errors.Is(err, ErrConflict) {
		t.Errorf("undo twice: %v, want ErrConflict", err)
	}
	// The fork is untouched by all of it and can merge again.
	again, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "f", Target: "main", DryRun: true})
	if err != nil || again.OpenConflicts != 0 {
		t.Fatalf("merge again after undo: %+v %v", again, err)
	}
}

// TestMergeConflicts: changes to different rows of a table merge; the
// same row changed on both sides is a conflict with its three values,
// decided by each strategy or resolved by hand in a merge session; a
// change the target's unique or foreign key constraint refuses is a
// conflict too, and under fail nothing changes.
func TestMergeConflicts(t *testing.T) {
	t.Parallel()
	s, ctx := mergeProject(t)
	exec(t, s, ctx, "f", `
UPDATE customers SET name = 'from f' WHERE id IN (1, 2);
UPDATE customers SET doc = '{"f": 1}' WHERE id = 10;
INSERT INTO customers (id, email) VALUES (60, 'dup@x');
INSERT INTO orders (id, customer_id, total) VALUES (1000, 20, 5)`)
	exec(t, s, ctx, "main", `
UPDATE customers SET name = 'from main' WHERE id = 1;
UPDATE customers SET name = 'also main' WHERE id = 11;
INSERT INTO customers (id, email) VALUES (61, 'dup@x');
DELETE FROM orders WHERE customer_id = 20;
DELETE FROM customers WHERE id = 20`)
	before := dump(t, s, ctx, "main")

	m, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "f", Target: "main"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != MergeConflicts || m.OpenConflicts != 3 || m.Snapshot != "" {
		t.Fatalf("merge with conflicts under fail: status %s, %d open, snapshot %q: %+v", m.Status, m.OpenConflicts, m.Snapshot, m.Conflicts)
	}
	if got := dump(t, s, ctx, "main"); got != before {
		t.Fatal("a merge with open conflicts under fail changed the target")
	}
	byKind := map[string]merge.Conflict{}
	for _, c := range m.Conflicts {
		byKind[c.Kind+":"+c.Table] = c
	}
	row := byKind["row:public.customers"]
	if row.Key["id"] != "1" || row.SourceChange != merge.Updated || row.TargetChange != merge.Updated {
		t.Errorf("row conflict %+v", row)
	}
	for side, v := range map[string]json.RawMessage{"Customer 1": row.Base, "from f": row.Source, "from main": row.Target} {
		if !strings.Contains(string(v), `"`+side+`"`) {
			t.Errorf("row conflict: %s not in %s", side, v)
		}
	}
	if c := byKind["constraint:public.customers"]; !strings.Contains(c.Message, "customers_email_key") {
		t.Errorf("unique conflict %+v", c)
	}
	if c := byKind["constraint:public.orders"]; !strings.Contains(c.Message, "orders_customer_id_fkey") {
		t.Errorf("foreign key conflict %+v", c)
	}

	// ours: the target keeps its side of every conflict; the rest merges.
	ours, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "f", Target: "main", Strategy: merge.Ours})
	if err != nil || ours.Status != MergeMerged {
		t.Fatalf("ours: %+v %v", ours, err)
	}
	got := val(t, s, ctx, "main", `SELECT json_agg(json_build_object('id', id, 'name', name, 'doc', doc) ORDER BY id)::text FROM customers WHERE id IN (1, 2, 10, 11, 60, 61)`)
	want := `[{"id" : 1, "name" : "from main", "doc" : {"n": 1}}, {"id" : 2, "name" : "from f", "doc" : {"n": 2}}, {"id" : 10, "name" : "Customer 10", "doc" : {"f": 1}}, {"id" : 11, "name" : "also main", "doc" : {"n": 11}}, {"id" : 61, "name" : null, "doc" : null}]`
	if got != want {
		t.Errorf("after ours:\n%s\nwant\n%s", got, want)
	}
	if _, err := s.UndoMerge(ctx, "p", ours.ID); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, s, ctx, "main"); got != before {
		t.Fatal("undo of ours did not bring main back")
	}

	// theirs takes the source's side of the row conflict, but a change
	// the target refuses cannot be taken: those stay open, so nothing
	// changes.
	theirs, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "f", Target: "main", Strategy: merge.Theirs})
	if err != nil || theirs.Status != MergeConflicts || theirs.OpenConflicts != 2 {
		t.Fatalf("theirs: %+v %v", theirs, err)
	}
	for _, c := range theirs.Conflicts {
		if (c.Kind == merge.KindRow) != (c.Resolution != nil) {
			t.Errorf("theirs: conflict %s %s resolution %+v", c.Kind, c.Object, c.Resolution)
		}
	}
	if got := dump(t, s, ctx, "main"); got != before {
		t.Fatal("theirs with open constraint conflicts changed the target")
	}

	// manual: a session lists the conflicts; each is resolved; complete
	// applies them all at once.
	sess, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "f", Target: "main", Strategy: merge.Manual})
	if err != nil || sess.Status != MergeOpen || sess.OpenConflicts != 3 {
		t.Fatalf("manual: %+v %v", sess, err)
	}
	if got := dump(t, s, ctx, "main"); got != before {
		t.Fatal("preparing a merge session changed the target")
	}
	if _, err := s.CompleteMerge(ctx, "p", sess.ID); err != nil {
		t.Fatal(err)
	} else if g, _ := s.GetMerge(ctx, "p", sess.ID); g.Status != MergeOpen || g.OpenConflicts != 3 {
		t.Fatalf("complete with open conflicts: %+v", g)
	}
	for _, c := range sess.Conflicts {
		req := ResolveRequest{Project: "p", Merge: sess.ID, Conflict: c.ID}
		switch c.Kind + ":" + c.Table {
		case "row:public.customers":
			req.Choice, req.Values = merge.ChoiceCustom, json.RawMessage(`{"name": "both", "tags": ["m", "f"]}`)
		case "constraint:public.customers":
			req.Choice, req.Values = merge.ChoiceCustom, json.RawMessage(`{"email": "dup2@x"}`)
		default:
			req.Choice = merge.ChoiceOurs
		}
		if _, err := s.ResolveConflict(ctx, req); err != nil {
			t.Fatalf("resolve %s: %v", c.ID, err)
		}
	}
	if _, err := s.ResolveConflict(ctx, ResolveRequest{Project: "p", Merge: sess.ID, Conflict: "nope", Choice: "ours"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("resolve an unknown conflict: %v", err)
	}
	if _, err := s.ResolveConflict(ctx, ResolveRequest{Project: "p", Merge: sess.ID, Conflict: row.ID, Choice: "mine"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("resolve with a bad choice: %v", err)
	}
	// The session's base expires when the session sits idle; complete
	// forks it again from the same fork point.
	if b, err := s.cfg.Store.Branch("p", sess.BaseBranch); err != nil || b.ExpiresAt.IsZero() {
		t.Errorf("the session's base %s: %+v %v, want an expiry", sess.BaseBranch, b, err)
	}
	if err := s.deleteBranch(ctx, "p", sess.BaseBranch, false); err != nil {
		t.Fatal(err)
	}
	done, err := s.CompleteMerge(ctx, "p", sess.ID)
	if err != nil || done.Status != MergeMerged {
		t.Fatalf("complete: %+v %v", done, err)
	}
	got = val(t, s, ctx, "main", `SELECT json_agg(json_build_object('id', id, 'name', name, 'email', email, 'tags', tags) ORDER BY id)::text FROM customers WHERE id IN (1, 60, 61)`)
	want = `[{"id" : 1, "name" : "both", "email" : "c1@x", "tags" : ["m","f"]}, {"id" : 60, "name" : null, "email" : "dup2@x", "tags" : null}, {"id" : 61, "name" : null, "email" : "dup@x", "tags" : null}]`
	if got != want {
		t.Errorf("after the manual merge:\n%s\nwant\n%s", got, want)
	}
	if _, err := s.AbortMerge(ctx, "p", sess.ID); !errors.Is(err, ErrConflict) {
		t.Errorf("abort a completed merge: %v", err)
	}

	// abort discards a session and its base; the branches stay as they are.
	exec(t, s, ctx, "f", `UPDATE customers SET name = 'f again' WHERE id = 1`)
	after := dump(t, s, ctx, "main")
	sess2, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "f", Target: "main", Strategy: merge.Manual})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AbortMerge(ctx, "p", sess2.ID); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, s, ctx, "main"); got != after {
		t.Error("abort changed the target")
	}
	if _, err := s.cfg.Store.Branch("p", sess2.BaseBranch); err == nil || sess2.BaseBranch == "" {
		t.Errorf("base branch %q of an aborted merge: %v", sess2.BaseBranch, err)
	}
}

// TestMergeRefusals: a table without a primary key changed on both
// sides, a merge into itself, an unknown branch or project, a bad
// strategy and a protected target without the admin scope are clear
// errors.
func TestMergeRefusals(t *testing.T) {
	t.Parallel()
	s, ctx := mergeProject(t)
	exec(t, s, ctx, "main", `CREATE TABLE log (msg text); INSERT INTO log VALUES ('a')`)
	for _, b := range []string{"g", "h"} {
		if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: b, ParentID: "main"}); err != nil {
			t.Fatal(err)
		}
	}
	exec(t, s, ctx, "g", `INSERT INTO log VALUES ('from g')`)
	exec(t, s, ctx, "main", `INSERT INTO log VALUES ('from main')`)
	m, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "g", Target: "main"})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Conflicts) != 1 || m.Conflicts[0].Kind != merge.KindTable || !strings.Contains(m.Conflicts[0].Hint, "primary key") {
		t.Errorf("keyless table changed on both sides: %+v", m.Conflicts)
	}
	// Changed on one side only, it merges as a whole: sibling g into h.
	if m, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "g", Target: "h"}); err != nil || m.Status != MergeMerged {
		t.Errorf("siblings g into h: %+v %v", m, err)
	}
	if got := val(t, s, ctx, "h", `SELECT string_agg(msg, ',' ORDER BY msg) FROM log`); got != "a,from g" {
		t.Errorf("log on h after merging g: %s", got)
	}

	for _, tc := range []struct {
		req  MergeRequest
		want error
	}{
		{MergeRequest{Project: "p", Source: "f", Target: "f"}, ErrInvalid},
		{MergeRequest{Project: "p", Source: "f", Target: "nope"}, ErrNotFound},
		{MergeRequest{Project: "p", Source: "nope", Target: "main"}, ErrNotFound},
		{MergeRequest{Project: "p", Source: "f", Target: "main", Strategy: "yours"}, ErrInvalid},
		{MergeRequest{Project: "p", Source: "f", Target: ""}, ErrInvalid},
	} {
		if _, err := s.MergeBranch(ctx, tc.req); !errors.Is(err, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.req, err, tc.want)
		}
	}
	if _, err := s.UpdateBranch(ctx, UpdateBranchRequest{Project: "p", Branch: "g", Protected: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	writer := WithCaller(context.Background(), Caller{KeyID: "w", Scopes: []Scope{{Role: RoleWrite, Project: "p"}}})
	if _, err := s.MergeBranch(writer, MergeRequest{Project: "p", Source: "f", Target: "g"}); !errors.Is(err, ErrForbidden) {
		t.Errorf("merge into a protected branch with write scope: %v", err)
	}
	// Merges of an unknown project are not found, as its branches are.
	if _, err := s.ListMerges(ctx, "nosuch"); !errors.Is(err, ErrNotFound) {
		t.Errorf("merges of an unknown project: %v, want ErrNotFound", err)
	}
	reader := WithCaller(context.Background(), Caller{KeyID: "r", Scopes: []Scope{{Role: RoleRead, Project: "p"}}})
	if _, err := s.MergeBranch(reader, MergeRequest{Project: "p", Source: "f", Target: "main"}); !errors.Is(err, ErrForbidden) {
		t.Errorf("merge with read scope: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

// TestMergeSchema: schema changes each side made to different objects
// merge; the same column added with different types on both sides is a
// schema conflict that ours resolves, keeping the target's definition
// while the rest of the source's changes apply.
func TestMergeSchema(t *testing.T) {
	t.Parallel()
	s, ctx := mergeProject(t)
	exec(t, s, ctx, "f", `
ALTER TABLE customers ADD COLUMN note integer;
ALTER TABLE orders ALTER COLUMN total SET DEFAULT 1;
CREATE INDEX orders_customer ON orders (customer_id);
UPDATE customers SET name = 'f' WHERE id = 2`)
	exec(t, s, ctx, "main", `
ALTER TABLE customers ADD COLUMN note text;
CREATE TABLE audit (id int PRIMARY KEY, what text)`)
	m, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "f", Target: "main", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if m.OpenConflicts != 1 || m.Conflicts[0].Kind != merge.KindSchema || !strings.Contains(m.Conflicts[0].Object, "note") {
		t.Fatalf("the same column added with two types: %+v", m.Conflicts)
	}
	ours, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "f", Target: "main", Strategy: merge.Ours})
	if err != nil || ours.Status != MergeMerged {
		t.Fatalf("ours: %+v %v", ours, err)
	}
	got := val(t, s, ctx, "main", `SELECT format_type(atttypid, atttypmod) || ' ' || (SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_customer')
  || ' ' || (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum WHERE d.adrelid = 'orders'::regclass AND a.attname = 'total')
  || ' ' || (SELECT name FROM customers WHERE id = 2) || ' ' || to_regclass('audit')::text
  FROM pg_attribute WHERE attrelid = 'customers'::regclass AND attname = 'note'`)
	if got != "text 1 1 f audit" {
		t.Errorf("main after merging f with ours: %q, want the target's note (text), f's index, default and row, main's table", got)
	}
}

// TestMergePartitioned: a partitioned table merges through its
// partitions, rows moving into a partition the merge writes included.
func TestMergePartitioned(t *testing.T) {
	t.Parallel()
	s, ctx := mergeProject(t)
	exec(t, s, ctx, "main", `CREATE TABLE ev (id int, day date, v text, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
CREATE TABLE ev_1 PARTITION OF ev FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE ev_2 PARTITION OF ev FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
INSERT INTO ev SELECT i, '2026-01-01'::date + (i % 50), 'x' FROM generate_series(1, 100) i`)
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "g", ParentID: "main"}); err != nil {
		t.Fatal(err)
	}
	exec(t, s, ctx, "g", `UPDATE ev SET v = 'g' WHERE id % 10 = 0; INSERT INTO ev VALUES (500, '2026-02-10', 'new'); DELETE FROM ev WHERE id = 1`)
	m, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "g", Target: "main"})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(m.Tables); got != "[{public.ev_1 0 8 1} {public.ev_2 1 2 0}]" {
		t.Errorf("merged %s, want ev_1: 8 updated, 1 deleted; ev_2: 1 inserted, 2 updated", got)
	}
	d, err := s.Diff(ctx, DiffRequest{Project: "p", Branch: "g", Against: "main"})
	if err != nil || d.Schema.Changed || len(d.Tables) != 0 {
		t.Errorf("main differs from g after the merge: %+v %v", d, err)
	}
}

// TestMergeAsWriteRole: a write key's merge writes as the write role, so
// a SECURITY DEFINER function and a table the source defined arrive
// owned by it, not by the superuser (which would let the key run code as
// the superuser on the target).
func TestMergeAsWriteRole(t *testing.T) {
	t.Parallel()
	s, ctx := mergeProject(t)
	writer := WithCaller(context.Background(), Caller{KeyID: "w", Scopes: []Scope{{Role: RoleWrite, Project: "p"}}})
	exec(t, s, writer, "f", `
CREATE FUNCTION public.whoami() RETURNS text LANGUAGE sql SECURITY DEFINER AS $$ SELECT current_user::text $$;
CREATE TABLE agent_notes (id integer PRIMARY KEY, body text);
INSERT INTO agent_notes VALUES (1, 'one')`)
	m, err := s.MergeBranch(writer, MergeRequest{Project: "p", Source: "f", Target: "main"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != MergeMerged {
		t.Fatalf("merge: %+v", m)
	}
	if got := val(t, s, ctx, "main", "SELECT public.whoami()"); got != "offshoot_write" {
		t.Errorf("the merged SECURITY DEFINER function runs as %s, want offshoot_write", got)
	}
	if got := val(t, s, ctx, "main", "SELECT relowner::regrole::text FROM pg_class WHERE relname = 'agent_notes'"); got != "offshoot_write" {
		t.Errorf("the merged table is owned by %s, want offshoot_write", got)
	}
	if got := val(t, s, ctx, "main", "SELECT body FROM agent_notes WHERE id = 1"); got != "one" {
		t.Errorf("merged row: %q", got)
	}
}

// TestMergeRenamedFork: a renamed fork is the same branch under a new
// name: its fork point, creation time, history and snapshots stay, and
// merging it back into its parent applies its changes.
func TestMergeRenamedFork(t *testing.T) {
	t.Parallel()
	s, ctx := mergeProject(t)
	exec(t, s, ctx, "f", `UPDATE customers SET name = 'On f' WHERE id = 3`)
	if _, err := s.CreateSnapshot(ctx, CreateSnapshotRequest{Project: "p", Branch: "f", Name: "f-snap"}); err != nil {
		t.Fatal(err)
	}
	was, err := s.GetBranch(ctx, "p", "f")
	if err != nil {
		t.Fatal(err)
	}
	pw := func(branch string) string {
		t.Helper()
		c, err := s.Connection(ctx, ConnectionRequest{Project: "p", Branch: branch, Password: true, Role: "write"})
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(c.URI)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := u.User.Password()
		return p
	}
	oldPW := pw("f")
	time.Sleep(1100 * time.Millisecond) // a history tick between the update and the rename
	beforeRename := time.Now()
	time.Sleep(1100 * time.Millisecond)
	name := "f2"
	if _, err := s.UpdateBranch(ctx, UpdateBranchRequest{Project: "p", Branch: "f", Name: &name}); err != nil {
		t.Fatal(err)
	}
	b, err := s.GetBranch(ctx, "p", "f2")
	if err != nil {
		t.Fatal(err)
	}
	if b.ParentID != "main" || b.ParentLSN != was.ParentLSN || !b.CreatedAt.Equal(was.CreatedAt) {
		t.Errorf("renamed: parent %s at %d created %v; was %s at %d created %v", b.ParentID, b.ParentLSN, b.CreatedAt, was.ParentID, was.ParentLSN, was.CreatedAt)
	}
	if got := pw("f2"); got == "" || got != oldPW {
		t.Errorf("the renamed branch's password changed")
	}
	sns, err := s.ListSnapshots(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	for _, sn := range sns {
		if sn.Name == "f-snap" && sn.Branch != "f2" {
			t.Errorf("snapshot f-snap is of %q, want f2", sn.Branch)
		}
	}
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "pit", ParentID: "f2", Timestamp: &beforeRename}); err != nil {
		t.Errorf("point-in-time fork of the renamed branch before its rename: %v", err)
	} else if got := val(t, s, ctx, "pit", `SELECT name FROM customers WHERE id = 3`); got != "On f" {
		t.Errorf("pit reads %q", got)
	}
	m, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "f2", Target: "main"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != MergeMerged {
		t.Fatalf("merge: %+v", m)
	}
	if got := val(t, s, ctx, "main", `SELECT name FROM customers WHERE id = 3`); got != "On f" {
		t.Errorf("after merging the renamed fork main reads %q", got)
	}
}

// TestMergeRestoredFork: a fork restored onto one of its snapshots keeps
// its fork point from its parent, so merging it back applies what the
// snapshot holds.
func TestMergeRestoredFork(t *testing.T) {
	t.Parallel()
	s, ctx := mergeProject(t)
	was, err := s.GetBranch(ctx, "p", "f")
	if err != nil {
		t.Fatal(err)
	}
	exec(t, s, ctx, "f", `UPDATE customers SET name = 'Good' WHERE id = 3`)
	if _, err := s.CreateSnapshot(ctx, CreateSnapshotRequest{Project: "p", Branch: "f", Name: "good"}); err != nil {
		t.Fatal(err)
	}
	exec(t, s, ctx, "f", `UPDATE customers SET name = 'Bad' WHERE id IN (3, 4)`)
	b, err := s.RestoreSnapshot(ctx, RestoreRequest{Project: "p", Snapshot: "good", Branch: "f"})
	if err != nil {
		t.Fatal(err)
	}
	if b.ParentID != "main" || b.ParentLSN != was.ParentLSN || !b.CreatedAt.Equal(was.CreatedAt) {
		t.Errorf("restored: parent %s at %d created %v; was %s at %d created %v", b.ParentID, b.ParentLSN, b.CreatedAt, was.ParentID, was.ParentLSN, was.CreatedAt)
	}
	if got := val(t, s, ctx, "f", `SELECT string_agg(name, ',' ORDER BY id) FROM customers WHERE id IN (3, 4)`); got != "Good,Customer 4" {
		t.Errorf("f after the restore: %q", got)
	}
	m, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "f", Target: "main"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != MergeMerged {
		t.Fatalf("merge: %+v", m)
	}
	if got := val(t, s, ctx, "main", `SELECT string_agg(name, ',' ORDER BY id) FROM customers WHERE id IN (3, 4)`); got != "Good,Customer 4" {
		t.Errorf("after merging the restored fork main reads %q", got)
	}
}
