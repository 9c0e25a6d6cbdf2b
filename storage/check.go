package storage

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/offshootdb/offshoot/storage/internal/enc"
)

// Check verifies the store's invariants and returns the first violation
// wrapped in ErrCorrupt:
//
//   - every key decodes as its kind, every value as its record type;
//   - every versioned key belongs to a timeline in the catalog;
//   - every project's main branch, every branch's timeline and parent,
//     every timeline's parent and every snapshot's timeline exist, and
//     timeline ancestry has no cycles;
//   - at every read point (branch heads, snapshots, child branch points)
//     the tree is complete: every entry's inode exists with the entry's
//     type and every file reads to its size;
//   - every timeline's usage counters equal a full recount (for a
//     detached timeline, its exclusive bytes only); commits to a timeline
//     wait while it is recounted.
//
// It reads the whole store, so it is meant for tests (which run it after
// every test) and for offline diagnosis. It may run concurrently with
// writers. On a closed store it returns ErrClosed.
func (s *Store) Check() error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return fmt.Errorf("check: %w", ErrClosed)
	}
	if err := s.checkKeys(); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	points, err := s.checkCatalog()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	for _, p := range points {
		if err := s.checkTree(p.what, p.chain); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrCorrupt, p.what, err)
		}
	}
	if err := s.checkCounts(); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return nil
}

func (s *Store) checkKeys() error {
	s.mu.Lock()
	tls := make(map[uint64]bool, len(s.cat.timelines))
	for id := range s.cat.timelines {
		tls[id] = true
	}
	s.mu.Unlock()
	it, err := s.db.NewIter(nil)
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k, v := it.Key(), it.Value()
		var tl uint64
		switch k[0] {
		case enc.KindFormat:
			if string(k) != string(enc.FormatKey) || len(v) != 4 || binary.BigEndian.Uint32(v) != FormatVersion {
				return fmt.Errorf("format key %q = %x", k, v)
			}
			continue
		case enc.KindMeta:
			_, err = enc.DecodeU64(v)
		case enc.KindGCCands:
			err = errors.New("saved GC candidates in an open store (Open deletes them)")
		case enc.KindProject, enc.KindTimeline, enc.KindBranch, enc.KindSnapshot:
			_, _, err = enc.DecodeIDKey(k)
			if err == nil && !json.Valid(v) {
				err = errors.New("invalid JSON")
			}
		case enc.KindTick:
			if _, err = enc.DecodeTickKey(k); err == nil {
				_, err = enc.DecodeU64(v)
			}
		case enc.KindDirent:
			if tl, _, _, _, err = enc.DecodeDirentKey(k); err == nil {
				_, _, err = enc.DecodeDirent(v)
			}
		case enc.KindInode:
			if tl, _, _, err = enc.DecodeInodeKey(k); err == nil {
				_, _, err = enc.DecodeAttr(v)
			}
		case enc.KindCounts:
			if tl, err = enc.DecodeCountsKey(k); err == nil {
				_, err = enc.DecodeCounts(v)
			}
		case enc.KindOrphan:
			if tl, _, err = enc.DecodeOrphanKey(k); err == nil && len(v) != 0 {
				err = errors.New("orphan value not empty")
			}
		case enc.KindBlock:
			if tl, _, _, _, err = enc.DecodeBlockKey(k); err == nil && len(v) > BlockSize {
				err = fmt.Errorf("block value of %d bytes", len(v))
			}
		default:
			err = errors.New("unknown key kind")
		}
		if err != nil {
			return fmt.Errorf("key %x: %w", k, err)
		}
		if tl != 0 && !tls[tl] {
			return fmt.Errorf("key %x: timeline %d is not in the catalog", k, tl)
		}
	}
	return it.Error()
}

type checkPoint struct {
	what  string
	chain []link
}

