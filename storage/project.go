package storage

import (
	"fmt"
	"sort"

	"github.com/cockroachdb/pebble/v2"

	"github.com/offshootdb/offshoot/storage/internal/enc"
)

// Projects: creating one with its main branch and root directory, and
// deleting one with every branch, snapshot and timeline it holds.

// CreateProject creates a project with an empty root directory on its main
// branch (named "main"). It returns the project and its main branch.
func (s *Store) CreateProject(name string) (Project, Branch, error) {
	if err := checkName("project", name); err != nil {
		return Project{}, Branch{}, fmt.Errorf("create project: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Project{}, Branch{}, ErrClosed
	}
	if _, err := s.projectLocked(name); err == nil {
		return Project{}, Branch{}, fmt.Errorf("create project %q: %w", name, ErrProjectExists)
	}
	ids := make([]uint64, 3)
	for i := range ids {
		id, err := s.nextID()
		if err != nil {
			return Project{}, Branch{}, fmt.Errorf("create project: %w", err)
		}
		ids[i] = id
	}
	seq, err := s.nextSeq()
	if err != nil {
		return Project{}, Branch{}, fmt.Errorf("create project: %w", err)
	}
	now := s.opts.Now().UTC()
	p := &Project{ID: ids[0], Name: name, Main: ids[2], CreatedAt: now}
	tl := &Timeline{ID: ids[1], Project: p.ID, StartSeq: seq - 1, CreatedAt: now, Branch: ids[2]}
	br := &Branch{ID: ids[2], Project: p.ID, Name: "main", Timeline: tl.ID, CreatedAt: now}
	b := s.db.NewBatch()
	putRecord(b, enc.KindProject, p.ID, p)
	putRecord(b, enc.KindTimeline, tl.ID, tl)
	putRecord(b, enc.KindBranch, br.ID, br)
	t := now.UnixNano()
	root := enc.Attr{Mode: ModeDir | 0o755, Nlink: 2, Atime: t, Mtime: t, Ctime: t, Parent: RootIno}
	rk, rv := enc.InodeKey(nil, tl.ID, RootIno, seq), enc.AppendAttr(nil, &root)
	_ = b.Set(rk, rv, nil)
	s.counts.create(b, tl.ID, enc.Counts{Exclusive: uint64(len(rk) + len(rv))})
	if err := b.Commit(pebble.Sync); err != nil {
		return Project{}, Branch{}, fmt.Errorf("create project: %w", err)
	}
	s.cat.putProject(p)
	s.cat.putTimeline(tl)
	s.cat.putBranch(br)
	return *p, copyBranch(br), nil
}

// DeleteProjectOptions control DeleteProject.
type DeleteProjectOptions struct {
	// Force deletes a project that has branches other than main
	// (ErrProjectNotEmpty without it) or protected branches (ErrProtected
	// without it).
	Force bool
}

// DeleteProject deletes a project: every branch (children first), every
// snapshot, every timeline including the root one, and the project record,
// in one synced batch. The versions are removed with range deletions, like
// DeleteBranch does, so the space is reclaimed by pebble compactions. It
// runs under the catalog lock, so it is atomic with respect to GC, forks and
// views. Refused with ErrBusy while a head, view or usage scan of any of the
// project's branches or snapshots is open; without opts.Force also refused
// when the project has branches other than main (ErrProjectNotEmpty) or a
// protected branch (ErrProtected). Snapshots alone do not block deletion.
// The name can be reused by CreateProject afterwards.
func (s *Store) DeleteProject(name string, opts DeleteProjectOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.deleteProjectLocked(name, opts); err != nil {
		return fmt.Errorf("delete project %q: %w", name, err)
	}
	return nil
}

func (s *Store) deleteProjectLocked(name string, opts DeleteProjectOptions) error {
	p, err := s.projectLocked(name)
	if err != nil {
		return err
	}
	var tls []uint64
	for _, t := range s.cat.timelines {
		if t.Project != p.ID {
			continue
		}
		if s.heads[t.ID] != nil || len(s.pins[t.ID]) > 0 {
			return ErrBusy
		}
		tls = append(tls, t.ID)
	}
	main := s.cat.branches[p.Main]
	if main == nil {
		return fmt.Errorf("%w: project %q has no main branch", ErrCorrupt, name)
	}
	// Branches children first (post-order from every root: main, and
	// forks of snapshots whose branch was deleted since), so a crash-free
	// replay of the batch never sees a child without its parent.
	var order []*Branch
	var walk func(b *Branch)
	walk = func(b *Branch) {
		for _, c := range s.sortedChildrenLocked(b.ID) {
			walk(c)
		}
		order = append(order, b)
	}
	for _, r := range s.cat.tree.roots[p.ID] {
		walk(r)
	}
	if n, all := len(order), len(s.cat.tree.byName[p.ID]); n != all {
		return fmt.Errorf("%w: project %q has %d branches outside its trees", ErrCorrupt, name, all-n)
	}
	if !opts.Force {
		for _, b := range order {
			if b.ID != p.Main {
				return fmt.Errorf("branch %q: %w", b.Name, ErrProjectNotEmpty)
			}
			if b.Protected {
				return fmt.Errorf("branch %q: %w", b.Name, ErrProtected)
			}
		}
	}
	var snaps []uint64
	for _, sn := range s.cat.refs.snapNames[p.ID] {
		snaps = append(snaps, sn.ID)
	}
	sort.Slice(snaps, func(i, j int) bool { return snaps[i] < snaps[j] })
	// Children timelines have larger ids than their parents.
	sort.Slice(tls, func(i, j int) bool { return tls[i] > tls[j] })

	bt := s.db.NewBatch()
	defer bt.Close()
	for _, b := range order {
		_ = bt.Delete(enc.IDKey(enc.KindBranch, b.ID), nil)
	}
	for _, id := range snaps {
		_ = bt.Delete(enc.IDKey(enc.KindSnapshot, id), nil)
	}
	for _, id := range tls {
		_ = bt.Delete(enc.IDKey(enc.KindTimeline, id), nil)
		s.counts.drop(bt, id)
		for _, kind := range []byte{enc.KindDirent, enc.KindInode, enc.KindBlock, enc.KindOrphan} {
			_ = bt.DeleteRange(enc.TimelinePrefix(kind, id), enc.TimelinePrefix(kind, id+1), nil)
		}
	}
	_ = bt.Delete(enc.IDKey(enc.KindProject, p.ID), nil)
	if err := bt.Commit(pebble.Sync); err != nil {
		return err
	}
	for _, b := range order {
		s.cat.dropBranch(b.ID)
	}
	for _, id := range snaps {
		s.cat.dropSnapshot(id)
	}
	for _, id := range tls {
		s.cat.dropTimeline(id)
		s.cands.drop(id)
	}
	s.cat.dropProject(p.ID)
	return nil
}
