package agentapi

import (
	"context"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/offshootdb/offshoot/experiments"
	"github.com/offshootdb/offshoot/storage"
)

// storeEnv serves the API over a real branch store whose project p was
// created in storage directly (forks and deletes never start Postgres).
func storeEnv(t *testing.T, cfg experiments.Config) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := storage.Open(filepath.Join(dir, "store"), &storage.Options{GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.CreateProject("p"); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	cfg.ControlDir, cfg.Store, cfg.Logger, cfg.SweepInterval = filepath.Join(dir, "control"), st, log, -1
	svc, err := experiments.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Service: svc, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		if err := svc.Close(); err != nil {
			t.Error(err)
		}
		if err := st.Check(); err != nil {
			t.Error(err)
		}
		st.Close()
	})
	return &env{url: "http://127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port), svc: svc, srv: srv, st: st}
}

func branchPath(b string) string { return "/v1/projects/p/branches/" + url.PathEscape(b) }

func TestBranchQuotaOverHTTP(t *testing.T) {
	t.Parallel()
	e := storeEnv(t, experiments.Config{MaxBranches: 3})
	for _, b := range []string{"a", "b"} {
		if code, _ := e.call(t, "POST", "/v1/projects/p/branches", "", map[string]any{"name": b}, nil); code != 201 {
			t.Fatalf("fork %s: %d", b, code)
		}
	}
	var p Problem
	code, h := e.call(t, "POST", "/v1/projects/p/branches", "", map[string]any{"name": "c"}, &p)
	if code != 429 || h.Get("Content-Type") != "application/problem+json" || p.Code != "capacity" || p.Status != 429 ||
		p.Type != problemTypeBase+"capacity" || p.Detail == "" {
		t.Fatalf("fork past the quota: %d %+v", code, p)
	}
	// Deleting one makes room again.
	if code, _ := e.call(t, "DELETE", branchPath("a"), "", nil, nil); code != 204 {
		t.Fatalf("delete a: %d", code)
	}
	if code, _ := e.call(t, "POST", "/v1/projects/p/branches", "", map[string]any{"name": "c"}, nil); code != 201 {
		t.Fatalf("fork after delete: %d", code)
	}
}

func TestBranchScopeOverHTTP(t *testing.T) {
	t.Parallel()
	e := storeEnv(t, experiments.Config{})
	mk := func(token, name string, scopes ...string) experiments.NewKey {
		t.Helper()
		var k experiments.NewKey
		if code, _ := e.call(t, "POST", "/v1/keys", token, map[string]any{"name": name, "scopes": scopes}, &k); code != 201 {
			t.Fatalf("create key %s: %d", name, code)
		}
		return k
	}
	root := mk("", "root", "admin")
	// Forking reads the parent, so the agent also reads (only) main.
	agent := mk(root.Token, "agent", "write:p:feature/*", "read:p:main")
	if code, _ := e.call(t, "POST", "/v1/projects/p/branches", root.Token, map[string]any{"name": "other"}, nil); code != 201 {
		t.Fatalf("fork other: %d", code)
	}
	fork := func(name string) map[string]any { return map[string]any{"name": name} }
	for _, tc := range []struct {
		name         string
		method, path string
		body         any
		status       int
	}{
		{"fork feature/x", "POST", "/v1/projects/p/branches", fork("feature/x"), 201},
		{"get feature/x", "GET", branchPath("feature/x"), nil, 200},
		{"fork other2", "POST", "/v1/projects/p/branches", fork("other2"), 403},
		{"get main", "GET", branchPath("main"), nil, 200},
		{"get other", "GET", branchPath("other"), nil, 403},
		{"fork feature/y from other", "POST", "/v1/projects/p/branches", map[string]any{"name": "feature/y", "parent_id": "other"}, 403},
		{"patch main", "PATCH", branchPath("main"), map[string]any{"protected": false}, 403},
		{"delete main", "DELETE", branchPath("main"), nil, 403},
		{"delete other", "DELETE", branchPath("other"), nil, 403},
		{"reset other", "POST", branchPath("other") + "/reset", map[string]any{}, 403},
		{"endpoint log of other", "GET", branchPath("other") + "/endpoint/log", nil, 403},
		{"delete feature/x", "DELETE", branchPath("feature/x"), nil, 204},
	} {
		var p Problem
		var out any
		if tc.status >= 400 {
			out = &p
		}
		code, _ := e.call(t, tc.method, tc.path, agent.Token, tc.body, out)
		if code != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, code, tc.status)
		}
		if tc.status == 403 && (p.Code != "forbidden" || p.Status != 403) {
			t.Errorf("%s: problem %+v", tc.name, p)
		}
	}
	// other and main are untouched.
	for _, b := range []string{"main", "other"} {
		if code, _ := e.call(t, "GET", branchPath(b), root.Token, nil, nil); code != 200 {
			t.Errorf("%s after refused calls: %d", b, code)
		}
	}
	var page experiments.AuditPage
	if code, _ := e.call(t, "GET", "/v1/audit?limit=1000", root.Token, nil, &page); code != 200 {
		t.Fatalf("audit: %d", code)
	}
	denied := map[string]bool{}
	for _, en := range page.Entries {
		if en.KeyID == agent.ID && en.Result == "denied" {
			denied[en.Action+" "+en.Target] = true
		}
	}
	for _, want := range []string{"branch.create p/other2", "branch.delete p/main", "branch.delete p/other", "branch.update p/main", "branch.create p/feature/y"} {
		if !denied[want] {
			t.Errorf("refusal %q not audited; denied entries: %v", want, denied)
		}
	}
}

