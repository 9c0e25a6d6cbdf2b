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
	ID         uint64            `json:"id"`
	Project    uint64            `json:"project"`
	Name       string            `json:"name"`
	Timeline   uint64            `json:"timeline"`
	Parent     uint64            `json:"parent,omitempty"` // parent branch id; 0 for the main branch
	ParentSeq  uint64            `json:"parent_seq,omitempty"`
	ParentTime time.Time         `json:"parent_time,omitzero"`
	CreatedAt  time.Time         `json:"created_at"`
	ExpiresAt  time.Time         `json:"expires_at,omitzero"` // zero: never
	Labels     map[string]string `json:"labels,omitempty"`
	Protected  bool              `json:"protected,omitempty"`
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
	// The branch tree's indexes (tree.go), kept in step with branches
	// by putBranch and dropBranch.
	tree branchIndex
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
	c.timelines = map[uint64]*Timeline{}
	c.branches = map[uint64]*Branch{}
	c.tree = branchIndex{}
	c.snapshots = map[uint64]*Snapshot{}
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
			c.projects[id] = r
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
				c.timelines[id] = r
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
				c.snapshots[id] = r
			}
			return err
		})
	}
	return err
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
	for _, p := range s.cat.projects {
		if p.Name == name {
			return p, nil
		}
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
	for _, sn := range s.cat.snapshots {
		if sn.Project == p.ID && sn.Name == name {
			return sn, nil
		}
	}
	return nil, fmt.Errorf("snapshot %q in project %q: %w", name, p.Name, ErrSnapshotNotFound)
}

func copyBranch(b *Branch) Branch {
	c := *b
	c.Labels = maps.Clone(b.Labels)
	return c
}

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
	_ = b.Set(enc.InodeKey(nil, tl.ID, RootIno, seq), enc.AppendAttr(nil, &root), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return Project{}, Branch{}, fmt.Errorf("create project: %w", err)
	}
	s.cat.projects[p.ID] = p
	s.cat.timelines[tl.ID] = tl
	s.cat.putBranch(br)
	return *p, copyBranch(br), nil
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
	for _, sn := range s.cat.snapshots {
		if sn.Project == p.ID {
			out = append(out, *sn)
		}
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
	bt := s.db.NewBatch()
	putRecord(bt, enc.KindTimeline, t.ID, t)
	putRecord(bt, enc.KindBranch, br.ID, br)
	if err := bt.Commit(pebble.Sync); err != nil {
		return Branch{}, err
	}
	s.cat.timelines[t.ID] = t
	s.cat.putBranch(br)
	return copyBranch(br), nil
}

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
	s.cat.snapshots[sn.ID] = sn
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
	delete(s.cat.snapshots, sn.ID)
	if err := s.dropUnreferencedLocked(bt, sn.Timeline); err != nil {
		return fmt.Errorf("delete snapshot: %w", err)
	}
	return nil
}

// ResetOptions control Reset.
type ResetOptions struct {
	// Snapshot names the snapshot that keeps the old head. Default
	// "<branch>.reset.<seq>" (must still be a valid name).
	Snapshot string
	// Discard drops the old head instead of keeping it as a snapshot.
	Discard bool
	// To is the state the branch is put onto; only AtSnapshot is
	// accepted. Zero: the parent branch's current head.
	To At
}

// Reset points branch at its parent branch's current head, or at opts.To.
// The branch keeps its ID, name, attributes and children (which keep
// reading what they were forked from). The old head is kept as a snapshot
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
			name = fmt.Sprintf("%s.reset.%d", b.Name, s.curSeq())
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
		// Re-forked from the parent: the fork point moves; onto a
		// snapshot, the branch keeps the one it had.
		nb.ParentSeq, nb.ParentTime = seq, now
	}
	oldc := *old
	oldc.Branch = 0
	bt := s.db.NewBatch()
	putRecord(bt, enc.KindTimeline, t.ID, t)
	putRecord(bt, enc.KindTimeline, oldc.ID, &oldc)
	putRecord(bt, enc.KindBranch, nb.ID, &nb)
	if sn != nil {
		putRecord(bt, enc.KindSnapshot, sn.ID, sn)
	}
	s.cat.timelines[t.ID] = t
	s.cat.timelines[oldc.ID] = &oldc
	s.cat.putBranch(&nb)
	if sn != nil {
		s.cat.snapshots[sn.ID] = sn
	}
	if err := s.dropUnreferencedLocked(bt, old.ID); err != nil {
		return Branch{}, err
	}
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
	var tls []uint64
	for _, x := range order {
		_ = bt.Delete(enc.IDKey(enc.KindBranch, x.ID), nil)
		s.cat.dropBranch(x.ID)
		t := *s.cat.timelines[x.Timeline]
		t.Branch = 0
		s.cat.timelines[t.ID] = &t
		putRecord(bt, enc.KindTimeline, t.ID, &t)
		tls = append(tls, t.ID)
	}
	return s.dropUnreferencedLocked(bt, tls...)
}

// referencedLocked reports whether timeline id is still needed: by a
// branch, a snapshot or a child timeline. s.mu held.
func (s *Store) referencedLocked(id uint64) bool {
	t := s.cat.timelines[id]
	if t == nil {
		return false
	}
	if t.Branch != 0 {
		return true
	}
	for _, sn := range s.cat.snapshots {
		if sn.Timeline == id {
			return true
		}
	}
	for _, c := range s.cat.timelines {
		if c.Parent == id {
			return true
		}
	}
	return len(s.pins[id]) > 0
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
		for _, kind := range []byte{enc.KindDirent, enc.KindInode, enc.KindBlock, enc.KindOrphan} {
			_ = bt.DeleteRange(enc.TimelinePrefix(kind, id), enc.TimelinePrefix(kind, id+1), nil)
		}
		delete(s.cat.timelines, id)
		if t.Parent != 0 {
			queue = append(queue, t.Parent)
		}
	}
	if err := bt.Commit(pebble.Sync); err != nil {
		return err
	}
	s.noteFreed()
	return nil
}

// BranchUpdate changes a branch's attributes; nil fields are left alone.
type BranchUpdate struct {
	Protected *bool
	ExpiresAt *time.Time // zero time: never
	Labels    map[string]string
}

// UpdateBranch changes a branch's protection, expiry or labels.
func (s *Store) UpdateBranch(project, branch string, u BranchUpdate) (Branch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, b, err := s.branchLocked(project, branch)
	if err != nil {
		return Branch{}, fmt.Errorf("update branch: %w", err)
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
