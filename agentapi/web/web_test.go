package web_test

import (
	"bytes"
	"encoding/xml"
	"image/png"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/plot"

	"github.com/offshootdb/offshoot/agentapi/web"
	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/experiments"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func get(t *testing.T, client *http.Client, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

func wantPage(t *testing.T, url string, status int, body string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("GET %s (%d): no %q in the page", url, status, w)
		}
	}
}

// TestUI runs the pages and the browser flows against one real cluster
// and real experiment runs on Cranfield.
func TestUI(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres (go test without -short)")
	}
	e := newEnv(t)
	ab := e.run(t, experiments.VariantSpec{Name: "bow", Embedder: "hash-bow?dims=256"},
		experiments.VariantSpec{Name: "char", Embedder: "hash-char?dims=256"})
	sweep := e.run(t, experiments.VariantSpec{Name: "hnsw", Embedder: "hash-bow?dims=64",
		Index: &experiments.IndexSpec{Type: "hnsw", M: 4, EfConstruction: 8}, Sweep: &experiments.SweepSpec{EfSearch: []int{1, 4, 40}}})
	sc, err := e.svc.CreateSchedule(e.ctx, experiments.Schedule{Name: "nightly", Cron: "0 3 * * *", Metric: "ndcg_cut_10",
		Spec: experiments.ExperimentSpec{Name: "ab", Project: "p", Base: experiments.BranchPoint{Branch: "main"},
			Dataset: experiments.DatasetSpec{BEIR: e.beir}, Variants: []experiments.VariantSpec{{Name: "bow", Embedder: "hash-bow"}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("pages", func(t *testing.T) { testPages(t, e, ab, sweep, sc) })
	t.Run("browser", func(t *testing.T) { testBrowser(t, e, ab) })
	t.Run("keys", func(t *testing.T) { testKeys(t, e) })
}

func testPages(t *testing.T, e *env, ab, sweep *experiments.Run, sc *experiments.Schedule) {
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	st, _ := get(t, noRedirect, e.srv.URL+"/", "")
	if st != http.StatusFound {
		t.Errorf("GET / = %d, want 302", st)
	}
	cases := []struct {
		path   string
		status int
		want   []string
	}{
		{"/ui/", 200, []string{"Recent runs", ab.ID, `src="/ui/static/app.js"`, `<main id="main">`, `aria-label="Project p"`, `aria-label="Branches of p"`, `data-branch="feature"`, "owner=test"}},
		{"/ui/projects/p/branches", 200, []string{`<ul class="tree" aria-label="Branches of p"`, `data-branch="main"`, `data-branch="feature"`, "from main @ seq", `data-state-for="feature"`, "owner=test", "Delete", "data-confirm=", "Copy connection string", `data-field="labels"`, `data-default="owner=test, "`, `data-field="ttl"`}},
		{"/ui/projects/p/branches/feature", 200, []string{"SQL console", `id="sql-form"`, "public.items", "price", "items_name", `value="main"`, `id="log-h"`}},
		{"/ui/projects/p/branches/feature?against=main&sample_rows=5", 200, []string{`class="l-add"`, "price numeric", `id="diff-tables"`, "renamed", "new item"}},
		{"/ui/projects/p/branches/nope?against=main", 404, []string{"not found"}},
		{"/ui/projects/q/branches", 404, []string{"not found"}},
		{"/ui/projects/p/states", 200, []string{`"feature":"running"`, `"main":"running"`}},
		{"/ui/projects/q/states", 404, []string{`"error"`}},
		{"/ui/runs", 200, []string{ab.ID, sweep.ID, "ndcg_cut_10", "succeeded"}},
		{"/ui/runs?project=other", 200, []string{"No runs yet"}},
		{"/ui/runs/" + ab.ID, 200, []string{`id="variant-metrics"`, "bow", "char", "recip_rank", `id="variant-timings"`, "Storage delta", `id="compare-form"`, `id="provenance"`, "sha256", "pgvector"}},
		{"/ui/runs/" + sweep.ID, 200, []string{`id="sweep-chart"`, `id="ef-chart"`, "<svg", "Pareto-optimal", "hnsw-ef40", `id="variant-plans"`, "Index Scan", "relaxed_order", "clients)"}},
		{"/ui/runs/nope", 404, []string{"not found"}},
		{"/ui/compare?a=" + ab.ID + ":bow&b=" + ab.ID + ":char", 200, []string{`id="comparison-chart"`, `id="verdict"`, `id="measures"`, "Win / tie / loss", "Regressed queries", "A top-k", "p (Holm)", "p (BH)", "Effect d"}},
		{"/ui/compare?a=" + ab.ID + ":bow", 400, []string{"b: is required"}},
		{"/ui/schedules", 200, []string{"nightly", "0 3 * * *"}},
		{"/ui/schedules/" + sc.ID, 200, []string{"has not run yet", "ndcg_cut_10"}},
		{"/ui/nothing-here", 404, []string{"No page at"}},
		{"/ui/v1/projects", 404, []string{`"status":404`, `"title":"Not Found"`}},
		{"/ui/openapi.json", 404, []string{`"status":404`}},
		{"/ui/static/app.js", 200, []string{"sessionStorage", "Bearer"}},
		{"/ui/static/app.css", 200, []string{".tree"}},
	}
	for _, c := range cases {
		st, body := get(t, http.DefaultClient, e.srv.URL+c.path, "")
		if st != c.status {
			t.Errorf("GET %s = %d, want %d\n%s", c.path, st, c.status, clip(body))
		}
		wantPage(t, c.path, st, body, c.want...)
	}
	// The comparison marks significant measures (bow and char differ
	// clearly on Cranfield).
	_, body := get(t, http.DefaultClient, e.srv.URL+"/ui/compare?a="+ab.ID+":bow&b="+ab.ID+":char", "")
	if !strings.Contains(body, `class="significant"`) || !strings.Contains(body, `aria-label="significant"`) {
		t.Errorf("comparison page has no significance marks")
	}
}

func clip(s string) string {
	if i := strings.Index(s, `id="page-error">`); i >= 0 {
		s = s[i:]
	}
	if len(s) > 600 {
		return s[:600] + "…"
	}
	return s
}

// testKeys: once a key exists, pages ask for it (401 with the prompt) and
// render with it.
func testKeys(t *testing.T, e *env) {
	// An admin key first (a first key without admin scope is refused);
	// revoked last, after the reader's, so that the server is keyless again.
	root, err := e.svc.CreateKey(e.ctx, experiments.KeyRequest{Name: "root", Scopes: []experiments.Scope{{Role: experiments.RoleAdmin}}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.svc.RevokeKey(e.ctx, root.ID)
	nk, err := e.svc.CreateKey(e.ctx, experiments.KeyRequest{Name: "ui", Scopes: []experiments.Scope{{Role: experiments.RoleRead, Project: "p"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.svc.RevokeKey(e.ctx, nk.ID)
	st, body := get(t, http.DefaultClient, e.srv.URL+"/ui/runs", "")
	if st != http.StatusUnauthorized || !strings.Contains(body, `data-needs-key="1"`) || !strings.Contains(body, `id="api-key"`) {
		t.Errorf("without key: %d %s", st, clip(body))
	}
	st, body = get(t, http.DefaultClient, e.srv.URL+"/ui/runs", nk.Token)
	if st != http.StatusOK || strings.Contains(body, "data-needs-key") {
		t.Errorf("with key: %d %s", st, clip(body))
	}
	st, _ = get(t, http.DefaultClient, e.srv.URL+"/ui/runs", "osk_wrong")
	if st != http.StatusUnauthorized {
		t.Errorf("wrong key: %d", st)
	}
	// Mutations go through the API, which refuses them without a key.
	res, err := http.Post(e.srv.URL+"/v1/projects/p/branches/main/query", "application/json", strings.NewReader(`{"sql":"CREATE TABLE x()"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("query without key: %d", res.StatusCode)
	}
}

func ptr[T any](v T) *T { return &v }

func testComparison() *experiments.RunComparison {
	return &experiments.RunComparison{A: "r1:a", B: "r1:b", Comparison: &evals.Comparison{Alpha: 0.05, Primary: "ndcg_cut_10",
		Measures: []evals.MeasureComparison{
			{Measure: "ndcg_cut_10", MeanA: 0.3, MeanB: 0.4, Delta: 0.1, CILow: 0.05, CIHigh: 0.15, P: 0.001, Significant: true},
			{Measure: "recall_10", MeanA: 0.5, MeanB: 0.49, Delta: -0.01, CILow: -0.04, CIHigh: 0.02, P: 0.6},
			{Measure: "recip_rank", MeanA: 0.5, MeanB: 0.42, Delta: -0.08, CILow: -0.12, CIHigh: -0.03, P: 0.01, Significant: true},
		}}}
}

func TestCharts(t *testing.T) {
	cmp, err := web.ComparisonChart(testComparison())
	if err != nil {
		t.Fatal(err)
	}
	sweep, err := web.SweepChart([]experiments.SweepPoint{{Variant: "ef10", Recall: 0.8, QPS: 900, Pareto: true},
		{Variant: "ef40", Recall: 0.95, QPS: 500, Pareto: true}, {Variant: "bad", Recall: 0.7, QPS: 400}})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 1, 3, 0, 0, 0, time.UTC)
	var hist []experiments.HistoryPoint
	for i := range 5 {
		hist = append(hist, experiments.HistoryPoint{Run: "r", Time: t0.Add(time.Duration(i) * 24 * time.Hour), Baseline: i == 0, Regression: i == 3,
			Metrics: map[string]map[string]float64{"bow": {"ndcg_cut_10": 0.4 - 0.05*float64(i%4)}}})
	}
	trend, err := web.TrendChart(hist, "ndcg_cut_10")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := web.TrendChart(hist, "nope"); err == nil {
		t.Error("trend chart of a missing metric: no error")
	}
	ef, err := web.EfSearchChart(&experiments.Run{Variants: []experiments.VariantRun{
		{Name: "h-ef10", Status: experiments.StatusSucceeded, ANNRecall: ptr(0.8), Spec: experiments.VariantSpec{Embedder: "hash-bow", Index: &experiments.IndexSpec{Type: "hnsw", M: 16}, Search: experiments.SearchSpec{EfSearch: 10}}},
		{Name: "h-ef40", Status: experiments.StatusSucceeded, ANNRecall: ptr(0.97), Spec: experiments.VariantSpec{Embedder: "hash-bow", Index: &experiments.IndexSpec{Type: "hnsw", M: 16}, Search: experiments.SearchSpec{EfSearch: 40}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := web.EfSearchChart(&experiments.Run{}); err == nil {
		t.Error("ef_search chart without variants: no error")
	}
	if _, err := web.SweepChart(nil); err == nil {
		t.Error("empty sweep chart: no error")
	}
	dir := os.Getenv("TEST_OUTPUT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	for name, p := range map[string]*plot.Plot{"comparison": cmp, "sweep": sweep, "trend": trend, "ef_search": ef} {
		var svg bytes.Buffer
		if err := web.WriteChart(&svg, p, "svg"); err != nil {
			t.Fatal(err)
		}
		var root struct {
			XMLName xml.Name
			Width   string `xml:"width,attr"`
			Height  string `xml:"height,attr"`
		}
		dec := xml.NewDecoder(bytes.NewReader(svg.Bytes()))
		if err := dec.Decode(&root); err != nil {
			t.Fatalf("%s: svg does not parse: %v", name, err)
		}
		if root.XMLName.Local != "svg" || root.Width != "600pt" || root.Height != "360pt" {
			t.Errorf("%s: svg root %s %sx%s, want svg 600pt x 360pt", name, root.XMLName.Local, root.Width, root.Height)
		}
		path := filepath.Join(dir, name+".png")
		if err := web.SaveChart(path, p); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: png: %v", name, err)
		}
		if b := img.Bounds(); b.Dx() != 800 || b.Dy() != 480 {
			t.Errorf("%s: png %dx%d, want 800x480", name, b.Dx(), b.Dy())
		}
		if err := web.SaveChart(filepath.Join(dir, name+".svg"), p); err != nil {
			t.Fatal(err)
		}
	}
	if err := web.SaveChart(filepath.Join(dir, "x.gif"), cmp); err == nil {
		t.Error("gif: no error")
	}
	// The significance marks are drawn: two significant measures, two stars.
	var svg bytes.Buffer
	if err := web.WriteChart(&svg, cmp, "svg"); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(svg.String(), ">*</text>"); n != 2 {
		t.Errorf("comparison chart has %d significance marks, want 2", n)
	}
}
