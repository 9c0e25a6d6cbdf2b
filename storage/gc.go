package storage

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/offshootdb/offshoot/storage/internal/enc"
)

// GCStats reports one GC pass.
type GCStats struct {
	Deleted           int           // versions removed
	Batches           int           // batches committed (each under the catalog lock)
	ExpiredBranches   int           // branches deleted because their ExpiresAt passed
	ExpiredSnapshots  int           // snapshots deleted because their ExpiresAt passed
	DroppedTicks      int           // history index entries older than the window
	RemainingVersions int           // versions visited and kept
	Full              bool          // the pass visited every key (GCFull, or the first pass after a crash)
	Candidates        int           // candidates visited (incremental passes)
	FullTimelines     int           // timelines visited whole (detached since the last pass, or all in a full pass)
	Visited           int           // versions visited
	Named             int           // of Deleted: named by the write that shadowed them, deleted by key without a read
	BytesFreed        int64         // key and value bytes of the removed versions
	Duration          time.Duration // wall time of the pass
}

// GC runs one garbage-collection pass: it deletes expired branches and
// snapshots, history ticks older than the window, and then every version no
// read point needs (see the package doc). The pass is incremental: it
// visits only the keys written, or freed by a deleted snapshot, child
// branch or closed view, whose versions may have become collectable since
// they were last visited (see gccand.go), so its cost follows the garbage,
// not the store. A clean Close saves the candidates for the next Open;
// after a crash, the first pass is a full pass (GCFull).
//
// It works in batches of at most Options.GCBatch deletions (a batch always
// finishes the key it is in), each decided and committed under the catalog
// lock, so forks, snapshots and views resolved between batches are
// honoured. GC never changes what a branch head, snapshot, branch point,
// open view or in-window tick reads. The background loop calls it every
// Options.GCInterval.
func (s *Store) GC(ctx context.Context) (GCStats, error) { return s.gc(ctx, false) }

// GCFull is GC visiting every key of every timeline, as a pass after Open
// does. After incremental passes it finds nothing more to delete (tests
// check that); it is kept for diagnosis and for those tests.
func (s *Store) GCFull(ctx context.Context) (GCStats, error) { return s.gc(ctx, true) }

func (s *Store) gc(ctx context.Context, full bool) (st GCStats, err error) {
	begin := time.Now()
	defer func() { st.Duration = time.Since(begin) }()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return st, ErrClosed
	}
	err = s.expireLocked(&st)
	if err == nil {
		err = s.dropTicksLocked(&st)
	}
	if err == nil {
		err = s.dropDetachedLocked()
	}
	s.cands.mu.Lock()
	full = full || s.cands.needFull
	s.cands.mu.Unlock()
	st.Full = full
	tls := make([]uint64, 0, len(s.cat.timelines))
	for id := range s.cat.timelines {
		tls = append(tls, id)
	}
	s.mu.Unlock()
	if err != nil {
		return st, fmt.Errorf("gc: %w", err)
	}
	slices.Sort(tls)
	for _, tl := range tls {
		if s.cands.takeFull(tl, full) {
			st.FullTimelines++
			if err = s.gcTimeline(ctx, tl, &st); err == nil {
				s.cands.fullDone(tl)
			}
		} else {
			err = s.gcCandidates(ctx, tl, &st)
		}
		if err != nil {
			if ctx.Err() == nil {
				err = fmt.Errorf("gc timeline %d: %w", tl, err)
			}
			if !full {
				s.cands.markFull(tl) // visit it whole next time: candidates may be lost
			}
			return st, err
		}
	}
	if full {
		s.cands.mu.Lock()
		s.cands.needFull = false
		s.cands.mu.Unlock()
	}
	return st, nil
}

// gcTimeline visits every key of timeline tl.
func (s *Store) gcTimeline(ctx context.Context, tl uint64, st *GCStats) error {
	for _, kind := range []byte{enc.KindBlock, enc.KindInode, enc.KindDirent} {
		start := enc.TimelinePrefix(kind, tl)
		end := enc.TimelinePrefix(kind, tl+1)
		for start != nil {
			if err := ctx.Err(); err != nil {
				s.cands.markFull(tl)
				return err
			}
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				return ErrClosed // the visit did not finish: tl stays marked
			}
			if s.cat.timelines[tl] == nil {
				s.mu.Unlock()
				return nil
			}
			c, err := s.newCollector(tl, st)
			if err == nil {
				start, err = c.scan(kind, start, end, true)
				err = c.finish(err)
			}
			s.mu.Unlock()
			if err != nil {
				s.cands.markFull(tl)
				return err
			}
		}
	}
	return nil
}

