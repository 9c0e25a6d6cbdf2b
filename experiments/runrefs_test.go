package experiments

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/evals/evalstest"
)

// TestRunRefsChecked starts runs and creates schedules on the real stack
// whose project, base or embedder does not exist, or whose base seq or
// time is not in the branch's history: each is refused at once with an
// error naming what the user wrote (not the snapshot that would pin the
// base), and no run or schedule is recorded.
func TestRunRefsChecked(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres and FUSE")
	}
	svc := storeService(t, "p", nil)
	ctx, cancel := context.WithTimeout(WithCaller(context.Background(), LocalCaller), 2*time.Minute)
	defer cancel()
	good := ExperimentSpec{Name: "refs", Project: "p", Base: BranchPoint{Branch: "main"},
		Dataset: DatasetSpec{BEIR: evalstest.Cranfield(t)}, Metrics: []string{"ndcg_cut.10"},
		Variants: []VariantSpec{{Name: "a", Embedder: "hash-bow?dims=8"}, {Name: "b", Embedder: "hash-bow?dims=16"}}}
	future := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name  string
		edit  func(sp *ExperimentSpec)
		want  error
		field string // of a *FieldError, for a run; "spec." + field for a schedule
		says  string
	}{
		{"branch", func(sp *ExperimentSpec) { sp.Base.Branch = "nope" }, ErrNotFound, "", `base branch "nope" of project "p"`},
		{"snapshot", func(sp *ExperimentSpec) { sp.Base.Snapshot = "nope" }, ErrNotFound, "", `base snapshot "nope" of project "p"`},
		{"project", func(sp *ExperimentSpec) { sp.Project = "nope" }, ErrNotFound, "", `project "nope"`},
		{"embedder", func(sp *ExperimentSpec) { sp.Variants[1].Embedder = "nope?dims=64" }, ErrInvalid, "variants[1].embedder", `"nope"`},
		// A point the branch does not hold is refused whether or not the
		// variants would fork it (materializations they reuse do not).
		{"future seq", func(sp *ExperimentSpec) { sp.Base.Seq = 999999999999 }, ErrInvalid, "base.seq", `999999999999 is later than its newest seq`},
		{"future time", func(sp *ExperimentSpec) { sp.Base.At = &future }, ErrInvalid, "base.at", `is later than`},
		{"seq of no branch", func(sp *ExperimentSpec) { sp.Base.Branch, sp.Base.Seq = "nope", 1 }, ErrNotFound, "", `base branch "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := good
			sp.Variants = append([]VariantSpec(nil), good.Variants...)
			tc.edit(&sp)
			check := func(err error, field string) {
				t.Helper()
				var fe *FieldError
				switch {
				case !errors.Is(err, tc.want):
					t.Fatalf("got %v, want %v", err, tc.want)
				case strings.Contains(err.Error(), "run-base") || !strings.Contains(err.Error(), tc.says):
					t.Errorf("error %q does not say %s", err, tc.says)
				case tc.field != "" && (!errors.As(err, &fe) || fe.Field != field):
					t.Errorf("error %q does not name %s", err, field)
				}
			}
			_, err := svc.StartRun(ctx, sp)
			check(err, tc.field)
			_, err = svc.CreateSchedule(ctx, Schedule{Name: "refs", Cron: "@daily", Spec: sp, Metric: "ndcg_cut_10"})
			check(err, "spec."+tc.field)
		})
	}
	// A seq the branch holds passes.
	sn, err := svc.CreateSnapshot(ctx, CreateSnapshotRequest{Project: "p", Branch: "main", Name: "here"})
	if err != nil {
		t.Fatal(err)
	}
	if err := (storeBranches{svc}).CheckBase(ctx, "p", BranchPoint{Branch: "main", Seq: sn.LSN}); err != nil {
		t.Errorf("seq %d of main: %v", sn.LSN, err)
	}
	if runs, err := svc.ListRuns(ctx, RunFilter{}); err != nil || len(runs) != 0 {
		t.Errorf("%d runs recorded (%v)", len(runs), err)
	}
	if scs, err := svc.ListSchedules(ctx); err != nil || len(scs) != 0 {
		t.Errorf("%d schedules recorded (%v)", len(scs), err)
	}
}

// TestMaterializationsOfNoProject: listing the materializations of a
// project that does not exist is ErrNotFound (404), as listing its
// branches is; it used to be an empty list.
func TestMaterializationsOfNoProject(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres and FUSE")
	}
	svc := storeService(t, "p", nil)
	ctx := WithCaller(context.Background(), LocalCaller)
	if ms, err := svc.ListMaterializations(ctx, "p"); err != nil || len(ms) != 0 {
		t.Errorf("materializations of p: %v %v", ms, err)
	}
	if _, err := svc.ListMaterializations(ctx, "nope"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `project "nope"`) {
		t.Errorf("materializations of nope: %v, want ErrNotFound naming it", err)
	}
}
