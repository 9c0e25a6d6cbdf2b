package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/storage/internal/enc"
)

// extLog is a log written outside the store, as Postgres writes its WAL to
// local disk under a local WAL tier: segments of segBlocks blocks, written
// front to back, the oldest removed now and then. Its absorber copies it
// into directory "log" of a head, one file per segment.
type extLog struct {
	segs    map[int][]byte // segment number -> content written so far
	end     int            // bytes appended in all
	dir     uint64         // the head's "log" directory
	inos    map[int]uint64 // segments the head holds
	copied  map[int]int    // bytes of each the head holds
	calls   int
	failing bool
}

const segBlocks = 3

func (l *extLog) append(rng *rand.Rand) {
	n := 1 + rng.IntN(3*BlockSize)
	for range n {
		seg := l.end / (segBlocks * BlockSize)
		if l.segs[seg] == nil {
			l.segs[seg] = []byte{}
		}
		l.segs[seg] = append(l.segs[seg], byte(l.end%251+1))
		l.end++
	}
}

// dropOldest removes the oldest segment unless it holds the log's end.
func (l *extLog) dropOldest() {
	oldest, cur := -1, (l.end-1)/(segBlocks*BlockSize)
	for s := range l.segs {
		if s != cur && (oldest < 0 || s < oldest) {
			oldest = s
		}
	}
	if oldest >= 0 {
		delete(l.segs, oldest)
	}
}

func segName(s int) string { return fmt.Sprintf("%08d", s) }

func (l *extLog) absorb(tx *AbsorbTx) error {
	l.calls++
	if l.failing {
		return errors.New("source unreadable")
	}
	for s, b := range l.segs {
		ino, ok := l.inos[s]
		if !ok {
			a, err := tx.Create(l.dir, segName(s), 0o600, 0, 0)
			if err != nil {
				return err
			}
			ino, l.inos[s] = a.Ino, a.Ino
		}
		// From the last copied block on: a segment's tail is rewritten,
		// as Postgres rewrites its current WAL page.
		from := l.copied[s] / BlockSize * BlockSize
		if from < len(b) {
			if _, err := tx.WriteAt(ino, b[from:], int64(from)); err != nil {
				return err
			}
			l.copied[s] = len(b)
		}
	}
	// Removals last: a segment goes only once what replaces it is in, as
	// Postgres creates a segment before it removes old ones. (Reversed,
	// a seq between the two holds no log at all; this test finds that.)
	for s := range l.inos {
		if l.segs[s] == nil {
			if err := tx.Remove(l.dir, segName(s), false); err != nil {
				return err
			}
			delete(l.inos, s)
			delete(l.copied, s)
		}
	}
	return nil
}

// logEnd is how much of the log a reader of the head's state sees: the
// end of its newest segment.
func logEnd(t *testing.T, r interface {
	fileReader
	Lookup(uint64, string) (Attr, error)
	ReadDir(uint64) ([]DirEntry, error)
}) int {
	t.Helper()
	d, err := r.Lookup(RootIno, "log")
	if err != nil {
		return 0
	}
	end := 0
	for _, e := range must[[]DirEntry](t)(r.ReadDir(d.Ino)) {
		var s int
		if _, err := fmt.Sscanf(e.Name, "%08d", &s); err != nil {
			t.Fatalf("log entry %q", e.Name)
		}
		a := must[Attr](t)(r.GetAttr(e.Ino))
		end = max(end, s*segBlocks*BlockSize+int(a.Size))
	}
	return end
}

// exactView opens a view of timeline tl at exactly seq, not rounded to a
// history tick as OpenView rounds: a test with GC off may read any seq.
func exactView(s *Store, tl, seq uint64) *View {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pinLocked(tl, seq)
	v := &View{reader: reader{s: s, tl: tl, chain: s.chainLocked(tl, seq), cache: map[uint64]*enc.Attr{}}, seq: seq}
	s.views[v] = true
	return v
}

