package storage

import (
	"fmt"
	"maps"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/offshootdb/offshoot/storage/internal/enc"
)

// Branches: forking one, resetting it onto its parent's head or a
// snapshot, deleting it (with its subtree when cascading) and updating its
// attributes.

// BranchOptions are the optional attributes of a new branch.
type BranchOptions struct {
	ExpiresAt time.Time         // zero: never expires
	Labels    map[string]string // copied
	Protected bool              // refuse Delete and Reset
}

// Fork creates branch name in project as a child of branch parent at point
// at. For AtSnapshot, parent may be empty (the snapshot's branch becomes the
// parent). Fork writes only catalog metadata: its cost is independent of the
// parent's size. The fork point is resolved and recorded under the catalog
// lock, so GC can never collect it in between.
func (s *Store) Fork(project, parent, name string, at At, opts BranchOptions) (Branch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.forkLocked(project, parent, name, at, opts)
	if err != nil {
		return Branch{}, fmt.Errorf("fork branch %q: %w", name, err)
	}
	return b, nil
}

func (s *Store) forkLocked(project, parent, name string, at At, opts BranchOptions) (Branch, error) {
	if err := checkName("branch", name); err != nil {
		return Branch{}, err
	}
	p, err := s.projectLocked(project)
	if err != nil {
		return Branch{}, err
	}
	var pb *Branch
	if parent != "" || at.kind != atSnapshot {
		if _, pb, err = s.branchLocked(project, parent); err != nil {
			return Branch{}, err
		}
	}
	if _, _, err := s.branchLocked(project, name); err == nil {
		return Branch{}, fmt.Errorf("branch %q: %w", name, ErrBranchExists)
	}
	tlID, seq, err := s.resolveLocked(p, pb, at)
	if err != nil {
		return Branch{}, err
	}
	parentID := uint64(0)
	if pb != nil {
		parentID = pb.ID
	} else if sn, _ := s.snapshotLocked(p, at.snapshot); s.cat.branches[sn.Branch] != nil {
		parentID = sn.Branch
	}
	ids := [2]uint64{}
	for i := range ids {
		if ids[i], err = s.nextID(); err != nil {
			return Branch{}, err
		}
	}
	now := s.opts.Now().UTC()
	ptime := now
	if at.kind == atTime {
		ptime = at.time.UTC()
	}
	t := &Timeline{ID: ids[0], Project: p.ID, Parent: tlID, ParentSeq: seq, StartSeq: s.curSeq(), CreatedAt: now, Branch: ids[1]}
	br := &Branch{ID: ids[1], Project: p.ID, Name: name, Timeline: t.ID, Parent: parentID, ParentSeq: seq,
		ParentTime: ptime, CreatedAt: now, ExpiresAt: opts.ExpiresAt, Labels: maps.Clone(opts.Labels), Protected: opts.Protected}
	c, err := s.childCountsLocked(tlID, seq)
	if err != nil {
		return Branch{}, err
	}
	bt := s.db.NewBatch()
	putRecord(bt, enc.KindTimeline, t.ID, t)
	putRecord(bt, enc.KindBranch, br.ID, br)
	s.counts.create(bt, t.ID, c)
	if err := bt.Commit(pebble.Sync); err != nil {
		return Branch{}, err
	}
	s.cat.putTimeline(t)
	s.cat.putBranch(br)
	return copyBranch(br), nil
}

// ResetOptions control Reset.
type ResetOptions struct {
	// Snapshot names the snapshot that keeps the old head. Default
	// "<branch>.reset.<seq>", with ".<n>" added when a reset at the same
	// seq took that name (must still be a valid name).
	Snapshot string
	// Discard drops the old head instead of keeping it as a snapshot.
	Discard bool
	// To is the state the branch is put onto; only AtSnapshot is
	// accepted. Zero: the parent branch's current head.
	To At
}

// Reset points branch at its parent branch's current head, or at opts.To.
// The branch keeps its ID, name, attributes and children (which keep
// reading what they were forked from). Onto a snapshot it also keeps its
// fork point (Branch.BaseTimeline), so a merge back into its parent
// applies what the snapshot holds. The old head is kept as a snapshot
// unless opts.Discard. Refused for protected branches (ErrProtected), root
// branches without opts.To (ErrNoParent) and while a head is open (ErrBusy).
func (s *Store) Reset(project, branch string, opts ResetOptions) (Branch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.resetLocked(project, branch, opts)
	if err != nil {
		return Branch{}, fmt.Errorf("reset branch %q: %w", branch, err)
	}
	return b, nil
}

