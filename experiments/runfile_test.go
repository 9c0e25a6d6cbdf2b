package experiments

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/evals/evalstest"
)

// copyDir copies the regular files below src to dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// oracleRun is an external system that knows the qrels: each judged
// query's relevant documents by grade, then 20 unjudged corpus documents;
// it retrieves 30 per query, more than the run's k.
func oracleRun(ds *evals.Dataset) *evals.Run {
	run := &evals.Run{Name: "oracle", Results: map[string][]evals.ScoredDoc{}}
	for _, q := range ds.Queries {
		var docs []evals.ScoredDoc
		for d, g := range ds.Qrels[q.ID] {
			if g > 0 {
				docs = append(docs, evals.ScoredDoc{DocID: d, Score: float64(100 + g)})
			}
		}
		for i := 0; len(docs) < 30 && i < len(ds.Corpus); i++ {
			if _, judged := ds.Qrels[q.ID][ds.Corpus[i].ID]; !judged {
				docs = append(docs, evals.ScoredDoc{DocID: ds.Corpus[i].ID, Score: 1}) // ties: docno order decides
			}
		}
		run.Results[q.ID] = docs
	}
	return run
}

// TestRunFileExportImport: a spec's run_file variant and an imported run
// are scored as the run's own variants are; exporting a variant and
// scoring the file as trec_eval -c does gives the recorded metrics
// exactly; an imported run compares with p-values; run files outside the
// datasets directory are refused.
func TestRunFileExportImport(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres")
	}
	e := newRunEnv(t)
	// A datasets directory of our own, holding Cranfield and a run file.
	dir := t.TempDir()
	copyDir(t, evalstest.Cranfield(t), filepath.Join(dir, "cranfield"))
	ds, err := evals.LoadBEIR(filepath.Join(dir, "cranfield"), "test")
	if err != nil {
		t.Fatal(err)
	}
	var oracle bytes.Buffer
	if err := evals.WriteRun(&oracle, oracleRun(ds)); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "runs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "runs", "oracle.run"), oracle.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(t.TempDir(), "outside.run"), oracle.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	e.svc.cfg.DatasetsDir = dir

	sp := e.spec(VariantSpec{Name: "bow", Embedder: "hash-bow?dims=64"},
		VariantSpec{Name: "ext", Type: VariantRunFile, RunFile: "runs/oracle.run"})
	sp.Dataset.BEIR = "cranfield"
	// map and bpref see the whole ranking: they tell a file cut to k from one that is not.
	sp.Metrics = append(sp.Metrics, "map", "bpref")
	r := e.run(t, sp)
	if r.Status != StatusSucceeded {
		t.Fatalf("run %s: %s %+v", r.Status, r.Error, r.Variants)
	}
	measures, err := evals.ParseMeasures(r.Spec.Metrics...)
	if err != nil {
		t.Fatal(err)
	}
	// scoreFile evaluates a TREC file as `offshoot eval score -c -M k` would.
	scoreFile := func(t *testing.T, b []byte, maxDocs int) *evals.Result {
		t.Helper()
		run, err := evals.ReadRun(bytes.NewReader(b), "export")
		if err != nil {
			t.Fatal(err)
		}
		res, err := evals.Evaluate(ds.Qrels, run, measures, evals.Options{Complete: true, MaxResults: maxDocs})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	sameMetrics := func(t *testing.T, what string, got *evals.Result, v *VariantRun) {
		t.Helper()
		for i, m := range got.Measures {
			if got.All[i] != v.Metrics[m.String()] {
				t.Errorf("%s: %s = %v, recorded %v", what, m, got.All[i], v.Metrics[m.String()])
			}
		}
		for _, q := range v.Results {
			if q.Values == nil {
				continue
			}
			for i := range got.Measures {
				if g := got.PerQuery[q.Query][i]; g != q.Values[i] {
					t.Errorf("%s: query %s %s = %v, recorded %v", what, q.Query, got.Measures[i], g, q.Values[i])
				}
			}
		}
	}
	ext := &r.Variants[1]
	t.Run("run_file variant", func(t *testing.T) {
		if ext.Status != StatusSucceeded || ext.Branch != "" || len(ext.Results) != 225 {
			t.Fatalf("ext variant: %s %q branch %q, %d results", ext.Status, ext.Error, ext.Branch, len(ext.Results))
		}
		// Scored like the run's own variants: top k per query, -c.
		sameMetrics(t, "run_file", scoreFile(t, oracle.Bytes(), r.Spec.K), ext)
		if ext.Metrics["ndcg_cut_10"] < 0.9 {
			t.Errorf("oracle ndcg_cut_10 %v", ext.Metrics["ndcg_cut_10"])
		}
	})
	t.Run("export trec", func(t *testing.T) {
		for i := range r.Variants {
			v := &r.Variants[i]
			var b bytes.Buffer
			if err := e.svc.ExportRun(e.ctx, r.ID+":"+v.Name, "", &b); err != nil {
				t.Fatal(err)
			}
			if first, _, _ := strings.Cut(b.String(), "\n"); !strings.HasSuffix(first, " "+v.Name) || !strings.Contains(first, " Q0 ") {
				t.Errorf("%s: first line %q", v.Name, first)
			}
			sameMetrics(t, "export of "+v.Name, scoreFile(t, b.Bytes(), 0), v)
		}
	})
	t.Run("export jsonl", func(t *testing.T) {
		var b bytes.Buffer
		if err := e.svc.ExportRun(e.ctx, r.ID+":bow", ExportJSONL, &b); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(b.String()), "\n")
		var first struct {
			Query    string             `json:"query"`
			Hits     []RankedDoc        `json:"hits"`
			Measures map[string]float64 `json:"measures"`
		}
		if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || len(lines) != 225 || len(first.Hits) != 10 || first.Query != r.Variants[0].Results[0].Query {
			t.Fatalf("%d lines, first %+v (%v)", len(lines), first, err)
		}
		if _, ok := first.Measures["ndcg_cut_10"]; !ok {
			t.Errorf("first line without measures: %s", lines[0])
		}
		if err := e.svc.ExportRun(e.ctx, r.ID+":bow", "csv", &b); !errors.Is(err, ErrInvalid) {
			t.Errorf("format csv: %v", err)
		}
		if err := e.svc.ExportRun(e.ctx, r.ID, "", &b); !errors.Is(err, ErrInvalid) {
			t.Errorf("two variants, none named: %v", err)
		}
	})
	t.Run("import and compare", func(t *testing.T) {
		v, err := e.svc.ImportRun(e.ctx, ImportRequest{Run: r.ID, Name: "imported", Source: "oracle.run"}, bytes.NewReader(oracle.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		if v.Spec.Type != VariantRunFile || v.Spec.RunFile != "oracle.run" {
			t.Errorf("imported spec %+v", v.Spec)
		}
		// The same file, imported or named in the spec, scores the same.
		for m, x := range ext.Metrics {
			if v.Metrics[m] != x {
				t.Errorf("imported %s = %v, run_file variant %v", m, v.Metrics[m], x)
			}
		}
		got, err := e.svc.GetRun(e.ctx, r.ID)
		if err != nil || len(got.Variants) != 3 || got.Variants[2].Name != "imported" || len(got.Variants[2].Results) != 225 {
			t.Fatalf("run after import: %v %d variants", err, len(got.Variants))
		}
		cmp, err := e.svc.CompareRuns(e.ctx, CompareRequest{A: r.ID + ":bow", B: r.ID + ":imported", Metric: "ndcg_cut_10"})
		if err != nil {
			t.Fatal(err)
		}
		m, ok := cmp.Comparison.Measure("ndcg_cut_10")
		if !ok || m.Delta <= 0 || !m.Significant || m.P >= 0.05 || cmp.Verdict != "better" {
			t.Errorf("bow vs imported oracle: %+v, verdict %s", m, cmp.Verdict)
		}
	})
	t.Run("import errors", func(t *testing.T) {
		for _, c := range []struct {
			name, body string
			want       error
		}{
			{"imported", oracle.String(), ErrConflict}, // name taken
			{"Bad Name", oracle.String(), ErrInvalid},  // name rules
			{"garbage", "q1 Q0 d1 1 notanumber x\n", ErrInvalid},
			{"strangers", "nosuchquery Q0 d1 1 1.0 x\n", ErrInvalid}, // no query of the run
		} {
			_, err := e.svc.ImportRun(e.ctx, ImportRequest{Run: r.ID, Name: c.name}, strings.NewReader(c.body))
			if !errors.Is(err, c.want) {
				t.Errorf("%s: %v, want %v", c.name, err, c.want)
			}
		}
		if _, err := e.svc.ImportRun(e.ctx, ImportRequest{Run: "nosuchrun", Name: "x"}, strings.NewReader(oracle.String())); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown run: %v", err)
		}
	})
	t.Run("run files outside the datasets directory", func(t *testing.T) {
		outside, _ := filepath.Abs(filepath.Join(dir, "..", "outside.run"))
		if err := os.Symlink(outside, filepath.Join(dir, "runs", "link.run")); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"../outside.run", outside, "runs/link.run", "runs/missing.run", "runs"} {
			sp := e.spec(VariantSpec{Name: "ext", Type: VariantRunFile, RunFile: f})
			sp.Dataset.BEIR = "cranfield"
			_, err := e.svc.StartRun(e.ctx, sp)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "variants[0].run_file" {
				t.Errorf("run_file %q: %v", f, err)
			}
		}
	})
}

