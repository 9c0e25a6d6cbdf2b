package experiments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/experiments/masking"
	"github.com/offshootdb/offshoot/experiments/merge"
)

// maskPolicy is the policy of the masking tests: hash on the key and the
// foreign key, fake email on both email columns, null on the name.
var testMaskPolicy = masking.Policy{Rules: []masking.Rule{
	{Table: "customers", Column: "id", Method: masking.Hash},
	{Table: "public.orders", Column: "customer_id", Method: masking.Hash},
	{Table: "customers", Column: "email", Method: masking.Fake, Format: masking.Email},
	{Table: "orders", Column: "customer_email", Method: masking.Fake, Format: masking.Email},
	{Table: "customers", Column: "name", Method: masking.Null},
	{Table: "customers", Column: "phone", Method: masking.Fake, Format: masking.Phone},
}}

// maskedProject is a store service with project p whose main branch holds
// customers and orders (with a foreign key, statistics and original
// values ending in @shop.test) and the test policy.
func maskedProject(t *testing.T) (*Service, context.Context) {
	t.Helper()
	s := storeService(t, "p", nil)
	ctx := WithCaller(context.Background(), LocalCaller)
	if _, err := s.Query(ctx, QueryRequest{Project: "p", Branch: "main", SQL: `
CREATE TABLE customers (id integer PRIMARY KEY, email text UNIQUE NOT NULL, name text, phone text);
CREATE TABLE orders (id integer PRIMARY KEY, customer_id integer NOT NULL REFERENCES customers (id), customer_email text);
INSERT INTO customers SELECT i, 'user' || i || '@shop.test', 'Customer ' || i, '+41 79 ' || (1000000 + i) FROM generate_series(1, 40) i;
INSERT INTO orders SELECT i, 1 + i % 7, 'user' || (1 + i % 7) || '@shop.test' FROM generate_series(1, 200) i;
CREATE MATERIALIZED VIEW order_emails AS SELECT DISTINCT customer_email FROM orders;
ANALYZE`}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetMaskPolicy(ctx, "p", testMaskPolicy); err != nil {
		t.Fatal(err)
	}
	return s, ctx
}

// rows runs a read-only query and returns its rows as JSON.
func rows(t *testing.T, s *Service, ctx context.Context, branch, sql string) string {
	t.Helper()
	res, err := s.Query(ctx, QueryRequest{Project: "p", Branch: branch, SQL: sql, ReadOnly: true})
	if err != nil {
		t.Fatalf("%s on %s: %v", sql, branch, err)
	}
	b, _ := json.Marshal(res.Results[len(res.Results)-1].Rows)
	return string(b)
}

// TestMaskedFork: a masked fork holds no original value (rows, indexes,
// statistics, materialized views), keeps joins and foreign keys, and is
// deterministic across forks; a key with only masked scopes reads masked
// forks and nothing else, through every facade call that reads data.
func TestMaskedFork(t *testing.T) {
	t.Parallel()
	s, ctx := maskedProject(t)
	for _, n := range []string{"m1", "m2"} {
		b, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: n, Masked: true})
		if err != nil {
			t.Fatalf("masked fork %s: %v", n, err)
		}
		if b.Labels[LabelMasked] != MaskedDone {
			t.Fatalf("fork %s labels %v, want %s=%s", n, b.Labels, LabelMasked, MaskedDone)
		}
	}
	// Each count is of original values: in rows, in a materialized view,
	// in the statistics.
	const originals = `SELECT
 (SELECT count(*) FROM customers WHERE email LIKE '%@shop.test' OR name IS NOT NULL OR phone LIKE '+41 79 10000%' OR id <= 40),
 (SELECT count(*) FROM orders WHERE customer_email LIKE '%@shop.test' OR customer_id <= 7),
 (SELECT count(*) FROM order_emails WHERE customer_email LIKE '%@shop.test'),
 (SELECT count(*) FROM pg_stats WHERE tablename IN ('customers', 'orders', 'order_emails')
   AND concat(most_common_vals::text, histogram_bounds::text) LIKE '%shop.test%')`
	if got := rows(t, s, ctx, "main", originals); regexp.MustCompile(`\b0\b`).MatchString(got) {
		t.Fatalf("main shows no original values in some place (%s): the check cannot fail", got)
	}
	if got := rows(t, s, ctx, "m1", originals); got != "[[0,0,0,0]]" {
		t.Errorf("original values left in m1 (rows, orders, view, statistics): %s", got)
	}
	if got := rows(t, s, ctx, "m1", "SELECT email, phone FROM customers ORDER BY email LIMIT 1"); !regexp.MustCompile(`^\[\["[0-9a-f]{16}@example.com","\+\d\d \d\d \d{7}"\]\]$`).MatchString(got) {
		t.Errorf("masked customer %s: want a fake email and a phone keeping its format", got)
	}

	// Joins and foreign keys hold; a new foreign key validates every row.
	const join = "SELECT count(*) FROM orders o JOIN customers c ON c.id = o.customer_id AND c.email = o.customer_email"
	if a, b := rows(t, s, ctx, "main", join), rows(t, s, ctx, "m1", join); a != b || a != "[[200]]" {
		t.Errorf("join: %s rows on main, %s on m1; want 200", a, b)
	}
	if _, err := s.Query(ctx, QueryRequest{Project: "p", Branch: "m2", SQL: "ALTER TABLE orders DROP CONSTRAINT orders_customer_id_fkey, " +
		"ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customers (id)"}); err != nil {
		t.Errorf("foreign key on the masked fork: %v", err)
	}

	// Deterministic: two masked forks hold the same values.
	const all = "SELECT c.id, c.email, c.name, c.phone, o.id, o.customer_email FROM customers c JOIN orders o ON o.customer_id = c.id ORDER BY o.id"
	if a, b := rows(t, s, ctx, "m1", all), rows(t, s, ctx, "m2", all); a != b {
		t.Errorf("masked forks differ:\n%s\n%s", clip(a, 300), clip(b, 300))
	}

	// A key with only masked scopes.
	agent := WithCaller(context.Background(), Caller{KeyID: "agent", Scopes: []Scope{{Role: RoleWrite, Project: "p", Masked: true}}})
	if got := rows(t, s, agent, "m1", "SELECT count(*) FROM customers WHERE email LIKE '%@example.com'"); got != "[[40]]" {
		t.Errorf("agent on m1: %s", got)
	}
	// Its connection string on the masked fork carries the write role.
	if c, err := s.Connection(agent, ConnectionRequest{Project: "p", Branch: "m1", Password: true}); err != nil || c.User != "offshoot_write" {
		t.Errorf("agent's connection on m1: %+v %v, want offshoot_write", c, err)
	}
	// Explain runs on a throwaway fork of m1's head, which inherits the
	// masking and so is open to the agent.
	if _, err := s.Explain(agent, ExplainRequest{Project: "p", Branch: "m1", SQL: "SELECT count(*) FROM customers"}); err != nil {
		t.Errorf("agent explains on m1: %v", err)
	}
	page, err := s.ListBranches(agent, ListBranchesRequest{Project: "p"})
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, b := range page.Branches {
		listed = append(listed, b.Name)
	}
	if fmt.Sprint(listed) != "[m1 m2]" {
		t.Errorf("agent lists %v, want [m1 m2]", listed)
	}
	if _, err := s.CreateSnapshot(ctx, CreateSnapshotRequest{Project: "p", Branch: "main", Name: "before"}); err != nil {
		t.Fatal(err)
	}
	m1, err := s.GetBranch(ctx, "p", "m1")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what string
		call func() error
	}{
		{"query main", func() error {
			_, err := s.Query(agent, QueryRequest{Project: "p", Branch: "main", SQL: "SELECT email FROM customers", ReadOnly: true})
			return err
		}},
		{"explain main", func() error {
			_, err := s.Explain(agent, ExplainRequest{Project: "p", Branch: "main", SQL: "SELECT email FROM customers"})
			return err
		}},
		{"diff m1 against main", func() error {
			_, err := s.Diff(agent, DiffRequest{Project: "p", Branch: "m1", Against: "main"})
			return err
		}},
		{"vector search main", func() error {
			_, err := s.VectorSearch(agent, VectorSearchRequest{Project: "p", Branch: "main", Table: "customers", Column: "id", Vector: []float64{1}})
			return err
		}},
		{"connection to main", func() error {
			_, err := s.Connection(agent, ConnectionRequest{Project: "p", Branch: "main"})
			return err
		}},
		{"describe main", func() error { _, err := s.GetBranch(agent, "p", "main"); return err }},
		{"fork main unmasked", func() error {
			_, err := s.CreateBranch(agent, CreateBranchRequest{Project: "p", Name: "a1", ParentID: "main"})
			return err
		}},
		{"point-in-time fork of m1", func() error {
			_, err := s.CreateBranch(agent, CreateBranchRequest{Project: "p", Name: "a2", ParentID: "m1", Timestamp: &m1.CreatedAt})
			return err
		}},
		{"restore a snapshot", func() error {
			_, err := s.RestoreSnapshot(agent, RestoreRequest{Project: "p", Snapshot: "before", NewBranch: "a3"})
			return err
		}},
		{"restore onto m1", func() error {
			_, err := s.RestoreSnapshot(agent, RestoreRequest{Project: "p", Snapshot: "before", Branch: "m1"})
			return err
		}},
		{"read the policy", func() error { _, err := s.GetMaskPolicy(agent, "p"); return err }},
	} {
		if err := c.call(); !errors.Is(err, ErrForbidden) {
			t.Errorf("agent: %s: %v, want ErrForbidden", c.what, err)
		}
	}
	if sns, err := s.ListSnapshots(agent, "p"); err != nil || len(sns) != 0 {
		t.Errorf("agent lists snapshots %v, %v; want none (main's is not its to see)", sns, err)
	}
	// What the agent may fork: the head of a masked branch, or a masked
	// fork of anything.
	if b, err := s.CreateBranch(agent, CreateBranchRequest{Project: "p", Name: "a4", ParentID: "m1"}); err != nil || b.Labels[LabelMasked] != MaskedDone {
		t.Errorf("agent forks m1's head: %v, %v", b, err)
	}
	if _, err := s.CreateBranch(agent, CreateBranchRequest{Project: "p", Name: "a5", Masked: true}); err != nil {
		t.Errorf("agent makes a masked fork of main: %v", err)
	}
	if a, b := rows(t, s, agent, "a5", all), rows(t, s, agent, "a4", all); a != b {
		t.Errorf("the agent's masked fork differs from m1")
	}

	// Nobody forges or drops the marker, and a masked branch is not reset
	// onto its unmasked parent.
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "forged", Labels: map[string]string{LabelMasked: MaskedDone}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("forged label: %v, want ErrInvalid", err)
	}
	if b, err := s.UpdateBranch(ctx, UpdateBranchRequest{Project: "p", Branch: "m1", Labels: map[string]string{"task": "x"}}); err != nil || b.Labels[LabelMasked] != MaskedDone {
		t.Errorf("update labels of m1: %v, %v", b, err)
	}
	if _, err := s.ResetBranch(ctx, "p", "m1", "", true); !errors.Is(err, ErrConflict) {
		t.Errorf("reset m1 onto main: %v, want ErrConflict", err)
	}
}

