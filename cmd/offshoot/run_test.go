package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/agentapi"
	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/evals/evalstest"
	"github.com/offshootdb/offshoot/experiments"
	"github.com/offshootdb/offshoot/experiments/experimentstest"
)

// serveAPI opens an experiment service over cfg, with a fresh ControlDir
// and a logger to the test output, and serves the HTTP API on an ephemeral
// port until the test ends; it returns the server's base URL and the
// service. Without
// cfg.Connector and cfg.Branches runs cannot start (503), everything else
// works.
func serveAPI(t *testing.T, cfg experiments.Config) (string, *experiments.Service) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	cfg.ControlDir, cfg.Logger = t.TempDir(), log
	svc, err := experiments.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	api, err := agentapi.New(agentapi.Config{Service: svc, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		svc.Close()
	})
	return "http://" + ln.Addr().String(), svc
}

func TestRunAndScheduleCLI(t *testing.T) {
	t.Parallel()
	// data/cranfield does not exist here: the CLI sends it as written
	// and the server finds it in its datasets dir.
	datasets := t.TempDir()
	if err := os.MkdirAll(filepath.Join(datasets, "data", "cranfield"), 0o755); err != nil {
		t.Fatal(err)
	}
	srv, _ := serveAPI(t, experiments.Config{DatasetsDir: datasets})
	ctx := context.Background()
	cli := func(args ...string) (string, string, int) {
		t.Helper()
		return run(t, ctx, append(args, "--server", srv)...)
	}
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	spec := "name: ab\nproject: p\nbase: {branch: main}\ndataset: {beir: data/cranfield}\nvariants:\n  - {name: a, embedder: \"hash-bow?dims=64\"}\n"
	good := write("good.yaml", spec)
	bad := write("bad.yaml", strings.Replace(spec, "hash-bow?dims=64", "", 1))

	if _, errOut, code := cli("run", "start", bad); code != exitBadInput || !strings.Contains(errOut, "variants[0].embedder") {
		t.Errorf("bad spec: exit %d %s", code, errOut)
	}
	if _, errOut, code := cli("run", "start", good); code != exitNoServer || !strings.Contains(errOut, "unavailable") {
		t.Errorf("run without compute: exit %d %s", code, errOut)
	}
	if out, errOut, code := cli("run", "list"); code != 0 || !strings.HasPrefix(out, "ID") {
		t.Errorf("list: exit %d %s %s", code, out, errOut)
	}
	if _, _, code := cli("run", "show", "nope"); code != exitNotFound {
		t.Errorf("show missing: exit %d", code)
	}
	if _, errOut, code := cli("run", "compare", "nope", "nada"); code != exitNotFound {
		t.Errorf("compare missing: exit %d %s", code, errOut)
	}

	sched := write("sched.yaml", "name: nightly\ncron: \"0 0 2 * * *\"\nmetric: ndcg_cut_10\nspec:\n"+indent(spec))
	out, errOut, code := cli("schedule", "create", sched)
	var sc struct {
		ID   string `json:"id"`
		Spec struct {
			Dataset struct {
				BEIR string `json:"beir"`
			} `json:"dataset"`
		} `json:"spec"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &sc) != nil || sc.ID == "" || sc.Spec.Dataset.BEIR != filepath.Join(datasets, "data", "cranfield") {
		t.Fatalf("schedule create: exit %d %s %s", code, out, errOut)
	}
	if out, _, code := cli("schedule", "list"); code != 0 || !strings.Contains(out, sc.ID) {
		t.Errorf("schedule list: exit %d %s", code, out)
	}
	if out, _, code := cli("schedule", "history", sc.ID); code != 0 || !strings.HasPrefix(out, "RUN") {
		t.Errorf("schedule history: exit %d %s", code, out)
	}
	if _, _, code := cli("schedule", "accept", sc.ID, "nope"); code != exitNotFound {
		t.Errorf("accept missing run: exit %d", code)
	}
	if _, errOut, code := cli("schedule", "delete", sc.ID); code != 0 {
		t.Errorf("schedule delete: exit %d %s", code, errOut)
	}
	if _, _, code := cli("schedule", "show", sc.ID); code != exitNotFound {
		t.Errorf("show deleted schedule: exit %d", code)
	}
}

// TestBaselineGateFlagsFirst: the --baseline gate's flags are checked
// before the baseline is looked up or anything runs, naming the flag;
// bad ones used to be reported only after the whole run, --alpha as
// "metric".
func TestBaselineGateFlagsFirst(t *testing.T) {
	t.Parallel()
	srv, svc := serveAPI(t, experiments.Config{DatasetsDir: t.TempDir()})
	ctx := context.Background()
	spec := filepath.Join(t.TempDir(), "gate.yaml")
	if err := os.WriteFile(spec, []byte("name: gate\nproject: p\nbase: {branch: main}\ndataset: {beir: data/cranfield}\n"+
		"metrics: [ndcg_cut.10, num_rel_ret]\nvariants: [{name: v, embedder: \"hash-bow?dims=64\"}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		flags []string
		says  string
	}{
		{[]string{"--alpha", "2"}, "--alpha: 2 is not in (0, 1)"},
		{[]string{"--alpha", "-0.1"}, "--alpha: -0.1 is not in (0, 1)"},
		{[]string{"--metric", "ndcg_cut.10"}, `--metric: "ndcg_cut.10" is not among the measures the spec's runs are compared on: ndcg_cut_10`},
		{[]string{"--metric", "num_rel_ret"}, `--metric: "num_rel_ret" is not among`},
		{[]string{"--correction", "bonferroni"}, `--correction: correction "bonferroni" (want holm, bh or none)`},
		{[]string{"--threshold", "-1"}, "--threshold: must not be negative"},
	} {
		for _, verb := range [][]string{{"eval", "run"}, {"run", "start", "--wait"}} {
			args := append(append(append(verb, spec, "--baseline", "r-nope"), tc.flags...), "--server", srv)
			if _, errOut, code := run(t, ctx, args...); code != exitBadInput || !strings.Contains(errOut, tc.says) {
				t.Errorf("%s: exit %d %s, want %d %s", strings.Join(args, " "), code, errOut, exitBadInput, tc.says)
			}
		}
	}
	if runs, err := svc.ListRuns(experiments.WithCaller(ctx, experiments.LocalCaller), experiments.RunFilter{}); err != nil || len(runs) != 0 {
		t.Errorf("%d runs started (%v)", len(runs), err)
	}
}

