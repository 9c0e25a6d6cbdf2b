package agentapi

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/experiments"
	"github.com/offshootdb/offshoot/storage"
)

// TestMaskingOverHTTP: policies are admin-only and never show the secret;
// a key limited to masked branches reaches a masked branch and nothing
// else through the routes that read data or fork. Branch m stands for a
// finished masked fork (the masking itself needs compute; the facade's
// TestMaskedFork runs it against real Postgres).
func TestMaskingOverHTTP(t *testing.T) {
	t.Parallel()
	e := storeEnv(t, experiments.Config{})
	if _, err := e.st.Fork("p", "main", "m", storage.AtHead(), storage.BranchOptions{Labels: map[string]string{experiments.LabelMasked: experiments.MaskedDone}}); err != nil {
		t.Fatal(err)
	}
	mk := func(token, name string, scopes ...string) experiments.NewKey {
		t.Helper()
		var k experiments.NewKey
		if code, _ := e.call(t, "POST", "/v1/keys", token, map[string]any{"name": name, "scopes": scopes}, &k); code != 201 {
			t.Fatalf("create key %s: %d", name, code)
		}
		return k
	}
	root := mk("", "root", "admin")
	agent := mk(root.Token, "agent", "write:p::masked")
	policy := map[string]any{"rules": []map[string]any{{"table": "customers", "column": "email", "method": "fake", "format": "email"}}}
	var keys struct{ Keys []experiments.Key }
	if code, _ := e.call(t, "GET", "/v1/keys", root.Token, nil, &keys); code != 200 || len(keys.Keys) != 2 || keys.Keys[1].Scopes[0].String() != "write:p::masked" {
		t.Fatalf("keys: %d %+v", code, keys)
	}
	since := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	for _, tc := range []struct {
		name         string
		token        string
		method, path string
		body         any
		status       int
	}{
		{"agent sets policy", agent.Token, "PUT", "/v1/projects/p/masking", policy, 403},
		{"get missing policy", root.Token, "GET", "/v1/projects/p/masking", nil, 404},
		{"bad policy", root.Token, "PUT", "/v1/projects/p/masking", map[string]any{"rules": []map[string]any{{"table": "x;y", "column": "c", "method": "null"}}}, 400},
		{"set policy", root.Token, "PUT", "/v1/projects/p/masking", policy, 200},
		{"agent reads policy", agent.Token, "GET", "/v1/projects/p/masking", nil, 403},
		{"forged marker", root.Token, "POST", "/v1/projects/p/branches", map[string]any{"name": "f", "labels": map[string]string{"offshoot.masked": "done"}}, 400},
		{"agent gets m", agent.Token, "GET", branchPath("m"), nil, 200},
		{"agent gets main", agent.Token, "GET", branchPath("main"), nil, 403},
		{"agent queries main", agent.Token, "POST", branchPath("main") + "/query", map[string]any{"sql": "SELECT 1", "read_only": true}, 403},
		{"agent diffs m against main", agent.Token, "GET", branchPath("m") + "/diff?against=main", nil, 403},
		{"agent connection to main", agent.Token, "GET", branchPath("main") + "/connection", nil, 403},
		{"agent forks main", agent.Token, "POST", "/v1/projects/p/branches", map[string]any{"name": "a1", "parent_id": "main"}, 403},
		{"agent forks m in the past", agent.Token, "POST", "/v1/projects/p/branches", map[string]any{"name": "a2", "parent_id": "m", "parent_timestamp": since}, 403},
		// Listed, but only the snapshots of branches it may read: none.
		{"agent lists snapshots", agent.Token, "GET", "/v1/projects/p/snapshots", nil, 200},
		{"agent usage", agent.Token, "GET", "/v1/projects/p/usage", nil, 403},
		{"agent forks m's head", agent.Token, "POST", "/v1/projects/p/branches", map[string]any{"name": "a3", "parent_id": "m"}, 201},
		// Masking needs compute, which this server lacks: the fork is
		// made, fails and is deleted.
		{"masked fork without compute", root.Token, "POST", "/v1/projects/p/branches", map[string]any{"name": "a4", "masked": true}, 503},
		{"a4 is gone", root.Token, "GET", branchPath("a4"), nil, 404},
		{"get policy", root.Token, "GET", "/v1/projects/p/masking", nil, 200},
		{"delete policy", root.Token, "DELETE", "/v1/projects/p/masking", nil, 204},
		{"masked fork without policy", root.Token, "POST", "/v1/projects/p/branches", map[string]any{"name": "a5", "masked": true}, 404},
	} {
		var out map[string]any
		var dst any = &out
		if tc.status == 204 {
			dst = nil
		}
		code, _ := e.call(t, tc.method, tc.path, tc.token, tc.body, dst)
		if code != tc.status {
			t.Errorf("%s: status %d, want %d: %v", tc.name, code, tc.status, out)
		}
		if tc.name == "agent lists snapshots" && len(out["snapshots"].([]any)) != 0 {
			t.Errorf("the masked agent sees snapshots: %v", out)
		}
		if tc.name == "get policy" && (out["rules"] == nil || len(out) != 4) {
			t.Errorf("policy shown as %v; want project, rules, updated_at, updated_by and no secret", out)
		}
		if tc.name == "agent forks m's head" && out["labels"].(map[string]any)[experiments.LabelMasked] != experiments.MaskedDone {
			t.Errorf("fork of m's head: labels %v", out["labels"])
		}
	}
	// The web UI reads through the same facade calls.
	for path, want := range map[string]int{"/ui/projects/p/branches/main": 403, "/ui/projects/p/branches/m?against=main": 403, "/ui/projects/p/branches/m": 200} {
		req, _ := http.NewRequest("GET", e.url+path, nil)
		req.Header.Set("Authorization", "Bearer "+agent.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || (want == 403 && !strings.Contains(string(body), "masked")) {
			t.Errorf("UI %s: %d, want %d (and the reason)", path, resp.StatusCode, want)
		}
	}
	var page experiments.BranchPage
	if code, _ := e.call(t, "GET", "/v1/projects/p/branches", agent.Token, nil, &page); code != 200 || len(page.Branches) != 2 ||
		page.Branches[0].Name != "m" || page.Branches[1].Name != "a3" {
		t.Errorf("agent lists %d: %+v", code, page.Branches)
	}
}
