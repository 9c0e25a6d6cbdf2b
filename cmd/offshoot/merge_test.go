package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/offshootdb/offshoot/experiments"
)

// TestMergeExitStatus: every command that answers with a merge exits
// by the merge's status, the same with --json as in text: 6 while
// conflicts are open (a failed merge, a preview or a session listing
// them), 0 otherwise; resolve exits 0 once its resolution is taken.
func TestMergeExitStatus(t *testing.T) {
	t.Parallel()
	merges := map[string]experiments.Merge{
		"failed":  {ID: "failed", Status: experiments.MergeConflicts, OpenConflicts: 2},
		"preview": {ID: "preview", Status: experiments.MergePreview, OpenConflicts: 1},
		"clean":   {ID: "clean", Status: experiments.MergePreview},
		"open":    {ID: "open", Status: experiments.MergeOpen, OpenConflicts: 3},
		"ready":   {ID: "ready", Status: experiments.MergeOpen},
		"merged":  {ID: "merged", Status: experiments.MergeMerged, Snapshot: "pre-merge.merged"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The merge's ID is the source branch (branch merge) or the
		// merge's own (/merges/ID[/action]).
		parts := strings.Split(r.URL.Path, "/")
		id := parts[len(parts)-1]
		switch {
		case strings.HasSuffix(r.URL.Path, "/merge"):
			id = parts[len(parts)-2]
		case strings.Contains(r.URL.Path, "/resolve"):
			id = parts[5]
		case r.Method == "POST":
			id = parts[len(parts)-2]
		}
		m, ok := merges[id]
		if !ok {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(404)
			w.Write([]byte(`{"status": 404, "title": "not found"}`))
			return
		}
		json.NewEncoder(w).Encode(m)
	}))
	defer srv.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"branch", "merge", "failed", "--into", "main"}, exitConflict},
		{[]string{"branch", "merge", "preview", "--into", "main", "--dry-run"}, exitConflict},
		{[]string{"branch", "merge", "clean", "--into", "main", "--dry-run"}, 0},
		{[]string{"branch", "merge", "open", "--into", "main", "--strategy", "manual"}, exitConflict},
		{[]string{"branch", "merge", "merged", "--into", "main"}, 0},
		{[]string{"merge", "show", "failed"}, exitConflict},
		{[]string{"merge", "show", "merged"}, 0},
		{[]string{"merge", "complete", "open"}, exitConflict},
		{[]string{"merge", "complete", "merged"}, 0},
		{[]string{"merge", "show", "ready"}, 0},
		{[]string{"merge", "resolve", "open", "c1", "ours"}, 0},
		{[]string{"merge", "show", "nosuch"}, exitNotFound},
	} {
		for _, asJSON := range []bool{false, true} {
			args := append([]string{}, tc.args...)
			if asJSON {
				args = append(args, "--json")
			}
			out, errOut, code := run(t, ctx, append(args, "--server", srv.URL)...)
			if code != tc.want {
				t.Errorf("%s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, tc.want, out, errOut)
			}
			if tc.want != exitNotFound && strings.HasPrefix(out, "{") != asJSON {
				t.Errorf("%s: printed\n%s", strings.Join(args, " "), out)
			}
		}
	}
}
