package experiments

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestRankingsStoredAsProduced: a variant's per-query rankings reach the
// control store in batches while its queries are answered, not with the
// variant's record at the end. The run is cancelled once the first
// batches are stored: the cancelled variant keeps the rankings it
// produced, unscored. A finished run's record holds no rankings inline;
// GetRun assembles them, with measures and timed latency, and
// GetRunStatus leaves them out.
func TestRankingsStoredAsProduced(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres")
	}
	defer func(n int) { resultBatch = n }(resultBatch)
	resultBatch = 8
	e := newRunEnv(t)
	stored := func(run, variant string) int {
		t.Helper()
		rs, err := e.svc.loadResults(run, variant)
		if err != nil {
			t.Fatal(err)
		}
		return len(rs)
	}

	// The hook runs on the variant's goroutine right after a batch is
	// stored: it sees what the store holds at that moment, and cancels
	// the run after the second batch.
	var mu sync.Mutex
	var seen []int
	runID := ""
	rankingsFlushed = func(run, variant string, n int) {
		mu.Lock()
		defer mu.Unlock()
		if run != runID {
			return
		}
		seen = append(seen, stored(run, variant))
		if n == 2*resultBatch {
			if err := e.svc.CancelRun(e.ctx, run); err != nil {
				t.Error(err)
			}
		}
	}
	defer func() { rankingsFlushed = nil }()
	sp := e.spec(VariantSpec{Name: "slow", Embedder: "hash-bow?dims=64"})
	sp.Name = "cancelled"
	mu.Lock() // the variant stores no ranking before runID is set
	r, err := e.svc.StartRun(e.ctx, sp)
	if err != nil {
		mu.Unlock()
		t.Fatal(err)
	}
	runID = r.ID
	mu.Unlock()
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	done, err := e.svc.WaitRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	v := done.Variants[0]
	if done.Status != StatusCancelled || v.Status != StatusCancelled {
		t.Fatalf("run %s, variant %s: %s", done.Status, v.Status, v.Error)
	}
	mu.Lock()
	if len(seen) < 2 || seen[0] != resultBatch || seen[1] != 2*resultBatch {
		t.Errorf("rankings stored after each batch: %v, want %d then %d", seen, resultBatch, 2*resultBatch)
	}
	runID = "" // the next run's batches are not this check's
	mu.Unlock()
	if len(v.Results) != 2*resultBatch {
		t.Errorf("cancelled variant kept %d rankings, want the %d stored before the cancel", len(v.Results), 2*resultBatch)
	}
	for _, q := range v.Results {
		if len(q.Hits) != 10 || q.Values != nil {
			t.Fatalf("kept ranking of %s: %d hits, values %v", q.Query, len(q.Hits), q.Values)
		}
	}

	ok := e.run(t, e.spec(VariantSpec{Name: "bow", Embedder: "hash-bow?dims=64"}))
	if ok.Status != StatusSucceeded {
		t.Fatalf("run %s: %s", ok.Status, ok.Error)
	}
	rec, err := e.svc.getRunRecord(ok.ID)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rec.Variants[0].Results); n != 0 {
		t.Errorf("the run record holds %d rankings inline", n)
	}
	got := ok.Variants[0].Results
	if len(got) != 225 {
		t.Fatalf("GetRun: %d rankings, want 225", len(got))
	}
	scored := 0
	for i, q := range got {
		if i > 0 && got[i-1].Query >= q.Query {
			t.Fatalf("rankings out of order: %s before %s", got[i-1].Query, q.Query)
		}
		if q.LatencyUS <= 0 || len(q.Hits) != 10 {
			t.Fatalf("ranking of %s: latency %d, %d hits", q.Query, q.LatencyUS, len(q.Hits))
		}
		if len(q.Values) == len(ok.Variants[0].Measures) {
			scored++
		}
	}
	if scored == 0 {
		t.Error("no ranking carries its measures")
	}
	st, err := e.svc.GetRunStatus(e.ctx, ok.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Variants[0].Results) != 0 {
		t.Errorf("GetRunStatus returned %d rankings", len(st.Variants[0].Results))
	}
}
