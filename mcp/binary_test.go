package mcp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/offshootdb/offshoot/experiments"
)

var binary struct {
	once sync.Once
	path string
	err  error
}

// offshootBin builds the offshoot binary once per test run.
func offshootBin(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the offshoot binary with Postgres on FUSE; skipped with -short")
	}
	binary.once.Do(func() {
		dir, err := os.MkdirTemp("", "offshoot-mcp-bin-")
		if err != nil {
			binary.err = err
			return
		}
		binary.path = filepath.Join(dir, "offshoot")
		out, err := exec.Command("go", "build", "-o", binary.path, "github.com/offshootdb/offshoot/cmd/offshoot").CombinedOutput()
		if err != nil {
			binary.err = fmt.Errorf("build offshoot: %v\n%s", err, out)
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binary.path != "" {
		os.RemoveAll(filepath.Dir(binary.path))
	}
	os.Exit(code)
}

// spawnMCP runs `offshoot mcp` on dataDir over stdio and returns an
// initialized client; its stderr goes to dataDir/mcp.log, shown when the
// test fails. When the test ends it closes stdin, as a client does, and
// waits for the process to stop its server and exit.
func spawnMCP(t *testing.T, dataDir string) *client.Client {
	t.Helper()
	logPath := filepath.Join(dataDir, "mcp.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(offshootBin(t), "mcp", "--data-dir", dataDir, "--proxy-addr", "127.0.0.1:0")
	// Experiment specs may only name datasets in the server's datasets dir.
	cmd.Env = append(os.Environ(), "OFFSHOOT_DATASETS_DIR="+filepath.Dir(cranfield(t)))
	cmd.Stderr = logf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	c := client.NewClient(transport.NewIO(stdout, stdin, io.NopCloser(strings.NewReader(""))))
	t.Cleanup(func() {
		c.Close()
		stdin.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("offshoot mcp exited: %v", err)
			}
		case <-time.After(2 * time.Minute):
			t.Error("offshoot mcp did not exit after stdin closed")
			_ = cmd.Process.Signal(syscall.SIGTERM)
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("offshoot mcp stderr:\n%s", b)
		}
	})
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	req := mcpgo.InitializeRequest{}
	req.Params.ProtocolVersion = mcpgo.LATEST_PROTOCOL_VERSION
	req.Params.ClientInfo = mcpgo.Implementation{Name: "offshoot-test", Version: "0"}
	// The first start creates project main (initdb); allow for it.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := c.Initialize(ctx, req); err != nil {
		t.Fatalf("initialize: %v", err)
	}
	return c
}