// TestMaskedForkIsNoOracle: masking is deterministic per project, so a
// masked key that could mask again values it wrote on a masked branch
// would learn whether a guessed original masks to a value there. A
// masked fork of a masked head is marked masked without running the
// masking; past points and snapshots of masked branches are refused.
func TestMaskedForkIsNoOracle(t *testing.T) {
	t.Parallel()
	s, ctx := maskedProject(t)
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "m1", Masked: true}); err != nil {
		t.Fatal(err)
	}
	agent := WithCaller(context.Background(), Caller{KeyID: "agent", Scopes: []Scope{mustScope(t, "write:p::masked")}})
	// guess counts the rows of m1 whose email is that of the guess (the
	// row without a phone) on branch b.
	guess := func(ctx context.Context, b string) string {
		var email [][]string
		if err := json.Unmarshal([]byte(rows(t, s, ctx, b, "SELECT email FROM customers WHERE phone IS NULL")), &email); err != nil || len(email) != 1 {
			t.Fatalf("the guess on %s: %v %v", b, email, err)
		}
		return rows(t, s, ctx, "m1", "SELECT count(*) FROM customers WHERE phone IS NOT NULL AND email = '"+email[0][0]+"'")
	}
	if _, err := s.Query(agent, QueryRequest{Project: "p", Branch: "m1", SQL: "INSERT INTO customers VALUES (1000, 'user1@shop.test', NULL, NULL)"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSnapshot(agent, CreateSnapshotRequest{Project: "p", Branch: "m1", Name: "guessed"}); err != nil {
		t.Fatal(err)
	}
	b, err := s.CreateBranch(agent, CreateBranchRequest{Project: "p", Name: "o1", ParentID: "m1", Masked: true})
	if err != nil {
		t.Fatalf("agent's masked fork of m1's head: %v", err)
	}
	if b.Labels[LabelMasked] != MaskedDone {
		t.Errorf("o1 labels %v, want masked", b.Labels)
	}
	if got := guess(agent, "o1"); got != "[[0]]" {
		t.Errorf("the guess masks to a value of m1 on o1 (%s): masked again", got)
	}
	if got := rows(t, s, agent, "o1", "SELECT email FROM customers WHERE id = 1000"); got != `[["user1@shop.test"]]` {
		t.Errorf("the agent's row on o1: %s, want it as written", got)
	}
	now := time.Now()
	for what, req := range map[string]CreateBranchRequest{
		"a past point of m1": {Project: "p", Name: "o2", ParentID: "m1", Timestamp: &now, Masked: true},
		"a snapshot of m1":   {Project: "p", Name: "o3", Snapshot: "guessed", Masked: true},
	} {
		if _, err := s.CreateBranch(agent, req); !errors.Is(err, ErrForbidden) {
			t.Errorf("agent's masked fork of %s: %v, want ErrForbidden", what, err)
		}
	}
	// Admin may mask again (the policy may have changed), and so the
	// check above can fail.
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "o4", ParentID: "m1", Masked: true}); err != nil {
		t.Fatal(err)
	}
	if got := guess(ctx, "o4"); got != "[[1]]" {
		t.Errorf("admin's masked fork of m1: %s, want the guess masked like user1", got)
	}
}

