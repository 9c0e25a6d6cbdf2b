package storage

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"sort"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/offshootdb/offshoot/storage/internal/enc"
)

// The catalog: projects, timelines, branches and snapshots as records in
// pebble and in memory (Store.cat); names, lookups and listings of them,
// the read chain of a timeline, and dropping the timelines nothing
// references any more.

// Project is one Postgres cluster's tree of branches. Its main branch owns
// the root timeline.
type Project struct {
	ID        uint64    `json:"id"`
	Name      string    `json:"name"`
	Main      uint64    `json:"main"` // id of the root branch
	CreatedAt time.Time `json:"created_at"`
}

// Timeline is the storage of one branch: its own versions plus a read-only
// view of its parent timeline at ParentSeq. A timeline outlives its branch
// (detached, Branch == 0) while a snapshot or a child timeline needs it.
type Timeline struct {
	ID        uint64    `json:"id"`
	Project   uint64    `json:"project"`
	Parent    uint64    `json:"parent,omitempty"` // 0 for a project's root timeline
	ParentSeq uint64    `json:"parent_seq,omitempty"`
	StartSeq  uint64    `json:"start_seq"` // store seq when the timeline was created
	CreatedAt time.Time `json:"created_at"`
	Branch    uint64    `json:"branch,omitempty"` // 0 when detached
}

// Branch is a named, writable line of history in a project.
type Branch struct {
	ID        uint64 `json:"id"`
	Project   uint64 `json:"project"`
	Name      string `json:"name"`
	Timeline  uint64 `json:"timeline"`
	Parent    uint64 `json:"parent,omitempty"` // parent branch id; 0 for the main branch
	ParentSeq uint64 `json:"parent_seq,omitempty"`
	// BaseTimeline is the timeline ParentSeq is a point of when it is not
	// the parent of Timeline: after a reset onto a snapshot, the branch
	// reads the snapshot but its fork point (the base of a merge back into
	// its parent) stays where it was. 0: Timeline's parent. The store keeps
	// that point readable while the branch has it.
	BaseTimeline uint64            `json:"base_timeline,omitempty"`
	ParentTime   time.Time         `json:"parent_time,omitzero"`
	CreatedAt    time.Time         `json:"created_at"`
	ExpiresAt    time.Time         `json:"expires_at,omitzero"` // zero: never
	Labels       map[string]string `json:"labels,omitempty"`
	Protected    bool              `json:"protected,omitempty"`
}

// Snapshot is a named, read-only (timeline, seq) in a project.
type Snapshot struct {
	ID        uint64    `json:"id"`
	Project   uint64    `json:"project"`
	Name      string    `json:"name"`
	Branch    uint64    `json:"branch"` // branch it was taken of (may since be deleted or reset)
	Timeline  uint64    `json:"timeline"`
	Seq       uint64    `json:"seq"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// MaxNameLen is the longest project, branch or snapshot name, in bytes.
// (Names become mount point names, escaped, which must stay under the
// file system's 255 bytes.)
const MaxNameLen = 63

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._/-]{0,62}$`)

// ValidName reports whether name is a valid project, branch or snapshot
// name: [a-z0-9][a-z0-9._/-]{0,62}, MaxNameLen bytes at most.
func ValidName(name string) bool { return nameRE.MatchString(name) }

func checkName(what, name string) error {
	if !ValidName(name) {
		return fmt.Errorf("%s %q: %w", what, name, ErrInvalidName)
	}
	return nil
}

type catalog struct {
	projects  map[uint64]*Project
	timelines map[uint64]*Timeline
	branches  map[uint64]*Branch
	snapshots map[uint64]*Snapshot
	// projectNames is name → project, kept in step with projects by
	// putProject and dropProject.
	projectNames map[string]*Project
	// The branch tree's indexes (tree.go), kept in step with branches
	// by putBranch and dropBranch.
	tree branchIndex
	// Each timeline's children and snapshots (refs.go), kept in step by
	// putTimeline, dropTimeline, putSnapshot and dropSnapshot.
	refs timelineRefs
}

