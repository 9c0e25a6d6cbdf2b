package storage

import (
	"flag"
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

var benchFootprintBranches = flag.Int("bench.branches", 100000, "branches forked by BenchmarkBranchFootprint")

// BenchmarkBranchFootprint measures what a branch costs the store when
// nothing is written to it (docs/scale.md): -bench.branches metadata-only
// forks of an empty main in one project, each a synced commit, then the
// store closed and opened again. It reports the Go heap the catalog holds
// per branch (after runtime.GC), the bytes per branch on disk, the mean
// fork time and the time Open takes to load the catalog. It has no
// baseline: the numbers are for the capacity table, not for make bench.
func BenchmarkBranchFootprint(b *testing.B) {
	n := *benchFootprintBranches
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		s, err := Open(dir, &Options{GCInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := s.CreateProject("p"); err != nil {
			b.Fatal(err)
		}
		h0 := heap()
		t0 := time.Now()
		for j := range n {
			if _, err := s.Fork("p", "main", fmt.Sprintf("b%07d", j), AtHead(), BranchOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		fork := time.Since(t0)
		h1 := heap()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		var size int64
		_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if fi, err := d.Info(); err == nil {
					size += fi.Size()
				}
			}
			return nil
		})
		t0 = time.Now()
		s, err = Open(dir, &Options{GCInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		reopen := time.Since(t0)
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(h1-h0)/float64(n), "heap-B/branch")
		b.ReportMetric(float64(size)/float64(n), "disk-B/branch")
		b.ReportMetric(float64(fork.Microseconds())/float64(n), "fork-µs")
		b.ReportMetric(float64(reopen.Milliseconds()), "reopen-ms")
	}
}
