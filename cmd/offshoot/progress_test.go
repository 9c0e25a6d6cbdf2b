package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/offshootdb/offshoot/experiments"
)

// TestRunProgress: off a terminal, a variant's bar is printed again only
// when it changes; bars show phases done, in progress and failed.
func TestRunProgress(t *testing.T) {
	var out bytes.Buffer
	p := newRunProgress(&out)
	v := func(name string, st experiments.RunStatus, phase, err string) experiments.VariantRun {
		return experiments.VariantRun{Name: name, Status: st, Phase: phase, Error: err}
	}
	p.update(&experiments.Run{Variants: []experiments.VariantRun{v("a", experiments.StatusRunning, "fork", ""), v("bb", experiments.StatusQueued, "", "")}})
	p.update(&experiments.Run{Variants: []experiments.VariantRun{v("a", experiments.StatusRunning, "fork", ""), v("bb", experiments.StatusQueued, "", "")}})
	p.update(&experiments.Run{Variants: []experiments.VariantRun{v("a", experiments.StatusRunning, "index", ""), v("bb", experiments.StatusQueued, "", "")}})
	building := v("a", experiments.StatusRunning, "index", "")
	eta := 80.0
	building.Progress = &experiments.PhaseProgress{Unit: "tuples", Done: 450000, Total: 1000000, ETASeconds: &eta}
	p.update(&experiments.Run{Variants: []experiments.VariantRun{building, v("bb", experiments.StatusQueued, "", "")}})
	done := v("a", experiments.StatusSucceeded, "", "")
	done.Timings.Fork, done.Timings.Eval = 2, 1000
	p.update(&experiments.Run{Variants: []experiments.VariantRun{done, v("bb", experiments.StatusFailed, "load", "ingest: disk full")}})
	want := []string{
		"  a  [>    ] fork",
		"  bb [     ] queued",
		"  a  [===> ] index",
		"  a  [===> ] index 40%",
		"  a  [=====] succeeded in 1.002s",
		"  bb [==x  ] failed: ingest: disk full",
	}
	if got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("progress lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestPhaseProgress(t *testing.T) {
	eta := 80.0
	for _, tc := range []struct {
		p      *experiments.PhaseProgress
		coarse bool
		want   string
	}{
		{nil, false, ""},
		{&experiments.PhaseProgress{Unit: "blocks"}, false, ""},
		{&experiments.PhaseProgress{Unit: "tuples", Done: 450000, Total: 1000000, ETASeconds: &eta}, false, "  45% (450000/1000000 tuples, ETA 1m20s)"},
		{&experiments.PhaseProgress{Unit: "docs", Done: 10, Total: 20}, false, "  50% (10/20 docs)"},
		{&experiments.PhaseProgress{Unit: "tuples", Done: 450000, Total: 1000000, ETASeconds: &eta}, true, " 40%"},
		{&experiments.PhaseProgress{Unit: "docs", Done: 30, Total: 20}, true, " 100%"},
	} {
		if got := phaseProgress(tc.p, tc.coarse); got != tc.want {
			t.Errorf("phaseProgress(%+v, %v) = %q, want %q", tc.p, tc.coarse, got, tc.want)
		}
	}
}