// TestRunFileSpecValidation: a run_file variant takes a name and a file
// and nothing else; run_file needs the type.
func TestRunFileSpecValidation(t *testing.T) {
	base := func(v VariantSpec) ExperimentSpec {
		return ExperimentSpec{Name: "x", Project: "p", Base: BranchPoint{Branch: "main"}, Dataset: DatasetSpec{BEIR: "d"}, Variants: []VariantSpec{v}}
	}
	for _, c := range []struct {
		v     VariantSpec
		field string // "" when valid
	}{
		{VariantSpec{Name: "a", Type: VariantRunFile, RunFile: "r.run"}, ""},
		{VariantSpec{Name: "a", Type: VariantRunFile}, "variants[0].run_file"},
		{VariantSpec{Name: "a", Type: VariantRunFile, RunFile: "r.run", Embedder: "hash-bow"}, "variants[0]"},
		{VariantSpec{Name: "a", Type: VariantRunFile, RunFile: "r.run", Search: SearchSpec{EfSearch: 10}}, "variants[0]"},
		{VariantSpec{Name: "a", Embedder: "hash-bow", RunFile: "r.run"}, "variants[0].run_file"},
		{VariantSpec{Name: "a", Type: "bm25", RunFile: "r.run"}, "variants[0].type"},
	} {
		sp := base(c.v)
		err := sp.Validate()
		var fe *FieldError
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%+v: %v", c.v, err)
		case c.field != "" && (!errors.As(err, &fe) || fe.Field != c.field):
			t.Errorf("%+v: %v, want a %s error", c.v, err, c.field)
		}
	}
	// iprec_at_recall's levels are not rank cutoffs: k stays 10.
	sp := base(VariantSpec{Name: "a", Embedder: "hash-bow"})
	sp.Metrics = []string{"iprec_at_recall", "P.5"}
	if err := sp.Validate(); err != nil || sp.K != 10 {
		t.Errorf("k %d (%v), want 10", sp.K, err)
	}
}

