package storage

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/internal/procstatus"
)

// Issue 20, item 4: a large store (a few large projects plus many small
// branches) against a small one of the same shape, with fork, read, GC and
// restart times and the process's memory measured on both. Run by `make
// bench-large` (scripts/bench-large); -bench.largegib 0 (the default)
// leaves it out of `make bench`, since building the large store writes
// that many GiB.
var (
	benchLargeGiB = flag.Int("bench.largegib", 0, "total size in GiB of the large projects of BenchmarkLargeStore's large store (0: skip)")
	benchLargeDir = flag.String("bench.largedir", "", "directory for BenchmarkLargeStore's stores (default: a temporary one); a store already there is reused")
	// With compression, a store holds more logical data than the disk has
	// room for uncompressed: the files get textPage blocks, which
	// compress to a little under half, as text-heavy heap pages do.
	benchLargeCompress = flag.Bool("bench.largecompress", false, "open BenchmarkLargeStore's stores with Options.Compress and fill them with blocks that compress to under half")
)

const (
	largeProjects   = 3         // large projects per store
	largeFileMiB    = 1024      // files of the large projects (Postgres' segment size)
	smallBranches   = 1000      // branches of the project "small", in both stores
	smallBranchKiB  = 256       // written on each of them
	largeForks      = 20        // forks timed per repetition
	largeReads      = 4000      // random 8 KiB reads timed per repetition
	largeRewrites   = 2000      // blocks rewritten before the timed incremental pass
	baselineFileMiB = 256       // the small store: one file of this size per large project
	largeReadSeed   = 0x1a56e20 // reads and rewrites draw from the same sequence in both stores
)

// largeStore is one of the two stores: its shape, its clock (kept across
// reopens so the history window ages data the same way in both), and the
// files its large projects hold.
type largeStore struct {
	name  string
	dir   string
	clk   *clock
	s     *Store
	files [largeProjects][]uint64 // inode of each file, per large project
	mib   int                     // size of each file
	rng   *rand.Rand
}

func (l *largeStore) opts() *Options {
	return &Options{GCInterval: -1, HistoryWindow: time.Minute, HistoryTick: time.Hour, Now: l.clk.Now, Compress: *benchLargeCompress}
}

func (l *largeStore) open(b *testing.B) time.Duration {
	t0 := time.Now()
	s, err := Open(l.dir, l.opts())
	if err != nil {
		b.Fatal(err)
	}
	l.s = s
	return time.Since(t0)
}

func (l *largeStore) close(b *testing.B) {
	if err := l.s.Close(); err != nil {
		b.Fatal(err)
	}
	l.s = nil
}

func (l *largeStore) age() {
	for range 3 {
		l.clk.Add(40 * time.Second)
		l.s.Tick()
	}
}

// build creates the store's projects (or finds them, when a store built
// earlier in -bench.largedir is reused): largeProjects projects of files
// files of l.mib MiB each, and a project "small" with smallBranches
// branches that each wrote smallBranchKiB.
func (l *largeStore) build(b *testing.B, files int) {
	l.open(b)
	for p := range largeProjects {
		name := fmt.Sprintf("large%d", p)
		fresh := true
		if _, _, err := l.s.CreateProject(name); err != nil {
			if _, err2 := l.s.Branches(name); err2 != nil {
				b.Fatal(err)
			}
			fresh = false
		}
		h, err := l.s.OpenHead(name, "main")
		if err != nil {
			b.Fatal(err)
		}
		for f := range files {
			fn := fmt.Sprintf("seg.%d", f)
			if !fresh {
				a, err := h.Lookup(RootIno, fn)
				if err != nil {
					b.Fatalf("reused store %s: %v", l.dir, err)
				}
				l.files[p] = append(l.files[p], a.Ino)
				continue
			}
			gen := page
			if *benchLargeCompress {
				gen = textPage
			}
			l.files[p] = append(l.files[p], fillFileWith(b, h, fn, l.mib, gen))
		}
		if err := h.Close(); err != nil {
			b.Fatal(err)
		}
		b.Logf("%s: %s ready (%d files of %d MiB)", l.name, name, files, l.mib)
	}
	if _, _, err := l.s.CreateProject("small"); err == nil {
		buf := make([]byte, smallBranchKiB<<10)
		for i := range smallBranches {
			br := fmt.Sprintf("b%d", i)
			if _, err := l.s.Fork("small", "main", br, AtHead(), BranchOptions{}); err != nil {
				b.Fatal(err)
			}
			h, err := l.s.OpenHead("small", br)
			if err != nil {
				b.Fatal(err)
			}
			for j := range buf {
				buf[j] = byte(i + j>>13)
			}
			a, err := h.Create(RootIno, "rel", 0o600, 0, 0)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := h.WriteAt(a.Ino, buf, 0); err != nil {
				b.Fatal(err)
			}
			if err := h.Close(); err != nil {
				b.Fatal(err)
			}
		}
	} else if _, err2 := l.s.Branches("small"); err2 != nil { // not a store built earlier
		b.Fatal(err)
	}
	l.age()
	if _, err := l.s.GC(context.Background()); err != nil {
		b.Fatal(err)
	}
	settle(b, l.s)
	l.close(b)
}

