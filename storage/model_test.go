package storage

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"path"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/storage/internal/enc"
)

var (
	modelSeed  = flag.Uint64("model.seed", 0, "seed for TestModel (0: random)")
	modelSteps = flag.Int("model.steps", 1500, "operations per TestModel run")
)

// mstate is the model of one file tree: paths of files to content and the
// set of directories. Values are never modified in place, so copying the
// maps copies the state.
type mstate struct {
	files map[string][]byte
	dirs  map[string]bool
}

func (m mstate) clone() mstate {
	return mstate{files: maps.Clone(m.files), dirs: maps.Clone(m.dirs)}
}

type mpoint struct {
	seq   uint64
	state mstate
}

type mbranch struct {
	name    string
	parent  string
	state   mstate
	history []mpoint // ascending seq
	head    *Head
}

func (b *mbranch) at(seq uint64) (mstate, bool) {
	i := sort.Search(len(b.history), func(i int) bool { return b.history[i].seq > seq })
	if i == 0 {
		return mstate{}, false
	}
	return b.history[i-1].state, true
}

type modelRun struct {
	t        *testing.T
	rng      *rand.Rand
	dir      string
	opts     *Options
	clk      *clock
	s        *Store
	branches map[string]*mbranch
	snaps    map[string]mstate
	nextName int
}

func TestModel(t *testing.T) {
	seed := *modelSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	steps := *modelSteps
	if testing.Short() {
		steps /= 5
	}
	t.Logf("seed %d (rerun with -run TestModel -model.seed=%d)", seed, seed)
	defer func() {
		if t.Failed() {
			t.Logf("FAILED with seed %d", seed)
		}
	}()
	clk := &clock{t: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	m := &modelRun{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), dir: t.TempDir(), clk: clk,
		opts:     &Options{GCInterval: -1, HistoryWindow: 30 * time.Second, HistoryTick: time.Hour, GCBatch: 50, HeadBufferBytes: 4 * BlockSize, Now: clk.Now},
		branches: map[string]*mbranch{}, snaps: map[string]mstate{}}
	var err error
	m.s, err = Open(m.dir, m.opts)
	ok(t, err)
	defer func() {
		for _, b := range m.branches {
			if b.head != nil {
				_ = b.head.Close()
			}
		}
		if err := m.s.Check(); err != nil {
			t.Errorf("final check: %v", err)
		}
		_ = m.s.Close()
	}()
	_, _, err = m.s.CreateProject("p")
	ok(t, err)
	main := &mbranch{name: "main", state: mstate{files: map[string][]byte{}, dirs: map[string]bool{}}}
	main.history = []mpoint{{seq: m.s.curSeq(), state: main.state}}
	main.head = must[*Head](t)(m.s.OpenHead("p", "main"))
	m.branches["main"] = main
	var recent []string
	defer func() {
		if t.Failed() {
			t.Logf("last operations:\n%s", strings.Join(recent, "\n"))
		}
	}()
	for step := 0; step < steps && !t.Failed(); step++ {
		op := m.step()
		if recent = append(recent, op); len(recent) > 20 {
			recent = recent[1:]
		}
		if t.Failed() {
			t.Fatalf("step %d (%s) failed", step, op)
		}
		if step%25 == 24 {
			m.checkCounts(fmt.Sprintf("step %d (%s)", step, op))
		}
		if step%100 == 99 {
			m.verifyAll(fmt.Sprintf("step %d (%s)", step, op))
			if err := m.s.Check(); err != nil {
				t.Fatalf("step %d (%s): check: %v", step, op, err)
			}
		}
	}
	m.verifyAll("end")
	m.dropAllButMain()
}

