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
	branchFlow(t, spawnMCP(t, dir))
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
	ok(t, c, "fork_branch", map[string]any{"name": "fwd"}, &fork)
	ok(t, c, "discard_branch", map[string]any{"branch": "fwd"}, nil)
	b, err := json.Marshal(fork)
	if err != nil || !strings.Contains(string(b), `"parent_id":"main"`) {
		t.Errorf("fork over forwarding: %s", b)
	}
}
