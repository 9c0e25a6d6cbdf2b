package experiments

import (
	"context"
	"errors"
	"strings"
	"testing"
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
