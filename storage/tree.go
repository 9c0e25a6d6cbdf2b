package storage

import (
	"fmt"
	"slices"
	"sort"
)

// The branch tree of a project: indexes kept in step with the catalog's
// branches, and lookups and walks over them that cost what they return,
// not the number of branches (a project may hold thousands).

// branchIndex indexes the catalog's branches. The catalog changes it only
// through putBranch and dropBranch; Check verifies it against a rebuild.
type branchIndex struct {
	// byName is project id → name → branch.
	byName map[uint64]map[string]*Branch
	// kids is parent branch id → its children, and roots is project id →
	// its branches without a parent; both sorted by name.
	kids, roots map[uint64][]*Branch
}

// siblings is the list b is in: its parent's children or its project's
// roots.
func (x *branchIndex) siblings(b *Branch) []*Branch {
	if b.Parent == 0 {
		return x.roots[b.Project]
	}
	return x.kids[b.Parent]
}

func (x *branchIndex) setSiblings(b *Branch, l []*Branch) {
	m, key := x.kids, b.Parent
	if b.Parent == 0 {
		m, key = x.roots, b.Project
	}
	if len(l) == 0 {
		delete(m, key)
	} else {
		m[key] = l
	}
}

// byNameIndex is the position of name in l, sorted by name, or where it
// would go.
func byNameIndex(l []*Branch, name string) int {
	return sort.Search(len(l), func(i int) bool { return l[i].Name >= name })
}

func (x *branchIndex) add(b *Branch) {
	if x.byName == nil {
		x.byName, x.kids, x.roots = map[uint64]map[string]*Branch{}, map[uint64][]*Branch{}, map[uint64][]*Branch{}
	}
	if x.byName[b.Project] == nil {
		x.byName[b.Project] = map[string]*Branch{}
	}
	x.byName[b.Project][b.Name] = b
	l := x.siblings(b)
	x.setSiblings(b, slices.Insert(l, byNameIndex(l, b.Name), b))
}

func (x *branchIndex) remove(b *Branch) {
	delete(x.byName[b.Project], b.Name)
	if len(x.byName[b.Project]) == 0 {
		delete(x.byName, b.Project)
	}
	l := x.siblings(b)
	if i := byNameIndex(l, b.Name); i < len(l) && l[i] == b {
		x.setSiblings(b, slices.Delete(l, i, i+1))
	}
}

// putBranch adds or replaces b (a rename or a new parent moves it).
func (c *catalog) putBranch(b *Branch) {
	if old := c.branches[b.ID]; old != nil {
		c.tree.remove(old)
		c.dropBase(old)
	}
	c.branches[b.ID] = b
	c.tree.add(b)
	c.putBase(b)
}

// dropBranch removes branch id.
func (c *catalog) dropBranch(id uint64) {
	if old := c.branches[id]; old != nil {
		c.tree.remove(old)
		c.dropBase(old)
	}
	delete(c.branches, id)
}

// checkIndex compares the index with the catalog's branches. s.mu held.
func (c *catalog) checkIndex() error {
	var want branchIndex
	for _, b := range c.branches {
		want.add(b)
	}
	n := 0
	for p, m := range c.tree.byName {
		n += len(m)
		for name, b := range m {
			if want.byName[p][name] != b {
				return fmt.Errorf("branch index: %q of project %d is not in the catalog", name, p)
			}
		}
	}
	if n != len(c.branches) {
		return fmt.Errorf("branch index: %d names for %d branches", n, len(c.branches))
	}
	for _, pair := range []struct{ got, want map[uint64][]*Branch }{{c.tree.kids, want.kids}, {c.tree.roots, want.roots}} {
		if len(pair.got) != len(pair.want) {
			return fmt.Errorf("branch index: %d sibling lists, want %d", len(pair.got), len(pair.want))
		}
		for k, l := range pair.want {
			if !slices.Equal(pair.got[k], l) {
				return fmt.Errorf("branch index: the children of %d are out of step", k)
			}
		}
	}
	return nil
}

// BranchCount counts a project's branches (main included) without
// listing them.
func (s *Store) BranchCount(project string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.projectLocked(project)
	if err != nil {
		return 0, err
	}
	return len(s.cat.tree.byName[p.ID]), nil
}

// BranchByID returns the branch with id (ids are unique in the store,
// across projects), or ErrBranchNotFound.
func (s *Store) BranchByID(id uint64) (Branch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.cat.branches[id]
	if b == nil {
		return Branch{}, fmt.Errorf("branch id %d: %w", id, ErrBranchNotFound)
	}
	return copyBranch(b), nil
}