// gcCandidates visits the ripe candidates of timeline tl.
func (s *Store) gcCandidates(ctx context.Context, tl uint64, st *GCStats) error {
	s.mu.Lock()
	if s.closed || s.cat.timelines[tl] == nil {
		s.mu.Unlock()
		return nil
	}
	// Not the whole plan: most timelines have nothing ripe, and the plan
	// looks at every snapshot and timeline.
	var lastTick uint64
	if n := len(s.ticks); n > 0 {
		lastTick = s.ticks[n-1].seq
	}
	live, horizon := s.cat.timelines[tl].Branch != 0, s.horizonLocked()
	s.mu.Unlock()
	// Named versions first, in batches of their own: a walking visit in
	// the same batch could stage a version one of them names.
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		s.mu.Lock()
		if s.closed || s.cat.timelines[tl] == nil {
			s.mu.Unlock()
			return nil
		}
		vs := s.cands.takeNamed(tl, s.opts.GCBatch, live, max(lastTick, horizon))
		if len(vs) == 0 {
			s.mu.Unlock()
			break
		}
		c, err := s.newCollector(tl, st)
		if err == nil {
			c.visitNamed(vs)
			err = c.finish(nil)
		}
		s.mu.Unlock()
		if err != nil {
			return err // the versions taken are lost: the caller marks tl full
		}
	}
	return s.gcKeys(ctx, tl, st, s.cands.ripe(tl, live, lastTick, horizon))
}

// gcTakeChunk is how many candidates a batch takes at a time.
const gcTakeChunk = 256