// dropAllButMain deletes every other branch and every snapshot, lets the
// history window pass and runs GC: then nothing can read through a
// tombstone any more, so none may be left, and the main branch still reads
// its model state.
func (m *modelRun) dropAllButMain() {
	for _, name := range m.branchNames() {
		if b := m.branches[name]; name != "main" && b != nil {
			m.deleteBranch(b) // with its children
		}
	}
	for name := range m.snaps {
		ok(m.t, m.s.DeleteSnapshot("p", name))
		delete(m.snaps, name)
	}
	main := m.branches["main"]
	ok(m.t, main.head.Flush())
	for range 4 {
		m.clk.Add(m.opts.HistoryWindow / 2)
		m.s.Tick()
	}
	m.record(main)
	m.gc()
	if st := must[GCStats](m.t)(m.s.GCFull(context.Background())); st.Deleted != 0 {
		m.t.Fatalf("full pass after the last incremental one deleted %d", st.Deleted)
	}
	m.verifyTree(main.head, main.state, "main alone")
	it, err := m.s.db.NewIter(nil)
	ok(m.t, err)
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		lv := it.LazyValue()
		if (k[0] == enc.KindDirent || k[0] == enc.KindInode) && lv.Len() == 0 {
			m.t.Fatalf("tombstone %x left with nothing reading through it", k)
		}
	}
}

func (m *modelRun) pick(names []string) string { return names[m.rng.IntN(len(names))] }

func (m *modelRun) branchNames() []string {
	return slices.Sorted(maps.Keys(m.branches))
}

var modelPaths = []string{"f0", "f1", "f2", "f3", "d0/f0", "d0/f1", "d1/f0", "d1/f2"}

func (m *modelRun) step() string {
	t := m.t
	b := m.branches[m.pick(m.branchNames())]
	r := m.rng.IntN(112)
	switch {
	case r >= 100:
		return m.shortLived(b)
	case r < 40:
		p := m.pick(modelPaths)
		off := m.rng.IntN(6 * BlockSize)
		n := 1 + m.rng.IntN(2*BlockSize)
		if m.rng.IntN(3) == 0 {
			off = m.rng.IntN(6) * BlockSize
			n = BlockSize * (1 + m.rng.IntN(2))
		}
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(m.rng.IntN(4)) // zeros are common: exercises trimming
		}
		m.write(b, p, off, data)
		return fmt.Sprintf("write %s %s@%d+%d", b.name, p, off, n)
	case r < 48:
		p := m.pick(modelPaths)
		size := m.rng.IntN(7 * BlockSize)
		if m.rng.IntN(3) == 0 {
			size = m.rng.IntN(4) * BlockSize
		}
		m.truncate(b, p, size)
		return fmt.Sprintf("truncate %s %s %d", b.name, p, size)
	case r < 54:
		from, to := m.pick(modelPaths), m.pick(modelPaths)
		m.rename(b, from, to)
		return fmt.Sprintf("rename %s %s %s", b.name, from, to)
	case r < 58:
		p := m.pick(modelPaths)
		m.unlink(b, p)
		return fmt.Sprintf("unlink %s %s", b.name, p)
	case r < 61:
		d := m.pick([]string{"d0", "d1"})
		m.rmdir(b, d)
		return fmt.Sprintf("rmdir %s %s", b.name, d)
	case r < 69:
		return m.fork(b)
	case r < 72:
		name := fmt.Sprintf("s%d", m.nextName)
		m.nextName++
		must[Snapshot](t)(m.s.Snapshot("p", b.name, name, SnapshotOptions{}))
		m.snaps[name] = b.state
		m.record(b)
		return "snapshot " + b.name + " " + name
	case r < 74:
		if len(m.snaps) > 0 {
			name := m.pick(slices.Sorted(maps.Keys(m.snaps)))
			ok(t, m.s.DeleteSnapshot("p", name))
			delete(m.snaps, name)
			return "delete snapshot " + name
		}
		return "noop"
	case r < 77:
		return m.reset(b)
	case r < 81:
		return m.deleteBranch(b)
	case r < 88:
		m.clk.Add(time.Duration(1+m.rng.IntN(5)) * time.Second)
		m.s.Tick() // flushes every head
		m.recordAll()
		return "tick"
	case r < 92:
		return m.gc()
	case r < 94:
		m.reopen()
		m.recordAll()
		m.verifyAll("reopen")
		return "reopen"
	case r < 96:
		ok(t, b.head.Sync())
		return "sync"
	default:
		return "verify old " + m.verifyOld()
	}
}