func TestUsageCostOverHTTP(t *testing.T) {
	t.Parallel()
	e := storeEnv(t, experiments.Config{Prices: &experiments.Prices{ComputeHour: 0.5, StorageGiBMonth: 0.1, Currency: "EUR"}})
	if code, _ := e.call(t, "POST", "/v1/projects/p/branches", "", map[string]any{"name": "a"}, nil); code != 201 {
		t.Fatalf("fork: %d", code)
	}
	var u experiments.Usage
	if code, _ := e.call(t, "GET", "/v1/projects/p/usage", "", nil, &u); code != 200 {
		t.Fatalf("usage: %d", code)
	}
	if u.Cost == nil || u.Cost.Currency != "EUR" || len(u.Branches) != 2 || u.Branches[0].Cost == nil || u.Branches[1].Cost == nil {
		t.Fatalf("usage without cost: %+v", u)
	}
	plain := storeEnv(t, experiments.Config{})
	var raw map[string]any
	if code, _ := plain.call(t, "GET", "/v1/projects/p/usage", "", nil, &raw); code != 200 {
		t.Fatalf("usage: %d", code)
	}
	if _, ok := raw["cost"]; ok {
		t.Errorf("cost reported without prices: %v", raw)
	}
}

// TestRefusedPatchOverHTTP: a PATCH that is refused changes nothing, and
// main cannot be given a TTL.
func TestRefusedPatchOverHTTP(t *testing.T) {
	t.Parallel()
	e := storeEnv(t, experiments.Config{})
	if code, _ := e.call(t, "POST", "/v1/projects/p/branches", "", map[string]any{"name": "victim"}, nil); code != 201 {
		t.Fatalf("fork: %d", code)
	}
	for _, c := range []struct {
		branch string
		body   map[string]any
		want   int
	}{
		{"victim", map[string]any{"ttl": "3s", "name": "Bad Name!"}, 400},
		{"main", map[string]any{"ttl": "1h"}, 400},
	} {
		if code, _ := e.call(t, "PATCH", branchPath(c.branch), "", c.body, nil); code != c.want {
			t.Errorf("PATCH %s %v: %d, want %d", c.branch, c.body, code, c.want)
		}
		if b, err := e.st.Branch("p", c.branch); err != nil || !b.ExpiresAt.IsZero() {
			t.Errorf("after a refused PATCH %s: %+v %v", c.branch, b, err)
		}
	}
	var b experiments.Branch
	if code, _ := e.call(t, "PATCH", branchPath("victim"), "", map[string]any{"name": "rn9", "protected": true}, &b); code != 200 || b.Name != "rn9" || !b.Protected {
		t.Errorf("rename and protect: %d %+v", code, b)
	}
}