func decodeRecord[T any](kind byte, k, v []byte) (*T, uint64, error) {
	kk, id, err := enc.DecodeIDKey(k)
	if err != nil || kk != kind {
		return nil, 0, fmt.Errorf("%w: catalog key %x", ErrCorrupt, k)
	}
	r := new(T)
	if err := json.Unmarshal(v, r); err != nil {
		return nil, 0, fmt.Errorf("%w: catalog record %x: %w", ErrCorrupt, k, err)
	}
	return r, id, nil
}

func (c *catalog) load(db *pebble.DB) error {
	c.projects = map[uint64]*Project{}
	c.projectNames = map[string]*Project{}
	c.timelines = map[uint64]*Timeline{}
	c.branches = map[uint64]*Branch{}
	c.tree = branchIndex{}
	c.snapshots = map[uint64]*Snapshot{}
	c.refs = newTimelineRefs()
	scan := func(kind byte, f func(k, v []byte) error) error {
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{kind}, UpperBound: []byte{kind + 1}})
		if err != nil {
			return err
		}
		defer it.Close()
		for it.First(); it.Valid(); it.Next() {
			if err := f(it.Key(), it.Value()); err != nil {
				return err
			}
		}
		return it.Error()
	}
	err := scan(enc.KindProject, func(k, v []byte) error {
		r, id, err := decodeRecord[Project](enc.KindProject, k, v)
		if err == nil {
			if r.ID != id {
				return fmt.Errorf("%w: project id %d under key %d", ErrCorrupt, r.ID, id)
			}
			c.putProject(r)
		}
		return err
	})
	if err == nil {
		err = scan(enc.KindTimeline, func(k, v []byte) error {
			r, id, err := decodeRecord[Timeline](enc.KindTimeline, k, v)
			if err == nil {
				if r.ID != id {
					return fmt.Errorf("%w: timeline id %d under key %d", ErrCorrupt, r.ID, id)
				}
				c.putTimeline(r)
			}
			return err
		})
	}
	if err == nil {
		err = scan(enc.KindBranch, func(k, v []byte) error {
			r, id, err := decodeRecord[Branch](enc.KindBranch, k, v)
			if err == nil {
				if r.ID != id {
					return fmt.Errorf("%w: branch id %d under key %d", ErrCorrupt, r.ID, id)
				}
				c.putBranch(r)
			}
			return err
		})
	}
	if err == nil {
		err = scan(enc.KindSnapshot, func(k, v []byte) error {
			r, id, err := decodeRecord[Snapshot](enc.KindSnapshot, k, v)
			if err == nil {
				if r.ID != id {
					return fmt.Errorf("%w: snapshot id %d under key %d", ErrCorrupt, r.ID, id)
				}
				c.putSnapshot(r)
			}
			return err
		})
	}
	return err
}

// putProject adds or replaces p.
func (c *catalog) putProject(p *Project) {
	if old := c.projects[p.ID]; old != nil && c.projectNames[old.Name] == old {
		delete(c.projectNames, old.Name)
	}
	c.projects[p.ID] = p
	c.projectNames[p.Name] = p
}

// dropProject removes project id.
func (c *catalog) dropProject(id uint64) {
	if old := c.projects[id]; old != nil && c.projectNames[old.Name] == old {
		delete(c.projectNames, old.Name)
	}
	delete(c.projects, id)
}

func putRecord(b *pebble.Batch, kind byte, id uint64, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err) // catalog records always marshal
	}
	_ = b.Set(enc.IDKey(kind, id), data, nil)
}

func (s *Store) projectLocked(name string) (*Project, error) {
	if s.closed {
		return nil, ErrClosed
	}
	if err := checkName("project", name); err != nil {
		return nil, err
	}
	if p := s.cat.projectNames[name]; p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("project %q: %w", name, ErrProjectNotFound)
}

func (s *Store) branchLocked(project, name string) (*Project, *Branch, error) {
	p, err := s.projectLocked(project)
	if err != nil {
		return nil, nil, err
	}
	if err := checkName("branch", name); err != nil {
		return nil, nil, err
	}
	if b := s.cat.tree.byName[p.ID][name]; b != nil {
		return p, b, nil
	}
	return nil, nil, fmt.Errorf("branch %q in project %q: %w", name, project, ErrBranchNotFound)
}

