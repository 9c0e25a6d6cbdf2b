package storage

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/cockroachdb/pebble/v2"
	"github.com/offshootdb/offshoot/storage/internal/enc"
)

// GCStats reports one GC pass.
type GCStats struct {
	Deleted           int // versions removed
	Batches           int // batches committed (each under the catalog lock)
	ExpiredBranches   int // branches deleted because their ExpiresAt passed
	ExpiredSnapshots  int // snapshots deleted because their ExpiresAt passed
	DroppedTicks      int // history index entries older than the window
	RemainingVersions int // versions kept
}

// GC runs one garbage-collection pass: it deletes expired branches and
// snapshots, history ticks older than the window, and then every version no
// read point needs (see the package doc). It works in batches of at most
// Options.GCBatch deletions (a batch always finishes the key it is in), each
// decided and committed under the catalog lock, so forks, snapshots and
// views resolved between batches are honoured. GC never changes what a
// branch head, snapshot, branch point, open view or in-window tick reads.
// The background loop calls it every Options.GCInterval.
func (s *Store) GC(ctx context.Context) (GCStats, error) {
	var st GCStats
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return st, ErrClosed
	}
	err := s.expireLocked(&st)
	if err == nil {
		err = s.dropTicksLocked(&st)
	}
	if err == nil {
		err = s.dropDetachedLocked()
	}
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
		for _, kind := range []byte{enc.KindDirent, enc.KindInode, enc.KindBlock} {
			start := enc.TimelinePrefix(kind, tl)
			end := enc.TimelinePrefix(kind, tl+1)
			for start != nil {
				if err := ctx.Err(); err != nil {
					return st, err
				}
				s.mu.Lock()
				if s.closed || s.cat.timelines[tl] == nil {
					s.mu.Unlock()
					break
				}
				start, err = s.gcBatchLocked(kind, tl, start, end, s.gcPlanLocked(tl), &st)
				s.mu.Unlock()
				if err != nil {
					return st, fmt.Errorf("gc timeline %d: %w", tl, err)
				}
			}
		}
	}
	return st, nil
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
// protected, have no children and no open head. s.mu held.
func (s *Store) expireLocked(st *GCStats) error {
	now := s.opts.Now()
	for _, sn := range s.cat.snapshots {
		if !sn.ExpiresAt.IsZero() && now.After(sn.ExpiresAt) {
			bt := s.db.NewBatch()
			_ = bt.Delete(enc.IDKey(enc.KindSnapshot, sn.ID), nil)
			delete(s.cat.snapshots, sn.ID)
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
	points   []uint64 // explicit read points, ascending
	live     bool     // a branch owns the timeline: its head and every seq after lastTick are read points
	lastTick uint64
}

func (s *Store) gcPlanLocked(tl uint64) gcPlan {
	t := s.cat.timelines[tl]
	p := gcPlan{live: t.Branch != 0}
	for _, sn := range s.cat.snapshots {
		if sn.Timeline == tl {
			p.points = append(p.points, sn.Seq)
		}
	}
	for _, c := range s.cat.timelines {
		if c.Parent == tl {
			p.points = append(p.points, c.ParentSeq)
		}
	}
	for seq := range s.pins[tl] {
		p.points = append(p.points, seq)
	}
	if p.live && len(s.ticks) > 0 {
		h := s.horizonLocked()
		for _, tk := range s.ticks {
			if tk.seq >= h {
				p.points = append(p.points, tk.seq)
			}
		}
		p.lastTick = s.ticks[len(s.ticks)-1].seq
	}
	slices.Sort(p.points)
	return p
}

// needed reports whether a version at seq v that stops being visible at ub
// (the next newer version, a truncation or a deletion; MaxUint64 if never)
// is read by some read point r with v <= r < ub.
func (p *gcPlan) needed(v, ub uint64) bool {
	if ub == math.MaxUint64 && p.live {
		return true
	}
	if p.live && ub-1 > p.lastTick {
		return true
	}
	i := sort.Search(len(p.points), func(i int) bool { return p.points[i] >= v })
	return i < len(p.points) && p.points[i] < ub
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

// gcBatchLocked collects versions of one kind in one timeline from start,
// stopping after the key in progress once GCBatch deletions are staged. It
// returns where the next batch starts (nil when done). s.mu held.
func (s *Store) gcBatchLocked(kind byte, tl uint64, start, end []byte, plan gcPlan, st *GCStats) ([]byte, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: start, UpperBound: end})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	bt := s.db.NewBatch()
	defer bt.Close()
	var (
		prefix  []byte
		prevSeq uint64 // seq of the next newer version of the current key
		attrIno uint64
		avs     []attrVersion
		next    []byte
	)
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		n := enc.Split(k)
		if n == len(k) {
			return nil, fmt.Errorf("%w: unversioned key %x in versioned keyspace", ErrCorrupt, k)
		}
		if !bytes.Equal(k[:n], prefix) {
			if bt.Count() >= uint32(s.opts.GCBatch) {
				next = slices.Clone(k)
				break
			}
			prefix = append(prefix[:0], k[:n]...)
			prevSeq = math.MaxUint64
		}
		seq := ^uint64(0) ^ beUint64(k[n:])
		ub := prevSeq
		prevSeq = seq
		if kind == enc.KindBlock {
			_, ino, blk, _, err := enc.DecodeBlockKey(k)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
			}
			if avs == nil || ino != attrIno {
				if avs, err = s.attrVersions(tl, ino); err != nil {
					return nil, err
				}
				attrIno = ino
			}
			ub = min(ub, death(avs, blk, seq))
		}
		if plan.needed(seq, ub) {
			st.RemainingVersions++
			continue
		}
		_ = bt.Delete(k, nil)
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	if c := int(bt.Count()); c > 0 {
		if err := bt.Commit(pebble.NoSync); err != nil {
			return nil, err
		}
		st.Deleted += c
		st.Batches++
	}
	return next, nil
}

func beUint64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[7]) | uint64(b[6])<<8 | uint64(b[5])<<16 | uint64(b[4])<<24 |
		uint64(b[3])<<32 | uint64(b[2])<<40 | uint64(b[1])<<48 | uint64(b[0])<<56
}
