package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/offshootdb/offshoot/evals/evalstest"
)

// TestE2EDemo runs `offshoot demo` against the real server binary: it
// creates project demo, loads Cranfield into demo/main through the proxy,
// and the A/B comparison and the ef_search sweep come out with the forks
// gone; a second demo reuses the project and the loaded tables; a
// directory that is not BEIR is refused as bad input.
func TestE2EDemo(t *testing.T) {
	s := newE2EServer(t)
	cranfield := evalstest.Cranfield(t)
	ctx := context.Background()
	out, errOut, code := run(t, ctx, "demo", "--server", s.http, "--dataset", cranfield)
	if code != 0 {
		t.Fatalf("demo: exit %d\n%s%s\n%s", code, out, errOut, s.log())
	}
	for _, want := range []string{"created project demo", "into demo/main through the proxy", ".docs 1400 rows", ".queries 225",
		"dataset from SQL on the branch", "  bow     [=====] succeeded in ", "  char    [=====] succeeded in ", "... 215 more", "A/B: hash-bow (A) vs hash-char (B)", "95% CI", "ef_search sweep", "ef-ef10 ", "ef-ef80 "} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	var page struct{ Branches []struct{ Name string } }
	s.must(200, "GET", "/v1/projects/demo/branches", nil, &page)
	if len(page.Branches) != 1 || page.Branches[0].Name != "main" {
		t.Errorf("demo's branches after the run (forks left behind?): %+v", page.Branches)
	}
	var q struct {
		Results []struct{ Rows [][]any }
	}
	s.must(200, "POST", "/v1/projects/demo/branches/main/query", map[string]any{"sql": "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')", "read_only": true}, &q)
	if len(q.Results) != 1 || fmt.Sprint(q.Results[0].Rows) != "[[3]]" {
		t.Errorf("tables on demo/main after the run: %+v (want the 3 loaded)", q.Results)
	}

	out, errOut, code = run(t, ctx, "demo", "--server", s.http, "--dataset", cranfield)
	if code != 0 || !strings.Contains(out, "using the existing project demo") || !strings.Contains(out, "demo/main already holds") {
		t.Errorf("second demo: exit %d\n%s%s", code, out, errOut)
	}
	// A schema of the dataset's name that holds something else is not
	// replaced.
	s.must(201, "POST", "/v1/projects", map[string]any{"name": "mine"}, nil)
	s.must(200, "POST", "/v1/projects/mine/branches/main/query", map[string]any{"sql": "CREATE SCHEMA cranfield; CREATE TABLE cranfield.docs (id int)"}, nil)
	if _, errOut, code := run(t, ctx, "demo", "--server", s.http, "--dataset", cranfield, "--project", "mine"); code != exitConflict || !strings.Contains(errOut, "schema cranfield that is not this dataset") {
		t.Errorf("demo over a user's schema: exit %d %s", code, errOut)
	}
	if _, _, code := run(t, ctx, "demo", "--server", s.http, "--dataset", t.TempDir()); code != exitBadInput {
		t.Errorf("demo on a non-BEIR dir: exit %d", code)
	}
}
