package storage

import (
	"flag"
	"fmt"
	"testing"
	"time"
)

var benchProjects = flag.Int("bench.projects", 10000, "projects in the larger store of BenchmarkManyProjects")

// BenchmarkManyProjects: the lookup every store call begins with (a
// project by name, Store.Project) in a store of 10 projects and in one of
// -bench.projects (10,000), interleaved in 5 repetitions of 2,000 calls
// each; the medians of the repetitions' mean latencies and their ratio
// many/few.
func BenchmarkManyProjects(b *testing.B) {
	mk := func(n int) *Store {
		s := openTest(b, nil)
		for i := range n {
			if _, _, err := s.CreateProject(fmt.Sprintf("p%05d", i)); err != nil {
				b.Fatal(err)
			}
		}
		return s
	}
	stores := []*Store{mk(10), mk(*benchProjects)}
	lat := [2][]time.Duration{}
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
				lat[k] = append(lat[k], time.Since(t)/calls)
			}
		}
	}
	few, lots := median(lat[0]), median(lat[1])
	b.ReportMetric(float64(few.Nanoseconds()), "lookup-10-ns")
	b.ReportMetric(float64(lots.Nanoseconds()), "lookup-many-ns")
	b.ReportMetric(float64(lots)/float64(few), "lookup-many/10")
}
