package mcp_test

import (
	"context"
	"testing"

	"github.com/offshootdb/offshoot/experiments"
)

// TestMaskedKeyRefused: a key limited to masked branches reaches none of
// the data tools on an unmasked branch over the real HTTP transport, while
// the same calls with an unmasked read key succeed (so the refusals are
// the scope's doing).
func TestMaskedKeyRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	mk := func(name, scope string) string {
		sc, err := experiments.ParseScope(scope)
		if err != nil {
			t.Fatal(err)
		}
		k, err := e.svc.CreateKey(experiments.WithCaller(context.Background(), experiments.LocalCaller),
			experiments.KeyRequest{Name: name, Scopes: []experiments.Scope{sc}})
		if err != nil {
			t.Fatal(err)
		}
		return k.Token
	}
	mk("root", "admin") // the first key must be an admin key
	masked, reader := e.httpClient(t, mk("agent", "write:main::masked")), e.httpClient(t, mk("reader", "read:main"))
	for _, c := range []struct {
		tool string
		args map[string]any
	}{
		{"run_sql", map[string]any{"branch": "main", "sql": "SELECT name FROM items", "read_only": true}},
		{"vector_search", map[string]any{"branch": "main", "table": "docs", "column": "emb", "vector": []any{1, 0}, "k": 2}},
		{"diff_branches", map[string]any{"branch": "scratch", "against": "main"}},
		{"describe_table", map[string]any{"branch": "main", "table": "items"}},
		{"list_tables", map[string]any{"branch": "main"}},
	} {
		toolErr(t, masked, c.tool, c.args, "forbidden", "masked")
		ok(t, reader, c.tool, c.args, nil)
	}
	toolErr(t, masked, "get_connection_string", map[string]any{"branch": "main"}, "forbidden")
}
