package agentapi

import (
	"net/http"
	"testing"
)

// TestRunRoutes checks the run and schedule routes' validation, status
// codes and CRUD without compute (runs need branches, so starting one is
// 503 here; experiments' tests run them on Postgres).
func TestRunRoutes(t *testing.T) {
	e := start(t, nil, "", Config{})
	spec := map[string]any{"name": "ab", "project": "p", "base": map[string]any{"branch": "main"},
		"dataset":  map[string]any{"corpus_sql": "SELECT id, body FROM docs", "queries_sql": "SELECT id, q FROM qs", "qrels_sql": "SELECT q, d, g FROM judged"},
		"variants": []any{map[string]any{"name": "a", "embedder": "hash-bow?dims=64"}}}
	var prob Problem
	// A BEIR directory outside the datasets dir (none is configured here)
	// is refused before anything is opened.
	outside := map[string]any{"name": "ab", "project": "p", "base": map[string]any{"branch": "main"},
		"dataset":  map[string]any{"beir": "../../../../etc"},
		"variants": []any{map[string]any{"name": "a", "embedder": "hash-bow?dims=64"}}}
	if code, _ := e.call(t, "POST", "/v1/runs", "", outside, &prob); code != http.StatusBadRequest || prob.Field != "dataset.beir" {
		t.Errorf("dataset outside the datasets dir: %d %+v", code, prob)
	}
	bad := map[string]any{"name": "ab", "project": "p", "base": map[string]any{"branch": "main"},
		"dataset":  map[string]any{"beir": "/x"},
		"variants": []any{map[string]any{"name": "a", "embedder": "hash-bow", "index": map[string]any{"type": "btree"}}}}
	if code, _ := e.call(t, "POST", "/v1/runs", "", bad, &prob); code != http.StatusBadRequest || prob.Field != "variants[0].index.type" {
		t.Errorf("bad spec: %d %+v", code, prob)
	}
	// A lexical variant with an embedder, a hybrid naming a variant the
	// spec lacks: 400, naming the field.
	for field, v := range map[string]map[string]any{
		"variants[1].embedder":       {"name": "bm", "type": "lexical", "embedder": "hash-bow"},
		"variants[1].hybrid.lexical": {"name": "h", "type": "hybrid", "hybrid": map[string]any{"dense": "a", "lexical": "bm"}},
	} {
		lex := map[string]any{"name": "ab", "project": "p", "base": map[string]any{"branch": "main"}, "dataset": spec["dataset"],
			"variants": []any{map[string]any{"name": "a", "embedder": "hash-bow?dims=64"}, v}}
		prob = Problem{}
		if code, _ := e.call(t, "POST", "/v1/runs", "", lex, &prob); code != http.StatusBadRequest || prob.Field != field {
			t.Errorf("%s: %d %+v", field, code, prob)
		}
	}
	if code, _ := e.call(t, "POST", "/v1/runs", "", map[string]any{"nme": "x"}, &prob); code != http.StatusBadRequest || prob.Field != "nme" {
		t.Errorf("unknown field: %d %+v", code, prob)
	}
	if code, _ := e.call(t, "POST", "/v1/runs", "", spec, &prob); code != http.StatusServiceUnavailable {
		t.Errorf("run without branches: %d %+v", code, prob)
	}
	var list struct {
		Runs []any `json:"runs"`
	}
	if code, _ := e.call(t, "GET", "/v1/runs", "", nil, &list); code != http.StatusOK || list.Runs == nil {
		t.Errorf("list: %d %+v", code, list)
	}
	if code, _ := e.call(t, "GET", "/v1/runs/nope", "", nil, &prob); code != http.StatusNotFound {
		t.Errorf("get missing run: %d", code)
	}
	if code, _ := e.call(t, "POST", "/v1/runs/nope/cancel", "", nil, &prob); code != http.StatusNotFound {
		t.Errorf("cancel missing run: %d", code)
	}
	if code, _ := e.call(t, "GET", "/v1/runs/compare?b=x", "", nil, &prob); code != http.StatusBadRequest || prob.Field != "a" {
		t.Errorf("compare without a: %d %+v", code, prob)
	}

	sched := map[string]any{"name": "nightly", "cron": "every day", "spec": spec, "metric": "ndcg_cut_10"}
	if code, _ := e.call(t, "POST", "/v1/schedules", "", sched, &prob); code != http.StatusBadRequest || prob.Field != "cron" {
		t.Errorf("bad cron: %d %+v", code, prob)
	}
	sched["cron"] = "0 0 2 * * *"
	var sc struct {
		ID     string `json:"id"`
		Cron   string `json:"cron"`
		Paused bool   `json:"paused"`
	}
	if code, _ := e.call(t, "POST", "/v1/schedules", "", sched, &sc); code != http.StatusCreated || sc.ID == "" {
		t.Fatalf("create schedule: %d %+v", code, sc)
	}
	sched["paused"] = true
	if code, _ := e.call(t, "PUT", "/v1/schedules/"+sc.ID, "", sched, &sc); code != http.StatusOK || !sc.Paused {
		t.Errorf("update schedule: %d %+v", code, sc)
	}
	var scs struct {
		Schedules []any `json:"schedules"`
	}
	if code, _ := e.call(t, "GET", "/v1/schedules", "", nil, &scs); code != http.StatusOK || len(scs.Schedules) != 1 {
		t.Errorf("list schedules: %d %d", code, len(scs.Schedules))
	}
	var hist struct {
		History []any `json:"history"`
	}
	if code, _ := e.call(t, "GET", "/v1/schedules/"+sc.ID+"/history", "", nil, &hist); code != http.StatusOK || hist.History == nil {
		t.Errorf("history: %d %+v", code, hist)
	}
	if code, _ := e.call(t, "POST", "/v1/schedules/"+sc.ID+"/accept", "", map[string]any{}, &prob); code != http.StatusBadRequest || prob.Field != "run_id" {
		t.Errorf("accept without run: %d %+v", code, prob)
	}
	if code, _ := e.call(t, "DELETE", "/v1/schedules/"+sc.ID, "", nil, nil); code != http.StatusNoContent {
		t.Errorf("delete: %d", code)
	}
	if code, _ := e.call(t, "GET", "/v1/schedules/"+sc.ID, "", nil, &prob); code != http.StatusNotFound {
		t.Errorf("get deleted: %d", code)
	}
}