// textPool is the random bytes textPage takes its blocks' first part from.
var textPool = func() []byte {
	r := rand.New(rand.NewPCG(7, 7))
	p := make([]byte, 4<<20)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}()

// textPage is block i of a file whose blocks compress to about 40% with
// pebble's fastest compression: a third random bytes (a stretch of
// textPool that repeats only every 530 blocks, far beyond a compressor's
// window), then a repeated 64-byte row that starts with the block number.
func textPage(i int) []byte {
	p := make([]byte, BlockSize)
	n := BlockSize / 3
	off := i * 7919 % (len(textPool) - n)
	copy(p, textPool[off:off+n])
	row := make([]byte, 64)
	copy(row, fmt.Sprintf("%012d|customer|note: lorem ipsum dolor sit amet consectetur", i))
	for j := n; j < BlockSize; j += len(row) {
		copy(p[j:], row)
	}
	return p
}

// block picks a random block of a random file of a random large project.
func (l *largeStore) block() (project int, ino uint64, off int64) {
	p := l.rng.IntN(largeProjects)
	f := l.files[p][l.rng.IntN(len(l.files[p]))]
	return p, f, int64(l.rng.IntN(l.mib<<20/BlockSize)) * BlockSize
}

// largeRep is one repetition's measurements of one store.
type largeRep struct {
	open, firstGC, fullGC, read, readP95, fork, incGC time.Duration
	firstGCStats, fullGCStats, incGCStats             GCStats
	rss, heap, cache                                  int64 // bytes after the repetition
}

