package experiments

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/offshootdb/offshoot/experiments/merge"
)

// TestMergeRenames: a column renamed on the source is renamed on the
// target, which keeps its own changes to the column's values; the
// source's changes to a column the target renamed reach it under the
// target's name; a column
// dropped and added again under its name, and a renamed table, write no
// heap block, yet every row reads differently: the block comparison
// compares such a table whole, so it finds what a full comparison does,
// and the target ends with the source's values.
func TestMergeRenames(t *testing.T) {
	t.Parallel()
	s, ctx := mergeProject(t)
	exec(t, s, ctx, "main", `CREATE TABLE rc (id int PRIMARY KEY, v text);
INSERT INTO rc SELECT i, 'v' || i FROM generate_series(1, 100) i;
CREATE TABLE rd (id int PRIMARY KEY, w int);
INSERT INTO rd SELECT i, i FROM generate_series(1, 100) i;
CREATE TABLE re (id int PRIMARY KEY, v text);
INSERT INTO re SELECT i, 'v' || i FROM generate_series(1, 10) i;
CREATE TABLE rt (id int PRIMARY KEY, v text);
INSERT INTO rt SELECT i, 't' || i FROM generate_series(1, 10) i`)
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "g", ParentID: "main"}); err != nil {
		t.Fatal(err)
	}
	exec(t, s, ctx, "g", `ALTER TABLE rc RENAME COLUMN v TO v2; UPDATE rc SET v2 = 'g' WHERE id = 6;
ALTER TABLE rd DROP COLUMN w; ALTER TABLE rd ADD COLUMN w int;
ALTER TABLE rt RENAME TO rt2;
UPDATE re SET v = 'g' WHERE id = 6; INSERT INTO re VALUES (11, 'g')`)
	exec(t, s, ctx, "main", `UPDATE rc SET v = 'main' WHERE id = 5;
ALTER TABLE re RENAME COLUMN v TO v3; UPDATE re SET v3 = 'main' WHERE id = 5`)

	pre, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "g", Target: "main", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	full, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "g", Target: "main", DryRun: true, FullCompare: true})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := fmt.Sprint(full.Tables, full.Schema), fmt.Sprint(pre.Tables, pre.Schema); a != b {
		t.Errorf("a full comparison found\n%s\nthe block comparison\n%s", a, b)
	}
	m, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "g", Target: "main"})
	if err != nil || m.Status != MergeMerged {
		t.Fatalf("merge: %+v %v", m, err)
	}
	if got := fmt.Sprint(m.Tables); got != "[{public.rc 0 1 0} {public.rd 0 100 0} {public.re 1 1 0} {public.rt2 10 0 0}]" {
		t.Errorf("merged %s, want rc: 1 updated, rd: 100 updated, re: 1 inserted, 1 updated, rt2: 10 inserted", got)
	}
	for _, q := range []struct{ sql, want string }{
		{`SELECT count(*) FILTER (WHERE v2 = 'v' || id) || ' ' || string_agg(v2, ',' ORDER BY id) FILTER (WHERE id IN (5, 6)) FROM rc`, "98 main,g"},
		{`SELECT count(*) FILTER (WHERE attname = 'v') FROM pg_attribute WHERE attrelid = 'rc'::regclass AND attnum > 0 AND NOT attisdropped`, "0"},
		{`SELECT count(*) FILTER (WHERE w IS NULL) FROM rd`, "100"},
		{`SELECT string_agg(v3, ',' ORDER BY id) FROM re WHERE id IN (4, 5, 6, 11)`, "v4,main,g,g"},
		{`SELECT count(*) FILTER (WHERE v = 't' || id) || ' ' || coalesce(to_regclass('rt')::text, '-') FROM rt2`, "10 -"},
	} {
		if got := val(t, s, ctx, "main", q.sql); got != q.want {
			t.Errorf("%s on main after the merge: %s, want %s", q.sql, got, q.want)
		}
	}
}

