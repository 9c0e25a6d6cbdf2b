package web

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/experiments"
)

// synthetic is a BranchSource of n branches in a random tree.
type synthetic []Branch

// ProjectBranches pages s in its order; the cursor is an offset.
func (s synthetic) ProjectBranches(_ context.Context, _, cursor string, limit int) (BranchesPage, error) {
	from, _ := strconv.Atoi(cursor)
	to := min(from+limit, len(s))
	pg := BranchesPage{Branches: s[from:to], Total: len(s)}
	if to < len(s) {
		pg.Next = strconv.Itoa(to)
	}
	return pg, nil
}

func (s synthetic) Branch(_ context.Context, _, name string) (Branch, error) {
	for _, b := range s {
		if b.Name == name {
			return b, nil
		}
	}
	return Branch{}, experiments.ErrNotFound
}

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

// TestLargePages builds the branch tree of 500 branches, a page of 200
// at a time, and the list of 100 runs and checks they are complete
// (timings are for the benchmark).
func TestLargePages(t *testing.T) {
	const seed = 42
	t.Logf("seed %d", seed)
	u := newBenchUI(t, syntheticBranches(500, seed))
	path := "/ui/projects/p/branches"
	var pages []int
	for path != "" {
		rec := httptest.NewRecorder()
		start := time.Now()
		u.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		body := rec.Body.String()
		n := strings.Count(body, `<li data-branch=`)
		t.Logf("%s: %d branches, %d bytes in %v", path, n, rec.Body.Len(), time.Since(start))
		if rec.Code != 200 || n != strings.Count(body, "data-state-for=") || !strings.Contains(body, ">500</span> branches") {
			t.Fatalf("tree page %s: %d, %d items", path, rec.Code, n)
		}
		// Branches are nested under their parents.
		if len(pages) == 0 && strings.Count(body, `<ul aria-label="Forks of`) == 0 {
			t.Error("no nested children")
		}
		pages = append(pages, n)
		path = ""
		if i := strings.Index(body, `<a rel="next" href="`); i >= 0 {
			rest := body[i+len(`<a rel="next" href="`):]
			path = html.UnescapeString(rest[:strings.IndexByte(rest, '"')])
		}
	}
	if fmt.Sprint(pages) != "[200 200 100]" {
		t.Errorf("pages of %v branches, want [200 200 100]", pages)
	}
	rec := httptest.NewRecorder()
	start := time.Now()
	u.render(rec, nil, 200, "runs", &view{Title: "runs", Data: runsPage{Runs: syntheticRuns(100)}})
	t.Logf("list of 100 runs: %d bytes in %v", rec.Body.Len(), time.Since(start))
	if n := strings.Count(rec.Body.String(), `<a href="/ui/runs/`); n != 100 {
		t.Errorf("runs page lists %d runs, want 100", n)
	}
}

// BenchmarkPages renders the first page of a 500-branch tree (200
// branches) and the 100-run list, each
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
		{"branches200", func() {
			u.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/ui/projects/p/branches", nil))
		}, bs[:treePage]},
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