func (s *Store) resetLocked(project, branch string, opts ResetOptions) (Branch, error) {
	p, b, err := s.branchLocked(project, branch)
	if err != nil {
		return Branch{}, err
	}
	if b.Protected {
		return Branch{}, ErrProtected
	}
	if s.heads[b.Timeline] != nil {
		return Branch{}, ErrBusy
	}
	if opts.To.kind != atHead && opts.To.kind != atSnapshot {
		return Branch{}, fmt.Errorf("reset onto %s: only a snapshot: %w", opts.To, ErrInvalidArgument)
	}
	pb := s.cat.branches[b.Parent]
	if pb == nil && opts.To.kind != atSnapshot {
		return Branch{}, ErrNoParent
	}
	old := s.cat.timelines[b.Timeline]
	var sn *Snapshot
	if !opts.Discard {
		name := opts.Snapshot
		if name == "" {
			// Resets in a row without a write between share the seq.
			name = fmt.Sprintf("%s.reset.%d", b.Name, s.curSeq())
			for i := 2; ; i++ {
				if _, err := s.snapshotLocked(p, name); err != nil {
					break
				}
				name = fmt.Sprintf("%s.reset.%d.%d", b.Name, s.curSeq(), i)
			}
		}
		if err := checkName("snapshot", name); err != nil {
			return Branch{}, err
		}
		if _, err := s.snapshotLocked(p, name); err == nil {
			return Branch{}, fmt.Errorf("snapshot %q: %w", name, ErrSnapshotExists)
		}
		id, err := s.nextID()
		if err != nil {
			return Branch{}, err
		}
		sn = &Snapshot{ID: id, Project: p.ID, Name: name, Branch: b.ID, Timeline: old.ID, Seq: s.curSeq(), CreatedAt: s.opts.Now().UTC()}
	}
	var tl, seq uint64
	if opts.To.kind == atSnapshot {
		if tl, seq, err = s.resolveLocked(p, nil, opts.To); err != nil {
			return Branch{}, err
		}
	} else {
		tl, seq = pb.Timeline, s.quiesceLocked(pb.Timeline)
	}
	id, err := s.nextID()
	if err != nil {
		return Branch{}, err
	}
	now := s.opts.Now().UTC()
	t := &Timeline{ID: id, Project: p.ID, Parent: tl, ParentSeq: seq, StartSeq: s.curSeq(), CreatedAt: now, Branch: b.ID}
	nb := copyBranch(b)
	nb.Timeline = t.ID
	if opts.To.kind != atSnapshot {
		// Re-forked from the parent: the fork point moves.
		nb.ParentSeq, nb.ParentTime, nb.BaseTimeline = seq, now, 0
	} else if nb.BaseTimeline == 0 && old.Parent != 0 && old.ParentSeq == b.ParentSeq {
		// Onto a snapshot: the branch keeps the fork point it had, now
		// no longer its timeline's parent.
		nb.BaseTimeline = old.Parent
	}
	if nb.BaseTimeline == t.Parent && nb.ParentSeq == t.ParentSeq {
		nb.BaseTimeline = 0 // the timeline's own branch point
	}
	c, err := s.childCountsLocked(tl, seq)
	if err != nil {
		return Branch{}, err
	}
	oldc := *old
	oldc.Branch = 0
	bt := s.db.NewBatch()
	putRecord(bt, enc.KindTimeline, t.ID, t)
	s.counts.create(bt, t.ID, c)
	putRecord(bt, enc.KindTimeline, oldc.ID, &oldc)
	putRecord(bt, enc.KindBranch, nb.ID, &nb)
	if sn != nil {
		putRecord(bt, enc.KindSnapshot, sn.ID, sn)
	}
	s.cat.putTimeline(t)
	s.cat.putTimeline(&oldc)
	s.cat.putBranch(&nb)
	if sn != nil {
		s.cat.putSnapshot(sn)
	}
	drop := []uint64{old.ID}
	if b.BaseTimeline != 0 && b.BaseTimeline != nb.BaseTimeline {
		s.cands.release(b.BaseTimeline, b.ParentSeq)
		drop = append(drop, b.BaseTimeline)
	}
	if err := s.dropUnreferencedLocked(bt, drop...); err != nil {
		return Branch{}, err
	}
	s.detachedLocked(old.ID)
	return copyBranch(&nb), nil
}

// RenameBranch gives branch a new name. It changes the catalog record
// only: the branch keeps its ID, timeline and history (point-in-time
// branches of any point before the rename), fork point, creation time,
// attributes, children and snapshots (which refer to it by ID). Refused
// while a head is open (ErrBusy: a mount is named after the branch) and
// when the new name is taken (ErrBranchExists).
func (s *Store) RenameBranch(project, from, to string) (Branch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.renameLocked(project, from, to)
	if err != nil {
		return Branch{}, fmt.Errorf("rename branch %q: %w", from, err)
	}
	return b, nil
}

