package storage

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"
)

// BenchmarkManyProjects: the lookup every store call begins with (a
// project by name, Store.Project) in a store of 10 projects and in one of
// MANY_BENCH_PROJECTS (default 10,000), interleaved in 5 repetitions of
// 2,000 calls each; the medians of the repetitions' mean latencies and
// their ratio many/few.
func BenchmarkManyProjects(b *testing.B) {
	many := 10000
	if n, err := strconv.Atoi(os.Getenv("MANY_BENCH_PROJECTS")); err == nil && n > 0 {
		many = n
	}
	mk := func(n int) *Store {
		s := openTest(b, nil)
		for i := range n {
			if _, _, err := s.CreateProject(fmt.Sprintf("p%05d", i)); err != nil {
				b.Fatal(err)
			}
		}
		return s
	}
	stores := []*Store{mk(10), mk(many)}
	lat := [2][]float64{}
	const calls = 2000
	for range b.N {
		for rep := range 5 {
			for j := range stores {
				k := (j + rep) % 2
				t := time.Now()
				for i := range calls {
					if _, err := stores[k].Project(fmt.Sprintf("p%05d", i%10)); err != nil {
						b.Fatal(err)
					}
				}
				lat[k] = append(lat[k], float64(time.Since(t).Nanoseconds())/calls)
			}
		}
	}
	med := func(xs []float64) float64 { s := slices.Clone(xs); slices.Sort(s); return s[len(s)/2] }
	few, lots := med(lat[0]), med(lat[1])
	b.ReportMetric(few, "lookup-10-ns")
	b.ReportMetric(lots, "lookup-many-ns")
	b.ReportMetric(lots/few, "lookup-many/10")
}