// TestMergeDeferredForeignKey: a deferrable foreign key the source's
// change would break is checked when the merge writes, not at its
// commit: the same constraint conflict, in a preview and in the merge,
// as a foreign key checked immediately.
func TestMergeDeferredForeignKey(t *testing.T) {
	t.Parallel()
	s, ctx := mergeProject(t)
	exec(t, s, ctx, "main", `CREATE TABLE dp (id int PRIMARY KEY);
CREATE TABLE dc (id int PRIMARY KEY, p int REFERENCES dp (id) DEFERRABLE INITIALLY DEFERRED);
INSERT INTO dp VALUES (1), (2), (3)`)
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "g", ParentID: "main"}); err != nil {
		t.Fatal(err)
	}
	exec(t, s, ctx, "g", `DELETE FROM dp WHERE id = 2; INSERT INTO dp VALUES (4)`)
	exec(t, s, ctx, "main", `INSERT INTO dc VALUES (1, 2)`)
	for _, dry := range []bool{true, false} {
		m, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "g", Target: "main", DryRun: dry})
		if err != nil {
			t.Fatalf("merge (dry run %v): %v", dry, err)
		}
		if m.OpenConflicts != 1 || m.Conflicts[0].Kind != merge.KindConstraint || m.Conflicts[0].Object != "dc_p_fkey" {
			t.Errorf("merge (dry run %v): %d open conflicts %+v, want the constraint conflict of dc_p_fkey", dry, m.OpenConflicts, m.Conflicts)
		}
	}
	m, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "g", Target: "main", Strategy: merge.Ours})
	if err != nil || m.Status != MergeMerged {
		t.Fatalf("merge with ours: %+v %v", m, err)
	}
	if got := val(t, s, ctx, "main", `SELECT string_agg(id::text, ',' ORDER BY id) FROM dp`); got != "1,2,3,4" {
		t.Errorf("dp on main after the merge with ours: %s, want 1,2,3,4", got)
	}
}

// TestMergeTriggers: the rows a merge writes are data, not new events:
// a trigger that changed a row on the source does not change it again on
// the target, the target's audit trigger does not record the merge's
// writes (the source's audit rows merge as rows), triggers on a
// partitioned table and on a table without a key (merged whole) stay
// quiet too, and every trigger is left in the state it had.
func TestMergeTriggers(t *testing.T) {
	t.Parallel()
	s, ctx := mergeProject(t)
	exec(t, s, ctx, "main", `CREATE TABLE tg (id int PRIMARY KEY, v text);
CREATE TABLE tg_log (n serial PRIMARY KEY, op text, id int);
CREATE FUNCTION bang() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.v := NEW.v || '!'; RETURN NEW; END $$;
CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO tg_log (op, id) VALUES (TG_OP, coalesce(NEW.id, OLD.id)); RETURN NULL; END $$;
CREATE TRIGGER bang BEFORE INSERT OR UPDATE ON tg FOR EACH ROW EXECUTE FUNCTION bang();
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON tg FOR EACH ROW EXECUTE FUNCTION audit();
ALTER TABLE tg ENABLE ALWAYS TRIGGER audit;
INSERT INTO tg VALUES (2, 'x'), (3, 'x');
TRUNCATE tg_log;
CREATE TABLE tp (id int, k int, v text, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
CREATE TABLE tp_1 PARTITION OF tp FOR VALUES FROM (0) TO (10);
CREATE TRIGGER bang BEFORE INSERT OR UPDATE ON tp FOR EACH ROW EXECUTE FUNCTION bang();
CREATE TABLE tk (v text);
CREATE TRIGGER bang BEFORE INSERT OR UPDATE ON tk FOR EACH ROW EXECUTE FUNCTION bang()`)
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "g", ParentID: "main"}); err != nil {
		t.Fatal(err)
	}
	exec(t, s, ctx, "g", `INSERT INTO tg VALUES (1, 'y'); UPDATE tg SET v = 'z' WHERE id = 2; DELETE FROM tg WHERE id = 3;
INSERT INTO tp VALUES (1, 1, 'y'); INSERT INTO tk VALUES ('y')`)
	m, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "g", Target: "main"})
	if err != nil || m.Status != MergeMerged {
		t.Fatalf("merge: %+v %v", m, err)
	}
	for _, q := range []struct{ sql, want string }{
		{`SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM tg`, "1=y!,2=z!"},
		{`SELECT string_agg(op || ' ' || id, ',' ORDER BY n) FROM tg_log`, "INSERT 1,UPDATE 2,DELETE 3"},
		{`SELECT v FROM tp`, "y!"},
		{`SELECT v FROM tk`, "y!"},
		{`SELECT string_agg(tgname || '=' || tgenabled::text, ',' ORDER BY tgname, tgrelid) FROM pg_trigger WHERE NOT tgisinternal`, "audit=A,bang=O,bang=O,bang=O,bang=O"},
	} {
		if got := val(t, s, ctx, "main", q.sql); got != q.want {
			t.Errorf("%s on main after the merge: %s, want %s", q.sql, got, q.want)
		}
	}
}