func (s *Store) renameLocked(project, from, to string) (Branch, error) {
	if err := checkName("branch", to); err != nil {
		return Branch{}, err
	}
	_, b, err := s.branchLocked(project, from)
	if err != nil {
		return Branch{}, err
	}
	if from == to {
		return copyBranch(b), nil
	}
	if _, _, err := s.branchLocked(project, to); err == nil {
		return Branch{}, fmt.Errorf("branch %q: %w", to, ErrBranchExists)
	}
	if s.heads[b.Timeline] != nil {
		return Branch{}, ErrBusy
	}
	nb := copyBranch(b)
	nb.Name = to
	bt := s.db.NewBatch()
	putRecord(bt, enc.KindBranch, nb.ID, &nb)
	if err := bt.Commit(pebble.Sync); err != nil {
		return Branch{}, err
	}
	s.cat.putBranch(&nb)
	return copyBranch(&nb), nil
}

// DeleteOptions control DeleteBranch.
type DeleteOptions struct {
	// Cascade deletes child branches (recursively) too; without it a branch
	// with children is refused with ErrHasChildren.
	Cascade bool
}

// DeleteBranch deletes a branch. Refused for protected branches (also any
// protected descendant when cascading), the project's main branch
// (ErrProtected), and branches with an open head (ErrBusy). What only the
// branch referenced becomes garbage; its timeline stays (detached) while
// snapshots or other timelines still read it.
func (s *Store) DeleteBranch(project, branch string, opts DeleteOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.deleteLocked(project, branch, opts); err != nil {
		return fmt.Errorf("delete branch %q: %w", branch, err)
	}
	return nil
}

func (s *Store) deleteLocked(project, branch string, opts DeleteOptions) error {
	p, b, err := s.branchLocked(project, branch)
	if err != nil {
		return err
	}
	if p.Main == b.ID {
		return fmt.Errorf("main branch of project %q: %w", project, ErrProtected)
	}
	// Collect the subtree, children first.
	var order []*Branch
	var walk func(x *Branch) error
	walk = func(x *Branch) error {
		if x.Protected {
			return fmt.Errorf("branch %q: %w", x.Name, ErrProtected)
		}
		if s.heads[x.Timeline] != nil {
			return fmt.Errorf("branch %q: %w", x.Name, ErrBusy)
		}
		for _, c := range s.sortedChildrenLocked(x.ID) {
			if !opts.Cascade {
				return fmt.Errorf("child %q: %w", c.Name, ErrHasChildren)
			}
			if err := walk(c); err != nil {
				return err
			}
		}
		order = append(order, x)
		return nil
	}
	if err := walk(b); err != nil {
		return err
	}
	bt := s.db.NewBatch()
	var tls, bases []uint64
	for _, x := range order {
		if x.BaseTimeline != 0 {
			s.cands.release(x.BaseTimeline, x.ParentSeq)
			bases = append(bases, x.BaseTimeline)
		}
		_ = bt.Delete(enc.IDKey(enc.KindBranch, x.ID), nil)
		s.cat.dropBranch(x.ID)
		t := *s.cat.timelines[x.Timeline]
		t.Branch = 0
		s.cat.putTimeline(&t)
		putRecord(bt, enc.KindTimeline, t.ID, &t)
		tls = append(tls, t.ID)
	}
	if err := s.dropUnreferencedLocked(bt, append(tls, bases...)...); err != nil {
		return err
	}
	s.detachedLocked(tls...)
	return nil
}

// detachedLocked notes that the given timelines lost their branch: those
// still kept (read by a snapshot, child or view) lost their head and
// history ticks as read points, so the next GC pass visits them whole.
// s.mu held.
func (s *Store) detachedLocked(tls ...uint64) {
	for _, id := range tls {
		if s.cat.timelines[id] != nil {
			s.cands.markFull(id)
		}
	}
}

// BranchUpdate changes a branch's attributes; nil fields are left alone.
type BranchUpdate struct {
	Protected *bool
	ExpiresAt *time.Time // zero time: never
	Labels    map[string]string
}

// UpdateBranch changes a branch's protection, expiry or labels. A
// project's main branch never expires: an expiry there is refused
// (ErrInvalidArgument).
func (s *Store) UpdateBranch(project, branch string, u BranchUpdate) (Branch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, b, err := s.branchLocked(project, branch)
	if err != nil {
		return Branch{}, fmt.Errorf("update branch: %w", err)
	}
	if u.ExpiresAt != nil && !u.ExpiresAt.IsZero() && p.Main == b.ID {
		return Branch{}, fmt.Errorf("update branch: main branch of project %q never expires: %w", project, ErrInvalidArgument)
	}
	nb := copyBranch(b)
	if u.Protected != nil {
		nb.Protected = *u.Protected
	}
	if u.ExpiresAt != nil {
		nb.ExpiresAt = *u.ExpiresAt
	}
	if u.Labels != nil {
		nb.Labels = maps.Clone(u.Labels)
	}
	bt := s.db.NewBatch()
	putRecord(bt, enc.KindBranch, nb.ID, &nb)
	if err := bt.Commit(pebble.Sync); err != nil {
		return Branch{}, fmt.Errorf("update branch: %w", err)
	}
	s.cat.putBranch(&nb)
	return copyBranch(&nb), nil
}
