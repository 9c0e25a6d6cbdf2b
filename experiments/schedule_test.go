package experiments

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestScheduleMetric: a schedule's metric must be a measure its spec
// evaluates and a comparison tests, in trec_eval's output name; create
// and update refuse any other with a metric FieldError listing them.
func TestScheduleMetric(t *testing.T) {
	svc, err := New(Config{ControlDir: t.TempDir(), DatasetsDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	ctx := WithCaller(context.Background(), LocalCaller)
	sc := Schedule{Name: "n", Cron: "@daily", Spec: ExperimentSpec{Name: "x", Project: "p", Base: BranchPoint{Branch: "main"},
		Dataset:  DatasetSpec{CorpusSQL: "SELECT 1", QueriesSQL: "SELECT 1", QrelsSQL: "SELECT 1"},
		Metrics:  []string{"ndcg_cut.10", "recall.10,100", "num_q", "gm_map"},
		Variants: []VariantSpec{{Name: "a", Embedder: "hash-bow"}}}}
	for _, c := range []struct {
		metric string
		ok     bool
	}{
		{"ndcg_cut_10", true},
		{"recall_100", true},
		{"", false},
		{"ndcg@10", false},
		{"ndcg_cut.10", false}, // the spec's notation, not the measure's name
		{"P_10", false},        // a measure, not one the spec evaluates
		{"num_q", false},       // a count: comparisons leave it out
		{"gm_map", false},      // so they do the geometric mean
	} {
		x := sc
		x.Metric = c.metric
		_, err := svc.CreateSchedule(ctx, x)
		var fe *FieldError
		switch {
		case c.ok && err != nil:
			t.Errorf("metric %q: %v", c.metric, err)
		case !c.ok && (!errors.As(err, &fe) || fe.Field != "metric" || !strings.Contains(fe.Reason, "recall_10, recall_100, ndcg_cut_10")):
			t.Errorf("metric %q: %v, want a metric FieldError naming the spec's measures", c.metric, err)
		}
	}
	// The default measures, when the spec names none.
	x := sc
	x.Spec.Metrics, x.Metric = nil, "P_10"
	got, err := svc.CreateSchedule(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	// An update is checked as a create: a bad metric, or measures that
	// no longer include the metric.
	bad := *got
	bad.Metric = "ndcg@10"
	if _, err := svc.UpdateSchedule(ctx, got.ID, bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("update to metric ndcg@10: %v, want ErrInvalid", err)
	}
	bad = *got
	bad.Spec.Metrics = []string{"ndcg_cut.10"}
	if _, err := svc.UpdateSchedule(ctx, got.ID, bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("update to measures without P_10: %v, want ErrInvalid", err)
	}
	if cur, err := svc.GetSchedule(ctx, got.ID); err != nil || cur.Metric != "P_10" || len(cur.Spec.Metrics) == 1 {
		t.Errorf("after refused updates: %v %+v", err, cur)
	}
}

// TestScheduleFailureIsRegression: a variant the baseline has succeeded
// that fails in a scheduled run, or is missing from it, is a regression
// with the reason, and so is a run that fails; each alerts the webhook.
// The variants are run files (no fork), made to fail by removing them.
func TestScheduleFailureIsRegression(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres")
	}
	e := newRunEnv(t)
	dir, _ := runFilesDir(t, e)
	runs := filepath.Join(dir, "runs")
	oracle, err := os.ReadFile(filepath.Join(runs, "oracle.run"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(runs, "b.run"), oracle, 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	hooks := map[string]string{} // run → body
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var body struct {
			Run string `json:"run"`
		}
		_ = json.Unmarshal(b, &body)
		mu.Lock()
		hooks[body.Run] = string(b)
		mu.Unlock()
	}))
	defer hook.Close()
	sp := e.spec(VariantSpec{Name: "a", Type: VariantRunFile, RunFile: "runs/oracle.run"},
		VariantSpec{Name: "b", Type: VariantRunFile, RunFile: "runs/b.run"})
	sp.Dataset.BEIR = "cranfield"
	sc, err := e.svc.CreateSchedule(e.ctx, Schedule{Name: "nightly", Cron: "@every 1s", Spec: sp,
		Metric: "ndcg_cut_10", AutoAccept: true, Webhook: hook.URL})
	if err != nil {
		t.Fatal(err)
	}
	// waitRun waits for a run of the schedule whose verdict satisfies ok,
	// and for the webhook's alert of it.
	waitRun := func(what string, ok func(*Run) bool) *Run {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			rs, err := e.svc.ListRuns(e.ctx, RunFilter{ScheduleID: sc.ID})
			if err != nil {
				t.Fatal(err)
			}
			for i := range rs {
				if r := &rs[i]; r.Verdict != nil && ok(r) {
					for time.Now().Before(deadline) {
						mu.Lock()
						body := hooks[r.ID]
						mu.Unlock()
						if strings.Contains(body, `"regression":true`) {
							return r
						}
						time.Sleep(50 * time.Millisecond)
					}
					t.Fatalf("%s: run %s, but no webhook", what, r.ID)
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("timed out waiting for %s", what)
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for cur, _ := e.svc.GetSchedule(e.ctx, sc.ID); cur.BaselineRun == ""; cur, _ = e.svc.GetSchedule(e.ctx, sc.ID) {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for a baseline")
		}
		time.Sleep(100 * time.Millisecond)
	}
	verdictOf := func(r *Run, variant string) VariantVerdict {
		for _, vv := range r.Verdict.Variants {
			if vv.Variant == variant {
				return vv
			}
		}
		return VariantVerdict{}
	}

	// b fails: the run is partial, b a regression, a not.
	if err := os.Remove(filepath.Join(runs, "b.run")); err != nil {
		t.Fatal(err)
	}
	r := waitRun("b failed", func(r *Run) bool { return r.Status == StatusPartial && r.Verdict.Regression })
	if vv := verdictOf(r, "b"); !vv.Regression || !strings.Contains(vv.Reason, "failed") || !strings.Contains(vv.Reason, "b.run") {
		t.Errorf("failed variant: %+v", vv)
	}
	if vv := verdictOf(r, "a"); vv.Variant != "a" || vv.Regression {
		t.Errorf("variant that ran: %+v", vv)
	}
	if cur, _ := e.svc.GetSchedule(e.ctx, sc.ID); cur.BaselineRun == r.ID || r.Verdict.Accepted {
		t.Error("a run with a failed variant became the baseline")
	}

	// b is gone from the spec: missing, a regression.
	upd, _ := e.svc.GetSchedule(e.ctx, sc.ID)
	upd.Spec.Variants = upd.Spec.Variants[:1]
	if _, err := e.svc.UpdateSchedule(e.ctx, sc.ID, *upd); err != nil {
		t.Fatal(err)
	}
	r = waitRun("b missing", func(r *Run) bool { return r.Status == StatusSucceeded && r.Verdict.Regression })
	if vv := verdictOf(r, "b"); !vv.Regression || !strings.Contains(vv.Reason, "missing") {
		t.Errorf("missing variant: %+v", vv)
	}

	// a fails too: the run fails.
	if err := os.Remove(filepath.Join(runs, "oracle.run")); err != nil {
		t.Fatal(err)
	}
	r = waitRun("the run failed", func(r *Run) bool { return r.Status == StatusFailed })
	if !r.Verdict.Regression || !strings.Contains(r.Verdict.Reason, "the run failed") {
		t.Errorf("failed run: %+v", r.Verdict)
	}
	if vv := verdictOf(r, "a"); !vv.Regression || !strings.Contains(vv.Reason, "failed") {
		t.Errorf("failed variant of a failed run: %+v", vv)
	}
}