// gc runs an incremental GC pass and, at random, a full pass after it,
// which must find nothing more to delete: incremental GC misses nothing.
func (m *modelRun) gc() string {
	st, err := m.s.GC(context.Background())
	ok(m.t, err)
	m.verifyAll("gc")
	m.checkCounts("gc")
	m.t.Logf("gc: %+v", st)
	if m.rng.IntN(2) == 0 {
		fst, err := m.s.GCFull(context.Background())
		ok(m.t, err)
		if fst.Deleted != 0 {
			m.t.Fatalf("a full GC pass after an incremental one deleted %d versions (incremental: %+v)", fst.Deleted, st)
		}
		m.verifyAll("full gc")
		m.checkCounts("full gc")
	}
	return fmt.Sprintf("gc (%d deleted, %d of them named, %d visited, full %v)", st.Deleted, st.Named, st.Visited, st.Full)
}

// checkCounts compares every timeline's usage counters with a recount.
func (m *modelRun) checkCounts(what string) {
	m.t.Helper()
	if err := m.s.checkCounts(); err != nil {
		m.t.Fatalf("%s: %v", what, err)
	}
}

// shortLived forks a branch off b, writes to it, runs GC passes between
// its operations, maybe snapshots it or forks it again, and deletes it
// (with its children), as agents do with throwaway branches.
func (m *modelRun) shortLived(b *mbranch) string {
	if len(m.branches) >= 10 {
		return "noop"
	}
	name := fmt.Sprintf("e%d", m.nextName)
	m.nextName++
	br := must[Branch](m.t)(m.s.Fork("p", b.name, name, AtHead(), BranchOptions{}))
	m.record(b)
	e := m.newBranch(name, b.name, br, b.state)
	ops := []string{"short " + name}
	for range 1 + m.rng.IntN(6) {
		if m.branches[name] != e {
			break // deleted with an ancestor, or to make room for a fork
		}
		switch m.rng.IntN(7) {
		case 0, 1:
			p := m.pick(modelPaths)
			data := make([]byte, 1+m.rng.IntN(2*BlockSize))
			for i := range data {
				data[i] = byte(1 + m.rng.IntN(3))
			}
			m.write(e, p, m.rng.IntN(4*BlockSize), data)
			ops = append(ops, "write "+p)
		case 2:
			p := m.pick(modelPaths)
			m.unlink(e, p)
			ops = append(ops, "unlink "+p)
		case 3:
			from, to := m.pick(modelPaths), m.pick(modelPaths)
			m.rename(e, from, to)
			ops = append(ops, "rename "+from+" "+to)
		case 4:
			m.clk.Add(time.Duration(1+m.rng.IntN(20)) * time.Second)
			m.s.Tick()
			m.recordAll()
			ops = append(ops, "tick")
		case 5:
			ops = append(ops, m.gc())
		case 6:
			if m.rng.IntN(2) == 0 {
				sn := fmt.Sprintf("s%d", m.nextName)
				m.nextName++
				must[Snapshot](m.t)(m.s.Snapshot("p", e.name, sn, SnapshotOptions{}))
				m.snaps[sn] = e.state
				m.record(e)
				ops = append(ops, "snapshot "+sn)
			} else {
				ops = append(ops, m.fork(e))
			}
		}
	}
	if m.rng.IntN(2) == 0 {
		ops = append(ops, m.gc())
	}
	if m.branches[name] == e {
		ops = append(ops, m.deleteBranch(e))
	}
	if m.rng.IntN(2) == 0 {
		ops = append(ops, m.gc())
	}
	return strings.Join(ops, "; ")
}

// ensureDir returns the inode of directory dir (creating it if needed) in
// the store and the model state.
func (m *modelRun) parentIno(b *mbranch, p string, create bool) (uint64, bool) {
	dir := path.Dir(p)
	if dir == "." {
		return RootIno, true
	}
	a, err := b.head.Lookup(RootIno, dir)
	if errors.Is(err, ErrNotExist) {
		if !create {
			return 0, false
		}
		a, err = b.head.Mkdir(RootIno, dir, 0o755, 0, 0)
		ok(m.t, err)
		b.state.dirs[dir] = true
		return a.Ino, true
	}
	ok(m.t, err)
	return a.Ino, true
}