// TestMaskFailure: a policy that does not fit the branch, or none, leaves
// no fork behind; policies are admin-only and validated.
func TestMaskFailure(t *testing.T) {
	t.Parallel()
	s, ctx := maskedProject(t)
	bad := masking.Policy{Rules: append([]masking.Rule{{Table: "customers", Column: "nope", Method: masking.Null}}, testMaskPolicy.Rules...)}
	if _, err := s.SetMaskPolicy(ctx, "p", bad); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "f1", Masked: true}); !errors.Is(err, ErrConflict) {
		t.Errorf("masked fork with a missing column: %v, want ErrConflict", err)
	}
	unique := masking.Policy{Rules: []masking.Rule{{Table: "customers", Column: "email", Method: masking.Fixed, Value: new(string)}}}
	if _, err := s.SetMaskPolicy(ctx, "p", unique); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "f2", Masked: true}); !errors.Is(err, ErrConflict) || strings.Contains(err.Error(), "shop.test") {
		t.Errorf("masked fork violating a unique index: %v, want ErrConflict quoting no value", err)
	}
	// Masking runs as the superuser: no trigger that fires in replica
	// mode, and no column of a type a user owns (its casts are the user's
	// code).
	if _, err := s.Query(ctx, QueryRequest{Project: "p", Branch: "main", SQL: `CREATE FUNCTION public.noop() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
		CREATE TRIGGER always_fires BEFORE UPDATE ON customers FOR EACH ROW EXECUTE FUNCTION public.noop();
		ALTER TABLE customers ENABLE ALWAYS TRIGGER always_fires`}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetMaskPolicy(ctx, "p", testMaskPolicy); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "f4", Masked: true}); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "always_fires") {
		t.Errorf("masked fork of a table with an ALWAYS trigger: %v, want ErrConflict naming it", err)
	}
	if _, err := s.Query(ctx, QueryRequest{Project: "p", Branch: "main", SQL: "DROP TRIGGER always_fires ON customers"}); err != nil {
		t.Fatal(err)
	}
	owner := WithCaller(context.Background(), Caller{KeyID: "w", Scopes: []Scope{{Role: RoleWrite, Project: "p"}}})
	// Nor any other code of a user's that an update runs: a check
	// constraint's function here, which would make its owner a superuser
	// on the fork. (NOT VALID: the admin's ALTER would run it on main.)
	if _, err := s.Query(owner, QueryRequest{Project: "p", Branch: "main", SQL: `CREATE FUNCTION public.chk(t text) RETURNS boolean LANGUAGE plpgsql AS $$
		BEGIN IF current_setting('is_superuser') = 'on' THEN EXECUTE 'ALTER ROLE offshoot_write SUPERUSER'; END IF; RETURN true; END$$`}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Query(ctx, QueryRequest{Project: "p", Branch: "main", SQL: "ALTER TABLE customers ADD CONSTRAINT chk_email CHECK (public.chk(email)) NOT VALID"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "f6", Masked: true}); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "function public.chk(text)") {
		t.Errorf("masked fork of a table whose check constraint calls a user's function: %v, want ErrConflict naming it", err)
	}
	if _, err := s.Query(ctx, QueryRequest{Project: "p", Branch: "main", SQL: "ALTER TABLE customers DROP CONSTRAINT chk_email"}); err != nil {
		t.Fatal(err)
	}
	// Nor through a built-in that runs SQL given as text, a domain
	// reached through an array type, or a child table's trigger.
	if _, err := s.Query(owner, QueryRequest{Project: "p", Branch: "main", SQL: `CREATE DOMAIN public.evd AS text CHECK (public.chk(VALUE))`}); err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct{ setup, undo, want string }{
		{"ALTER TABLE customers ADD CONSTRAINT c1 CHECK (query_to_xml('SELECT public.chk(''x'')', true, true, '') IS NOT NULL) NOT VALID",
			"ALTER TABLE customers DROP CONSTRAINT c1", "query_to_xml"},
		{"ALTER TABLE customers ADD CONSTRAINT c2 CHECK ((ARRAY[email])::public.evd[] IS NOT NULL) NOT VALID",
			"ALTER TABLE customers DROP CONSTRAINT c2", "evd"},
		{`CREATE TABLE customers_more () INHERITS (customers);
		  CREATE TRIGGER child_fires BEFORE UPDATE ON customers_more FOR EACH ROW EXECUTE FUNCTION public.noop();
		  ALTER TABLE customers_more ENABLE ALWAYS TRIGGER child_fires`,
			"DROP TABLE customers_more", "child_fires"},
	} {
		if _, err := s.Query(ctx, QueryRequest{Project: "p", Branch: "main", SQL: c.setup}); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("f7-%d", i)
		if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: name, Masked: true}); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("masked fork with %s: %v, want ErrConflict naming %s", c.want, err, c.want)
		}
		if _, err := s.Query(ctx, QueryRequest{Project: "p", Branch: "main", SQL: c.undo}); err != nil {
			t.Fatal(err)
		}
	}
	// A plain default that calls a user's function is no reason: an
	// update does not evaluate it.
	if _, err := s.Query(ctx, QueryRequest{Project: "p", Branch: "main", SQL: "ALTER TABLE customers ADD COLUMN note text DEFAULT public.chk('x')::text"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "f8", Masked: true}); err != nil {
		t.Errorf("masked fork of a table with a default calling a user's function: %v", err)
	}
	if _, err := s.Query(owner, QueryRequest{Project: "p", Branch: "main", SQL: "CREATE TYPE mood AS ENUM ('calm'); CREATE TABLE moods (m mood); INSERT INTO moods VALUES ('calm')"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetMaskPolicy(ctx, "p", masking.Policy{Rules: []masking.Rule{{Table: "moods", Column: "m", Method: masking.Null}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "f5", Masked: true}); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "which a user owns") {
		t.Errorf("masked fork of a column of a user's type: %v, want ErrConflict", err)
	}
	if err := s.DeleteMaskPolicy(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "f3", Masked: true}); !errors.Is(err, ErrNotFound) {
		t.Errorf("masked fork without a policy: %v, want ErrNotFound", err)
	}
	for _, n := range []string{"f1", "f2", "f3", "f4", "f5", "f6"} {
		if _, err := s.GetBranch(ctx, "p", n); !errors.Is(err, ErrNotFound) {
			t.Errorf("branch %s after failed masking: %v, want ErrNotFound", n, err)
		}
	}
	if _, err := s.SetMaskPolicy(ctx, "p", masking.Policy{Rules: []masking.Rule{{Table: "x;", Column: "c", Method: masking.Null}}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("invalid policy: %v, want ErrInvalid", err)
	}
	writer := WithCaller(context.Background(), Caller{KeyID: "w", Scopes: []Scope{{Role: RoleWrite, Project: "p"}}})
	if _, err := s.SetMaskPolicy(writer, "p", testMaskPolicy); !errors.Is(err, ErrForbidden) {
		t.Errorf("policy set by a write key: %v, want ErrForbidden", err)
	}
}

// TestMaskedMergeBase: merging two masked forks of an unmasked branch
// compares them with a masked base, so a conflict shows no original
// value, and rows neither side changed are not conflicts.
func TestMaskedMergeBase(t *testing.T) {
	t.Parallel()
	s, ctx := maskedProject(t)
	// Keys kept as they are, so that the base has the rows the sides
	// changed.
	if _, err := s.SetMaskPolicy(ctx, "p", masking.Policy{Rules: testMaskPolicy.Rules[2:]}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"m1", "m2"} {
		if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: n, Masked: true}); err != nil {
			t.Fatal(err)
		}
	}
	agent := WithCaller(context.Background(), Caller{KeyID: "a", Scopes: []Scope{{Role: RoleWrite, Project: "p", Masked: true}}})
	for n, v := range map[string]string{"m1": "one", "m2": "two"} {
		if _, err := s.Query(agent, QueryRequest{Project: "p", Branch: n, SQL: "UPDATE customers SET name = '" + v + "' WHERE id = 1"}); err != nil {
			t.Fatal(err)
		}
	}
	m, err := s.MergeBranch(agent, MergeRequest{Project: "p", Source: "m2", Target: "m1", DryRun: true, Strategy: merge.Manual})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(m)
	if strings.Contains(string(out), "@shop.test") || strings.Contains(string(out), "Customer ") || strings.Contains(string(out), "+41 79 ") {
		t.Errorf("a masked key's merge shows original values: %s", out)
	}
	if m.OpenConflicts != 1 {
		t.Errorf("merge of two masked forks that changed one row each: %d conflicts, want 1: %s", m.OpenConflicts, out)
	}
}