func (s *Store) snapshotLocked(p *Project, name string) (*Snapshot, error) {
	if err := checkName("snapshot", name); err != nil {
		return nil, err
	}
	if sn := s.cat.refs.snapNames[p.ID][name]; sn != nil {
		return sn, nil
	}
	return nil, fmt.Errorf("snapshot %q in project %q: %w", name, p.Name, ErrSnapshotNotFound)
}

func copyBranch(b *Branch) Branch {
	c := *b
	c.Labels = maps.Clone(b.Labels)
	return c
}

// Projects lists all projects by name.
func (s *Store) Projects() []Project {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Project, 0, len(s.cat.projects))
	for _, p := range s.cat.projects {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Project returns the project with the given name.
func (s *Store) Project(name string) (Project, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.projectLocked(name)
	if err != nil {
		return Project{}, err
	}
	return *p, nil
}

// Branch returns a branch by project and branch name.
func (s *Store) Branch(project, name string) (Branch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, b, err := s.branchLocked(project, name)
	if err != nil {
		return Branch{}, err
	}
	return copyBranch(b), nil
}

// Branches lists a project's branches by name.
func (s *Store) Branches(project string) ([]Branch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.projectLocked(project)
	if err != nil {
		return nil, err
	}
	out := make([]Branch, 0, len(s.cat.tree.byName[p.ID]))
	for _, b := range s.cat.tree.byName[p.ID] {
		out = append(out, copyBranch(b))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Snapshots lists a project's snapshots by name.
func (s *Store) Snapshots(project string) ([]Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.projectLocked(project)
	if err != nil {
		return nil, err
	}
	var out []Snapshot
	for _, sn := range s.cat.refs.snapNames[p.ID] {
		out = append(out, *sn)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Timeline returns a timeline record by id.
func (s *Store) Timeline(id uint64) (Timeline, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.cat.timelines[id]
	if !ok {
		return Timeline{}, false
	}
	return *t, true
}

// referencedLocked reports whether timeline id is still needed: by a
// branch, a snapshot, a child timeline or a branch's fork point
// (Branch.BaseTimeline). s.mu held.
func (s *Store) referencedLocked(id uint64) bool {
	t := s.cat.timelines[id]
	if t == nil {
		return false
	}
	if t.Branch != 0 {
		return true
	}
	return len(s.cat.refs.snapshots[id]) > 0 || len(s.cat.refs.children[id]) > 0 || len(s.cat.refs.bases[id]) > 0 || len(s.pins[id]) > 0
}

// dropUnreferencedLocked removes the given timelines, and then their
// ancestors, once nothing references them, deleting their versions with
// range deletions, and commits bt (synced). s.mu held.
func (s *Store) dropUnreferencedLocked(bt *pebble.Batch, ids ...uint64) error {
	queue := append([]uint64(nil), ids...)
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		t := s.cat.timelines[id]
		if t == nil || s.referencedLocked(id) {
			continue
		}
		_ = bt.Delete(enc.IDKey(enc.KindTimeline, id), nil)
		s.counts.drop(bt, id)
		for _, kind := range []byte{enc.KindDirent, enc.KindInode, enc.KindBlock, enc.KindOrphan} {
			_ = bt.DeleteRange(enc.TimelinePrefix(kind, id), enc.TimelinePrefix(kind, id+1), nil)
		}
		s.cat.dropTimeline(id)
		s.cands.drop(id)
		if t.Parent != 0 {
			s.cands.release(t.Parent, t.ParentSeq)
			queue = append(queue, t.Parent)
		}
	}
	if err := bt.Commit(pebble.Sync); err != nil {
		return err
	}
	s.noteFreed()
	return nil
}

// chainLocked returns the read chain of (tl, seq): the timeline itself,
// then each ancestor with the seq it is read at. s.mu held.
func (s *Store) chainLocked(tl, seq uint64) []link {
	var c []link
	for tl != 0 {
		t := s.cat.timelines[tl]
		if t == nil {
			break
		}
		c = append(c, link{tl: tl, seq: seq})
		if t.ParentSeq < seq {
			seq = t.ParentSeq
		}
		tl = t.Parent
	}
	return c
}