// record appends the branch's current state to its history at the head's
// seq. Buffered writes have no seq yet: they are flushed first or, at
// random, left buffered and not recorded.
func (m *modelRun) record(b *mbranch) {
	b.head.mu.RLock()
	pending := len(b.head.wbuf) + len(b.head.dirty)
	b.head.mu.RUnlock()
	if pending > 0 {
		if m.rng.IntN(3) > 0 {
			return
		}
		ok(m.t, b.head.Flush())
	}
	b.history = append(b.history, mpoint{seq: b.head.Seq(), state: b.state})
}

// recordAll records every branch's state; their heads must be flushed.
func (m *modelRun) recordAll() {
	for _, b := range m.branches {
		m.record(b)
	}
}

func (m *modelRun) mutable(b *mbranch) {
	b.state = b.state.clone()
}

func (m *modelRun) write(b *mbranch, p string, off int, data []byte) {
	m.mutable(b)
	dir, _ := m.parentIno(b, p, true)
	name := path.Base(p)
	a, err := b.head.Lookup(dir, name)
	if errors.Is(err, ErrNotExist) {
		a, err = b.head.Create(dir, name, 0o600, 0, 0)
	}
	ok(m.t, err)
	must[int](m.t)(b.head.WriteAt(a.Ino, data, int64(off)))
	old := b.state.files[p]
	nw := make([]byte, max(len(old), off+len(data)))
	copy(nw, old)
	copy(nw[off:], data)
	b.state.files[p] = nw
	m.record(b)
	m.verifyFile(b.head, p, nw, "write")
}

func (m *modelRun) truncate(b *mbranch, p string, size int) {
	old, exists := b.state.files[p]
	dir, ok1 := m.parentIno(b, p, false)
	if !exists {
		if ok1 {
			if _, err := b.head.Lookup(dir, path.Base(p)); !errors.Is(err, ErrNotExist) {
				m.t.Fatalf("lookup of missing %s: %v", p, err)
			}
		}
		return
	}
	m.mutable(b)
	a := must[Attr](m.t)(b.head.Lookup(dir, path.Base(p)))
	must[Attr](m.t)(b.head.SetAttr(a.Ino, SetAttrIn{Valid: SetSize, Size: uint64(size)}))
	nw := make([]byte, size)
	copy(nw, old)
	b.state.files[p] = nw
	m.record(b)
	m.verifyFile(b.head, p, nw, "truncate")
}

func (m *modelRun) rename(b *mbranch, from, to string) {
	data, exists := b.state.files[from]
	if !exists || from == to {
		return
	}
	m.mutable(b)
	od, _ := m.parentIno(b, from, false)
	nd, _ := m.parentIno(b, to, true)
	ok(m.t, b.head.Rename(od, path.Base(from), nd, path.Base(to)))
	delete(b.state.files, from)
	b.state.files[to] = data
	m.record(b)
}

func (m *modelRun) unlink(b *mbranch, p string) {
	_, exists := b.state.files[p]
	dir, ok1 := m.parentIno(b, p, false)
	if !exists {
		if ok1 {
			if err := b.head.Unlink(dir, path.Base(p)); !errors.Is(err, ErrNotExist) {
				m.t.Fatalf("unlink of missing %s: %v", p, err)
			}
		}
		return
	}
	m.mutable(b)
	ok(m.t, b.head.Unlink(dir, path.Base(p)))
	delete(b.state.files, p)
	m.record(b)
}

func (m *modelRun) rmdir(b *mbranch, d string) {
	if !b.state.dirs[d] {
		if err := b.head.Rmdir(RootIno, d); !errors.Is(err, ErrNotExist) {
			m.t.Fatalf("rmdir of missing %s: %v", d, err)
		}
		return
	}
	empty := true
	for p := range b.state.files {
		if strings.HasPrefix(p, d+"/") {
			empty = false
		}
	}
	err := b.head.Rmdir(RootIno, d)
	if !empty {
		if !errors.Is(err, ErrNotEmpty) {
			m.t.Fatalf("rmdir non-empty %s: %v", d, err)
		}
		return
	}
	ok(m.t, err)
	m.mutable(b)
	delete(b.state.dirs, d)
	m.record(b)
}

