package agentapi

import (
	"encoding/json"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/offshootdb/offshoot/experiments"
)

// TestOpenAPIMatchesRoutes keeps openapi.json true: every registered
// route is documented and every documented operation is registered.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	svc, err := experiments.New(experiments.Config{ControlDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	// With MCP set, so that /mcp is registered and must be documented.
	s, err := New(Config{Service: svc, MCP: http.NotFoundHandler()})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openapiJSON, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	methods := map[string]bool{"get": true, "put": true, "post": true, "delete": true, "patch": true, "head": true, "options": true}
	documented := map[string]bool{}
	for path, item := range doc.Paths {
		for m := range item {
			if methods[m] {
				documented[strings.ToUpper(m)+" "+path] = true
			}
		}
	}
	param := regexp.MustCompile(`:([a-z_]+)`)
	registered := map[string]bool{}
	for _, r := range s.e.Routes() {
		registered[r.Method+" "+strings.Replace(param.ReplaceAllString(r.Path, "{$1}"), "/*", "/{path}", 1)] = true
	}
	if len(registered) < 10 {
		t.Fatalf("only %d routes registered", len(registered))
	}
	for _, k := range sorted(registered) {
		if !documented[k] {
			t.Errorf("route %s is not in openapi.json", k)
		}
	}
	for _, k := range sorted(documented) {
		if !registered[k] {
			t.Errorf("openapi.json documents %s, which is not registered", k)
		}
	}
	// Every $ref resolves.
	var all map[string]any
	if err := json.Unmarshal(openapiJSON, &all); err != nil {
		t.Fatal(err)
	}
	for _, ref := range regexp.MustCompile(`"\$ref":\s*"#/([^"]+)"`).FindAllStringSubmatch(string(openapiJSON), -1) {
		var node any = all
		for _, part := range strings.Split(ref[1], "/") {
			m, ok := node.(map[string]any)
			if !ok {
				node = nil
				break
			}
			node = m[part]
		}
		if node == nil {
			t.Errorf("$ref #/%s does not resolve", ref[1])
		}
	}
}

func sorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
