package experiments

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"
)

// BenchmarkMerge measures issue 16's merge row: a fork that changed 0.1%
// of the rows of a table of about 1 GiB (MERGE_BENCH_ROWS rows, default
// 7,000,000 of about 160 bytes each; every 1000th row updated, scattered
// over the whole heap) merged into its parent, as a dry run, against a
// full-table comparison of the same two branches: the same merge with
// full_compare, which reads and sorts every row of the base and the
// source. Both include the whole merge (the base's fork and compute
// start, checkpoints, the target lookups). Three forks, each measured
// both ways in alternating order; medians. Reports merge-ms, full-ms and
// their ratio (lower is better) for a vacuumed parent, and the ratio for
// a freshly loaded one (fresh-merge/full), whose pages all get hint bits
// on the fork's first scan, so storage reads every block to compare.
// MERGE_BENCH_ROWS sets the table's rows; MERGE_BENCH_WAL_COMPRESSION
// overrides the branches' wal_compression (lz4), e.g. off.
func BenchmarkMerge(b *testing.B) {
	rows := 7_000_000
	if v, err := strconv.Atoi(os.Getenv("MERGE_BENCH_ROWS")); err == nil && v > 0 {
		rows = v
	}
	settings := map[string]string{"max_wal_size": "4GB"}
	if v := os.Getenv("MERGE_BENCH_WAL_COMPRESSION"); v != "" {
		settings["wal_compression"] = v
	}
	s := storeService(b, "p", settings)
	ctx := WithCaller(context.Background(), LocalCaller)
	q := func(branch, sql string) { super(b, s, ctx, branch, sql) }
	q("main", fmt.Sprintf(`CREATE TABLE big (id bigint PRIMARY KEY, v int NOT NULL, pad text);
INSERT INTO big SELECT i, 0, repeat('p', 120) FROM generate_series(1, %d) i;
CHECKPOINT`, rows))
	res, err := s.Query(ctx, QueryRequest{Project: "p", Branch: "main", SQL: "SELECT pg_relation_size('big')", ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	heap := res.Results[0].Rows[0][0]
	// measure forks main three times, updates 0.1% of the rows of each
	// fork and times the merge both ways, in alternating order.
	var last *Merge
	measure := func(round int) (merged, full []time.Duration) {
		for i := range 3 {
			fork := fmt.Sprintf("f%d-%d", round, i)
			if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: fork, ParentID: "main"}); err != nil {
				b.Fatal(err)
			}
			q(fork, fmt.Sprintf("UPDATE big SET v = v + 1 WHERE id %% 1000 = %d", 3*round+i+1))
			run := func(fullCompare bool) {
				start := time.Now()
				m, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: fork, Target: "main", DryRun: true, FullCompare: fullCompare})
				if err != nil {
					b.Fatal(err)
				}
				if len(m.Tables) != 1 || m.Tables[0].Updated != int64(rows/1000) {
					b.Fatalf("merge of %s (full %t): %+v, want %d rows updated", fork, fullCompare, m.Tables, rows/1000)
				}
				fmt.Printf("round %d %s full=%t from=%s: %+v\n", round, fork, fullCompare, m.SourceChanges, m.Timings)
				if fullCompare {
					full = append(full, time.Since(start))
				} else {
					merged = append(merged, time.Since(start))
					last = m
				}
			}
			run(i%2 == 1)
			run(i%2 == 0)
		}
		return merged, full
	}
	// A freshly loaded parent: the fork's first scan sets hint bits on
	// every page, so every block is a candidate storage must read.
	freshMerged, freshFull := measure(0)
	// The parent at rest, as autovacuum leaves it: hint bits set.
	q("main", "VACUUM big")
	q("main", "CHECKPOINT")
	merged, full := measure(1)
	med := func(ds []time.Duration) float64 {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return float64(ds[len(ds)/2].Milliseconds())
	}
	b.ReportMetric(med(merged), "merge-ms")
	b.ReportMetric(med(full), "full-ms")
	b.ReportMetric(med(merged)/med(full), "merge/full")
	b.ReportMetric(med(freshMerged)/med(freshFull), "fresh-merge/full")
	b.Logf("heap %v bytes, %d rows; vacuumed parent: merge %v, full comparison %v; freshly loaded parent: merge %v, full %v; narrowed tables %d",
		heap, rows, merged, full, freshMerged, freshFull, last.NarrowedByBlocks)
}
