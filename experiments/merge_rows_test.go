package experiments

import (
	"fmt"
	"testing"

	"github.com/offshootdb/offshoot/experiments/merge"
)

// TestMergeRenames: a column renamed on the source, a column dropped and
// added again under its name, and a renamed table write no heap block,
// yet every row reads differently: the block comparison compares such a
// table whole, so it finds what a full comparison does, and the target
// ends with the source's values under the new names.
func TestMergeRenames(t *testing.T) {
	t.Parallel()
	s, ctx := mergeProject(t)
	exec(t, s, ctx, "main", `CREATE TABLE rc (id int PRIMARY KEY, v text, w int);
INSERT INTO rc SELECT i, 'v' || i, i FROM generate_series(1, 100) i;
CREATE TABLE rt (id int PRIMARY KEY, v text);
INSERT INTO rt SELECT i, 't' || i FROM generate_series(1, 10) i`)
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "g", ParentID: "main"}); err != nil {
		t.Fatal(err)
	}
	exec(t, s, ctx, "g", `ALTER TABLE rc RENAME COLUMN v TO v2;
ALTER TABLE rc DROP COLUMN w; ALTER TABLE rc ADD COLUMN w int;
ALTER TABLE rt RENAME TO rt2`)

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
	if got := val(t, s, ctx, "main", `SELECT count(*) FILTER (WHERE v2 = 'v' || id AND w IS NULL) || ' ' || count(*) ||
  ' ' || (SELECT count(*) FROM pg_attribute WHERE attrelid = 'rc'::regclass AND attname = 'v' AND NOT attisdropped) FROM rc`); got != "100 100 0" {
		t.Errorf("rc on main after the merge: %q (rows with g's v2 and w, rows, columns v), want 100 100 0", got)
	}
	if got := val(t, s, ctx, "main", `SELECT count(*) FILTER (WHERE v = 't' || id) || ' ' || coalesce(to_regclass('rt')::text, '-') FROM rt2`); got != "10 -" {
		t.Errorf("rt2 on main after the merge: %s, want its 10 rows and no rt", got)
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