func (m *modelRun) newBranch(name, parent string, br Branch, st mstate) *mbranch {
	nb := &mbranch{name: name, parent: parent, state: st}
	tl, _ := m.s.Timeline(br.Timeline)
	nb.history = []mpoint{{seq: tl.StartSeq, state: st}}
	nb.head = must[*Head](m.t)(m.s.OpenHead("p", name))
	m.branches[name] = nb
	return nb
}

func (m *modelRun) fork(b *mbranch) string {
	if len(m.branches) >= 8 {
		return m.deleteBranch(m.branches[m.pick(m.branchNames())])
	}
	name := fmt.Sprintf("b%d", m.nextName)
	m.nextName++
	switch m.rng.IntN(3) {
	case 0:
		br := must[Branch](m.t)(m.s.Fork("p", b.name, name, AtHead(), BranchOptions{}))
		m.record(b) // the fork flushed b's head
		m.newBranch(name, b.name, br, b.state)
		return "fork head " + b.name + " " + name
	case 1:
		pt := b.history[m.rng.IntN(len(b.history))]
		br, err := m.s.Fork("p", b.name, name, AtSeq(pt.seq), BranchOptions{})
		if errors.Is(err, ErrBeforeHorizon) {
			m.s.mu.Lock()
			_, retained := m.s.roundToTickLocked(pt.seq)
			m.s.mu.Unlock()
			if retained {
				m.t.Fatalf("fork at retained seq %d refused: %v", pt.seq, err)
			}
			return "fork seq before horizon"
		}
		ok(m.t, err)
		st, found := b.at(br.ParentSeq)
		if !found || br.ParentSeq > pt.seq {
			m.t.Fatalf("fork at seq %d got parent seq %d", pt.seq, br.ParentSeq)
		}
		m.newBranch(name, b.name, br, st)
		return fmt.Sprintf("fork seq %s@%d(%d) %s", b.name, pt.seq, br.ParentSeq, name)
	default:
		if len(m.snaps) == 0 {
			return "noop"
		}
		sn := m.pick(slices.Sorted(maps.Keys(m.snaps)))
		br := must[Branch](m.t)(m.s.Fork("p", "", name, AtSnapshot(sn), BranchOptions{}))
		parent := ""
		for _, x := range m.branches {
			if bb, err := m.s.Branch("p", x.name); err == nil && bb.ID == br.Parent {
				parent = x.name
			}
		}
		m.newBranch(name, parent, br, m.snaps[sn])
		return "fork snapshot " + sn + " " + name
	}
}

func (m *modelRun) reset(b *mbranch) string {
	pb := m.branches[b.parent]
	if pb == nil {
		return "noop"
	}
	ok(m.t, b.head.Close())
	b.head = nil
	snap := ""
	if m.rng.IntN(2) == 0 {
		snap = fmt.Sprintf("r%d", m.nextName)
		m.nextName++
	}
	br := must[Branch](m.t)(m.s.Reset("p", b.name, ResetOptions{Snapshot: snap, Discard: snap == ""}))
	if snap != "" {
		m.snaps[snap] = b.state
	}
	delete(m.branches, b.name)
	m.newBranch(b.name, b.parent, br, pb.state)
	return "reset " + b.name
}

func (m *modelRun) deleteBranch(b *mbranch) string {
	if b.name == "main" {
		return "noop"
	}
	var sub []*mbranch
	var walk func(x *mbranch)
	walk = func(x *mbranch) {
		for _, c := range m.branches {
			if c.parent == x.name {
				walk(c)
			}
		}
		sub = append(sub, x)
	}
	walk(b)
	cascade := len(sub) > 1
	if cascade && m.rng.IntN(2) == 0 {
		if err := m.s.DeleteBranch("p", b.name, DeleteOptions{}); !errors.Is(err, ErrBusy) && !errors.Is(err, ErrHasChildren) {
			m.t.Fatalf("delete with children: %v", err)
		}
	}
	for _, x := range sub {
		ok(m.t, x.head.Close())
		x.head = nil
	}
	ok(m.t, m.s.DeleteBranch("p", b.name, DeleteOptions{Cascade: cascade}))
	for _, x := range sub {
		delete(m.branches, x.name)
	}
	return fmt.Sprintf("delete %s (%d)", b.name, len(sub))
}

