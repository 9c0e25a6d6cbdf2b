package storage

import (
	"fmt"
	"time"
)

// Points in a branch's history (At: its head, a snapshot, a seq, a time,
// a child's fork point) and their resolution to an exact (timeline, seq).

// At names a point in a branch's history: its head, a snapshot, a seq or a
// wall-clock time. The zero At is the head.
type At struct {
	snapshot string
	seq      uint64
	time     time.Time
	kind     int
}

const (
	atHead = iota
	atSnapshot
	atSeq
	atTime
	atForkPoint
)

// AtHead is the branch's current state.
func AtHead() At { return At{} }

// AtSnapshot is the state recorded by the named snapshot (of any branch of the project).
func AtSnapshot(name string) At { return At{kind: atSnapshot, snapshot: name} }

// AtSeq is the branch's state after the write with the given seq. A seq
// older than the newest history tick is rounded down to its tick boundary.
func AtSeq(seq uint64) At { return At{kind: atSeq, seq: seq} }

// AtTime is the branch's state as of wall-clock time t (at tick granularity).
func AtTime(t time.Time) At { return At{kind: atTime, time: t} }

// AtForkPoint is the state branch (of the same project) was forked from:
// its parent's timeline at its fork seq, exactly (not rounded to a tick),
// which the branch itself keeps from GC. The base of a three-way merge of
// branch with its parent or a sibling. A root branch has no fork point
// (ErrNoParent).
func AtForkPoint(branch string) At { return At{kind: atForkPoint, snapshot: branch} }

// String describes the point for messages.
func (a At) String() string {
	switch a.kind {
	case atSnapshot:
		return "snapshot " + a.snapshot
	case atSeq:
		return fmt.Sprintf("seq %d", a.seq)
	case atTime:
		return "time " + a.time.Format(time.RFC3339Nano)
	case atForkPoint:
		return "fork point of " + a.snapshot
	}
	return "head"
}

// quiesceLocked waits for any write in flight on timeline tl and flushes the
// head's deferred attribute updates, so every seq up to the returned one is
// committed for tl. s.mu held.
func (s *Store) quiesceLocked(tl uint64) uint64 {
	if h := s.heads[tl]; h != nil {
		h.mu.Lock()
		defer h.mu.Unlock()
		_ = h.flushLocked()
	}
	return s.curSeq()
}

// resolveLocked maps at on branch b to a (timeline, seq) whose reads are
// exact and protected from GC while s.mu is held. s.mu held.
func (s *Store) resolveLocked(p *Project, b *Branch, at At) (tl, seq uint64, err error) {
	switch at.kind {
	case atHead:
		if b == nil {
			return 0, 0, fmt.Errorf("head: %w", ErrBranchNotFound)
		}
		return b.Timeline, s.quiesceLocked(b.Timeline), nil
	case atSnapshot:
		sn, err := s.snapshotLocked(p, at.snapshot)
		if err != nil {
			return 0, 0, err
		}
		return sn.Timeline, sn.Seq, nil
	case atForkPoint:
		_, child, err := s.branchLocked(p.Name, at.snapshot)
		if err != nil {
			return 0, 0, err
		}
		if child.BaseTimeline != 0 {
			return child.BaseTimeline, child.ParentSeq, nil
		}
		t := s.cat.timelines[child.Timeline]
		if t == nil || t.Parent == 0 {
			return 0, 0, fmt.Errorf("%s: %w", at, ErrNoParent)
		}
		return t.Parent, t.ParentSeq, nil
	}
	if b == nil {
		return 0, 0, fmt.Errorf("%s: %w", at, ErrBranchNotFound)
	}
	t := s.cat.timelines[b.Timeline]
	cur := s.quiesceLocked(b.Timeline)
	seq = at.seq
	if at.kind == atTime {
		if at.time.Before(t.CreatedAt) {
			return 0, 0, fmt.Errorf("%s: before branch %q was created: %w", at, b.Name, ErrBeforeHorizon)
		}
		if seq, err = s.seqAtLocked(at.time); err != nil {
			return 0, 0, err
		}
		if seq < t.StartSeq {
			seq = t.StartSeq
		}
	}
	if seq > cur {
		return 0, 0, fmt.Errorf("%s: newest seq is %d: %w", at, cur, ErrFuture)
	}
	if seq < t.StartSeq {
		return 0, 0, fmt.Errorf("%s: branch %q starts at seq %d: %w", at, b.Name, t.StartSeq, ErrBeforeHorizon)
	}
	rounded, ok := s.roundToTickLocked(seq)
	if !ok {
		return 0, 0, fmt.Errorf("%s: older than the retained history: %w", at, ErrBeforeHorizon)
	}
	seq = rounded
	if seq < t.StartSeq {
		seq = t.StartSeq
	}
	return b.Timeline, seq, nil
}