// branchFlow is the agent's loop on real copy-on-write branches: fork,
// write on the fork, read fork and parent (parent unchanged), diff,
// discard.
func branchFlow(t *testing.T, c *client.Client) {
	tools := listTools(t, c)
	for _, name := range []string{"list_projects", "list_branches", "describe_branch", "fork_branch", "discard_branch", "reset_branch",
		"run_sql", "run_sql_transaction", "diff_branches", "explain_sql", "list_tables", "describe_table", "prepare_migration", "complete_migration", "get_connection_string", "create_snapshot", "list_snapshots", "restore_snapshot"} {
		if _, found := tools[name]; !found {
			t.Errorf("tool %s not listed", name)
		}
	}
	ok(t, c, "run_sql", map[string]any{"branch": "main", "sql": "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'one'), (2, 'two')"}, nil)

	var fork experiments.Branch
	text := ok(t, c, "fork_branch", map[string]any{"name": "agent/try", "parent": "main"}, &fork)
	if fork.Name != "agent/try" || fork.ParentID != "main" || fork.ExpiresAt == nil {
		t.Errorf("fork: %+v", fork)
	} else if d := time.Until(*fork.ExpiresAt); d < 23*time.Hour || d > 25*time.Hour {
		t.Errorf("agent fork expires in %v, want the default 24h", d)
	}
	if !strings.Contains(text, "agent/try") {
		t.Errorf("fork text: %s", text)
	}
	ok(t, c, "run_sql", map[string]any{"branch": "agent/try", "sql": "INSERT INTO items VALUES (3, 'three'); DELETE FROM items WHERE id = 1"}, nil)
	names := func(branch string) string {
		var r queryResult
		ok(t, c, "run_sql", map[string]any{"branch": branch, "sql": "SELECT string_agg(name, ',' ORDER BY id) FROM items", "read_only": true}, &r)
		return fmt.Sprint(r.Results[0].Rows[0][0])
	}
	if got := names("agent/try"); got != "two,three" {
		t.Errorf("fork reads %q", got)
	}
	if got := names("main"); got != "one,two" {
		t.Errorf("parent changed: reads %q", got)
	}
	var d experiments.Diff
	ok(t, c, "diff_branches", map[string]any{"branch": "agent/try", "against": "main"}, &d)
	if len(d.Tables) != 1 || d.Tables[0].Added != 1 || d.Tables[0].Removed != 1 {
		t.Errorf("diff: %+v", d)
	}
	var ex experiments.Explain
	text = ok(t, c, "explain_sql", map[string]any{"branch": "agent/try", "sql": "DELETE FROM items WHERE id > $1", "params": []any{0}}, &ex)
	if !strings.Contains(ex.Plan, "Delete on items") || !strings.Contains(ex.Plan, "actual time") || !strings.Contains(text, "Delete on items") {
		t.Errorf("explain plan:\n%s", ex.Plan)
	}
	if got := names("agent/try"); got != "two,three" {
		t.Errorf("explain changed the branch: reads %q", got)
	}
	var page experiments.BranchPage
	ok(t, c, "list_branches", map[string]any{}, &page)
	if len(page.Branches) != 2 {
		t.Errorf("branches: %+v", page.Branches)
	}
	ok(t, c, "discard_branch", map[string]any{"branch": "agent/try"}, nil)
	toolErr(t, c, "describe_branch", map[string]any{"branch": "agent/try"}, "agent/try", "not found", "list_branches")
	toolErr(t, c, "run_sql", map[string]any{"branch": "agent/try", "sql": "SELECT 1"}, "not found", "list_branches")
	toolErr(t, c, "discard_branch", map[string]any{"branch": "main"}, "main")

	var mig experiments.Migration
	ok(t, c, "prepare_migration", map[string]any{"branch": "main", "sql": "ALTER TABLE items ADD COLUMN note text"}, &mig)
	if !mig.Schema.Changed || !strings.Contains(mig.Schema.Unified, "note") {
		t.Errorf("prepared migration: %+v", mig)
	}
	var desc experiments.TableDescription
	ok(t, c, "describe_table", map[string]any{"branch": "main", "table": "items"}, &desc)
	if len(desc.Columns) != 2 {
		t.Errorf("prepare_migration changed main: %+v", desc.Columns)
	}
	ok(t, c, "complete_migration", map[string]any{"id": mig.ID}, nil)
	ok(t, c, "describe_table", map[string]any{"branch": "main", "table": "items"}, &desc)
	if len(desc.Columns) != 3 || desc.Columns[2].Name != "note" {
		t.Errorf("complete_migration did not apply: %+v", desc.Columns)
	}
	toolErr(t, c, "describe_branch", map[string]any{"branch": mig.Fork}, "not found")
	toolErr(t, c, "complete_migration", map[string]any{"id": mig.ID}, "completed", "conflict")
	toolErr(t, c, "complete_migration", map[string]any{"id": "nope"}, "not found", "prepare_migration")

	res, err := c.ReadResource(context.Background(), mcpgo.ReadResourceRequest{Params: mcpgo.ReadResourceParams{URI: "offshoot://main/branches"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Contents) != 1 || !strings.Contains(res.Contents[0].(mcpgo.TextResourceContents).Text, `"name": "main"`) {
		t.Errorf("branch tree resource: %+v", res.Contents)
	}
}

// TestBinaryInProcess spawns `offshoot mcp` on a data dir no server holds:
// it runs the server in its own process.
func TestBinaryInProcess(t *testing.T) {
	t.Parallel()
	dir := pgtest.Dir(t)
	c := spawnMCP(t, dir)
	branchFlow(t, c)
	runFlow(t, c)
}

// cranfield is the Cranfield collection in BEIR layout, found next to
// the module root as CI has it (../shared/datasets/cranfield).
func cranfield(t *testing.T) string {
	t.Helper()
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for ; ; root = filepath.Dir(root) {
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			break
		}
		if root == filepath.Dir(root) {
			t.Fatal("go.mod not found")
		}
	}
	dir := filepath.Join(root, "..", "shared", "datasets", "cranfield")
	if _, err := os.Stat(filepath.Join(dir, "corpus.jsonl")); err != nil {
		t.Fatalf("cranfield dataset: %v", err)
	}
	return dir
}

// runFlow is an experiment run on real forks through the tools: start an
// A/B run on Cranfield, poll get_run until it is done, list it,
// compare the two variants, and see that a finished run cannot be
// cancelled and that its forks are gone.
func runFlow(t *testing.T, c *client.Client) {
	spec := map[string]any{"name": "ab", "base": map[string]any{"branch": "main"},
		"dataset": map[string]any{"beir": cranfield(t)}, "metrics": []string{"ndcg_cut.10", "recall.100"}, "concurrency": 2,
		"variants": []any{map[string]any{"name": "bow", "embedder": "hash-bow?dims=64"}, map[string]any{"name": "rp", "embedder": "hash-rp?dims=64"}}}
	var started struct {
		ID       string   `json:"id"`
		Status   string   `json:"status"`
		Variants []string `json:"variants"`
	}
	text := ok(t, c, "run_experiment", map[string]any{"spec": spec}, &started)
	if started.ID == "" || started.Status != "queued" || len(started.Variants) != 2 || !strings.Contains(text, "get_run") {
		t.Fatalf("start: %+v\n%s", started, text)
	}
	var run struct {
		Status   experiments.RunStatus `json:"status"`
		Error    string                `json:"error"`
		Project  string                `json:"project"`
		Queries  int                   `json:"queries"`
		Variants []struct {
			Name    string                `json:"name"`
			Status  experiments.RunStatus `json:"status"`
			Phase   string                `json:"phase"`
			Branch  string                `json:"branch"`
			Metrics map[string]float64    `json:"metrics"`
		} `json:"variants"`
	}
	// First wait with progress: a notification per change of the run.
	var mu sync.Mutex
	var notes []map[string]any
	c.OnNotification(func(n mcpgo.JSONRPCNotification) {
		if n.Method == "notifications/progress" && n.Params.AdditionalFields["progressToken"] == "run" {
			mu.Lock()
			notes = append(notes, n.Params.AdditionalFields)
			mu.Unlock()
		}
	})
	req := mcpgo.CallToolRequest{}
	req.Params.Name = "get_run"
	req.Params.Arguments = map[string]any{"id": started.ID, "wait_seconds": 60}
	req.Params.Meta = &mcpgo.Meta{ProgressToken: "run"}
	if res, err := c.CallTool(context.Background(), req); err != nil || res.IsError {
		t.Fatalf("get_run with wait_seconds: %v %+v", err, res)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		text = ok(t, c, "get_run", map[string]any{"id": started.ID}, &run)
		if run.Status != experiments.StatusQueued && run.Status != experiments.StatusRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run not done after 5 minutes:\n%s", text)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if run.Status != experiments.StatusSucceeded || run.Project != "main" || run.Queries != 225 || len(run.Variants) != 2 {
		t.Fatalf("run %s %q:\n%s", run.Status, run.Error, text)
	}
	if !strings.Contains(text, "provenance:") || !strings.Contains(text, "queries 225 sha256 ") || !strings.Contains(text, "pgvector") {
		t.Errorf("get_run shows no provenance:\n%s", text)
	}
	// At least one step of the run was reported while waiting, each with
	// the run's variants as total and progress never going back. (The
	// last state is in the result; its notification may be dropped or
	// trail the result, so it is not required.)
	mu.Lock()
	var steps []float64
	for _, n := range notes {
		if msg, _ := n["message"].(string); strings.HasPrefix(msg, "run "+started.ID) && n["total"] == float64(2) {
			p, _ := n["progress"].(float64)
			steps = append(steps, p)
		}
	}
	if len(steps) == 0 || !sort.Float64sAreSorted(steps) || steps[0] <= 0 {
		t.Errorf("progress notifications of get_run with wait_seconds: %v", notes)
	}
	mu.Unlock()
	for _, v := range run.Variants {
		if v.Status != experiments.StatusSucceeded || v.Metrics["ndcg_cut_10"] <= 0 || !strings.Contains(text, v.Name+": succeeded ndcg_cut_10=") {
			t.Errorf("variant %+v\n%s", v, text)
		}
		toolErr(t, c, "describe_branch", map[string]any{"branch": v.Branch}, "not found")
	}
	var list struct {
		Runs []struct {
			ID string `json:"id"`
		} `json:"runs"`
	}
	ok(t, c, "list_runs", map[string]any{"experiment": "ab"}, &list)
	if len(list.Runs) != 1 || list.Runs[0].ID != started.ID {
		t.Errorf("list: %+v", list.Runs)
	}
	var cmp experiments.RunComparison
	text = ok(t, c, "compare_runs", map[string]any{"a": started.ID + ":bow", "b": started.ID + ":rp", "metric": "ndcg_cut_10"}, &cmp)
	switch {
	case cmp.Verdict == "" || cmp.Comparison == nil || cmp.Comparison.Queries != 225 || len(cmp.Comparison.Measures) != 2:
		t.Errorf("compare: %+v", cmp)
	case len(cmp.Comparison.PerQuery) != 0 || len(cmp.Regressed) == 0:
		t.Errorf("compare not compact: %d per-query rows, %d regressed", len(cmp.Comparison.PerQuery), len(cmp.Regressed))
	case !strings.Contains(text, cmp.Verdict) || !strings.Contains(text, "p=") || !strings.Contains(text, "most regressed queries") ||
		!strings.Contains(text, "(Holm "):
		t.Errorf("compare text:\n%s", text)
	}
	toolErr(t, c, "compare_runs", map[string]any{"a": started.ID, "b": started.ID + ":rp"}, "2 succeeded variants", ":VARIANT")
	toolErr(t, c, "cancel_run", map[string]any{"id": started.ID}, "succeeded", "conflict")
	// export_run, then import_run of that file: the copy scores as the original.
	var exp struct {
		Truncated bool `json:"truncated"`
	}
	runFile := ok(t, c, "export_run", map[string]any{"run": started.ID + ":bow"}, &exp)
	if exp.Truncated || !strings.Contains(runFile, " Q0 ") || !strings.HasSuffix(strings.SplitN(runFile, "\n", 2)[0], " bow") {
		t.Fatalf("export_run (truncated %v):\n%.300s", exp.Truncated, runFile)
	}
	var imp experiments.VariantRun
	text = ok(t, c, "import_run", map[string]any{"id": started.ID, "name": "bow-copy", "content": runFile, "source": "export_run"}, &imp)
	for m, v := range run.Variants[0].Metrics { // bow
		if imp.Spec.Type != experiments.VariantRunFile || imp.Metrics[m] != v {
			t.Errorf("import_run of the export: %s %s = %v, bow %v\n%s", imp.Spec.Type, m, imp.Metrics[m], v, text)
		}
	}
	toolErr(t, c, "import_run", map[string]any{"id": started.ID, "name": "bow-copy", "content": runFile}, "conflict")
}

// TestBinaryForward spawns `offshoot serve`, then `offshoot mcp` on the
// same data dir, which forwards to the server over streamable HTTP.
func TestBinaryForward(t *testing.T) {
	t.Parallel()
	bin := offshootBin(t)
	dir := pgtest.Dir(t)
	addrFile := filepath.Join(dir, "addrs.json")
	var out bytes.Buffer
	logf, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	srv := exec.Command(bin, "serve", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--proxy-addr", "127.0.0.1:0", "--addr-file", addrFile)
	srv.Stdout, srv.Stderr = &out, logf
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	t.Cleanup(func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(time.Minute):
			_ = srv.Process.Kill()
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "serve.log"))
			t.Logf("offshoot serve log:\n%s", b)
		}
	})
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(addrFile); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("serve exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not start")
		}
	}
	c := spawnMCP(t, dir)
	tools := listTools(t, c)
	if _, found := tools["fork_branch"]; !found {
		t.Error("fork_branch not listed")
	}
	var r queryResult
	ok(t, c, "run_sql", map[string]any{"branch": "main", "sql": "SELECT 40 + 2", "read_only": true}, &r)
	if v := r.Results[0].Rows[0][0]; v != float64(42) {
		t.Errorf("run_sql: %v", v)
	}
	toolErr(t, c, "run_sql", map[string]any{"branch": "main", "sql": "SELEC"}, "42601")
	var fork experiments.Branch
	ok(t, c, "fork_branch", map[string]any{"name": "fwd", "parent_id": "main"}, &fork)
	ok(t, c, "discard_branch", map[string]any{"branch": "fwd"}, nil)
	b, err := json.Marshal(fork)
	if err != nil || !strings.Contains(string(b), `"parent_id":"main"`) {
		t.Errorf("fork over forwarding: %s", b)
	}
}
