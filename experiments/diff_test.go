package experiments_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/offshootdb/offshoot/experiments"
)

func execAll(t *testing.T, conn *pgx.Conn, sqls ...string) {
	t.Helper()
	for _, q := range sqls {
		if _, err := conn.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// seed is the same starting state on both clusters, as a fork would have.
var seed = []string{
	`CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, emb vector(3))`,
	`INSERT INTO items SELECT g, 'item ' || g, ARRAY[g, g, g]::vector FROM generate_series(1, 200) g`,
	`CREATE TABLE tags (k text, n int, PRIMARY KEY (k, n))`,
	`INSERT INTO tags SELECT 'tag' || g, g % 7 FROM generate_series(1, 50) g`,
	`CREATE TABLE log (msg text)`,
	`INSERT INTO log SELECT 'm' || g FROM generate_series(1, 10) g`,
	`CREATE TABLE "Odd ""name""" (id bigint PRIMARY KEY, v text)`,
	`INSERT INTO "Odd ""name""" VALUES (1, 'a'), (10, 'b'), (9, 'c')`,
}

func TestDiff(t *testing.T) {
	t.Parallel()
	base, head := pgtest.New(t, nil), pgtest.New(t, nil)
	bc, hc := base.Connect(t), head.Connect(t)
	execAll(t, bc, seed...)
	execAll(t, hc, seed...)
	s := newService(t, experiments.StaticConnector{"p/main": base.ConnString, "p/feature/x": head.ConnString})
	ctx := admin()

	same, err := s.Diff(ctx, experiments.DiffRequest{Project: "p", Branch: "feature/x", Against: "main"})
	if err != nil {
		t.Fatal(err)
	}
	if same.Schema.Changed || same.Schema.Unified != "" {
		t.Errorf("identical clusters differ in schema:\n%s", same.Schema.Unified)
	}
	if len(same.Tables) != 1 || same.Tables[0].Table != "public.log" || same.Tables[0].Status != "unknown" ||
		same.Tables[0].BaseRows != 10 || same.Tables[0].BranchRows != 10 {
		t.Errorf("identical clusters: tables %+v, want only public.log without a key", same.Tables)
	}
	if same.ChangedBytes != nil {
		t.Error("changed_bytes set before storage provides it")
	}

	execAll(t, hc,
		`CREATE TABLE added (id serial PRIMARY KEY, note text DEFAULT 'x')`,
		`INSERT INTO added (note) VALUES ('a'), ('b')`,
		`CREATE INDEX items_name ON items (name)`,
		`CREATE FUNCTION twice(x int) RETURNS int LANGUAGE sql AS 'SELECT 2 * x'`,
		`UPDATE items SET name = 'renamed ' || id WHERE id IN (5, 150, 199)`,
		`UPDATE items SET emb = '[0,0,1]' WHERE id = 7`,
		`DELETE FROM items WHERE id IN (1, 100)`,
		`INSERT INTO items SELECT g, 'new', NULL FROM generate_series(201, 204) g`,
		`DELETE FROM tags WHERE k = 'tag3'`,
		`INSERT INTO tags VALUES ('tag3', 3), ('a', 1)`,
		`UPDATE "Odd ""name""" SET v = 'z' WHERE id = 10`,
		`INSERT INTO log VALUES ('more')`,
		`DROP TABLE IF EXISTS nothing`,
	)
	execAll(t, bc, `CREATE TABLE gone (id int PRIMARY KEY)`, `INSERT INTO gone VALUES (1)`)

	d, err := s.Diff(ctx, experiments.DiffRequest{Project: "p", Branch: "feature/x", Against: "main", SampleRows: 2})
	if err != nil {
		t.Fatal(err)
	}
	u := d.Schema.Unified
	for _, want := range []string{
		"--- main\n+++ feature/x\n",
		"+CREATE TABLE public.added (\n+    id integer DEFAULT nextval('added_id_seq'::regclass) NOT NULL,\n+    note text DEFAULT 'x'::text\n+);",
		"+ALTER TABLE public.added ADD CONSTRAINT added_pkey PRIMARY KEY (id);",
		"+CREATE SEQUENCE public.added_id_seq AS integer",
		"+CREATE INDEX items_name ON public.items USING btree (name);",
		"+CREATE OR REPLACE FUNCTION public.twice(x integer)",
		"-CREATE TABLE public.gone (",
	} {
		if !strings.Contains(u, want) {
			t.Errorf("schema diff lacks %q:\n%s", want, u)
		}
	}
	if strings.Contains(u, "vector") {
		t.Errorf("schema diff mentions unchanged objects:\n%s", u)
	}
	got := map[string]experiments.TableDiff{}
	for _, td := range d.Tables {
		got[td.Table] = td
	}
	check := func(name, status string, baseRows, branchRows, added, removed, changed int64) experiments.TableDiff {
		t.Helper()
		td, ok := got[name]
		if !ok {
			t.Errorf("no diff for %s in %+v", name, d.Tables)
			return td
		}
		if td.Status != status || td.BaseRows != baseRows || td.BranchRows != branchRows || td.Added != added || td.Removed != removed || td.Changed != changed {
			t.Errorf("%s: %s rows %d→%d +%d -%d ~%d, want %s rows %d→%d +%d -%d ~%d", name,
				td.Status, td.BaseRows, td.BranchRows, td.Added, td.Removed, td.Changed,
				status, baseRows, branchRows, added, removed, changed)
		}
		return td
	}
	items := check("public.items", "changed", 200, 202, 4, 2, 4)
	check("public.tags", "changed", 50, 51, 1, 0, 0)
	odd := check(`public.Odd "name"`, "changed", 3, 3, 0, 0, 1)
	check("public.log", "unknown", 10, 11, 0, 0, 0)
	check("public.added", "added", 0, 2, 2, 0, 0)
	check("public.gone", "removed", 1, 0, 0, 1, 0)
	if len(d.Tables) != 6 {
		t.Errorf("%d tables in diff, want 6", len(d.Tables))
	}

	// Samples: 2 per kind, in key order (integers numerically).
	var kinds []string
	for _, sm := range items.Samples {
		kinds = append(kinds, sm.Kind+":"+sm.Key["id"])
	}
	if got, want := strings.Join(kinds, " "), "added:201 added:202 removed:1 removed:100 changed:5 changed:7"; got != want {
		t.Errorf("items samples %s, want %s", got, want)
	}
	for _, sm := range items.Samples {
		switch sm.Kind {
		case "changed":
			if sm.Old == nil || sm.New == nil {
				t.Errorf("changed sample without both sides: %+v", sm)
			}
			if sm.Key["id"] == "5" && (!strings.Contains(string(sm.Old), `"name": "item 5"`) || !strings.Contains(string(sm.New), `"name": "renamed 5"`)) {
				t.Errorf("changed row 5: old %s new %s", sm.Old, sm.New)
			}
		case "added":
			if sm.Old != nil || sm.New == nil {
				t.Errorf("added sample: %+v", sm)
			}
		case "removed":
			if sm.Old == nil || sm.New != nil {
				t.Errorf("removed sample: %+v", sm)
			}
		}
	}
	if len(odd.Samples) != 1 || odd.Samples[0].Key["id"] != "10" {
		t.Errorf("odd samples %+v", odd.Samples)
	}
}
