package storage

import (
	"flag"
	"math"
	"testing"
	"time"
)

var benchUsageMiB = flag.Int("bench.usagemib", 1024, "size of the big project in MiB for BenchmarkUsage (the small one is a hundredth)")

// BenchmarkUsage times Store.Usage of the main branch of a project of
// bench.usagemib MiB and of one a hundredth of that size, in one store,
// both with their head open. Repetitions are interleaved, alternating
// which project goes first (3 of each, 10,000 calls per repetition); the medians per call are reported with their
// ratio (goal: at most 1.5, usage does not depend on the branch's size).
// For comparison it also times the full recount Usage used to be (and
// Check still runs), once per repetition.
func BenchmarkUsage(b *testing.B) {
	if b.N > 1 {
		b.Skip("one run is the measurement; use -benchtime=1x")
	}
	s, err := Open(benchDir(b), &Options{GCInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	projects := []string{"big", "small"}
	for i, p := range projects {
		if _, _, err := s.CreateProject(p); err != nil {
			b.Fatal(err)
		}
		h, err := s.OpenHead(p, "main")
		if err != nil {
			b.Fatal(err)
		}
		defer h.Close()
		fillFile(b, h, "data", max(1, *benchUsageMiB/[]int{1, 100}[i]))
	}
	settle(b, s)
	const calls = 10000
	var usage, recount [2][]time.Duration
	var us [2]BranchUsage
	b.ResetTimer()
	for rep := range 3 {
		for j := range projects {
			i := j ^ rep%2 // alternate which project goes first
			p := projects[i]
			start := time.Now()
			for range calls {
				if us[i], err = s.Usage(p, "main"); err != nil {
					b.Fatal(err)
				}
			}
			usage[i] = append(usage[i], time.Since(start)/calls)
			s.mu.Lock()
			_, br, err := s.branchLocked(p, "main")
			if err != nil {
				s.mu.Unlock()
				b.Fatal(err)
			}
			chain := s.chainLocked(br.Timeline, math.MaxUint64)
			s.mu.Unlock()
			start = time.Now()
			c, err := s.recount(chain)
			recount[i] = append(recount[i], time.Since(start))
			if err != nil || c.Logical != us[i].LogicalBytes || c.Exclusive != us[i].ExclusiveBytes {
				b.Fatalf("%s: recount %+v (%v), usage %+v", p, c, err, us[i])
			}
		}
	}
	b.StopTimer()
	ub, usm, rb, rs := median(usage[0]), median(usage[1]), median(recount[0]), median(recount[1])
	b.ReportMetric(float64(ub.Nanoseconds())/1000, "usage-big-us")
	b.ReportMetric(float64(usm.Nanoseconds())/1000, "usage-small-us")
	b.ReportMetric(float64(ub)/float64(usm), "usage-ratio")
	b.ReportMetric(float64(rb.Microseconds())/1000, "recount-big-ms")
	b.ReportMetric(float64(rs.Microseconds())/1000, "recount-small-ms")
	b.ReportMetric(float64(rb)/float64(rs), "recount-ratio")
	b.Logf("big: %+v", us[0])
	b.Logf("small: %+v", us[1])
}
