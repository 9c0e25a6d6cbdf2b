package storage

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"
)

var (
	benchGCMiB  = flag.Int("bench.gcmib", 1024, "size of the big store in MiB for BenchmarkGCPass (the small one is a tenth)")
	benchGCReps = flag.Int("bench.gcreps", 3, "BenchmarkGCPass repetitions")
	benchGCProf = flag.String("bench.gcprof", "", "BenchmarkGCPass writes a CPU profile of each incremental pass to PATH.<store's blocks>.<n> (merge them with go tool pprof)")
)

// gcFixture is a store holding one file of mib MiB written through a
// Head, with a settable clock so rewritten blocks can be made collectable.
type gcFixture struct {
	s        *Store
	h        *Head
	clk      *clock
	ino      uint64
	blocks   int
	rng      *rand.Rand
	profiles int // incremental passes profiled (-bench.gcprof)
}

func newGCFixture(b *testing.B, mib int) *gcFixture {
	clk := &clock{t: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	s, err := Open(benchDir(b), &Options{GCInterval: -1, HistoryWindow: time.Minute, HistoryTick: time.Hour, Now: clk.Now})
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := s.CreateProject("p"); err != nil {
		b.Fatal(err)
	}
	h, err := s.OpenHead("p", "main")
	if err != nil {
		b.Fatal(err)
	}
	f := &gcFixture{s: s, h: h, clk: clk, ino: fillFile(b, h, "data", mib), blocks: mib << 20 / BlockSize, rng: rand.New(rand.NewPCG(uint64(mib), 1))}
	f.age()
	if _, err := s.GC(context.Background()); err != nil { // the full pass after Open
		b.Fatal(err)
	}
	settle(b, s)
	return f
}

// age moves the clock past the history window with ticks, so everything
// shadowed so far is collectable.
func (f *gcFixture) age() {
	for range 3 {
		f.clk.Add(40 * time.Second)
		f.s.Tick()
	}
}

// rewrite overwrites n random blocks and ages them out of the window.
func (f *gcFixture) rewrite(b *testing.B, n int) {
	for range n {
		blk := f.rng.IntN(f.blocks)
		if _, err := f.h.WriteAt(f.ino, page(blk+f.rng.IntN(1000)), int64(blk)*BlockSize); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.h.Flush(); err != nil {
		b.Fatal(err)
	}
	f.age()
}

// pass rewrites n blocks and times one GC pass (incremental or full),
// once f and the other fixtures have flushed and run no compaction (the
// other store's compactions after its own pass would take a core from
// this one).
func (f *gcFixture) pass(b *testing.B, n int, full bool, others ...*gcFixture) (time.Duration, GCStats) {
	f.rewrite(b, n)
	for _, g := range append(others, f) {
		g.quiesce(b)
	}
	gc := f.s.GC
	if full {
		gc = f.s.GCFull
	}
	if *benchGCProf != "" && !full {
		out, err := os.Create(fmt.Sprintf("%s.%d.%d", *benchGCProf, f.blocks, f.profiles))
		if err != nil {
			b.Fatal(err)
		}
		f.profiles++
		defer out.Close()
		// A pass takes milliseconds: sample at 2 kHz, not 100 Hz (pprof
		// then warns that the rate was set already).
		runtime.SetCPUProfileRate(2000)
		if err := pprof.StartCPUProfile(out); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	st, err := gc(context.Background())
	d := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	if st.Deleted < n*9/10 {
		b.Fatalf("pass deleted %d versions after %d rewrites", st.Deleted, n)
	}
	return d, st
}

// quiesce flushes the memtable and waits (up to 60 s) until for 500 ms no
// compaction has run and no table waits for its statistics
// (which, once loaded, can start a compaction of the tombstones an earlier
// pass wrote): a compaction running during the pass takes one of the two
// cores from it.
func (f *gcFixture) quiesce(b *testing.B) {
	if err := f.s.db.Flush(); err != nil {
		b.Fatal(err)
	}
	idle := 0
	for deadline := time.Now().Add(60 * time.Second); idle < 25 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		m := f.s.db.Metrics()
		if m.Compact.NumInProgress == 0 && m.Table.PendingStatsCollectionCount == 0 {
			idle++
		} else {
			idle = 0
		}
	}
}

func (f *gcFixture) close() {
	_ = f.h.Close()
	_ = f.s.Close()
}

// BenchmarkGCPass times a GC pass over a store of bench.gcmib MiB and over
// one a tenth of that size, each with the same garbage: 1% of the big
// store's blocks rewritten at random (so 10% of the small one's) and aged
// out of the history window. Repetitions are interleaved (3 of each); the
// medians are reported with their ratio for the incremental pass (goal:
// at most 1.5, cost follows the garbage, not the store) and for the full
// pass (GCFull, what every pass cost before), for comparison.
func BenchmarkGCPass(b *testing.B) {
	if b.N > 1 {
		b.Skip("one run is the measurement; use -benchtime=1x")
	}
	big := newGCFixture(b, *benchGCMiB)
	defer big.close()
	small := newGCFixture(b, *benchGCMiB/10)
	defer small.close()
	n := big.blocks / 100
	var inc, full [2][]time.Duration
	var st [2]GCStats
	b.ResetTimer()
	for range *benchGCReps {
		for i, f := range []*gcFixture{big, small} {
			other := []*gcFixture{small, big}[i]
			d, s := f.pass(b, n, false, other)
			inc[i] = append(inc[i], d)
			st[i] = s
			d, _ = f.pass(b, n, true, other)
			full[i] = append(full[i], d)
		}
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	ib, is, fb, fs := median(inc[0]), median(inc[1]), median(full[0]), median(full[1])
	b.ReportMetric(ms(ib), "inc-big-ms")
	b.ReportMetric(ms(is), "inc-small-ms")
	b.ReportMetric(float64(ib)/float64(is), "inc-ratio")
	b.ReportMetric(ms(fb), "full-big-ms")
	b.ReportMetric(ms(fs), "full-small-ms")
	b.ReportMetric(float64(fb)/float64(fs), "full-ratio")
	b.ReportMetric(float64(n), "rewritten-blocks")
	b.ReportMetric(float64(st[0].Visited), "inc-big-visited")
	b.ReportMetric(float64(st[1].Visited), "inc-small-visited")
	b.ReportMetric(float64(st[0].Named), "inc-big-named")
	b.ReportMetric(float64(st[1].Named), "inc-small-named")
	b.Logf("big store's LSM:\n%s", big.s.db.Metrics())
	b.Logf("small store's LSM:\n%s", small.s.db.Metrics())
	b.Logf("incremental passes, big: %v; small: %v", inc[0], inc[1])
	b.Logf("incremental pass, big: %+v", st[0])
	b.Logf("incremental pass, small: %+v", st[1])
}
