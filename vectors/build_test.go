package vectors

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestSizeBuild(t *testing.T) {
	const mb = 1 << 20
	vec384 := Table{Name: "t", Dims: 384}
	half := Table{Name: "t", Dims: 384, Type: HalfVec}
	hnsw := Index{Method: HNSW}
	for _, tc := range []struct {
		name    string
		t       Table
		ix      Index
		rows    int64
		budget  int64
		cores   int
		est     int64
		mwm     int64
		workers int
		fits    bool
	}{
		// 1M × (1536 + 8 + 512 + 160) = 2,216,000,000 bytes.
		{"1M hnsw fits", vec384, hnsw, 1_000_000, 4096 * mb, 2, 2_216_000_000, 2_437_600_256, 2, true},
		{"1M hnsw over budget", vec384, hnsw, 1_000_000, 1024 * mb, 8, 2_216_000_000, 1024 * mb, 7, false},
		{"small stays at server default", vec384, hnsw, 1000, 4096 * mb, 1, 2_216_000, 64 * mb, 2, true},
		{"budget below default", vec384, hnsw, 1_000_000, 16 * mb, 64, 2_216_000_000, 64 * mb, 7, false},
		{"m 32", vec384, Index{Method: HNSW, M: 32}, 100_000, 4096 * mb, 4, 100_000 * (1536 + 8 + 1024 + 160), 300_080_128, 3, true},
		{"halfvec", half, hnsw, 100_000, 4096 * mb, 2, 100_000 * (768 + 8 + 512 + 160), 159_280_128, 2, true},
		// IVFFlat: (min(100·50, rows) + 100 lists) × (1536 + 8).
		{"ivfflat", vec384, Index{Method: IVFFlat, Lists: 100}, 1_000_000, 4096 * mb, 2, 5100 * 1544, 64 * mb, 2, true},
		{"ivfflat few rows", vec384, Index{Method: IVFFlat, Lists: 1000}, 2000, 4096 * mb, 2, 3000 * 1544, 64 * mb, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := SizeBuild(tc.t, tc.ix, tc.rows, tc.budget, tc.cores)
			want := BuildPlan{EstimatedBytes: tc.est, MaintenanceWorkMem: tc.mwm, ParallelWorkers: tc.workers, Fits: tc.fits}
			if p != want {
				t.Fatalf("SizeBuild = %+v, want %+v", p, want)
			}
			if p.MaintenanceWorkMem%1024 != 0 || p.Setting() != fmt.Sprintf("%dkB", p.MaintenanceWorkMem/1024) {
				t.Fatalf("setting %q of %d", p.Setting(), p.MaintenanceWorkMem)
			}
		})
	}
}

// testStream streams documents into a table in batches, then watches an
// HNSW build on it from a second connection.
func testStream(t *testing.T, conn, watcher *pgx.Conn) {
	ctx := context.Background()
	tbl := Table{Name: "stream_t", Dims: 64}
	if err := CreateTable(ctx, conn, tbl); err != nil {
		t.Fatal(err)
	}
	e, err := NewRegistry().New(Spec{Model: ModelHashBOW, Dims: 64}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	docs := func(yield func(Document) error) error {
		for i := range n {
			if err := yield(Document{ID: fmt.Sprintf("d%d", i), Text: fmt.Sprintf("word%d word%d common text %d", i%97, i%13, i)}); err != nil {
				return err
			}
		}
		return nil
	}
	var calls []int64
	st, err := IngestStream(ctx, conn, tbl, e, docs, StreamOptions{Batch: 400, Progress: func(s StreamStats) { calls = append(calls, s.Rows) }})
	if err != nil {
		t.Fatal(err)
	}
	if st.Docs != n || st.Rows != n || len(calls) != 8 || calls[0] != 400 || calls[7] != n {
		t.Fatalf("stats %+v, progress %v", st, calls)
	}
	var count int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM stream_t").Scan(&count); err != nil || count != n {
		t.Fatalf("%d rows, %v", count, err)
	}
	// A duplicate id fails on the primary key; batches before it stay.
	dup := func(yield func(Document) error) error {
		for _, id := range []string{"x1", "x2", "x1"} {
			if err := yield(Document{ID: id, Text: "t"}); err != nil {
				return err
			}
		}
		return nil
	}
	if _, err := IngestStream(ctx, conn, tbl, e, dup, StreamOptions{Batch: 2}); err == nil || !strings.Contains(err.Error(), "duplicate key") {
		t.Fatalf("duplicate id: err %v", err)
	}
	// The yield error comes back as is.
	stop := errors.New("stop")
	if _, err := IngestStream(ctx, conn, tbl, e, func(yield func(Document) error) error { return stop }, StreamOptions{}); !errors.Is(err, stop) {
		t.Fatalf("err %v, want stop", err)
	}

	wctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	var seen []BuildProgress
	done := make(chan struct{})
	go func() {
		defer close(done)
		WatchBuild(wctx, watcher, tbl, 2*time.Millisecond, func(p BuildProgress) {
			mu.Lock()
			seen = append(seen, p)
			mu.Unlock()
		})
	}()
	plan := SizeBuild(tbl, Index{Method: HNSW}, n, 256<<20, 2)
	_, err = CreateIndex(ctx, conn, tbl, Index{Method: HNSW, Metric: Cosine, M: 16, EfConstruction: 200,
		MaintenanceWorkMem: plan.Setting(), ParallelWorkers: plan.ParallelWorkers})
	cancel()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	counted := false
	for _, p := range seen {
		if p.Phase != "" && (p.TuplesDone > 0 || p.BlocksDone > 0) {
			counted = true
		}
	}
	if !counted {
		t.Fatalf("no build progress with counters among %d readings: %+v", len(seen), seen)
	}
	t.Logf("%d readings, last %+v", len(seen), seen[len(seen)-1])
}
