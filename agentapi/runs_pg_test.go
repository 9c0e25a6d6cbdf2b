package agentapi

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/offshootdb/offshoot/evals/evalstest"
	"github.com/offshootdb/offshoot/experiments"
	"github.com/offshootdb/offshoot/experiments/experimentstest"
)

// TestRunOverHTTP starts an A/B run on Cranfield through the API, polls
// it, and compares the variants as JSON and HTML.
func TestRunOverHTTP(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres")
	}
	data := evalstest.Cranfield(t)
	br := experimentstest.NewTemplateBranches(t)
	ctx := context.Background()
	svc, err := experiments.New(experiments.Config{ControlDir: t.TempDir(), Connector: br, Branches: br, DatasetsDir: evalstest.DatasetsDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Open(ctx); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
		svc.Close()
	})
	e := &env{url: "http://" + ln.Addr().String(), svc: svc, srv: srv}

	spec := map[string]any{"name": "ab", "project": "p", "base": map[string]any{"branch": "main"},
		"dataset": map[string]any{"beir": data}, "metrics": []string{"ndcg_cut.10"}, "concurrency": 2,
		"variants": []any{map[string]any{"name": "bow", "embedder": "hash-bow?dims=64"}, map[string]any{"name": "rp", "embedder": "hash-rp?dims=64"}}}
	var run experiments.Run
	if code, _ := e.call(t, "POST", "/v1/runs", "", spec, &run); code != http.StatusAccepted || run.ID == "" {
		t.Fatalf("start: %d %+v", code, run)
	}
	// Follow the run's events until it is done.
	ev, err := http.Get(e.url + "/v1/runs/" + run.ID + "/events")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(ev.Body)
	ev.Body.Close()
	if ev.Header.Get("Content-Type") != "text/event-stream" || !strings.Contains(string(body), "event: progress\n") ||
		!strings.Contains(string(body), `"phase":"`) || !strings.Contains(string(body), "event: done\ndata: {") {
		t.Errorf("events: %s %.300s", ev.Header.Get("Content-Type"), body)
	}
	e.call(t, "GET", "/v1/runs/"+run.ID+"?results=false", "", nil, &run)
	if run.Status != experiments.StatusSucceeded || len(run.Variants) != 2 || run.Variants[0].Metrics["ndcg_cut_10"] <= 0 {
		t.Fatalf("run: %s %q %+v", run.Status, run.Error, run.Variants)
	}
	var cmp experiments.RunComparison
	if code, _ := e.call(t, "GET", "/v1/runs/"+run.ID+":bow/compare/"+run.ID+":rp", "", nil, &cmp); code != http.StatusOK || cmp.Comparison == nil || cmp.Comparison.Queries != 225 {
		t.Fatalf("compare: %d %+v", code, cmp)
	}
	resp, err := http.Get(e.url + "/v1/runs/compare?format=html&a=" + run.ID + ":bow&b=" + run.ID + ":rp")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("html compare: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
