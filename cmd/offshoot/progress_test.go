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
		"  a  [===> ] index  45% (450000/1000000 tuples, ETA 1m20s)",
		"  a  [=====] succeeded in 1.002s",
		"  bb [==x  ] failed: ingest: disk full",
	}
	if got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("progress lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
