package storage

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/offshootdb/offshoot/storage/internal/enc"
)

// BranchUsage is the storage accounting of one branch.
type BranchUsage struct {
	Branch string
	// LogicalBytes is the sum of the sizes of the files at the head: what a
	// full copy of the branch would occupy.
	LogicalBytes uint64
	// ExclusiveBytes is what the branch's own timeline stores (keys and
	// values of all its versions, history included): its copy-on-write delta.
	ExclusiveBytes uint64
	// SharedBytes is the part of LogicalBytes read from ancestor timelines
	// (whole blocks, capped at the file size).
	SharedBytes uint64
	// CurrentBytes is the part of ExclusiveBytes the head reads: the
	// stored versions of its own blocks that are current (keys and
	// values). What the branch holds now, on its own.
	CurrentBytes uint64
	// HistoryBytes is the rest of ExclusiveBytes: versions the head no
	// longer reads (kept for the point-in-time window, snapshots and
	// children until GC drops them), deletion markers and file metadata.
	HistoryBytes uint64
}

// StoreUsage is the accounting of the whole store.
type StoreUsage struct {
	Branches []BranchUsage
	// LogicalBytes sums the branches' LogicalBytes.
	LogicalBytes uint64
	// StoredBytes sums keys and values of all versions of all timelines.
	StoredBytes uint64
	// DiskBytes is the space pebble's files occupy (after compression,
	// including not yet compacted garbage).
	DiskBytes uint64
	// SavedBytes is LogicalBytes - StoredBytes when positive: the storage
	// saved by copy-on-write.
	SavedBytes uint64
}

// Usage returns the accounting of one branch. It reads the branch's whole
// tree and its own versions, so its cost grows with the branch's size.
func (s *Store) Usage(project, branch string) (u BranchUsage, err error) {
	s.mu.Lock()
	_, b, err := s.branchLocked(project, branch)
	if err != nil {
		s.mu.Unlock()
		return BranchUsage{}, fmt.Errorf("usage: %w", err)
	}
	tl := b.Timeline
	seq := s.quiesceLocked(tl)
	chain := s.chainLocked(tl, seq)
	s.pinLocked(tl, seq)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		uerr := s.unpinLocked(tl, seq)
		s.mu.Unlock()
		if uerr != nil && err == nil {
			err = fmt.Errorf("usage: %w", uerr)
		}
	}()
	if testHookUsagePinned != nil {
		testHookUsagePinned()
	}
	u = BranchUsage{Branch: branch}
	if u.ExclusiveBytes, err = s.timelineBytes(tl); err != nil {
		return u, fmt.Errorf("usage: %w", err)
	}
	r := &reader{s: s, tl: tl, chain: chain, cache: map[uint64]*enc.Attr{}}
	if err := s.treeUsage(r, &u); err != nil {
		return u, fmt.Errorf("usage: %w", err)
	}
	// The walk and the timeline's scan see different instants when the
	// head flushes in between: current never exceeds what is stored.
	u.CurrentBytes = min(u.CurrentBytes, u.ExclusiveBytes)
	u.HistoryBytes = u.ExclusiveBytes - u.CurrentBytes
	return u, nil
}

// testHookUsagePinned, when set by a test, runs in Usage after the
// branch's timeline is pinned.
var testHookUsagePinned func()

// pinLocked pins (tl, seq) against GC and against dropping tl. s.mu held.
func (s *Store) pinLocked(tl, seq uint64) {
	if s.pins[tl] == nil {
		s.pins[tl] = map[uint64]int{}
	}
	s.pins[tl][seq]++
}

// unpinLocked releases a pinLocked pin. If that was the last reader of a
// timeline whose branch was deleted meanwhile, the timeline (and any
// ancestors only it needed) is dropped. s.mu held.
func (s *Store) unpinLocked(tl, seq uint64) error {
	if m := s.pins[tl]; m != nil {
		if m[seq]--; m[seq] <= 0 {
			delete(m, seq)
			s.cands.release(tl, seq)
		}
		if len(m) == 0 {
			delete(s.pins, tl)
		}
	}
	if t := s.cat.timelines[tl]; s.closed || t == nil || s.referencedLocked(tl) {
		return nil
	}
	return s.dropUnreferencedLocked(s.db.NewBatch(), tl)
}

func (s *Store) timelineBytes(tl uint64) (uint64, error) {
	var n uint64
	for _, kind := range []byte{enc.KindDirent, enc.KindInode, enc.KindBlock} {
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: enc.TimelinePrefix(kind, tl), UpperBound: enc.TimelinePrefix(kind, tl+1)})
		if err != nil {
			return 0, err
		}
		for it.First(); it.Valid(); it.Next() {
			n += uint64(len(it.Key()) + len(it.Value()))
		}
		err = it.Error()
		it.Close()
		if err != nil {
			return 0, err
		}
	}
	return n, nil
}

func (s *Store) treeUsage(r *reader, u *BranchUsage) error {
	it, err := r.newIter()
	if err != nil {
		return err
	}
	defer it.Close()
	var key []byte
	var walk func(dir uint64) error
	walk = func(dir uint64) error {
		ents, err := r.readDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if e.Mode == ModeDir {
				if err := walk(e.Ino); err != nil {
					return err
				}
				continue
			}
			a, err := r.attr(it, e.Ino)
			if err != nil {
				return err
			}
			u.LogicalBytes += a.Size
			for blk := uint64(0); blk*BlockSize < a.Size; blk++ {
				for i, l := range r.chain {
					key = enc.BlockKey(key, l.tl, e.Ino, blk, l.seq)
					if !it.SeekPrefixGE(key) {
						continue
					}
					_, _, _, seq, err := enc.DecodeBlockKey(it.Key())
					if err != nil {
						return fmt.Errorf("%w: %w", ErrCorrupt, err)
					}
					switch {
					case len(it.Value()) == 0: // a hole
					case a.Shadowed(blk, seq): // cut by a truncation: reads as zeros
					case i == 0:
						u.CurrentBytes += uint64(len(it.Key()) + len(it.Value()))
					default:
						u.SharedBytes += min(BlockSize, a.Size-blk*BlockSize)
					}
					break
				}
			}
		}
		return nil
	}
	defer r.closeIters()
	return walk(RootIno)
}

// TotalUsage returns the accounting of every branch of every project and
// of the store as a whole.
func (s *Store) TotalUsage() (StoreUsage, error) {
	var su StoreUsage
	for _, p := range s.Projects() {
		bs, err := s.Branches(p.Name)
		if err != nil {
			return su, err
		}
		for _, b := range bs {
			u, err := s.Usage(p.Name, b.Name)
			if err != nil {
				return su, err
			}
			su.Branches = append(su.Branches, u)
			su.LogicalBytes += u.LogicalBytes
		}
	}
	s.mu.Lock()
	tls := make([]uint64, 0, len(s.cat.timelines))
	for id := range s.cat.timelines {
		tls = append(tls, id)
	}
	s.mu.Unlock()
	for _, tl := range tls {
		n, err := s.timelineBytes(tl)
		if err != nil {
			return su, fmt.Errorf("usage: %w", err)
		}
		su.StoredBytes += n
	}
	su.DiskBytes = s.db.Metrics().DiskSpaceUsage()
	if su.LogicalBytes > su.StoredBytes {
		su.SavedBytes = su.LogicalBytes - su.StoredBytes
	}
	return su, nil
}
