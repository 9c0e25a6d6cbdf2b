package experiments_test

import (
	"errors"
	"testing"

	"github.com/offshootdb/offshoot/experiments"
	"github.com/offshootdb/offshoot/storage"
)

// TestDeleteProject: the facade refuses non-empty, protected and default
// projects without force, maps unknown projects to ErrNotFound, deletes
// with force and audits. (cmd/offshoot's TestE2E covers endpoints.)
func TestDeleteProject(t *testing.T) {
	t.Parallel()
	s, st := branchService(t, experiments.Config{SweepInterval: -1, DefaultProject: "p"})
	ctx := admin()
	if _, _, err := st.CreateProject("q"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateBranch(ctx, experiments.CreateBranchRequest{Project: "q", Name: "dev"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		force bool
		want  error
	}{
		{"q", false, experiments.ErrConflict}, // has dev
		{"p", false, experiments.ErrConflict}, // the default project
		{"nope", true, experiments.ErrNotFound},
		{"Bad Name", true, experiments.ErrInvalid},
	} {
		if err := s.DeleteProject(ctx, c.name, c.force); !errors.Is(err, c.want) {
			t.Errorf("delete %s force=%t: %v, want %v", c.name, c.force, err, c.want)
		}
	}
	h, err := st.OpenHead("q", "dev")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteProject(ctx, "q", true); !errors.Is(err, experiments.ErrConflict) || !errors.Is(err, storage.ErrBusy) {
		t.Errorf("delete with an open head: %v", err)
	}
	h.Close()
	if err := s.DeleteProject(ctx, "q", true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetProject(ctx, "q"); !errors.Is(err, experiments.ErrNotFound) {
		t.Errorf("q after delete: %v", err)
	}
	if err := s.DeleteProject(ctx, "p", true); err != nil {
		t.Fatalf("delete default project with force: %v", err)
	}
	page, err := s.AuditLog(ctx, experiments.AuditQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range page.Entries {
		if e.Action == "project.delete" && e.Result == "ok" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d successful project.delete audit entries, want 2", n)
	}
}
