package experiments

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/offshootdb/offshoot/experiments/merge"
)

// smallMergeProject is a store service with project p whose main branch
// ran setup, and a fork f of main: for merges of a few rows.
func smallMergeProject(t *testing.T, setup string) (*Service, context.Context) {
	t.Helper()
	s := storeService(t, "p", nil)
	ctx := WithCaller(context.Background(), LocalCaller)
	exec(t, s, ctx, "main", setup)
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "f", ParentID: "main"}); err != nil {
		t.Fatal(err)
	}
	return s, ctx
}

// TestMergeCustomValues: custom values naming a column the row does not
// have or changing its key are refused when given; values the target
// refuses when the merge completes reopen their own conflict, not
// another one.
func TestMergeCustomValues(t *testing.T) {
	t.Parallel()
	s, ctx := smallMergeProject(t, `CREATE TABLE cv (id int PRIMARY KEY, s text, n int NOT NULL);
INSERT INTO cv VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3)`)
	exec(t, s, ctx, "f", `UPDATE cv SET s = 'f' || id`)
	exec(t, s, ctx, "main", `UPDATE cv SET s = 'main' || id`)
	sess, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "f", Target: "main", Strategy: merge.Manual})
	if err != nil || sess.OpenConflicts != 3 {
		t.Fatalf("manual: %+v %v", sess, err)
	}
	byKey := map[string]string{}
	for _, c := range sess.Conflicts {
		byKey[c.Key["id"]] = c.ID
	}
	for _, v := range []string{`{"nosuch": 1}`, `{"id": 999}`, `{"s": "x", "id": "4"}`} {
		_, err := s.ResolveConflict(ctx, ResolveRequest{Project: "p", Merge: sess.ID, Conflict: byKey["1"], Choice: merge.ChoiceCustom, Values: json.RawMessage(v)})
		var fe *FieldError
		if !errors.Is(err, ErrInvalid) || !errors.As(err, &fe) || fe.Field != "values" {
			t.Errorf("custom values %s: %v, want an invalid values error", v, err)
		}
	}
	for id, req := range map[string]ResolveRequest{
		"1": {Choice: merge.ChoiceCustom, Values: json.RawMessage(`{"id": 1, "n": null}`)},
		"2": {Choice: merge.ChoiceTheirs},
		"3": {Choice: merge.ChoiceOurs},
	} {
		req.Project, req.Merge, req.Conflict = "p", sess.ID, byKey[id]
		if _, err := s.ResolveConflict(ctx, req); err != nil {
			t.Fatalf("resolve %s: %v", id, err)
		}
	}
	done, err := s.CompleteMerge(ctx, "p", sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != MergeOpen || done.OpenConflicts != 1 {
		t.Fatalf("complete with refused custom values: status %s, %d open", done.Status, done.OpenConflicts)
	}
	for _, c := range done.Conflicts {
		refused := strings.Contains(c.Message, "refuses the custom values")
		if open := c.Resolution == nil; open != (c.Key["id"] == "1") || refused != open {
			t.Errorf("conflict of id %s: resolution %+v, message %q; want only id 1 reopened, with why", c.Key["id"], c.Resolution, c.Message)
		}
	}
}

// TestMergeKeptTable: a table the source dropped (or renamed) and the
// target changed, kept by ours, keeps its primary key and indexes; a
// renamed table the target left alone is renamed with them.
func TestMergeKeptTable(t *testing.T) {
	t.Parallel()
	s, ctx := smallMergeProject(t, `CREATE TABLE d_tab (id int PRIMARY KEY, v text); CREATE INDEX d_tab_v ON d_tab (v);
CREATE TABLE rt (id int PRIMARY KEY, v text); CREATE INDEX rt_v ON rt (v);
CREATE TABLE kt (id int PRIMARY KEY, v text); CREATE INDEX kt_v ON kt (v);
INSERT INTO d_tab VALUES (1, 'a'), (2, 'b'); INSERT INTO rt SELECT * FROM d_tab; INSERT INTO kt SELECT * FROM d_tab`)
	exec(t, s, ctx, "f", `DROP TABLE d_tab; ALTER TABLE rt RENAME TO rt2; ALTER TABLE kt RENAME TO kt2`)
	exec(t, s, ctx, "main", `UPDATE d_tab SET v = 'main' WHERE id = 1; UPDATE kt SET v = 'main' WHERE id = 2`)
	m, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "f", Target: "main", Strategy: merge.Ours})
	if err != nil || m.Status != MergeMerged {
		t.Fatalf("ours: %+v %v", m, err)
	}
	for _, ddl := range m.Schema {
		if strings.Contains(ddl, "d_tab") || strings.Contains(ddl, "public.kt ") || strings.Contains(ddl, "DROP INDEX") || strings.Contains(ddl, "DROP CONSTRAINT") {
			t.Errorf("ours replayed %s", ddl)
		}
	}
	got := val(t, s, ctx, "main", `SELECT string_agg(c.relname || ':' || coalesce((SELECT string_agg(i.indexrelid::regclass::text, ',' ORDER BY 1) FROM pg_index i WHERE i.indrelid = c.oid), ''), ' ' ORDER BY c.relname)
  || ' ' || (SELECT string_agg(v, ',' ORDER BY id) FROM d_tab) || ' ' || (SELECT string_agg(v, ',' ORDER BY id) FROM rt2)
  FROM pg_class c WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace`)
	// kt2 is created too, but its key and index names are kt's: refused
	// by the target and kept out by ours.
	if want := "d_tab:d_tab_pkey,d_tab_v kt:kt_pkey,kt_v kt2: rt2:rt_pkey,rt_v main,b a,b"; got != want {
		t.Errorf("main after ours:\n%s\nwant\n%s", got, want)
	}
}