// TestSpecProjectFlag: run start, experiment run and eval run run a spec
// that names no project in -p's (default main), and refuse -p naming
// another project than the spec's; a spec without a project used to be
// refused, and run start had no -p.
func TestSpecProjectFlag(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres")
	}
	t.Parallel()
	data := evalstest.Cranfield(t)
	br := experimentstest.NewTemplateBranches(t)
	ctx := context.Background()
	srv, svc := serveAPI(t, experiments.Config{Connector: br, Branches: br, DatasetsDir: evalstest.DatasetsDir(t)})
	cli := func(args ...string) (string, string, int) {
		t.Helper()
		return run(t, ctx, append(args, "--server", srv)...)
	}
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	body := fmt.Sprintf("name: proj\nbase: {branch: main}\ndataset: {beir: %s}\nmetrics: [ndcg_cut.10]\nvariants: [{name: v, embedder: \"hash-bow?dims=8\"}]\n", data)
	none, named := write("none.yaml", body), write("named.yaml", "project: p\n"+body)
	wctx, cancel := context.WithTimeout(experiments.WithCaller(ctx, experiments.LocalCaller), 2*time.Minute)
	defer cancel()
	for _, tc := range []struct {
		args    []string
		project string
	}{
		{[]string{"run", "start", none}, "main"},
		{[]string{"run", "start", none, "-p", "q"}, "q"},
		{[]string{"run", "start", named, "--project", "p"}, "p"},
	} {
		out, errOut, code := cli(tc.args...)
		if code != 0 {
			t.Errorf("%s: exit %d %s", strings.Join(tc.args, " "), code, errOut)
			continue
		}
		id := strings.TrimSpace(out)
		cli("run", "cancel", id) // only its project matters
		if r, err := svc.WaitRun(wctx, id); err != nil || r.Project != tc.project {
			t.Errorf("%s: run in project %q (%v), want %q", strings.Join(tc.args, " "), r.Project, err, tc.project)
		}
	}
	for _, verb := range [][]string{{"run", "start"}, {"experiment", "run"}, {"eval", "run", "--baseline", "r1"}} {
		args := append(verb, named, "-p", "other")
		if _, errOut, code := cli(args...); code != exitBadInput || !strings.Contains(errOut, "--project other: "+named+" is a spec of project p") {
			t.Errorf("%s: exit %d %s", strings.Join(args, " "), code, errOut)
		}
	}
	if runs, err := svc.ListRuns(wctx, experiments.RunFilter{}); err != nil || len(runs) != 3 {
		t.Errorf("%d runs (%v), want 3", len(runs), err)
	}
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = "  " + lines[i]
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestSweepSVG(t *testing.T) {
	svg := sweepSVG("r1", []experiments.SweepPoint{
		{Variant: "ef10", Recall: 0.65, QPS: 800, Pareto: true},
		{Variant: "ef40", Recall: 0.9, QPS: 900, Pareto: true},
		{Variant: "ef<80>", Recall: 0.8, QPS: 100},
	})
	if strings.Count(svg, "<circle") != 3 || strings.Count(svg, `fill="steelblue"`) != 2 || !strings.Contains(svg, "<polyline") ||
		!strings.Contains(svg, "ef&lt;80&gt;") || !strings.HasSuffix(svg, "</svg>\n") {
		t.Errorf("svg:\n%s", svg)
	}
}