// TestMaskedPastNeedsParent: a key that may read a masked branch but not
// the branch it was forked from cannot fork a past point of it (which
// may predate the masking and hold the original values); its head it
// can.
func TestMaskedPastNeedsParent(t *testing.T) {
	t.Parallel()
	s, ctx := maskedProject(t)
	before := time.Now()
	time.Sleep(1100 * time.Millisecond)
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "agent/m", Masked: true}); err != nil {
		t.Fatal(err)
	}
	agent := WithCaller(context.Background(), Caller{KeyID: "a", Scopes: []Scope{{Role: RoleWrite, Project: "p", Branches: "agent/*"}}})
	if _, err := s.CreateBranch(agent, CreateBranchRequest{Project: "p", Name: "agent/past", ParentID: "agent/m", Timestamp: &before}); !errors.Is(err, ErrForbidden) {
		t.Errorf("fork of the masked branch's past by a key without main: %v, want ErrForbidden", err)
	}
	b, err := s.GetBranch(ctx, "p", "agent/m")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateBranch(agent, CreateBranchRequest{Project: "p", Name: "agent/seq", ParentID: "agent/m", LSN: b.ParentLSN}); !errors.Is(err, ErrForbidden) {
		t.Errorf("fork of the masked branch's fork point by a key without main: %v, want ErrForbidden", err)
	}
	if _, err := s.CreateSnapshot(agent, CreateSnapshotRequest{Project: "p", Branch: "agent/m", Name: "agent-past", Timestamp: &b.CreatedAt}); !errors.Is(err, ErrForbidden) {
		t.Errorf("snapshot of the masked branch's past by a key without main: %v, want ErrForbidden", err)
	}
	if _, err := s.CreateBranch(agent, CreateBranchRequest{Project: "p", Name: "agent/head", ParentID: "agent/m"}); err != nil {
		t.Errorf("fork of the masked branch's head: %v", err)
	}
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "admin-seq", ParentID: "agent/m", LSN: b.ParentLSN}); err != nil {
		t.Errorf("admin's fork of the masked branch's fork point: %v", err)
	}
}
