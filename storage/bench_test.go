package storage

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// Benchmarks report ratios against a baseline measured in the same run.
// The "big" parent defaults to 1 GiB; -bench.bigmib scales it down on
// slow machines (the ratio stays meaningful as long as big >> small).
var (
	benchBigMiB   = flag.Int("bench.bigmib", 1024, "size of the big parent in MiB for fork and rewrite benchmarks")
	benchSmallMiB = flag.Int("bench.smallmib", 10, "size of the small parent in MiB")
	benchIOMiB    = flag.Int("bench.iomib", 256, "file size in MiB for the 8 KiB read/write benchmarks")
	benchCacheMiB = flag.Int("bench.cachemib", 256, "pebble block cache in MiB for the 8 KiB read/write benchmarks (the store's default)")
)

var benchDirs struct {
	sync.Mutex
	dirs []string
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	for _, st := range []*Store{forkFixture.s, ioFixture.s, depthFixture.s} {
		if st != nil {
			_ = st.Close()
		}
	}
	benchDirs.Lock()
	for _, d := range benchDirs.dirs {
		_ = os.RemoveAll(d)
	}
	benchDirs.Unlock()
	os.Exit(code)
}

func benchDir(b *testing.B) string {
	d, err := os.MkdirTemp("", "offshoot-storage-bench-")
	if err != nil {
		b.Fatal(err)
	}
	benchDirs.Lock()
	benchDirs.dirs = append(benchDirs.dirs, d)
	benchDirs.Unlock()
	return d
}

func page(i int) []byte {
	p := make([]byte, BlockSize)
	for j := 0; j < BlockSize; j += 8 {
		p[j] = byte(i)
		p[j+1] = byte(i >> 8)
		p[j+2] = byte(i >> 16)
		p[j+3] = byte(j)
	}
	return p
}

// fillFile writes mib MiB of non-zero 8 KiB pages to a new file name.
func fillFile(b *testing.B, h *Head, name string, mib int) uint64 {
	return fillFileWith(b, h, name, mib, page)
}

// fillFileWith is fillFile with block i's contents from gen(i).
func fillFileWith(b *testing.B, h *Head, name string, mib int, gen func(int) []byte) uint64 {
	a, err := h.Create(RootIno, name, 0o600, 0, 0)
	if err != nil {
		b.Fatal(err)
	}
	for i := range mib * (1 << 20) / BlockSize {
		if _, err := h.WriteAt(a.Ino, gen(i), int64(i)*BlockSize); err != nil {
			b.Fatal(err)
		}
	}
	if err := h.Sync(); err != nil {
		b.Fatal(err)
	}
	return a.Ino
}

// settle flushes memtables and waits (up to a minute) for compactions to
// finish, so read benchmarks do not race the fixture's own write-back.
func settle(b *testing.B, s *Store) {
	if err := s.db.Flush(); err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		m := s.db.Metrics()
		if m.Compact.NumInProgress == 0 && m.Compact.EstimatedDebt == 0 {
			return
		}
	}
}

// forkFixture is a store with a project "big" (bench.bigmib) and a project
// "small" (bench.smallmib), built once per process.
var forkFixture struct {
	once sync.Once
	s    *Store
	ino  uint64
	took time.Duration
}

