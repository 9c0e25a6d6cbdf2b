package storage

import "fmt"

// What reads a timeline besides its branch: its child timelines (forks
// read it at their branch point) and its snapshots. Deleting a branch asks
// whether its timeline is still read, and GC asks for every read point of
// a timeline; both cost what a timeline has, not the number of timelines
// and snapshots in the store (a project may hold thousands). Snapshots are
// also indexed by project and name, for lookups and a project's list.

// timelineRefs indexes the catalog's timelines by parent and its
// snapshots by timeline and by name. The catalog changes it only through
// putTimeline, dropTimeline, putSnapshot and dropSnapshot; Check verifies
// it against a rebuild.
type timelineRefs struct {
	children  map[uint64]map[uint64]struct{}  // timeline id → ids of its child timelines
	snapshots map[uint64]map[uint64]struct{}  // timeline id → ids of its snapshots
	snapNames map[uint64]map[string]*Snapshot // project id → snapshot name → snapshot
	bases     map[uint64]map[uint64]struct{}  // timeline id → ids of branches whose BaseTimeline it is
}

func newTimelineRefs() timelineRefs {
	return timelineRefs{children: map[uint64]map[uint64]struct{}{}, snapshots: map[uint64]map[uint64]struct{}{},
		snapNames: map[uint64]map[string]*Snapshot{}, bases: map[uint64]map[uint64]struct{}{}}
}

func addRef(m map[uint64]map[uint64]struct{}, from, id uint64) {
	if m[from] == nil {
		m[from] = map[uint64]struct{}{}
	}
	m[from][id] = struct{}{}
}

func dropRef(m map[uint64]map[uint64]struct{}, from, id uint64) {
	delete(m[from], id)
	if len(m[from]) == 0 {
		delete(m, from)
	}
}

// putBase and dropBase keep refs.bases in step with b (putBranch,
// dropBranch).
func (c *catalog) putBase(b *Branch) {
	if b.BaseTimeline != 0 {
		addRef(c.refs.bases, b.BaseTimeline, b.ID)
	}
}

func (c *catalog) dropBase(b *Branch) {
	if b.BaseTimeline != 0 {
		dropRef(c.refs.bases, b.BaseTimeline, b.ID)
	}
}

// putTimeline adds or replaces t.
func (c *catalog) putTimeline(t *Timeline) {
	if old := c.timelines[t.ID]; old != nil && old.Parent != 0 {
		dropRef(c.refs.children, old.Parent, old.ID)
	}
	c.timelines[t.ID] = t
	if t.Parent != 0 {
		addRef(c.refs.children, t.Parent, t.ID)
	}
}

// dropTimeline removes timeline id.
func (c *catalog) dropTimeline(id uint64) {
	if old := c.timelines[id]; old != nil && old.Parent != 0 {
		dropRef(c.refs.children, old.Parent, id)
	}
	delete(c.timelines, id)
}

// putSnapshot adds or replaces sn.
func (c *catalog) putSnapshot(sn *Snapshot) {
	if old := c.snapshots[sn.ID]; old != nil {
		dropRef(c.refs.snapshots, old.Timeline, old.ID)
		c.refs.dropName(old)
	}
	c.snapshots[sn.ID] = sn
	addRef(c.refs.snapshots, sn.Timeline, sn.ID)
	if c.refs.snapNames[sn.Project] == nil {
		c.refs.snapNames[sn.Project] = map[string]*Snapshot{}
	}
	c.refs.snapNames[sn.Project][sn.Name] = sn
}

func (r *timelineRefs) dropName(sn *Snapshot) {
	if r.snapNames[sn.Project][sn.Name] == sn {
		delete(r.snapNames[sn.Project], sn.Name)
		if len(r.snapNames[sn.Project]) == 0 {
			delete(r.snapNames, sn.Project)
		}
	}
}

// dropSnapshot removes snapshot id.
func (c *catalog) dropSnapshot(id uint64) {
	if old := c.snapshots[id]; old != nil {
		dropRef(c.refs.snapshots, old.Timeline, id)
		c.refs.dropName(old)
	}
	delete(c.snapshots, id)
}

// checkRefs compares the index with the catalog's timelines and
// snapshots. s.mu held.
func (c *catalog) checkRefs() error {
	want := newTimelineRefs()
	for _, t := range c.timelines {
		if t.Parent != 0 {
			addRef(want.children, t.Parent, t.ID)
		}
	}
	for _, sn := range c.snapshots {
		addRef(want.snapshots, sn.Timeline, sn.ID)
	}
	for _, b := range c.branches {
		if b.BaseTimeline != 0 {
			addRef(want.bases, b.BaseTimeline, b.ID)
		}
	}
	for _, pair := range []struct {
		what      string
		got, want map[uint64]map[uint64]struct{}
	}{{"children", c.refs.children, want.children}, {"snapshots", c.refs.snapshots, want.snapshots}, {"fork points", c.refs.bases, want.bases}} {
		if len(pair.got) != len(pair.want) {
			return fmt.Errorf("timeline index: %s of %d timelines, want %d", pair.what, len(pair.got), len(pair.want))
		}
		for tl, ids := range pair.want {
			if len(pair.got[tl]) != len(ids) {
				return fmt.Errorf("timeline index: %d %s of timeline %d, want %d", len(pair.got[tl]), pair.what, tl, len(ids))
			}
			for id := range ids {
				if _, ok := pair.got[tl][id]; !ok {
					return fmt.Errorf("timeline index: %s of timeline %d lack %d", pair.what, tl, id)
				}
			}
		}
	}
	n := 0
	for p, m := range c.refs.snapNames {
		n += len(m)
		for name, sn := range m {
			if c.snapshots[sn.ID] != sn || sn.Project != p || sn.Name != name {
				return fmt.Errorf("snapshot index: %q of project %d is not in the catalog", name, p)
			}
		}
	}
	if n != len(c.snapshots) {
		return fmt.Errorf("snapshot index: %d names for %d snapshots", n, len(c.snapshots))
	}
	return nil
}