// TestMergeValues: every value reaches the target exactly as the source
// has it: a json value keeps its whitespace and duplicate keys, JSON null
// stays apart from SQL NULL (json and jsonb), and vector, bytea, numeric,
// array, timestamp, interval, float and quoted text values round-trip, in
// a table with a key and in one without (merged whole).
func TestMergeValues(t *testing.T) {
	t.Parallel()
	s, ctx := mergeProject(t)
	const cols = `j json, b jsonb, e vector(3), by bytea, n numeric(12,4), a text[], ts timestamptz, tl timestamp, f float8, iv interval, s text`
	exec(t, s, ctx, "main", `CREATE TABLE tv (id int PRIMARY KEY, `+cols+`);
CREATE TABLE tw (`+cols+`);
INSERT INTO tv (id, j, b) VALUES (1, '{"old": 1}', '{"old": 1}'), (2, 'null', 'null'), (3, '[]', '[]')`)
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "g", ParentID: "main"}); err != nil {
		t.Fatal(err)
	}
	const vals = `'{"b":1,  "a":2, "a":3}', 'null', '[1,2.5,3]', '\x00ff27', 1234.5678, ARRAY['a b', NULL, 'c"d', ''],
  '2026-03-01 12:34:56.789+02', '2026-03-01 12:34:56.789', 0.1, '1 year 2 days 03:04:05', E'it''s \\ "quoted"'`
	exec(t, s, ctx, "g", `UPDATE tv SET j = '{"b":1,  "a":2, "a":3}', b = 'null' WHERE id = 1;
UPDATE tv SET j = NULL, b = NULL WHERE id = 2;
UPDATE tv SET j = 'null', b = '{"k": null}' WHERE id = 3;
INSERT INTO tv VALUES (4, `+vals+`), (5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO tw VALUES (`+vals+`), (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), (' null', 'null', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`)
	m, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "g", Target: "main"})
	if err != nil || m.Status != MergeMerged {
		t.Fatalf("merge: %+v %v", m, err)
	}
	// A row's text shows json as written, JSON null as null and SQL NULL as nothing.
	for _, q := range []string{
		`SELECT string_agg(t::text, E'\n' ORDER BY id) FROM tv t`,
		`SELECT string_agg(t::text, E'\n' ORDER BY t::text) FROM tw t`,
		`SELECT string_agg(id || ':' || (j IS NULL) || ',' || (b IS NULL), ' ' ORDER BY id) FROM tv`,
	} {
		if got, want := val(t, s, ctx, "main", q), val(t, s, ctx, "g", q); got != want {
			t.Errorf("%s\non main after the merge:\n%s\non g:\n%s", q, got, want)
		}
	}
}

// TestMergeCustomKeepsOthers: a row written from custom values keeps the
// values the resolution does not give exactly as the row it starts from
// has them (a json value's text, a JSON null).
func TestMergeCustomKeepsOthers(t *testing.T) {
	t.Parallel()
	s, ctx := mergeProject(t)
	exec(t, s, ctx, "main", `CREATE TABLE tv (id int PRIMARY KEY, j json, b jsonb, s text, a int[]);
INSERT INTO tv VALUES (1, '{"b":1,  "a":2, "a":3}', 'null', 'x', NULL)`)
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "g", ParentID: "main"}); err != nil {
		t.Fatal(err)
	}
	exec(t, s, ctx, "g", `UPDATE tv SET s = 'g'`)
	exec(t, s, ctx, "main", `UPDATE tv SET s = 'main'`)
	sess, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "g", Target: "main", Strategy: merge.Manual})
	if err != nil || sess.OpenConflicts != 1 {
		t.Fatalf("manual: %+v %v", sess, err)
	}
	if _, err := s.ResolveConflict(ctx, ResolveRequest{Project: "p", Merge: sess.ID, Conflict: sess.Conflicts[0].ID,
		Choice: merge.ChoiceCustom, Values: json.RawMessage(`{"s": "both", "a": [1, 2]}`)}); err != nil {
		t.Fatal(err)
	}
	if done, err := s.CompleteMerge(ctx, "p", sess.ID); err != nil || done.Status != MergeMerged {
		t.Fatalf("complete: %+v %v", done, err)
	}
	if got, want := val(t, s, ctx, "main", `SELECT t::text FROM tv t`), `(1,"{""b"":1,  ""a"":2, ""a"":3}",null,both,"{1,2}")`; got != want {
		t.Errorf("tv on main after the merge: %s, want %s", got, want)
	}
}