// TestMergeWidenedKey: a primary key widened on one side (integer to
// bigint) still merges row by row, by key.
func TestMergeWidenedKey(t *testing.T) {
	t.Parallel()
	s, ctx := smallMergeProject(t, `CREATE TABLE kw (id int PRIMARY KEY, v text); INSERT INTO kw SELECT i, 'base' FROM generate_series(1, 5) i`)
	exec(t, s, ctx, "f", `ALTER TABLE kw ALTER COLUMN id TYPE bigint; UPDATE kw SET v = 'f' WHERE id = 2; INSERT INTO kw VALUES (6000000000, 'f')`)
	exec(t, s, ctx, "main", `UPDATE kw SET v = 'main' WHERE id = 1`)
	m, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "f", Target: "main"})
	if err != nil || m.Status != MergeMerged {
		t.Fatalf("merge: %+v %v", m, err)
	}
	got := val(t, s, ctx, "main", `SELECT (SELECT format_type(atttypid, NULL) FROM pg_attribute WHERE attrelid = 'kw'::regclass AND attname = 'id') || ' ' || string_agg(id || '=' || v, ',' ORDER BY id) FROM kw`)
	if want := "bigint 1=main,2=f,3=base,4=base,5=base,6000000000=f"; got != want {
		t.Errorf("kw on main: %s, want %s", got, want)
	}
}

// TestMergeDroppedColumn: a column one side dropped while the other
// changed values in it is a schema conflict, like a table dropped on one
// side and changed on the other: ours keeps the target's column (and
// values), theirs takes the source's drop. A column renamed on one side
// is no such conflict: the rename is replayed, or the source's changes
// land under the target's name.
func TestMergeDroppedColumn(t *testing.T) {
	t.Parallel()
	s, ctx := smallMergeProject(t, `CREATE TABLE dc (id int PRIMARY KEY, a int, b text);
INSERT INTO dc SELECT i, i, 'b' FROM generate_series(1, 4) i;
CREATE TABLE dv (id int PRIMARY KEY, v text);
INSERT INTO dv SELECT i, 'v' FROM generate_series(1, 4) i`)
	exec(t, s, ctx, "f", `ALTER TABLE dc DROP COLUMN a; ALTER TABLE dc RENAME COLUMN b TO b2; UPDATE dv SET v = 'f' WHERE id IN (1, 2)`)
	exec(t, s, ctx, "main", `UPDATE dc SET a = 100, b = 'main' WHERE id = 3; ALTER TABLE dv RENAME COLUMN v TO w`)
	m, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "f", Target: "main", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	byObject := map[string]merge.Conflict{}
	for _, c := range m.Conflicts {
		byObject[c.Table+"."+c.Object] = c
	}
	if c := byObject["public.dc.a"]; c.Kind != merge.KindSchema || !strings.HasPrefix(c.Message, "f dropped or renamed column a of public.dc, whose values main changed") || c.Hint == "" {
		t.Errorf("conflict on column public.dc.a: %+v", c)
	}
	if m.OpenConflicts != 1 {
		t.Errorf("%d conflicts open, want 1 (a; b and v were renamed): %+v", m.OpenConflicts, m.Conflicts)
	}
	if th, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "f", Target: "main", Strategy: merge.Theirs, DryRun: true}); err != nil || th.OpenConflicts != 0 {
		t.Errorf("theirs: %+v %v, want a dropped", th, err)
	}
	ours, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "f", Target: "main", Strategy: merge.Ours, FullCompare: true})
	if err != nil || ours.Status != MergeMerged {
		t.Fatalf("ours: %+v %v", ours, err)
	}
	got := val(t, s, ctx, "main", `SELECT string_agg(concat_ws(':', id, a, b2), ',' ORDER BY id) FROM dc`)
	if want := "1:1:b,2:2:b,3:100:main,4:4:b"; got != want { // a kept by ours, b renamed with main's value
		t.Errorf("dc on main after ours: %s, want %s", got, want)
	}
	if got := val(t, s, ctx, "main", `SELECT string_agg(w, ',' ORDER BY id) FROM dv`); got != "f,f,v,v" {
		t.Errorf("dv on main after ours: %s, want f's changes under main's name w", got)
	}
}
