package experiments

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/evals"
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

// TestCorpusSubset: the documents a delta selects are read back alone, at
// the lines the opening scan noted (a BEIR file) or picked from a pass (a
// corpus without places), and equal what the scan saw; a file that
// changed since is errCorpusChanged, not another document embedded.
func TestCorpusSubset(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := evals.WriteSynth(dir, evals.SynthOptions{Docs: 200, Queries: 5, Relevant: 2, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	var hashes []docHash
	byID := map[string]evals.Doc{}
	col, err := evals.OpenBEIRFunc(dir, "test", func(line int, d evals.Doc) {
		hashes = append(hashes, docHash{id: d.ID, sum: textHash(d), place: line})
		byID[d.ID] = d
	})
	if err != nil {
		t.Fatal(err)
	}
	var sel []docHash
	for i, h := range hashes {
		if i%9 == 4 || i == len(hashes)-1 {
			sel = append(sel, h)
		}
	}
	read := func(c corpus) ([]string, error) {
		var ids []string
		err := c.subset(sel).each(ctx, func(d evals.Doc) error {
			if d != byID[d.ID] {
				t.Errorf("%s: read %+v, the scan saw %+v", d.ID, d, byID[d.ID])
			}
			ids = append(ids, d.ID)
			return nil
		})
		return ids, err
	}
	placed, pass := beirCorpus(col, nil, hashes), beirCorpus(col, nil, nil)
	if pass.at != nil {
		t.Fatal("a corpus without hashes reads back by place")
	}
	if got, err := pass.docHashes(ctx); err != nil || len(got) != len(hashes) || got[7].sum != hashes[7].sum {
		t.Fatalf("hashes of a pass: %d, %v", len(got), err)
	}
	for name, c := range map[string]corpus{"placed": placed, "pass": pass} {
		ids, err := read(c)
		if err != nil || len(ids) != len(sel) || ids[0] != sel[0].id || ids[len(ids)-1] != sel[len(sel)-1].id {
			t.Fatalf("%s: read %d of %d documents: %v", name, len(ids), len(sel), err)
		}
	}

	// The file changes under the run: one selected document's text, then
	// the file cut short.
	path := filepath.Join(dir, "corpus.jsonl")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := byID[sel[1].id]
	old, _ := json.Marshal(d)
	d.Text += " changed"
	neu, _ := json.Marshal(d)
	changed := strings.Replace(string(data), string(old), string(neu), 1)
	if changed == string(data) {
		t.Fatal("document not found in the file")
	}
	cut := string(data[:bytes.LastIndexByte(data[:len(data)/2], '\n')+1])
	for what, text := range map[string]string{"changed": changed, "cut short": cut} {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		for name, c := range map[string]corpus{"placed": placed, "pass": pass} {
			if _, err := read(c); !errors.Is(err, errCorpusChanged) {
				t.Errorf("%s, %s: %v, want errCorpusChanged", what, name, err)
			}
		}
	}
}
