package storage

import (
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/offshootdb/offshoot/storage/internal/enc"
)

// Snapshots: recording a named point of a branch (its head or a past
// point), which GC keeps until the snapshot is deleted, and deleting one.

// SnapshotOptions are the optional attributes of a new snapshot.
type SnapshotOptions struct {
	ExpiresAt time.Time // zero: never expires
}

// Snapshot records the current head of branch as the named snapshot. It is
// O(1) and keeps every version the snapshot reads from GC until deleted.
func (s *Store) Snapshot(project, branch, name string, opts SnapshotOptions) (Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn, err := s.snapshotAtLocked(project, branch, name, AtHead(), opts)
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot %q: %w", name, err)
	}
	return sn, nil
}

// SnapshotAt is Snapshot of a past point of branch (a seq or time in the history window).
func (s *Store) SnapshotAt(project, branch, name string, at At, opts SnapshotOptions) (Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn, err := s.snapshotAtLocked(project, branch, name, at, opts)
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot %q: %w", name, err)
	}
	return sn, nil
}

func (s *Store) snapshotAtLocked(project, branch, name string, at At, opts SnapshotOptions) (Snapshot, error) {
	if err := checkName("snapshot", name); err != nil {
		return Snapshot{}, err
	}
	p, b, err := s.branchLocked(project, branch)
	if err != nil {
		return Snapshot{}, err
	}
	if _, err := s.snapshotLocked(p, name); err == nil {
		return Snapshot{}, fmt.Errorf("snapshot %q: %w", name, ErrSnapshotExists)
	}
	tl, seq, err := s.resolveLocked(p, b, at)
	if err != nil {
		return Snapshot{}, err
	}
	id, err := s.nextID()
	if err != nil {
		return Snapshot{}, err
	}
	sn := &Snapshot{ID: id, Project: p.ID, Name: name, Branch: b.ID, Timeline: tl, Seq: seq,
		CreatedAt: s.opts.Now().UTC(), ExpiresAt: opts.ExpiresAt}
	bt := s.db.NewBatch()
	putRecord(bt, enc.KindSnapshot, sn.ID, sn)
	if err := bt.Commit(pebble.Sync); err != nil {
		return Snapshot{}, err
	}
	s.cat.putSnapshot(sn)
	return *sn, nil
}

// DeleteSnapshot deletes a snapshot; the versions only it needed become garbage.
func (s *Store) DeleteSnapshot(project, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.projectLocked(project)
	if err != nil {
		return fmt.Errorf("delete snapshot: %w", err)
	}
	sn, err := s.snapshotLocked(p, name)
	if err != nil {
		return fmt.Errorf("delete snapshot: %w", err)
	}
	bt := s.db.NewBatch()
	_ = bt.Delete(enc.IDKey(enc.KindSnapshot, sn.ID), nil)
	s.cat.dropSnapshot(sn.ID)
	s.cands.release(sn.Timeline, sn.Seq)
	if err := s.dropUnreferencedLocked(bt, sn.Timeline); err != nil {
		return fmt.Errorf("delete snapshot: %w", err)
	}
	return nil
}
