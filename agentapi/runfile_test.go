package agentapi

import (
	"net/http"
	"strings"
	"testing"
)

// TestRunImportBodyLimit: a run file may exceed Config.BodyLimit (it is
// capped by experiments.MaxRunFileBytes instead); JSON requests may not.
// The export and import routes answer problems for unknown runs and
// formats.
func TestRunImportBodyLimit(t *testing.T) {
	e := start(t, nil, "", Config{BodyLimit: 1024})
	big := strings.Repeat("q1 Q0 d1 1 1.0 ext\n", 200) // 3.8 KB
	var p struct {
		Status int    `json:"status"`
		Type   string `json:"type"`
	}
	for _, c := range []struct {
		method, path string
		body         any
		want         int
	}{
		{"POST", "/v1/runs/nosuchrun/import?name=ext", big, http.StatusNotFound}, // read, then no such run
		{"POST", "/v1/runs", map[string]any{"name": strings.Repeat("x", 2000)}, http.StatusRequestEntityTooLarge},
		{"GET", "/v1/runs/nosuchrun/export?format=trec", nil, http.StatusNotFound},
		{"GET", "/v1/runs/nosuchrun/export?format=csv", nil, http.StatusBadRequest},
	} {
		p.Status = 0
		if code, _ := e.call(t, c.method, c.path, "", c.body, &p); code != c.want || p.Status != c.want {
			t.Errorf("%s %s: %d (problem %+v), want %d", c.method, c.path, code, p, c.want)
		}
	}
}