// runFilesDir makes e's datasets directory one of the test's own, with a
// copy of Cranfield (dir/cranfield, loaded as ds) and the oracle's run
// file (dir/runs/oracle.run).
func runFilesDir(t *testing.T, e *runEnv) (dir string, ds *evals.Dataset) {
	t.Helper()
	dir = t.TempDir()
	copyDir(t, evalstest.Cranfield(t), filepath.Join(dir, "cranfield"))
	ds, err := evals.LoadBEIR(filepath.Join(dir, "cranfield"), "test")
	if err != nil {
		t.Fatal(err)
	}
	var oracle bytes.Buffer
	if err := evals.WriteRun(&oracle, oracleRun(ds)); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "runs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "runs", "oracle.run"), oracle.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	e.svc.cfg.DatasetsDir = dir
	return dir, ds
}

// importTarget runs the one run_file variant "ext" of runFilesDir's
// oracle (no fork): a finished run to import into.
func importTarget(t *testing.T, e *runEnv) (r *Run, dir string, ds *evals.Dataset) {
	t.Helper()
	dir, ds = runFilesDir(t, e)
	sp := e.spec(VariantSpec{Name: "ext", Type: VariantRunFile, RunFile: "runs/oracle.run"})
	sp.Dataset.BEIR = "cranfield"
	r = e.run(t, sp)
	if r.Status != StatusSucceeded {
		t.Fatalf("run %s: %s %+v", r.Status, r.Error, r.Variants)
	}
	return r, dir, ds
}

