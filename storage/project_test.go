package storage

import (
	"errors"
	"strings"
	"testing"
)

// TestDeleteProject deletes a project with forks, snapshots and data next to
// a second project, and checks refusals, the freed versions, the untouched
// neighbour, Check and reuse of the name.
func TestDeleteProject(t *testing.T) {
	s := openTest(t, nil)
	createProject(t, s, "p")
	createProject(t, s, "other")
	big := strings.Repeat("x", 3*8192+100)
	h := must[*Head](t)(s.OpenHead("p", "main"))
	writeFile(t, h, "f", big)
	ok(t, h.Close())
	must[Branch](t)(s.Fork("p", "main", "dev", AtHead(), BranchOptions{}))
	must[Branch](t)(s.Fork("p", "dev", "grandchild", AtHead(), BranchOptions{}))
	c := must[*Head](t)(s.OpenHead("p", "dev"))
	writeFile(t, c, "f", "dev1"+big)
	must[Snapshot](t)(s.Snapshot("p", "dev", "s1", SnapshotOptions{}))
	o := must[*Head](t)(s.OpenHead("other", "main"))
	writeFile(t, o, "g", "other")
	ok(t, o.Close())

	// Open head of any branch: busy (checked before emptiness).
	if err := s.DeleteProject("p", DeleteProjectOptions{Force: true}); !errors.Is(err, ErrBusy) {
		t.Fatalf("delete with open head: %v", err)
	}
	ok(t, c.Close())
	v := must[*View](t)(s.OpenView("p", "", AtSnapshot("s1")))
	if err := s.DeleteProject("p", DeleteProjectOptions{Force: true}); !errors.Is(err, ErrBusy) {
		t.Fatalf("delete with open view: %v", err)
	}
	ok(t, v.Close())
	if err := s.DeleteProject("p", DeleteProjectOptions{}); !errors.Is(err, ErrProjectNotEmpty) {
		t.Fatalf("delete without force: %v", err)
	}
	ok(t, s.DeleteBranch("p", "dev", DeleteOptions{Cascade: true}))
	tr := true
	must[Branch](t)(s.UpdateBranch("p", "main", BranchUpdate{Protected: &tr}))
	if err := s.DeleteProject("p", DeleteProjectOptions{}); !errors.Is(err, ErrProtected) {
		t.Fatalf("delete protected without force: %v", err)
	}
	must[Branch](t)(s.Fork("p", "main", "dev2", AtHead(), BranchOptions{}))

	before := must[StoreUsage](t)(s.TotalUsage())
	s.mu.Lock()
	var tls []uint64
	for _, tl := range s.cat.timelines {
		p, _ := s.projectLocked("p")
		if tl.Project == p.ID {
			tls = append(tls, tl.ID)
		}
	}
	s.mu.Unlock()
	var projBytes uint64
	for _, tl := range tls {
		projBytes += must[uint64](t)(s.timelineBytes(tl))
	}
	if projBytes < uint64(2*len(big)) || len(tls) < 3 {
		t.Fatalf("project p stores %d bytes in %d timelines, want >= %d in >= 3", projBytes, len(tls), 2*len(big))
	}
	ok(t, s.DeleteProject("p", DeleteProjectOptions{Force: true}))
	after := must[StoreUsage](t)(s.TotalUsage())
	if before.StoredBytes-after.StoredBytes != projBytes {
		t.Errorf("stored bytes %d -> %d, want %d freed", before.StoredBytes, after.StoredBytes, projBytes)
	}
	for _, tl := range tls {
		if n := must[uint64](t)(s.timelineBytes(tl)); n != 0 {
			t.Errorf("timeline %d still stores %d bytes", tl, n)
		}
	}
	ok(t, s.Check())
	if _, err := s.Project("p"); !errors.Is(err, ErrProjectNotFound) {
		t.Errorf("project after delete: %v", err)
	}
	if sn, _ := s.Snapshots("other"); len(sn) != 0 {
		t.Errorf("other's snapshots: %v", sn)
	}
	s.mu.Lock()
	nb, ns, ntl := len(s.cat.branches), len(s.cat.snapshots), len(s.cat.timelines)
	s.mu.Unlock()
	if nb != 1 || ns != 0 || ntl != 1 {
		t.Errorf("left %d branches, %d snapshots, %d timelines; want 1, 0, 1 (project other)", nb, ns, ntl)
	}
	o = must[*Head](t)(s.OpenHead("other", "main"))
	if a, err := o.Lookup(RootIno, "g"); err != nil || a.Size != 5 {
		t.Errorf("other/g after delete: %+v %v", a, err)
	}
	ok(t, o.Close())

	// The name is free again, and the new project starts empty.
	createProject(t, s, "p")
	if got := readFile(t, s, "main", AtHead(), "f"); got != "<none>" {
		t.Errorf("recreated project reads old file: %q", got)
	}
	ok(t, s.Check())

}

func TestDeleteProjectBadInput(t *testing.T) {
	s := openTest(t, nil)
	if err := s.DeleteProject("nope", DeleteProjectOptions{}); !errors.Is(err, ErrProjectNotFound) {
		t.Errorf("unknown project: %v", err)
	}
	if err := s.DeleteProject("Bad Name", DeleteProjectOptions{}); !errors.Is(err, ErrInvalidName) {
		t.Errorf("invalid name: %v", err)
	}
	createProject(t, s, "p")
	h := must[*Head](t)(s.OpenHead("p", "main"))
	if err := s.DeleteProject("p", DeleteProjectOptions{}); !errors.Is(err, ErrBusy) {
		t.Errorf("busy head: %v", err)
	}
	ok(t, h.Close())
	// An empty project (main only) needs no force.
	ok(t, s.DeleteProject("p", DeleteProjectOptions{}))
	if err := s.DeleteProject("p", DeleteProjectOptions{}); !errors.Is(err, ErrProjectNotFound) {
		t.Errorf("deleted twice: %v", err)
	}
}

func createProject(t testing.TB, s *Store, name string) {
	t.Helper()
	if _, _, err := s.CreateProject(name); err != nil {
		t.Fatal(err)
	}
}

// TestDeleteProjectSecondRoot: a fork of a snapshot whose branch was
// deleted has no parent, a second root beside main; deleting the project
// takes it too.
func TestDeleteProjectSecondRoot(t *testing.T) {
	s := openTest(t, nil)
	_, _, err := s.CreateProject("p")
	ok(t, err)
	must[Branch](t)(s.Fork("p", "main", "b", AtHead(), BranchOptions{}))
	must[Snapshot](t)(s.Snapshot("p", "b", "s1", SnapshotOptions{}))
	ok(t, s.DeleteBranch("p", "b", DeleteOptions{}))
	c := must[Branch](t)(s.Fork("p", "", "c", AtSnapshot("s1"), BranchOptions{}))
	if c.Parent != 0 {
		t.Fatalf("fork of an orphaned snapshot has parent %d", c.Parent)
	}
	if err := s.DeleteProject("p", DeleteProjectOptions{}); !errors.Is(err, ErrProjectNotEmpty) {
		t.Errorf("delete without force: %v, want ErrProjectNotEmpty", err)
	}
	ok(t, s.DeleteProject("p", DeleteProjectOptions{Force: true}))
	if _, err := s.Project("p"); !errors.Is(err, ErrProjectNotFound) {
		t.Errorf("project after delete: %v", err)
	}
}
