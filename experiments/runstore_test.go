package experiments

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/evals/evalstest"
)

// TestRunOnStore runs an experiment on the real stack (copy-on-write forks,
// each variant on its own endpoint on a FUSE mount) and deletes the base
// branch between the two variants' forks. The run pinned its base with a
// snapshot, so the second variant still forks the base's data and
// succeeds; afterwards the recorded base forks again to the same data, no
// run fork is left and the base was never written to by the run.
func TestRunOnStore(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres and FUSE")
	}
	svc := storeService(t, "p", nil)
	ctx, cancel := context.WithTimeout(WithCaller(context.Background(), LocalCaller), 5*time.Minute)
	defer cancel()
	if _, err := svc.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "victim"}); err != nil {
		t.Fatal(err)
	}
	query := func(branch, sql string) [][]any {
		t.Helper()
		res, err := svc.Query(ctx, QueryRequest{Project: "p", Branch: branch, SQL: sql})
		if err != nil {
			t.Fatalf("%s on %s: %v", sql, branch, err)
		}
		return res.Results[len(res.Results)-1].Rows
	}
	query("victim", "CREATE TABLE app_data AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 500) g")
	const digest = "SELECT count(*)::text || ':' || md5(string_agg(v, ',' ORDER BY id)) FROM app_data"
	want := query("victim", digest)[0][0]

	var once sync.Once
	svc.cfg.Branches = forkHook{RunBranches: svc.cfg.Branches, before: func(ctx context.Context, name string) {
		if strings.HasSuffix(name, "/second") {
			once.Do(func() {
				if err := svc.DeleteBranch(ctx, "p", "victim", false); err != nil {
					t.Errorf("delete the base between forks: %v", err)
				}
			})
		}
	}}
	sp := ExperimentSpec{Name: "store", Project: "p", Base: BranchPoint{Branch: "victim"},
		Dataset: DatasetSpec{BEIR: evalstest.Cranfield(t)}, Metrics: []string{"ndcg_cut.10"}, Concurrency: 1,
		Variants: []VariantSpec{{Name: "first", Embedder: "hash-bow?dims=32"},
			{Name: "second", Embedder: "hash-bow?dims=24", Index: &IndexSpec{Type: "hnsw"}}}}
	r, err := svc.StartRun(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	done, err := svc.WaitRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != StatusSucceeded || done.Base.Snapshot == "" {
		t.Fatalf("run %s %q, base %s: %+v", done.Status, done.Error, done.Base, done.Variants)
	}
	for _, v := range done.Variants {
		if v.Status != StatusSucceeded || v.Rows != 1400 || len(v.Results) != 225 || v.Kept || v.StorageDelta == nil || *v.StorageDelta <= 0 {
			t.Errorf("variant %s: %s %q rows %d results %d kept %v delta %v", v.Name, v.Status, v.Error, v.Rows, len(v.Results), v.Kept, v.StorageDelta)
		}
	}
	firstBEIR := done.Variants[0]
	if v := done.Variants[1]; v.IndexBytes <= 0 {
		t.Errorf("second variant: index %d bytes", v.IndexBytes)
	}
	// The pinning snapshot expires after the default retention.
	snaps, err := svc.ListSnapshots(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	pinned := false
	for _, sn := range snaps {
		pinned = pinned || sn.Name == done.Base.Snapshot
		if sn.Name == done.Base.Snapshot && (sn.ExpiresAt == nil || sn.ExpiresAt.Sub(done.CreatedAt) < 29*24*time.Hour || sn.ExpiresAt.Sub(done.CreatedAt) > 31*24*time.Hour) {
			t.Errorf("run base snapshot %s expires at %v, want 30 days after %v", sn.Name, sn.ExpiresAt, done.CreatedAt)
		}
	}
	if !pinned {
		t.Errorf("no snapshot %s among %+v", done.Base.Snapshot, snaps)
	}
	if _, err := svc.GetBranch(ctx, "p", "victim"); !errors.Is(err, ErrNotFound) {
		t.Errorf("base after its deletion: %v", err)
	}
	page, err := svc.ListBranches(ctx, ListBranchesRequest{Project: "p", Prefix: "exp/"})
	if err != nil || len(page.Branches) != 0 {
		t.Errorf("run forks left behind: %+v (%v)", page, err)
	}
	// The recorded base is reproducible: fork it again, same data, and
	// none of the run's tables.
	if _, err := svc.cfg.Branches.Fork(ctx, "p", done.Base, "again"); err != nil {
		t.Fatalf("fork the recorded base %s: %v", done.Base, err)
	}
	if got := query("again", digest)[0][0]; got != want {
		t.Errorf("recorded base forked again: app_data %v, want %v", got, want)
	}
	if n := query("again", fmt.Sprintf("SELECT count(*) FROM pg_tables WHERE tablename = '%s'", runTable))[0][0]; fmt.Sprint(n) != "0" {
		t.Errorf("the base holds %v run tables", n)
	}

	svc.cfg.Branches = storeBranches{svc}

	// A point in time of main as the base, with the dataset in SQL on it:
	// the corpus is read at that point (on a fork of the pinned base), not
	// from main's head, where it has been deleted since. Forks of an
	// experiment with a long name get names cut to fit.
	conn, release, err := svc.connect(ctx, "p", "main", ReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	loadSQLDataset(t, conn, sp.Dataset.BEIR)
	// History has a 1 s tick: let the load land in an earlier tick than
	// the point, and the deletion in a later one.
	time.Sleep(1500 * time.Millisecond)
	at := time.Now()
	time.Sleep(1500 * time.Millisecond)
	if _, err := conn.Exec(ctx, "DELETE FROM docs"); err != nil {
		t.Fatal(err)
	}
	release()
	// The name is long enough that the forks' names are cut to fit.
	past := ExperimentSpec{Name: "point-in-time-sql-dataset-nightly-check", Project: "p", Base: BranchPoint{Branch: "main", At: &at}, Metrics: []string{"ndcg_cut.10"},
		Dataset:  sqlDataset,
		Variants: []VariantSpec{{Name: "bow", Embedder: "hash-bow?dims=32"}}}
	r, err = svc.StartRun(ctx, past)
	if err != nil {
		t.Fatal(err)
	}
	if done, err = svc.WaitRun(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if done.Status != StatusSucceeded || done.Docs != 1400 || done.Variants[0].Rows != 1400 || done.Base.Snapshot == "" {
		t.Errorf("run at %s: %s %q, %d docs, base %s", at.Format(time.RFC3339Nano), done.Status, done.Error, done.Docs, done.Base)
	}
	// Same data, same numbers: the first variant's metric on the BEIR
	// files and on SQL of the past point agree.
	if a, b := done.Variants[0].Metrics["ndcg_cut_10"], firstBEIR.Metrics["ndcg_cut_10"]; a != b {
		t.Errorf("ndcg_cut_10 from SQL at a past point %v, from the BEIR files %v", a, b)
	}
	if page, err := svc.ListBranches(ctx, ListBranchesRequest{Project: "p", Prefix: "exp/"}); err != nil || len(page.Branches) != 0 {
		t.Errorf("run forks left behind (the dataset fork?): %+v (%v)", page, err)
	}
}
