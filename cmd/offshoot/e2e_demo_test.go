package main

import (
	"context"
	"strings"
	"testing"

	"github.com/offshootdb/offshoot/evals/evalstest"
)

// TestE2EDemo runs `offshoot demo` against the real server binary: the
// A/B comparison and the ef_search sweep come out and the forks are gone;
// a directory that is not BEIR is refused as bad input.
func TestE2EDemo(t *testing.T) {
	s := newE2EServer(t)
	cranfield := evalstest.Cranfield(t)
	ctx := context.Background()
	out, errOut, code := run(t, ctx, "demo", "--server", s.http, "--dataset", cranfield)
	if code != 0 {
		t.Fatalf("demo: exit %d\n%s%s\n%s", code, out, errOut, s.log())
	}
	for _, want := range []string{"forked demo/base", "bow=running", "char=", "A/B: hash-bow (A) vs hash-char (B)", "95% CI", "ef_search sweep", "ef-ef10 ", "ef-ef80 "} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	var page struct{ Branches []struct{ Name string } }
	s.must(200, "GET", "/v1/projects/main/branches?prefix=exp/", nil, &page)
	if len(page.Branches) != 0 {
		t.Errorf("forks left behind: %+v", page.Branches)
	}
	if _, _, code := run(t, ctx, "demo", "--server", s.http, "--dataset", t.TempDir()); code != exitBadInput {
		t.Errorf("demo on a non-BEIR dir: exit %d", code)
	}
}
