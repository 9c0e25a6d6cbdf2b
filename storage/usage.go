package storage

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/offshootdb/offshoot/storage/internal/enc"
)

// BranchUsage is the storage accounting of one branch. Usage reads it from
// counters kept with every commit (see counters.go); Check compares them
// with a full recount.
type BranchUsage struct {
	Branch string
	// LogicalBytes is the sum of the sizes of the files (and symlinks) at
	// the head, each inode once however many names it has: what a full
	// copy of the branch would occupy.
	LogicalBytes uint64
	// ExclusiveBytes is what the branch's own timeline stores (keys and
	// values of all its versions, history included): its copy-on-write delta.
	ExclusiveBytes uint64
	// SharedBytes is the part of LogicalBytes the branch does not store
	// itself: LogicalBytes minus the file bytes its current blocks cover
	// (whole blocks, capped at the file size). That is what it reads from
	// ancestor timelines, plus sparse ranges (never written, or written as
	// all zeros), which read as zeros from anywhere.
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

// Usage returns the accounting of one branch from its timeline's
// counters (see counters.go) after flushing its head: its cost does not
// depend on the branch's size.
func (s *Store) Usage(project, branch string) (BranchUsage, error) {
	s.mu.Lock()
	_, b, err := s.branchLocked(project, branch)
	if err != nil {
		s.mu.Unlock()
		return BranchUsage{}, fmt.Errorf("usage: %w", err)
	}
	tl := b.Timeline
	s.quiesceLocked(tl)
	c := s.counts.get(tl)
	s.mu.Unlock()
	return branchUsage(branch, c), nil
}

// branchUsage derives a branch's accounting from its timeline's counters.
func branchUsage(branch string, c enc.Counts) BranchUsage {
	return BranchUsage{
		Branch:         branch,
		LogicalBytes:   c.Logical,
		ExclusiveBytes: c.Exclusive,
		SharedBytes:    c.Logical - min(c.Own, c.Logical),
		CurrentBytes:   min(c.Current, c.Exclusive),
		HistoryBytes:   c.Exclusive - min(c.Current, c.Exclusive),
	}
}

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
	for id := range s.cat.timelines {
		su.StoredBytes += s.counts.get(id).Exclusive
	}
	s.mu.Unlock()
	su.DiskBytes = s.db.Metrics().DiskSpaceUsage()
	if su.LogicalBytes > su.StoredBytes {
		su.SavedBytes = su.LogicalBytes - su.StoredBytes
	}
	return su, nil
}