func getForkFixture(b *testing.B) *Store {
	forkFixture.once.Do(func() {
		start := time.Now()
		s, err := Open(benchDir(b), &Options{GCInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range []struct {
			name string
			mib  int
		}{{"big", *benchBigMiB}, {"small", *benchSmallMiB}} {
			if _, _, err := s.CreateProject(p.name); err != nil {
				b.Fatal(err)
			}
			h, err := s.OpenHead(p.name, "main")
			if err != nil {
				b.Fatal(err)
			}
			ino := fillFile(b, h, "rel", p.mib)
			if p.name == "big" {
				forkFixture.ino = ino
			}
			if err := h.Close(); err != nil {
				b.Fatal(err)
			}
		}
		forkFixture.s = s
		forkFixture.took = time.Since(start)
	})
	if forkFixture.s == nil {
		b.Fatal("fixture failed")
	}
	return forkFixture.s
}

// BenchmarkForkLatency forks the big and the small parent alternately and
// reports the ratio of the median latencies big/small: O(1) fork means a
// ratio near 1. (A fork is one synced catalog commit, so its latency is the
// disk's fsync latency; medians keep other processes' I/O bursts out.)
func BenchmarkForkLatency(b *testing.B) {
	s := getForkFixture(b)
	var big, small []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, p := range []string{"big", "small"} {
			name := fmt.Sprintf("f%d", i)
			t0 := time.Now()
			if _, err := s.Fork(p, "main", name, AtHead(), BranchOptions{}); err != nil {
				b.Fatal(err)
			}
			d := time.Since(t0)
			if p == "big" {
				big = append(big, d)
			} else {
				small = append(small, d)
			}
			b.StopTimer()
			if err := s.DeleteBranch(p, name, DeleteOptions{}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	mb, ms := median(big), median(small)
	b.ReportMetric(float64(mb.Nanoseconds()), "ns/fork-big-median")
	b.ReportMetric(float64(ms.Nanoseconds()), "ns/fork-small-median")
	b.ReportMetric(float64(mb)/float64(ms), "big/small")
	b.ReportMetric(float64(*benchBigMiB), "big-MiB")
}

func median(ds []time.Duration) time.Duration {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// BenchmarkForkDiscard measures fork+delete pairs per second on the big
// parent against the 12,000 branch creations per hour quoted for Neon.
func BenchmarkForkDiscard(b *testing.B) {
	s := getForkFixture(b)
	b.ResetTimer()
	t0 := time.Now()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("d%d", i)
		if _, err := s.Fork("big", "main", name, AtHead(), BranchOptions{}); err != nil {
			b.Fatal(err)
		}
		if err := s.DeleteBranch("big", name, DeleteOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	rate := float64(b.N) / time.Since(t0).Seconds()
	b.ReportMetric(rate, "forks/s")
	b.ReportMetric(rate/(12000.0/3600), "x-neon-12k/h")
}

// BenchmarkRewriteOnePercent rewrites 1% of the big parent's blocks in a
// child and reports the bytes the child's timeline stores as a percentage
// of what the parent's stores (a full copy would be 100%).
func BenchmarkRewriteOnePercent(b *testing.B) {
	s := getForkFixture(b)
	blocks := *benchBigMiB * (1 << 20) / BlockSize
	parent, err := s.Branch("big", "main")
	if err != nil {
		b.Fatal(err)
	}
	pb, err := s.timelineBytes(parent.Timeline)
	if err != nil {
		b.Fatal(err)
	}
	var pct float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("r%d", i)
		child, err := s.Fork("big", "main", name, AtHead(), BranchOptions{})
		if err != nil {
			b.Fatal(err)
		}
		h, err := s.OpenHead("big", name)
		if err != nil {
			b.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(uint64(i), 7))
		for range blocks / 100 {
			blk := rng.IntN(blocks)
			if _, err := h.WriteAt(forkFixture.ino, page(blk+1), int64(blk)*BlockSize); err != nil {
				b.Fatal(err)
			}
		}
		if err := h.Close(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cb, err := s.timelineBytes(child.Timeline)
		if err != nil {
			b.Fatal(err)
		}
		pct = 100 * float64(cb) / float64(pb)
		if err := s.DeleteBranch("big", name, DeleteOptions{}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(pct, "child-%-of-parent")
}

// ioFixture: a store file and a plain file of bench.iomib MiB on the same disk.
var ioFixture struct {
	once  sync.Once
	s     *Store
	h     *Head
	ino   uint64
	plain *os.File
}

func getIOFixture(b *testing.B) {
	ioFixture.once.Do(func() {
		dir := benchDir(b)
		s, err := Open(filepath.Join(dir, "store"), &Options{GCInterval: -1, CacheSize: int64(*benchCacheMiB) << 20})
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := s.CreateProject("io"); err != nil {
			b.Fatal(err)
		}
		h, err := s.OpenHead("io", "main")
		if err != nil {
			b.Fatal(err)
		}
		ioFixture.ino = fillFile(b, h, "rel", *benchIOMiB)
		f, err := os.Create(filepath.Join(dir, "plain"))
		if err != nil {
			b.Fatal(err)
		}
		for i := range *benchIOMiB * (1 << 20) / BlockSize {
			if _, err := f.WriteAt(page(i), int64(i)*BlockSize); err != nil {
				b.Fatal(err)
			}
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		ioFixture.s, ioFixture.h, ioFixture.plain = s, h, f
		settle(b, s)
	})
	if ioFixture.h == nil {
		b.Fatal("fixture failed")
	}
}

// benchIO runs n 8 KiB operations at offsets from off on the store and on
// the plain file, interleaved in chunks, and reports store/plain throughput.
func benchIO(b *testing.B, write, random bool) {
	getIOFixture(b)
	blocks := *benchIOMiB * (1 << 20) / BlockSize
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, BlockSize)
	wbuf := page(12345)
	var store, plain time.Duration
	const chunk = 1024
	pos := 0
	next := func() int64 {
		if random {
			return int64(rng.IntN(blocks)) * BlockSize
		}
		pos = (pos + 1) % blocks
		return int64(pos) * BlockSize
	}
	b.ResetTimer()
	for done := 0; done < b.N; done += chunk {
		n := min(chunk, b.N-done)
		offs := make([]int64, n)
		for i := range offs {
			offs[i] = next()
		}
		t0 := time.Now()
		for _, off := range offs {
			var err error
			if write {
				_, err = ioFixture.h.WriteAt(ioFixture.ino, wbuf, off)
			} else {
				_, err = ioFixture.h.ReadAt(ioFixture.ino, buf, off)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		t1 := time.Now()
		for _, off := range offs {
			var err error
			if write {
				_, err = ioFixture.plain.WriteAt(wbuf, off)
			} else {
				_, err = ioFixture.plain.ReadAt(buf, off)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		store += t1.Sub(t0)
		plain += time.Since(t1)
	}
	b.ReportMetric(float64(store.Nanoseconds())/float64(b.N), "ns/op-store")
	b.ReportMetric(float64(plain.Nanoseconds())/float64(b.N), "ns/op-plain")
	b.ReportMetric(float64(plain)/float64(store), "store/plain-throughput")
}

func BenchmarkSeqRead8K(b *testing.B)   { benchIO(b, false, false) }
func BenchmarkRandRead8K(b *testing.B)  { benchIO(b, false, true) }
func BenchmarkSeqWrite8K(b *testing.B)  { benchIO(b, true, false) }
func BenchmarkRandWrite8K(b *testing.B) { benchIO(b, true, true) }

// depthFixture: a 64 MiB file at the root, a chain of 20 forks where each
// level rewrites 1% of the blocks, and a depth-1 fork for comparison.
var depthFixture struct {
	once          sync.Once
	s             *Store
	shallow, deep *View
	ino           uint64
	blocks        int
}

func BenchmarkDepth20vs1Read(b *testing.B) {
	const mib = 64
	depthFixture.once.Do(func() {
		s, err := Open(benchDir(b), &Options{GCInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := s.CreateProject("d"); err != nil {
			b.Fatal(err)
		}
		h, err := s.OpenHead("d", "main")
		if err != nil {
			b.Fatal(err)
		}
		ino := fillFile(b, h, "rel", mib)
		blocks := mib * (1 << 20) / BlockSize
		if err := h.Close(); err != nil {
			b.Fatal(err)
		}
		parent := "main"
		rng := rand.New(rand.NewPCG(3, 4))
		for d := 1; d <= 20; d++ {
			name := fmt.Sprintf("l%d", d)
			if _, err := s.Fork("d", parent, name, AtHead(), BranchOptions{}); err != nil {
				b.Fatal(err)
			}
			h, err := s.OpenHead("d", name)
			if err != nil {
				b.Fatal(err)
			}
			for range blocks / 100 {
				blk := rng.IntN(blocks)
				if _, err := h.WriteAt(ino, page(blk+d), int64(blk)*BlockSize); err != nil {
					b.Fatal(err)
				}
			}
			if err := h.Close(); err != nil {
				b.Fatal(err)
			}
			parent = name
		}
		if depthFixture.shallow, err = s.OpenView("d", "l1", AtHead()); err != nil {
			b.Fatal(err)
		}
		if depthFixture.deep, err = s.OpenView("d", "l20", AtHead()); err != nil {
			b.Fatal(err)
		}
		depthFixture.s, depthFixture.ino, depthFixture.blocks = s, ino, blocks
		settle(b, s)
	})
	if depthFixture.deep == nil {
		b.Fatal("fixture failed")
	}
	rng := rand.New(rand.NewPCG(5, 6))
	buf := make([]byte, BlockSize)
	var shallow, deep time.Duration
	b.ResetTimer()
	// Independent offsets and alternating order, so neither read warms the
	// cache for the other.
	for i := 0; i < b.N; i++ {
		for j, v := range [2]*View{depthFixture.shallow, depthFixture.deep} {
			if i%2 == 1 {
				v = [2]*View{depthFixture.deep, depthFixture.shallow}[j]
			}
			off := int64(rng.IntN(depthFixture.blocks)) * BlockSize
			t0 := time.Now()
			if _, err := v.ReadAt(depthFixture.ino, buf, off); err != nil {
				b.Fatal(err)
			}
			if v == depthFixture.deep {
				deep += time.Since(t0)
			} else {
				shallow += time.Since(t0)
			}
		}
	}
	b.ReportMetric(float64(shallow.Nanoseconds())/float64(b.N), "ns/read-depth1")
	b.ReportMetric(float64(deep.Nanoseconds())/float64(b.N), "ns/read-depth20")
	b.ReportMetric(float64(deep)/float64(shallow), "depth20/depth1")
}
