package storage

import (
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"
)

// TestTreePage: random forests of branches (forks of forks, renames by
// recreation, deletions) are paged in tree order with every page size;
// the pages equal a tree walk built from Branches alone, the name index
// survives a reopen (Check compares it with the catalog), and a cursor
// whose branch was deleted, or around which branches were created,
// resumes at its place without repeating or skipping the others.
func TestTreePage(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, &Options{GCInterval: -1})
	ok(t, err)
	_, _, err = s.CreateProject("p")
	ok(t, err)
	_, _, err = s.CreateProject("q") // another project's branches never show
	ok(t, err)
	must[Branch](t)(s.Fork("q", "main", "zz", AtHead(), BranchOptions{}))
	rng := rand.New(rand.NewSource(7))
	names := []string{"main"}
	for i := range 300 {
		parent := names[rng.Intn(len(names))]
		name := fmt.Sprintf("%c%03d", 'a'+rng.Intn(26), i)
		must[Branch](t)(s.Fork("p", parent, name, AtHead(), BranchOptions{Labels: map[string]string{"odd": fmt.Sprint(i%2 == 1)}}))
		names = append(names, name)
	}
	// Delete some leaves.
	for _, n := range names[250:] {
		if err := s.DeleteBranch("p", n, DeleteOptions{}); err == nil {
			names = slices.DeleteFunc(names, func(x string) bool { return x == n })
		}
	}
	ok(t, s.Check())
	ok(t, s.Close())
	s, err = Open(dir, &Options{GCInterval: -1})
	ok(t, err)
	defer s.Close()
	ok(t, s.Check())

	want := referenceTree(t, s, "p")
	if len(want) != len(names) {
		t.Fatalf("reference walk has %d branches, want %d", len(want), len(names))
	}
	for _, limit := range []int{1, 7, 100, 1000} {
		var got []string
		var after []string
		for {
			page, next, err := s.TreePage("p", after, limit, 1<<30, nil)
			ok(t, err)
			if len(page) > limit {
				t.Fatalf("limit %d: page of %d", limit, len(page))
			}
			for _, b := range page {
				got = append(got, fmt.Sprintf("%d:%s", b.Depth, b.Name))
			}
			if next == nil {
				break
			}
			after = next
		}
		if !slices.Equal(got, want) {
			t.Fatalf("limit %d: paged\n%v\nwant\n%v", limit, got, want)
		}
	}

	// A filter with a scan bound: short pages, every match once.
	var odd []string
	for _, w := range want {
		b := must[Branch](t)(s.Branch("p", w[strings.IndexByte(w, ':')+1:]))
		if b.Labels["odd"] == "true" {
			odd = append(odd, w)
		}
	}
	var got []string
	var after []string
	for {
		page, next, err := s.TreePage("p", after, 5, 9, func(_ string, l map[string]string) bool { return l["odd"] == "true" })
		ok(t, err)
		for _, b := range page {
			got = append(got, fmt.Sprintf("%d:%s", b.Depth, b.Name))
		}
		if next == nil {
			break
		}
		after = next
	}
	if !slices.Equal(got, odd) {
		t.Fatalf("filtered pages\n%v\nwant\n%v", got, odd)
	}

	// Changes between pages: the cursor's branch deleted (a leaf), and a
	// branch created before and one after it.
	// The first page ends at a leaf (the first one from the 40th on).
	limit := 40
	for ; limit < len(want); limit++ {
		n := want[limit-1][strings.IndexByte(want[limit-1], ':')+1:]
		if len(s.cat.tree.kids[must[Branch](t)(s.Branch("p", n)).ID]) == 0 {
			break
		}
	}
	page, next, err := s.TreePage("p", nil, limit, 1<<30, nil)
	ok(t, err)
	last := page[len(page)-1].Name
	ok(t, s.DeleteBranch("p", last, DeleteOptions{}))
	must[Branch](t)(s.Fork("p", "main", "a", AtHead(), BranchOptions{}))    // before the cursor
	must[Branch](t)(s.Fork("p", "main", "zzzz", AtHead(), BranchOptions{})) // after it
	first := pageNames(page)
	rest := append([]string(nil), first...)
	for next != nil {
		page, next, err = s.TreePage("p", next, limit, 1<<30, nil)
		ok(t, err)
		rest = append(rest, pageNames(page)...)
	}
	// The first page, then every branch of the tree as it is now that the
	// first page did not list, but "a", which sorts before the cursor.
	wantRest := append([]string(nil), first...)
	for _, w := range referenceTree(t, s, "p") {
		if n := w[strings.IndexByte(w, ':')+1:]; !slices.Contains(first, n) && n != "a" {
			wantRest = append(wantRest, n)
		}
	}
	if !slices.Equal(rest, wantRest) || !slices.Contains(rest, "zzzz") {
		t.Fatalf("across changes\n%v\nwant\n%v", rest, wantRest)
	}
	ok(t, s.Check())
}

func pageNames(p []TreeBranch) []string {
	var out []string
	for _, b := range p {
		out = append(out, b.Name)
	}
	return out
}

// referenceTree walks a project's tree from Branches alone: roots and
// children by name, depth first, as "depth:name".
func referenceTree(t *testing.T, s *Store, project string) []string {
	bs := must[[]Branch](t)(s.Branches(project))
	kids := map[uint64][]Branch{}
	var roots []Branch
	for _, b := range bs {
		if b.Parent == 0 {
			roots = append(roots, b)
		} else {
			kids[b.Parent] = append(kids[b.Parent], b)
		}
	}
	var out []string
	var walk func(b Branch, d int)
	walk = func(b Branch, d int) {
		out = append(out, fmt.Sprintf("%d:%s", d, b.Name))
		for _, c := range kids[b.ID] { // Branches lists by name
			walk(c, d+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
	return out
}