func (s *Store) checkCatalog() ([]checkPoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &s.cat
	for _, p := range c.projects {
		if b := c.branches[p.Main]; b == nil || b.Project != p.ID {
			return nil, fmt.Errorf("project %q: main branch %d missing", p.Name, p.Main)
		}
	}
	names := map[[2]string]bool{}
	var points []checkPoint
	for _, b := range c.branches {
		p := c.projects[b.Project]
		if p == nil {
			return nil, fmt.Errorf("branch %q: project %d missing", b.Name, b.Project)
		}
		key := [2]string{p.Name, b.Name}
		if names[key] || !ValidName(b.Name) {
			return nil, fmt.Errorf("branch %q: duplicate or invalid name", b.Name)
		}
		names[key] = true
		t := c.timelines[b.Timeline]
		if t == nil || t.Branch != b.ID {
			return nil, fmt.Errorf("branch %q: timeline %d missing or not owned", b.Name, b.Timeline)
		}
		if b.Parent != 0 && c.branches[b.Parent] == nil {
			return nil, fmt.Errorf("branch %q: parent branch %d missing", b.Name, b.Parent)
		}
		points = append(points, checkPoint{"branch " + b.Name, s.chainLocked(b.Timeline, math.MaxUint64)})
		if b.BaseTimeline != 0 {
			if c.timelines[b.BaseTimeline] == nil {
				return nil, fmt.Errorf("branch %q: fork point timeline %d missing", b.Name, b.BaseTimeline)
			}
			points = append(points, checkPoint{"fork point of branch " + b.Name, s.chainLocked(b.BaseTimeline, b.ParentSeq)})
		}
	}
	if err := c.checkIndex(); err != nil {
		return nil, err
	}
	if err := c.checkRefs(); err != nil {
		return nil, err
	}
	if len(c.projectNames) != len(c.projects) {
		return nil, fmt.Errorf("project index: %d names for %d projects", len(c.projectNames), len(c.projects))
	}
	for name, p := range c.projectNames {
		if c.projects[p.ID] != p || p.Name != name {
			return nil, fmt.Errorf("project index: %q is not in the catalog", name)
		}
	}
	for _, t := range c.timelines {
		if c.projects[t.Project] == nil {
			return nil, fmt.Errorf("timeline %d: project %d missing", t.ID, t.Project)
		}
		if t.Branch != 0 && (c.branches[t.Branch] == nil || c.branches[t.Branch].Timeline != t.ID) {
			return nil, fmt.Errorf("timeline %d: branch %d missing or points elsewhere", t.ID, t.Branch)
		}
		depth := 0
		for x := t; x.Parent != 0; depth++ {
			px := c.timelines[x.Parent]
			if px == nil {
				return nil, fmt.Errorf("timeline %d: parent %d missing", x.ID, x.Parent)
			}
			if depth > len(c.timelines) {
				return nil, fmt.Errorf("timeline %d: ancestry cycle", t.ID)
			}
			x = px
		}
		if t.Parent != 0 {
			if t.ParentSeq > t.StartSeq {
				return nil, fmt.Errorf("timeline %d: parent seq %d after start seq %d", t.ID, t.ParentSeq, t.StartSeq)
			}
			points = append(points, checkPoint{fmt.Sprintf("branch point of timeline %d", t.ID), s.chainLocked(t.Parent, t.ParentSeq)})
		}
		if t.Branch == 0 && !s.referencedLocked(t.ID) {
			return nil, fmt.Errorf("timeline %d: detached and unreferenced", t.ID)
		}
	}
	for _, sn := range c.snapshots {
		if c.timelines[sn.Timeline] == nil {
			return nil, fmt.Errorf("snapshot %q: timeline %d missing", sn.Name, sn.Timeline)
		}
		points = append(points, checkPoint{"snapshot " + sn.Name, s.chainLocked(sn.Timeline, sn.Seq)})
	}
	return points, nil
}

func (s *Store) checkTree(what string, chain []link) error {
	if len(chain) == 0 {
		return errors.New("empty read chain")
	}
	r := &reader{s: s, tl: chain[0].tl, chain: chain, cache: map[uint64]*enc.Attr{}}
	root, err := r.attr(nil, RootIno)
	if err != nil {
		return fmt.Errorf("root: %w", err)
	}
	if root.Mode&ModeType != ModeDir {
		return errors.New("root is not a directory")
	}
	seen := map[uint64]bool{RootIno: true}
	var walk func(dir uint64) error
	walk = func(dir uint64) error {
		ents, err := r.readDir(dir)
		if err != nil {
			return fmt.Errorf("readdir %d: %w", dir, err)
		}
		for _, e := range ents {
			a, err := r.attr(nil, e.Ino)
			if err != nil {
				return fmt.Errorf("entry %q of %d: %w", e.Name, dir, err)
			}
			if a.Mode&ModeType != e.Mode {
				return fmt.Errorf("entry %q of %d: type %o, inode type %o", e.Name, dir, e.Mode, a.Mode&ModeType)
			}
			if e.Mode == ModeDir {
				if seen[e.Ino] {
					return fmt.Errorf("directory %d linked twice", e.Ino)
				}
				seen[e.Ino] = true
				if a.Parent != dir {
					return fmt.Errorf("directory %q: parent %d, found in %d", e.Name, a.Parent, dir)
				}
				if err := walk(e.Ino); err != nil {
					return err
				}
				continue
			}
			buf := make([]byte, a.Size)
			if n, err := r.readAt(e.Ino, buf, 0); n != len(buf) || (err != nil && err != io.EOF) {
				return fmt.Errorf("file %q: read %d of %d: %v", e.Name, n, len(buf), err)
			}
		}
		return nil
	}
	defer r.closeIters()
	return walk(RootIno)
}