// rep opens the store, runs the first GC pass (incremental after the
// clean close that ended the previous repetition or the build), a full
// pass (what the first one costs after a crash), the random reads,
// the forks, a rewrite and an incremental pass, notes the memory, and
// closes it again.
func (l *largeStore) rep(b *testing.B) largeRep {
	var r largeRep
	r.open = l.open(b)
	defer l.close(b)
	var err error
	if r.firstGCStats, err = l.s.GC(context.Background()); err != nil {
		b.Fatal(err)
	}
	r.firstGC = r.firstGCStats.Duration
	// What the first pass costs after a crash (no saved candidates).
	if r.fullGCStats, err = l.s.GCFull(context.Background()); err != nil {
		b.Fatal(err)
	}
	r.fullGC = r.fullGCStats.Duration
	var views [largeProjects]*View
	for p := range views {
		if views[p], err = l.s.OpenView(fmt.Sprintf("large%d", p), "main", AtHead()); err != nil {
			b.Fatal(err)
		}
	}
	buf := make([]byte, BlockSize)
	lat := make([]time.Duration, 0, largeReads)
	for range largeReads {
		p, ino, off := l.block()
		t0 := time.Now()
		if _, err := views[p].ReadAt(ino, buf, off); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	r.read, r.readP95 = lat[len(lat)/2], lat[len(lat)*95/100]
	for _, v := range views { // an open view would keep what the rewrites below shadow
		if err := v.Close(); err != nil {
			b.Fatal(err)
		}
	}
	forks := make([]time.Duration, 0, largeForks)
	for i := range largeForks {
		p := fmt.Sprintf("large%d", i%largeProjects)
		t0 := time.Now()
		if _, err := l.s.Fork(p, "main", "f", AtHead(), BranchOptions{}); err != nil {
			b.Fatal(err)
		}
		forks = append(forks, time.Since(t0))
		if err := l.s.DeleteBranch(p, "f", DeleteOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	r.fork = median(forks)
	var heads [largeProjects]*Head
	for p := range heads {
		if heads[p], err = l.s.OpenHead(fmt.Sprintf("large%d", p), "main"); err != nil {
			b.Fatal(err)
		}
	}
	for range largeRewrites {
		p, ino, off := l.block()
		if _, err := heads[p].WriteAt(ino, page(int(off/BlockSize)+l.rng.IntN(1000)), off); err != nil {
			b.Fatal(err)
		}
	}
	for _, h := range heads {
		if err := h.Close(); err != nil {
			b.Fatal(err)
		}
	}
	l.age()
	if err := l.s.db.Flush(); err != nil {
		b.Fatal(err)
	}
	if r.incGCStats, err = l.s.GC(context.Background()); err != nil {
		b.Fatal(err)
	}
	r.incGC = r.incGCStats.Duration
	if r.incGCStats.Deleted < largeRewrites*9/10 {
		b.Fatalf("%s: the incremental pass deleted %d versions after %d rewrites", l.name, r.incGCStats.Deleted, largeRewrites)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r.heap = int64(ms.HeapInuse)
	if r.rss, err = procstatus.Bytes("VmRSS"); err != nil {
		b.Fatal(err)
	}
	r.cache = l.s.db.Metrics().BlockCache.Size
	return r
}

// fileCounts counts the store directory's pebble files by kind.
func fileCounts(b *testing.B, dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	n := map[string]int{}
	for _, e := range ents {
		if ext := filepath.Ext(e.Name()); ext == ".sst" || ext == ".blob" {
			n[ext[1:]]++
		}
	}
	return fmt.Sprintf("%d sstables, %d blob files", n["sst"], n["blob"])
}

func dirBytes(b *testing.B, dir string) int64 {
	var n int64
	ents, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}

// BenchmarkLargeStore builds a store whose large projects hold
// bench.largegib GiB (largeProjects projects of 1 GiB files) plus a
// project with smallBranches small branches, and a store of the same shape
// whose large projects hold one 256 MiB file each. Then, 3 repetitions
// interleaved between the two stores, each opening the store afresh:
// restart (Open), the first GC pass after it and a full pass, random 8 KiB
// reads across the large projects (median and p95), forks of a large
// project's main (median), and an incremental GC pass after the same
// number of rewritten blocks; the process's RSS, the Go heap and pebble's
// block cache after each. Ratios are large/small medians: fork, read,
// incremental GC and memory should not follow the store's size.
func BenchmarkLargeStore(b *testing.B) {
	if *benchLargeGiB <= 0 {
		b.Skip("set -bench.largegib (make bench-large)")
	}
	if b.N > 1 {
		b.Skip("one run is the measurement; use -benchtime=1x")
	}
	root := *benchLargeDir
	if root == "" {
		root = benchDir(b)
	}
	// The stores' clock goes on from where a run that built them left it
	// (the history window must not see time go back).
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	clockFile := root + "/clock"
	if data, err := os.ReadFile(clockFile); err == nil {
		if start, err = time.Parse(time.RFC3339Nano, strings.TrimSpace(string(data))); err != nil {
			b.Fatal(err)
		}
	}
	filesPer := max(1, *benchLargeGiB*1024/largeFileMiB/largeProjects)
	kind := "" // a compressed store is not reused for an uncompressed run, and back
	if *benchLargeCompress {
		kind = "-compressed"
	}
	stores := []*largeStore{
		{name: "large", dir: fmt.Sprintf("%s/large-%dg%s", root, *benchLargeGiB, kind), clk: &clock{t: start}, mib: largeFileMiB},
		{name: "small", dir: root + "/small" + kind, clk: &clock{t: start}, mib: baselineFileMiB},
	}
	for _, l := range stores {
		t0 := time.Now()
		files := filesPer
		if l.name == "small" {
			files = 1
		}
		l.build(b, files)
		l.rng = rand.New(rand.NewPCG(largeReadSeed, 1))
		b.Logf("%s store: built or found in %v, %.1f GiB on disk", l.name, time.Since(t0).Round(time.Second), float64(dirBytes(b, l.dir))/(1<<30))
	}
	reps := [2][]largeRep{}
	b.ResetTimer()
	for range 3 {
		for i, l := range stores {
			// Each repetition starts with the page cache as the other
			// store's repetition left it.
			reps[i] = append(reps[i], l.rep(b))
		}
	}
	b.StopTimer()
	last := stores[0].clk.Now()
	if t := stores[1].clk.Now(); t.After(last) {
		last = t
	}
	if err := os.WriteFile(clockFile, []byte(last.Format(time.RFC3339Nano)), 0o600); err != nil {
		b.Fatal(err)
	}
	med := func(i int, f func(largeRep) time.Duration) time.Duration {
		ds := make([]time.Duration, 0, len(reps[i]))
		for _, r := range reps[i] {
			ds = append(ds, f(r))
		}
		return median(ds)
	}
	medB := func(i int, f func(largeRep) int64) int64 {
		ns := make([]int64, 0, len(reps[i]))
		for _, r := range reps[i] {
			ns = append(ns, f(r))
		}
		slices.Sort(ns)
		return ns[len(ns)/2]
	}
	for _, m := range []struct {
		name string
		f    func(largeRep) time.Duration
	}{
		{"open", func(r largeRep) time.Duration { return r.open }},
		{"first-gc", func(r largeRep) time.Duration { return r.firstGC }},
		{"full-gc", func(r largeRep) time.Duration { return r.fullGC }},
		{"read", func(r largeRep) time.Duration { return r.read }},
		{"read-p95", func(r largeRep) time.Duration { return r.readP95 }},
		{"fork", func(r largeRep) time.Duration { return r.fork }},
		{"inc-gc", func(r largeRep) time.Duration { return r.incGC }},
	} {
		lg, sm := med(0, m.f), med(1, m.f)
		b.ReportMetric(float64(lg.Microseconds()), m.name+"-large-us")
		b.ReportMetric(float64(sm.Microseconds()), m.name+"-small-us")
		b.ReportMetric(float64(lg)/float64(max(sm, 1)), m.name+"-ratio")
		// Printed, not logged: go test cuts a benchmark's log after ten lines.
		fmt.Printf("%-9s large %v (%v), small %v (%v)\n", m.name, lg, each(reps[0], m.f), sm, each(reps[1], m.f))
	}
	for _, m := range []struct {
		name string
		f    func(largeRep) int64
	}{
		{"rss", func(r largeRep) int64 { return r.rss }},
		{"heap", func(r largeRep) int64 { return r.heap }},
		{"cache", func(r largeRep) int64 { return r.cache }},
	} {
		lg, sm := medB(0, m.f), medB(1, m.f)
		b.ReportMetric(float64(lg>>20), m.name+"-large-MiB")
		b.ReportMetric(float64(sm>>20), m.name+"-small-MiB")
		b.ReportMetric(float64(lg)/float64(max(sm, 1)), m.name+"-ratio")
	}
	for i, l := range stores {
		fmt.Printf("%s: first pass %+v\n", l.name, reps[i][len(reps[i])-1].firstGCStats)
		fmt.Printf("%s: full pass %+v\n", l.name, reps[i][len(reps[i])-1].fullGCStats)
		fmt.Printf("%s: incremental pass %+v\n", l.name, reps[i][len(reps[i])-1].incGCStats)
		fmt.Printf("%s: %s\n", l.name, fileCounts(b, l.dir))
		b.ReportMetric(float64(dirBytes(b, l.dir))/(1<<30), l.name+"-GiB")
	}
}

func each(rs []largeRep, f func(largeRep) time.Duration) []time.Duration {
	out := make([]time.Duration, 0, len(rs))
	for _, r := range rs {
		out = append(out, f(r).Round(time.Microsecond))
	}
	return out
}