// TestRunBaselineGateCLI runs Cranfield through the CLI and server: a
// rerun passes the --baseline gate, a worse embedder fails it.
func TestRunBaselineGateCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres")
	}
	t.Parallel()
	data := evalstest.Cranfield(t)
	br := experimentstest.NewTemplateBranches(t)
	ctx := context.Background()
	srv, svc := serveAPI(t, experiments.Config{Connector: br, Branches: br, DatasetsDir: evalstest.DatasetsDir(t)})
	cli := func(args ...string) (string, string, int) {
		t.Helper()
		return run(t, ctx, append(args, "--server", srv)...)
	}
	dir := t.TempDir()
	specFor := func(embedder string) string {
		p := filepath.Join(dir, strings.NewReplacer("?", "_", "=", "_").Replace(embedder)+".yaml")
		body := fmt.Sprintf("name: gate\nproject: p\nbase: {branch: main}\ndataset: {beir: %s}\nmetrics: [ndcg_cut.10]\nvariants:\n  - {name: v, embedder: %q}\n",
			data, embedder)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, worse := specFor("hash-bow?dims=64"), specFor("hash-bow?dims=8")
	out, errOut, code := cli("run", "start", good)
	if code != 0 {
		t.Fatalf("start: %d %s", code, errOut)
	}
	base := strings.TrimSpace(out)
	wctx, wcancel := context.WithTimeout(experiments.WithCaller(ctx, experiments.LocalCaller), 2*time.Minute)
	defer wcancel()
	if r, err := svc.WaitRun(wctx, base); err != nil || r.Status != experiments.StatusSucceeded {
		t.Fatalf("baseline run: %v %+v", err, r)
	}
	if out, errOut, code := cli("run", "start", good, "--wait", "--baseline", base); code != 0 || !strings.Contains(out, " ok") ||
		!strings.Contains(out, "holm-adjusted p=") {
		t.Errorf("rerun against baseline: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := cli("run", "show", base); code != 0 || !strings.Contains(out, "provenance:") || !strings.Contains(out, "qrels ") ||
		!strings.Contains(out, "PostgreSQL 15") || !strings.Contains(out, "maintenance_work_mem=") {
		t.Errorf("run show: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = cli("run", "start", worse, "--wait", "--baseline", base)
	if code != exitFailure || !strings.Contains(out, "REGRESSION") || !strings.Contains(errOut, "regression against "+base) {
		t.Errorf("worse against baseline: exit %d\n%s%s", code, out, errOut)
	}
	// The spellings: eval run gates the same way, experiment run waits.
	if out, errOut, code := cli("eval", "run", good, "--baseline", base); code != 0 || !strings.Contains(out, " ok") {
		t.Errorf("eval run against baseline: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = cli("eval", "run", worse, "--baseline", base)
	if code != exitFailure || !strings.Contains(out, "REGRESSION") {
		t.Errorf("eval run worse against baseline: exit %d\n%s%s", code, out, errOut)
	}
	// A schedule's name stands for its accepted baseline run.
	sp, err := experiments.ParseSpec([]byte(fmt.Sprintf("name: gate\nproject: p\nbase: {branch: main}\ndataset: {beir: %s}\nvariants: [{name: v, embedder: \"hash-bow?dims=64\"}]\n", data)))
	if err != nil {
		t.Fatal(err)
	}
	sched := experiments.Schedule{Name: "nightly-gate", Cron: "@every 1s", Metric: "ndcg_cut_10", AutoAccept: true, Spec: *sp, Paused: true}
	sc, err := svc.CreateSchedule(wctx, sched)
	if err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := cli("eval", "run", good, "--baseline", "nightly-gate"); code != exitNotFound || !strings.Contains(errOut, "no accepted baseline") {
		t.Errorf("eval run against a schedule without a baseline: exit %d %s", code, errOut)
	}
	sched.Paused = false // fire until a run is accepted, then pause again
	if _, err := svc.UpdateSchedule(wctx, sc.ID, sched); err != nil {
		t.Fatal(err)
	}
	for sc.BaselineRun == "" {
		time.Sleep(200 * time.Millisecond)
		if sc, err = svc.GetSchedule(wctx, sc.ID); err != nil {
			t.Fatal(err)
		}
	}
	sched.Paused = true
	if _, err := svc.UpdateSchedule(wctx, sc.ID, sched); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = cli("eval", "run", worse, "--baseline", "nightly-gate")
	if code != exitFailure || !strings.Contains(errOut, "regression against "+sc.BaselineRun) {
		t.Errorf("eval run worse against the schedule's baseline %s: exit %d\n%s%s", sc.BaselineRun, code, out, errOut)
	}
	if _, errOut, code := cli("eval", "run", good, "--baseline", "nope"); code != exitNotFound || !strings.Contains(errOut, "no run with that id and no schedule") {
		t.Errorf("eval run against an unknown baseline: exit %d %s", code, errOut)
	}
	if _, errOut, code := cli("eval", "run", good); code != exitBadInput || !strings.Contains(errOut, "--baseline") {
		t.Errorf("eval run without --baseline: exit %d %s", code, errOut)
	}
	if out, errOut, code := cli("experiment", "run", good); code != 0 || !strings.Contains(out, "  v [=====] succeeded in ") || !strings.Contains(out, "status succeeded") {
		t.Errorf("experiment run: exit %d\n%s%s", code, out, errOut)
	}
	if out, _, code := cli("run", "show", base); code != 0 || !strings.Contains(out, "NDCG_CUT_10") {
		t.Errorf("show: exit %d\n%s", code, out)
	}
}

// TestPrintComparisonCapsDocs: the most regressed queries show five
// documents per list, then "+N more".
func TestPrintComparisonCapsDocs(t *testing.T) {
	var docs []string
	for i := range 80 {
		docs = append(docs, fmt.Sprintf("doc%02d", i))
	}
	rc := &experiments.RunComparison{A: "r:a", B: "r:b", Verdict: "worse", Warnings: []string{"the relevance judgments differ"},
		Comparison: &evals.Comparison{Primary: "P_10", Alpha: 0.05, Measures: []evals.MeasureComparison{{Measure: "P_10", P: 0.01, PHolm: 0.02, PBH: 0.015}}},
		Regressed: []experiments.QueryChange{{Query: "q1", A: 1, Delta: -1, Entered: docs, Left: docs[:3],
			Moved: []experiments.RankMove{{Doc: "x", From: 1, To: 2}}}}}
	var b strings.Builder
	if err := printComparison(&b, rc, 10); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"doc00, doc01, doc02, doc03, doc04 +75 more", "doc00, doc01, doc02  ", "x 1→2", "warning: the relevance judgments differ", "0.0200", "0.0150", "p_holm"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "doc05") {
		t.Errorf("more than five documents printed:\n%s", out)
	}
}
