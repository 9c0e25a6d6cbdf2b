package experiments

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/evals/evalstest"
	"github.com/offshootdb/offshoot/vectors"
)

// TestIncrementalMaterialization: Cranfield in SQL on main, a run keeps
// its variants' materializations; then 0.5% of the documents are deleted,
// 0.5% changed and 1% added on main. The next run brings the
// materializations up to date document by document: the delta is
// recorded, only the changed and new documents are embedded (the
// embedding cache's counters), the HNSW index is maintained, not built,
// and exact search gives exactly what a cold run on the new corpus gives;
// both HNSW variants report their ANN recall. A model fitted on the
// corpus (IDF) builds cold, and a delta over the configured share is
// built cold and says so.
func TestIncrementalMaterialization(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres and FUSE")
	}
	svc := storeService(t, "p", nil)
	cache, err := vectors.OpenCache(filepath.Join(t.TempDir(), "embeddings"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	svc.cfg.EmbedCache = cache
	ctx, cancel := context.WithTimeout(WithCaller(context.Background(), LocalCaller), 10*time.Minute)
	defer cancel()
	exec := func(sql string) {
		t.Helper()
		if _, err := svc.Query(ctx, QueryRequest{Project: "p", Branch: "main", SQL: sql}); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	conn, release, err := svc.connect(ctx, "p", "main", ReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	loadSQLDataset(t, conn, evalstest.Cranfield(t))
	release()
	sp := ExperimentSpec{Name: "incr", Project: "p", Base: BranchPoint{Branch: "main"}, Dataset: sqlDataset,
		Metrics: []string{"ndcg_cut.10", "recall.10"},
		Variants: []VariantSpec{
			{Name: "exact", Embedder: "hash-bow?dims=64&idf=none"},
			{Name: "hnsw", Embedder: "hash-bow?dims=64&idf=none", Index: &IndexSpec{Type: "hnsw", M: 8, EfConstruction: 32}},
			{Name: "fitted", Embedder: "hash-bow?dims=64"},
		}}
	run := func(sp ExperimentSpec) *Run {
		t.Helper()
		r, err := svc.StartRun(ctx, sp)
		if err != nil {
			t.Fatal(err)
		}
		if r, err = svc.WaitRun(ctx, r.ID); err != nil || r.Status != StatusSucceeded {
			t.Fatalf("run: %v %+v", err, r)
		}
		return r
	}
	r1 := run(sp)
	for _, v := range r1.Variants {
		if u := v.Materialization; u == nil || u.Reused || u.Incremental != nil || u.Note != "" {
			t.Fatalf("first run, %s: %+v", v.Name, u)
		}
	}

	exec("DELETE FROM docs WHERE id IN (SELECT id FROM docs ORDER BY id DESC LIMIT 7)")
	exec("UPDATE docs SET body = body || ' revised' WHERE id IN (SELECT id FROM docs ORDER BY id LIMIT 7)")
	exec("INSERT INTO docs SELECT 'new-' || g, 'a new report on the boundary layer of a swept wing, number ' || g FROM generate_series(1, 14) g")
	// The exact order (ANN recall's ground truth) of the incremental
	// HNSW variant: taken among the previous materialization's recorded
	// order (2k deep) and the inserted rows where that is exact, and then,
	// as deep as it is recorded, equal to a full scan of the new table.
	var mu sync.Mutex
	among, differ := 0, 0
	testHookExactAmong = func(ctx context.Context, conn *pgx.Conn, tbl vectors.Table, q vectors.Query, got []string) {
		q.IDs = nil
		full, err := vectors.Search(ctx, conn, tbl, q)
		mu.Lock()
		defer mu.Unlock()
		among++
		// got is the exact prefix it recorded: at least the top k deep
		// (10 here), or every row.
		if err != nil || len(got) > len(full.Hits) || len(got) < min(10, len(full.Hits)) {
			differ++
			return
		}
		for i, id := range got {
			if full.Hits[i].ID != id {
				differ++
				return
			}
		}
	}
	r2 := run(sp)
	testHookExactAmong = nil
	t.Logf("exact top k of %d queries taken among candidates", among)
	if among < 100 || differ != 0 {
		t.Errorf("exact top k among candidates for %d queries (want most of the 225), %d differ from a full scan", among, differ)
	}
	misses := int64(0)
	for i, v := range r2.Variants[:2] {
		u := v.Materialization
		if u == nil || u.Reused || u.Note != "" || u.CreatedByRun != r2.ID || u.ID == r1.Variants[i].Materialization.ID {
			t.Fatalf("%s after the corpus changed: %+v", v.Name, u)
		}
		want := IncrementalDelta{From: r1.Variants[i].Materialization.ID, Docs: 1407, Added: 14, Changed: 7, Deleted: 7,
			RowsDeleted: 14, RowsInserted: 21}
		if d := u.Incremental; d == nil || *d != want {
			t.Errorf("%s: delta %+v, want %+v", v.Name, d, want)
		}
		if v.Rows != 1407 || v.Timings.Index != 0 || v.IndexBuild != nil {
			t.Errorf("%s: %d rows, index %.0f ms, build %+v", v.Name, v.Rows, v.Timings.Index, v.IndexBuild)
		}
		misses += v.CacheMisses
	}
	// The queries were embedded by the first run; of the documents only
	// the 21 new and changed ones are, once (the second group finds them
	// cached).
	if misses != 21 || r2.Variants[0].CacheMisses != 21 {
		t.Errorf("embedding cache misses %d and %d, want 21 and 0", r2.Variants[0].CacheMisses, r2.Variants[1].CacheMisses)
	}
	if u := r2.Variants[2].Materialization; u == nil || u.Reused || u.Incremental != nil || u.Note != "" {
		t.Errorf("the fitted model after the corpus changed: %+v", u)
	}

	// A cold run on the same corpus: exact search equal to the last bit;
	// the incrementally maintained HNSW and the freshly built one report
	// their recall against exact search.
	cold := sp
	cold.Reuse = ReuseNever
	r3 := run(cold)
	same(t, r2.Variants[0], r3.Variants[0])
	if a, b := r2.Variants[1].ANNRecall, r3.Variants[1].ANNRecall; a == nil || b == nil {
		t.Errorf("ANN recall: incremental %v, cold %v", fmtp(a), fmtp(b))
	} else {
		t.Logf("HNSW recall@10 against exact search: maintained in place %.4f, built cold %.4f", *a, *b)
	}

	// Over the share: built cold, and the variant says why.
	svc.cfg.IncrementalMaxShare = 0.001
	exec("INSERT INTO docs SELECT 'newer-' || g, 'yet another note on heat transfer ' || g FROM generate_series(1, 3) g")
	r4 := run(ExperimentSpec{Name: sp.Name, Project: sp.Project, Base: sp.Base, Dataset: sp.Dataset, Metrics: sp.Metrics,
		Variants: sp.Variants[:1]})
	if u := r4.Variants[0].Materialization; u == nil || u.Reused || u.Incremental != nil ||
		!strings.Contains(u.Note, "rebuilt: ") || !strings.Contains(u.Note, "over the 0.1% limit") || r4.Variants[0].Rows != 1410 {
		t.Errorf("a delta over the share: %+v, %d rows", u, r4.Variants[0].Rows)
	}
}