// TestImportRace: imports of different files under one name into one run
// at once: one is recorded, every other is ErrConflict, and the stored
// rankings are the recorded one's.
func TestImportRace(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres")
	}
	e := newRunEnv(t)
	r, _, ds := importTarget(t, e)
	// Two systems: the oracle, and the oracle upside down.
	files := make([][]byte, 2)
	for i := range files {
		run := oracleRun(ds)
		if i == 1 {
			for _, docs := range run.Results {
				for j := range docs {
					docs[j].Score = -docs[j].Score
				}
			}
		}
		var b bytes.Buffer
		if err := evals.WriteRun(&b, run); err != nil {
			t.Fatal(err)
		}
		files[i] = b.Bytes()
	}
	const n = 8
	got := make([]*VariantRun, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			got[i], errs[i] = e.svc.ImportRun(e.ctx, ImportRequest{Run: r.ID, Name: "imported", Source: fmt.Sprint(i)},
				bytes.NewReader(files[i%2]))
		}()
	}
	close(start)
	wg.Wait()
	var won *VariantRun
	for i, err := range errs {
		switch {
		case err == nil && won != nil:
			t.Errorf("import %d succeeded too", i)
		case err == nil:
			won = got[i]
		case !errors.Is(err, ErrConflict):
			t.Errorf("import %d: %v, want ErrConflict", i, err)
		}
	}
	if won == nil {
		t.Fatal("no import succeeded")
	}
	cur, err := e.svc.GetRun(e.ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	var rec []VariantRun
	for _, v := range cur.Variants {
		if v.Name == "imported" {
			rec = append(rec, v)
		}
	}
	if len(rec) != 1 || rec[0].Spec.RunFile != won.Spec.RunFile || !maps.Equal(rec[0].Metrics, won.Metrics) {
		for _, v := range rec {
			t.Errorf("recorded: from %s, %v", v.Spec.RunFile, v.Metrics)
		}
		t.Fatalf("the import that succeeded: from %s, %v", won.Spec.RunFile, won.Metrics)
	}
	if len(rec[0].Results) != len(won.Results) {
		t.Fatalf("%d rankings stored, %d imported", len(rec[0].Results), len(won.Results))
	}
	for i, q := range rec[0].Results {
		if w := won.Results[i]; q.Query != w.Query || !slices.Equal(q.Hits, w.Hits) || !slices.Equal(q.Values, w.Values) {
			t.Fatalf("query %s: stored %v, imported %v", q.Query, q.Hits, w.Hits)
		}
	}
}

// TestImportDatasetChanged: a run file is not scored against judgments
// that changed since the run, even when their counts did not: the import
// is ErrConflict and records nothing.
func TestImportDatasetChanged(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres")
	}
	e := newRunEnv(t)
	r, dir, ds := importTarget(t, e)
	var oracle bytes.Buffer
	if err := evals.WriteRun(&oracle, oracleRun(ds)); err != nil {
		t.Fatal(err)
	}
	// One grade changes: as many judgments, of as many queries.
	qrels := filepath.Join(dir, "cranfield", "qrels", "test.tsv")
	b, err := os.ReadFile(qrels)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(b), "\n1\t184\t3\n", "\n1\t184\t1\n", 1)
	if changed == string(b) {
		t.Fatal("qrels line 1 184 3 not found")
	}
	if err := os.WriteFile(qrels, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.ImportRun(e.ctx, ImportRequest{Run: r.ID, Name: "imported"}, bytes.NewReader(oracle.Bytes()))
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "judgments") {
		t.Errorf("import after the qrels changed: %v, want ErrConflict naming the judgments", err)
	}
	if cur, err := e.svc.GetRunStatus(e.ctx, r.ID); err != nil || len(cur.Variants) != 1 {
		t.Errorf("run after a refused import: %v, %d variants", err, len(cur.Variants))
	}
}

// TestCompareDefaultMetric: without a metric, a comparison's primary
// measure is the first the spec names, not the first in trec_eval's
// order.
func TestCompareDefaultMetric(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres")
	}
	e := newRunEnv(t)
	runFilesDir(t, e)
	sp := e.spec(VariantSpec{Name: "a", Type: VariantRunFile, RunFile: "runs/oracle.run"},
		VariantSpec{Name: "b", Type: VariantRunFile, RunFile: "runs/oracle.run"})
	sp.Dataset.BEIR = "cranfield"
	sp.Metrics = []string{"ndcg_cut.10", "recall.100"}
	r := e.run(t, sp)
	if r.Status != StatusSucceeded {
		t.Fatalf("run %s: %s %+v", r.Status, r.Error, r.Variants)
	}
	rc, err := e.svc.CompareRuns(e.ctx, CompareRequest{A: r.ID + ":a", B: r.ID + ":b"})
	if err != nil {
		t.Fatal(err)
	}
	if rc.Comparison.Primary != "ndcg_cut_10" {
		t.Errorf("primary measure %q, want ndcg_cut_10 (the spec's first)", rc.Comparison.Primary)
	}
}
