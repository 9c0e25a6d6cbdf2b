package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/experiments"
)

// synthetic is a BranchSource of n branches in a random tree.
type synthetic []Branch

func (s synthetic) ProjectBranches(context.Context, string) ([]Branch, error) { return s, nil }

func syntheticBranches(n int, seed uint64) synthetic {
	r := rand.New(rand.NewPCG(seed, seed))
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	states := []string{"running", "idle", "suspended", "stopped"}
	out := make(synthetic, n)
	for i := range out {
		b := Branch{Name: fmt.Sprintf("exp/%03d-purpose", i), Created: t0.Add(time.Duration(i) * time.Minute), State: states[r.IntN(len(states))],
			LogicalBytes: 40 << 20, DeltaBytes: int64(r.IntN(8 << 20)), Labels: map[string]string{"owner": "agent-" + fmt.Sprint(i%7)}}
		b.SharedBytes = b.LogicalBytes - b.DeltaBytes
		if i == 0 {
			b.Name = "main"
		} else {
			b.Parent = out[r.IntN(i)].Name
			b.ForkSeq, b.ForkTime = uint64(1000*i), b.Created
		}
		if i%5 == 0 {
			b.Expires = b.Created.Add(24 * time.Hour)
		}
		out[i] = b
	}
	return out
}

func syntheticRuns(n int) []runRow {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	out := make([]runRow, n)
	for i := range out {
		r := experiments.Run{ID: fmt.Sprintf("20261101-%06d-abcdef", i), Experiment: "ab", Project: "p", Status: experiments.StatusSucceeded, CreatedAt: t0.Add(time.Duration(i) * time.Hour),
			Spec: experiments.ExperimentSpec{Metrics: []string{"ndcg_cut.10"}}}
		for _, v := range []string{"bow", "char", "hnsw-ef40"} {
			r.Variants = append(r.Variants, experiments.VariantRun{Name: v, Status: experiments.StatusSucceeded, Measures: []string{"ndcg_cut_10", "recall_10"},
				Metrics: map[string]float64{"ndcg_cut_10": 0.3 + float64(i%10)/100, "recall_10": 0.5}, Latency: evals.LatencyStats{QPS: 900}})
		}
		out[i] = headline(r)
	}
	return out
}

func newBenchUI(tb testing.TB, src BranchSource) *UI {
	svc, err := experiments.New(experiments.Config{ControlDir: filepath.Join(tb.TempDir(), "control")})
	if err != nil {
		tb.Fatal(err)
	}
	if err := svc.Open(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { svc.Close() })
	u, err := New(Config{Service: svc, Branches: src, Caller: func(r *http.Request) (context.Context, error) {
		return experiments.WithCaller(r.Context(), experiments.LocalCaller), nil
	}})
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

// TestLargePages builds the branch tree of 500 branches and the list of
// 100 runs and checks they are complete (timings are for the benchmark).
func TestLargePages(t *testing.T) {
	const seed = 42
	t.Logf("seed %d", seed)
	u := newBenchUI(t, syntheticBranches(500, seed))
	rec := httptest.NewRecorder()
	start := time.Now()
	u.ServeHTTP(rec, httptest.NewRequest("GET", "/ui/projects/p/branches", nil))
	t.Logf("branch tree of 500 branches: %d bytes in %v", rec.Body.Len(), time.Since(start))
	body := rec.Body.String()
	if rec.Code != 200 || strings.Count(body, `<li data-branch=`) != 500 || strings.Count(body, "data-state-for=") != 500 {
		t.Fatalf("tree page: %d, %d items", rec.Code, strings.Count(body, `<li data-branch=`))
	}
	// Every branch is nested under its parent.
	if strings.Count(body, `<ul aria-label="Forks of`) == 0 {
		t.Error("no nested children")
	}
	rec = httptest.NewRecorder()
	start = time.Now()
	u.render(rec, nil, 200, "runs", &view{Title: "runs", Data: runsPage{Runs: syntheticRuns(100)}})
	t.Logf("list of 100 runs: %d bytes in %v", rec.Body.Len(), time.Since(start))
	if n := strings.Count(rec.Body.String(), `<a href="/ui/runs/`); n != 100 {
		t.Errorf("runs page lists %d runs, want 100", n)
	}
}

// BenchmarkPages renders the 500-branch tree and the 100-run list, each
// against the baseline of JSON-encoding the same data (what the API
// answers). Metrics: html-ms/page, json-ms/page and the ratio html/json.
func BenchmarkPages(b *testing.B) {
	bs := syntheticBranches(500, 42)
	u := newBenchUI(b, bs)
	runs := syntheticRuns(100)
	for _, c := range []struct {
		name string
		html func()
		data any
	}{
		{"branches500", func() {
			u.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/ui/projects/p/branches", nil))
		}, bs},
		{"runs100", func() {
			u.render(httptest.NewRecorder(), nil, 200, "runs", &view{Title: "runs", Data: runsPage{Runs: runs}})
		}, runs},
	} {
		b.Run(c.name, func(b *testing.B) {
			var html, js time.Duration
			for b.Loop() {
				t0 := time.Now()
				c.html()
				t1 := time.Now()
				if err := json.NewEncoder(io.Discard).Encode(c.data); err != nil {
					b.Fatal(err)
				}
				html, js = html+t1.Sub(t0), js+time.Since(t1)
			}
			n := float64(b.N)
			b.ReportMetric(float64(html.Microseconds())/1000/n, "html-ms/page")
			b.ReportMetric(float64(js.Microseconds())/1000/n, "json-ms/page")
			b.ReportMetric(float64(html)/float64(js), "html/json")
		})
	}
}