// sortedChildrenLocked lists branch id's children by id. s.mu held.
func (s *Store) sortedChildrenLocked(id uint64) []*Branch {
	if id == 0 {
		return nil
	}
	out := slices.Clone(s.cat.tree.kids[id])
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// TreeBranch is a branch in tree order with its depth (0 for a root).
type TreeBranch struct {
	Branch
	Depth int
}

// Subtree lists branch name of project and its descendants in tree order:
// depth first, children by name.
func (s *Store) Subtree(project, name string) ([]TreeBranch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, b, err := s.branchLocked(project, name)
	if err != nil {
		return nil, err
	}
	var out []TreeBranch
	var walk func(x *Branch, depth int)
	walk = func(x *Branch, depth int) {
		out = append(out, TreeBranch{copyBranch(x), depth})
		for _, c := range s.cat.tree.kids[x.ID] {
			walk(c, depth+1)
		}
	}
	walk(b, 0)
	return out, nil
}

// TreePage returns up to limit branches of project in tree order (depth
// first from the roots, roots and children by name) that keep accepts (nil
// accepts all), starting after the branch whose path of names from its
// root is after (empty: from the start), visiting at most scan branches;
// and the path of the last branch visited when more may follow (nil at the
// end). The path, not a position, marks the place, so that branches
// created or deleted between pages neither repeat nor skip the others; if
// the branch at after is gone, the walk resumes at its place. keep must
// not retain or change the labels it is given. A page costs the branches
// it visits, whatever the project's size.
func (s *Store) TreePage(project string, after []string, limit, scan int, keep func(name string, labels map[string]string) bool) ([]TreeBranch, []string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.projectLocked(project)
	if err != nil {
		return nil, nil, err
	}
	b := s.cat.resume(p.ID, after)
	var out []TreeBranch
	var last *Branch
	for visited := 0; b != nil && len(out) < limit && visited < scan; b, visited = s.cat.next(b), visited+1 {
		last = b
		if keep == nil || keep(b.Name, b.Labels) {
			out = append(out, TreeBranch{copyBranch(b), s.depthLocked(b)})
		}
	}
	if b == nil {
		return out, nil, nil
	}
	return out, s.pathLocked(last), nil
}

// depthLocked counts b's ancestors. s.mu held.
func (s *Store) depthLocked(b *Branch) int {
	d := 0
	for b.Parent != 0 {
		if b = s.cat.branches[b.Parent]; b == nil {
			break
		}
		d++
	}
	return d
}

// pathLocked is the names from b's root down to b. s.mu held.
func (s *Store) pathLocked(b *Branch) []string {
	var path []string
	for ; b != nil; b = s.cat.branches[b.Parent] {
		path = append(path, b.Name)
		if b.Parent == 0 {
			break
		}
	}
	slices.Reverse(path)
	return path
}

// next is the branch after b in tree order: its first child, else the
// branch after its subtree.
func (c *catalog) next(b *Branch) *Branch {
	if kids := c.tree.kids[b.ID]; len(kids) > 0 {
		return kids[0]
	}
	return c.afterSubtree(b)
}

// afterSubtree is the branch after b's subtree in tree order: the next
// sibling of b or of its nearest ancestor that has one.
func (c *catalog) afterSubtree(b *Branch) *Branch {
	for b != nil {
		l := c.tree.siblings(b)
		if i := byNameIndex(l, b.Name); i+1 < len(l) {
			return l[i+1]
		}
		if b.Parent == 0 {
			return nil
		}
		b = c.branches[b.Parent]
	}
	return nil
}

// resume is the first branch of project p after path in tree order.
func (c *catalog) resume(p uint64, path []string) *Branch {
	level := c.tree.roots[p]
	if len(path) == 0 {
		if len(level) == 0 {
			return nil
		}
		return level[0]
	}
	var found *Branch
	for _, name := range path {
		i := byNameIndex(level, name)
		if i == len(level) || level[i].Name != name {
			// The path's branch at this level is gone: the next one at
			// its place, else the one after the part of the path that is
			// still there.
			if i < len(level) {
				return level[i]
			}
			if found == nil {
				return nil
			}
			return c.afterSubtree(found)
		}
		found = level[i]
		level = c.tree.kids[found.ID]
	}
	return c.next(found)
}
