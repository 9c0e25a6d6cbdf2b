package experiments_test

import (
	"context"
	"errors"
	"testing"

	"github.com/offshootdb/offshoot/experiments"
)

// TestRefusedReadsAudited: every read a key is refused is in the audit
// log as denied, whichever call it was.
func TestRefusedReadsAudited(t *testing.T) {
	s, err := experiments.New(experiments.Config{ControlDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	key := experiments.WithCaller(context.Background(), experiments.Caller{KeyID: "k",
		Scopes: []experiments.Scope{{Role: experiments.RoleRead, Project: "q"}}})
	calls := map[string]func() error{
		"snapshot.list": func() error { _, err := s.ListSnapshots(key, "p"); return err },
		"usage":         func() error { _, err := s.ProjectUsage(key, "p"); return err },
		"branch.get":    func() error { _, err := s.GetBranch(key, "p", "main"); return err },
		"branch.list": func() error {
			_, err := s.ListBranches(key, experiments.ListBranchesRequest{Project: "p"})
			return err
		},
		"endpoint.get": func() error { _, err := s.Endpoint(key, "p", "main"); return err },
		"endpoint.log": func() error { _, err := s.EndpointLog(key, "p", "main", 10); return err },
		"branch.connection": func() error {
			_, err := s.Connection(key, experiments.ConnectionRequest{Project: "p", Branch: "main"})
			return err
		},
		"materialization.list": func() error { _, err := s.ListMaterializations(key, "p"); return err },
		"materialization.get":  func() error { _, err := s.GetMaterialization(key, "p", "m1"); return err },
		"project.get":          func() error { _, err := s.GetProject(key, "p"); return err },
	}
	for action, call := range calls {
		if err := call(); !errors.Is(err, experiments.ErrForbidden) {
			t.Errorf("%s: %v, want ErrForbidden", action, err)
		}
	}
	page, err := s.AuditLog(admin(), experiments.AuditQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range page.Entries {
		if e.KeyID == "k" && e.Result == "denied" {
			delete(calls, e.Action)
		}
	}
	for action := range calls {
		t.Errorf("refused %s not audited as denied", action)
	}
}