func (m *modelRun) reopen() {
	for _, b := range m.branches {
		ok(m.t, b.head.Close())
		m.record(b) // Close flushed; Store.Close records a tick at that state
	}
	ok(m.t, m.s.Close())
	var err error
	m.s, err = Open(m.dir, m.opts)
	ok(m.t, err)
	for _, b := range m.branches {
		b.head = must[*Head](m.t)(m.s.OpenHead("p", b.name))
	}
}

type treeReader interface {
	fileReader
	Lookup(parent uint64, name string) (Attr, error)
	ReadDir(ino uint64) ([]DirEntry, error)
}

func (m *modelRun) verifyFile(r treeReader, p string, want []byte, what string) {
	m.t.Helper()
	dir := uint64(RootIno)
	if d := path.Dir(p); d != "." {
		dir = must[Attr](m.t)(r.Lookup(RootIno, d)).Ino
	}
	a := must[Attr](m.t)(r.Lookup(dir, path.Base(p)))
	if got := readAll(m.t, r, a.Ino); !bytes.Equal(got, want) {
		m.t.Fatalf("%s: %s: content differs from model (len %d vs %d) at %d", what, p, len(got), len(want), firstDiff(got, want))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// verifyTree compares a whole tree with the model.
func (m *modelRun) verifyTree(r treeReader, want mstate, what string) {
	m.t.Helper()
	got := mstate{files: map[string][]byte{}, dirs: map[string]bool{}}
	var walk func(ino uint64, prefix string)
	walk = func(ino uint64, prefix string) {
		ents, err := r.ReadDir(ino)
		if err != nil {
			m.t.Fatalf("%s: readdir %d: %v", what, ino, err)
		}
		for _, e := range ents {
			p := path.Join(prefix, e.Name)
			if e.Mode == ModeDir {
				got.dirs[p] = true
				walk(e.Ino, p)
			} else {
				got.files[p] = readAll(m.t, r, e.Ino)
			}
		}
	}
	walk(RootIno, "")
	if !maps.Equal(got.dirs, want.dirs) {
		m.t.Fatalf("%s: dirs %v, model %v", what, slices.Sorted(maps.Keys(got.dirs)), slices.Sorted(maps.Keys(want.dirs)))
	}
	if !maps.EqualFunc(got.files, want.files, bytes.Equal) {
		for p := range want.files {
			if !bytes.Equal(got.files[p], want.files[p]) {
				m.t.Fatalf("%s: %s: len %d, model len %d, first difference at %d (exists %v)", what, p, len(got.files[p]), len(want.files[p]), firstDiff(got.files[p], want.files[p]), got.files[p] != nil)
			}
		}
		m.t.Fatalf("%s: files %v, model %v", what, slices.Sorted(maps.Keys(got.files)), slices.Sorted(maps.Keys(want.files)))
	}
}

func (m *modelRun) verifyAll(what string) {
	for _, name := range m.branchNames() {
		b := m.branches[name]
		m.verifyTree(b.head, b.state, what+": branch "+name)
	}
	for _, name := range slices.Sorted(maps.Keys(m.snaps)) {
		v := must[*View](m.t)(m.s.OpenView("p", "", AtSnapshot(name)))
		m.verifyTree(v, m.snaps[name], what+": snapshot "+name)
		ok(m.t, v.Close())
	}
	m.verifyOld()
}

// verifyOld reads a random past seq of a random branch.
func (m *modelRun) verifyOld() string {
	b := m.branches[m.pick(m.branchNames())]
	pt := b.history[m.rng.IntN(len(b.history))]
	v, err := m.s.OpenView("p", b.name, AtSeq(pt.seq))
	if errors.Is(err, ErrBeforeHorizon) {
		return "before horizon"
	}
	what := fmt.Sprintf("branch %s at seq %d (asked %d)", b.name, v.Seq(), pt.seq)
	if m.t.Failed() {
		return what
	}
	ok(m.t, err)
	defer v.Close()
	st, found := b.at(v.Seq())
	if !found {
		m.t.Fatalf("view at %d resolved to %d before branch start", pt.seq, v.Seq())
	}
	m.verifyTree(v, st, what)
	return what
}