// gcKeys visits candidates keys of tl in batches, taking them as it goes
// (a candidate taken and not visited goes back before the batch ends,
// so that Close saves it).
func (s *Store) gcKeys(ctx context.Context, tl uint64, st *GCStats, keys []candKey) error {
	var cds []*cand
	for pos := 0; pos < len(keys); {
		if err := ctx.Err(); err != nil {
			return err
		}
		s.mu.Lock()
		if s.closed || s.cat.timelines[tl] == nil {
			s.mu.Unlock()
			return nil
		}
		c, err := s.newCollector(tl, st)
		back := candSet{}
		for err == nil && pos < len(keys) && c.bt.Count() < uint32(s.opts.GCBatch) {
			chunk := keys[pos:min(len(keys), pos+gcTakeChunk)]
			cds = s.cands.take(tl, chunk, cds[:0])
			for i, cd := range cds {
				if err != nil || c.bt.Count() >= uint32(s.opts.GCBatch) {
					for j := i; j < len(chunk); j++ {
						if cds[j] != nil {
							back[chunk[j]] = cds[j] // for the next batch
						}
					}
					break
				}
				pos++
				if cd != nil { // nil: gone since ripe
					st.Candidates++
					err = c.visit(chunk[i], cd)
				}
			}
		}
		if c != nil {
			err = c.finish(err)
		}
		s.cands.putBack(tl, back, nil)
		s.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// dropDetachedLocked drops every detached timeline nothing reads any more
// (normally dropped when its last reader goes). s.mu held.
func (s *Store) dropDetachedLocked() error {
	var ids []uint64
	for id, t := range s.cat.timelines {
		if t.Branch == 0 && !s.referencedLocked(id) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	return s.dropUnreferencedLocked(s.db.NewBatch(), ids...)
}

// expireLocked deletes expired snapshots and expired branches that are not
// protected, not a project's main branch (an expiry from before
// UpdateBranch refused one there stays unused), have no children and no
// open head. s.mu held.
func (s *Store) expireLocked(st *GCStats) error {
	now := s.opts.Now()
	for _, sn := range s.cat.snapshots {
		if !sn.ExpiresAt.IsZero() && now.After(sn.ExpiresAt) {
			bt := s.db.NewBatch()
			_ = bt.Delete(enc.IDKey(enc.KindSnapshot, sn.ID), nil)
			s.cat.dropSnapshot(sn.ID)
			s.cands.release(sn.Timeline, sn.Seq)
			if err := s.dropUnreferencedLocked(bt, sn.Timeline); err != nil {
				return err
			}
			st.ExpiredSnapshots++
		}
	}
	for _, b := range s.cat.branches {
		if b.ExpiresAt.IsZero() || !now.After(b.ExpiresAt) || b.Protected || len(s.sortedChildrenLocked(b.ID)) > 0 || s.heads[b.Timeline] != nil {
			continue
		}
		p := s.cat.projects[b.Project]
		if p.Main == b.ID {
			continue
		}
		if err := s.deleteLocked(p.Name, b.Name, DeleteOptions{}); err != nil {
			return err
		}
		st.ExpiredBranches++
	}
	return nil
}

// dropTicksLocked forgets history ticks before the horizon tick. s.mu held.
func (s *Store) dropTicksLocked(st *GCStats) error {
	h := s.horizonLocked()
	i := sort.Search(len(s.ticks), func(i int) bool { return s.ticks[i].seq >= h })
	if i == 0 {
		return nil
	}
	bt := s.db.NewBatch()
	for _, tk := range s.ticks[:i] {
		_ = bt.Delete(enc.TickKey(tk.t), nil)
	}
	if err := bt.Commit(pebble.NoSync); err != nil {
		return err
	}
	st.DroppedTicks += i
	s.ticks = slices.Delete(s.ticks, 0, i)
	return nil
}

// gcPlan holds the read points of one timeline.
type gcPlan struct {
	points   []uint64 // explicit read points (snapshots, child branch points, fork points, open views), ascending
	ticks    []uint64 // history ticks inside the window (live timelines only), ascending
	live     bool     // a branch owns the timeline: its head and every seq after lastTick are read points
	lastTick uint64
	horizon  uint64
}

func (s *Store) gcPlanLocked(tl uint64) gcPlan {
	t := s.cat.timelines[tl]
	p := gcPlan{live: t.Branch != 0, horizon: s.horizonLocked()}
	for id := range s.cat.refs.snapshots[tl] {
		p.points = append(p.points, s.cat.snapshots[id].Seq)
	}
	for id := range s.cat.refs.children[tl] {
		p.points = append(p.points, s.cat.timelines[id].ParentSeq)
	}
	for id := range s.cat.refs.bases[tl] {
		p.points = append(p.points, s.cat.branches[id].ParentSeq)
	}
	for seq := range s.pins[tl] {
		p.points = append(p.points, seq)
	}
	if len(s.ticks) > 0 {
		p.lastTick = s.ticks[len(s.ticks)-1].seq
		if p.live {
			for _, tk := range s.ticks {
				if tk.seq >= p.horizon {
					p.ticks = append(p.ticks, tk.seq)
				}
			}
		}
	}
	slices.Sort(p.points)
	return p
}

// pointIn returns the first of the ascending points in [v, ub).
func pointIn(points []uint64, v, ub uint64) (uint64, bool) {
	i := sort.Search(len(points), func(i int) bool { return points[i] >= v })
	if i < len(points) && points[i] < ub {
		return points[i], true
	}
	return 0, false
}

// needed reports whether a version at seq v that stops being visible at ub
// (the next newer version, a truncation or a deletion; MaxUint64 if never)
// is read by some read point r with v <= r < ub.
func (p *gcPlan) needed(v, ub uint64) bool {
	if p.live && (ub == math.MaxUint64 || ub-1 > p.lastTick) {
		return true
	}
	if _, ok := pointIn(p.points, v, ub); ok {
		return true
	}
	_, ok := pointIn(p.ticks, v, ub)
	return ok
}

type attrVersion struct {
	seq  uint64
	attr enc.Attr
	ok   bool // false: tombstone
}

// death returns the first seq after v at which the inode's own attribute
// versions make block blk's version v unreadable (MaxUint64 if none).
// Once shadowed, a version stays shadowed, so binary search applies.
func death(avs []attrVersion, blk, v uint64) uint64 {
	i := sort.Search(len(avs), func(i int) bool { return avs[i].seq > v })
	j := i + sort.Search(len(avs)-i, func(k int) bool {
		a := &avs[i+k]
		return !a.ok || a.attr.Shadowed(blk, v)
	})
	if j < len(avs) {
		return avs[j].seq
	}
	return math.MaxUint64
}

func (s *Store) attrVersions(tl, ino uint64) ([]attrVersion, error) {
	lo := enc.InodeKey(nil, tl, ino, math.MaxUint64)
	hi := enc.InodeKey(nil, tl, ino+1, math.MaxUint64)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []attrVersion
	for it.Last(); it.Valid(); it.Prev() { // oldest first
		_, _, seq, err := enc.DecodeInodeKey(it.Key())
		if err != nil {
			return nil, err
		}
		a, ok, err := enc.DecodeAttr(it.Value())
		if err != nil {
			return nil, err
		}
		out = append(out, attrVersion{seq: seq, attr: a, ok: ok})
	}
	return out, it.Error()
}

func beUint64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[7]) | uint64(b[6])<<8 | uint64(b[5])<<16 | uint64(b[4])<<24 |
		uint64(b[3])<<32 | uint64(b[2])<<40 | uint64(b[1])<<48 | uint64(b[0])<<56
}