// TestAbsorbBeforeData: the property the local WAL tier rests on. Data
// blocks record how much of the external log existed when they were
// written (as a Postgres page's LSN is flushed before the page is
// written); flushes, syncs, other mutations, full write buffers and
// history ticks come in random order. At every seq of the store, the
// data visible never needs more log than the head holds at that seq.
func TestAbsorbBeforeData(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("STORAGE_TEST_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	s, h, f := headFile(t, &Options{GCInterval: -1, HistoryTick: time.Hour, HeadBufferBytes: 8 * BlockSize}, 0o644)
	dir := must[Attr](t)(h.Mkdir(RootIno, "log", 0o700, 0, 0))
	l := &extLog{segs: map[int][]byte{}, dir: dir.Ino, inos: map[int]uint64{}, copied: map[int]int{}}
	first := h.Seq()
	h.SetAbsorber(l.absorb)
	const dataBlocks = 16
	for i := range 400 {
		if os.Getenv("STORAGE_TEST_TRACE") != "" {
			t.Logf("op %d: seq %d, log end %d, segs %d, copied %v", i, h.Seq(), l.end, len(l.segs), l.copied)
		}
		switch op := rng.IntN(10); {
		case op < 4:
			l.append(rng)
		case op < 7: // a data page that needs the log as it is now
			p := make([]byte, BlockSize)
			binary.LittleEndian.PutUint64(p, uint64(l.end))
			must[int](t)(h.WriteAt(f.Ino, p, int64(rng.IntN(dataBlocks))*BlockSize))
		case op == 7:
			ok(t, h.Sync())
		case op == 8:
			s.Tick()
		default:
			if rng.IntN(2) == 0 {
				l.dropOldest()
			} else {
				must[Attr](t)(h.Create(RootIno, fmt.Sprintf("other%d", i), 0o644, 0, 0))
			}
		}
	}
	ok(t, h.Sync())
	last := h.Seq()
	if l.calls == 0 {
		t.Fatal("the absorber was never called")
	}
	checked := 0
	for seq := first; seq <= last; seq++ {
		v := exactView(s, h.tl, seq)
		data := readAll(t, v, f.Ino)
		need := 0
		for off := 0; off+8 <= len(data); off += BlockSize {
			need = max(need, int(binary.LittleEndian.Uint64(data[off:])))
		}
		if have := logEnd(t, v); need > have {
			d, err := v.Lookup(RootIno, "log")
			t.Logf("log dir %v %v", d, err)
			if err == nil {
				for _, e := range must[[]DirEntry](t)(v.ReadDir(d.Ino)) {
					t.Logf("  %s %v", e.Name, must[Attr](t)(v.GetAttr(e.Ino)))
				}
			}
			t.Fatalf("seq %d: data needs %d bytes of log, the store holds %d", seq, need, have)
		}
		ok(t, v.Close())
		checked++
	}
	// The head's last state holds the whole log as it is now.
	if have := logEnd(t, h); have != l.end {
		t.Fatalf("after Sync the head holds %d bytes of log, %d written", have, l.end)
	}
	t.Logf("%d seqs checked, absorber called %d times", checked, l.calls)

	// A failing absorber fails the commit, and what was buffered stays.
	p := make([]byte, BlockSize)
	binary.LittleEndian.PutUint64(p, 1<<40)
	must[int](t)(h.WriteAt(f.Ino, p, 0))
	l.failing = true
	if err := h.Sync(); err == nil {
		t.Fatal("Sync with a failing absorber succeeded")
	}
	if _, err := h.Create(RootIno, "blocked", 0o644, 0, 0); err == nil {
		t.Fatal("Create with a failing absorber succeeded")
	}
	l.failing = false
	ok(t, h.Sync())
	got := make([]byte, 8)
	v := must[*View](t)(s.OpenView("p", "main", AtHead()))
	must[int](t)(v.ReadAt(f.Ino, got, 0))
	ok(t, v.Close())
	if binary.LittleEndian.Uint64(got) != 1<<40 {
		t.Fatal("a write buffered while the absorber failed was lost")
	}
	ok(t, h.Close())
}
