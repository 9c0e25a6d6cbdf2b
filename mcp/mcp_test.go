package mcp_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/offshootdb/offshoot/agentapi"
	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/offshootdb/offshoot/experiments"
	"github.com/offshootdb/offshoot/mcp"
)

// env is one real Postgres cluster behind a facade and its MCP server.
// Branch main of project main is database base; branch scratch is
// database scratch, created as a copy of base (CREATE DATABASE ...
// TEMPLATE), standing in for a fork until the facade forks.
type env struct {
	svc *experiments.Service
	srv *mcp.Server
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	c := pgtest.New(t, nil)
	admin := c.Connect(t)
	if _, err := admin.Exec(ctx, "CREATE DATABASE base"); err != nil {
		t.Fatal(err)
	}
	base := c.Postmaster.ConnString("postgres", "", "base")
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, `CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
		INSERT INTO items VALUES (1, 'one'), (2, 'two');
		CREATE EXTENSION vector;
		CREATE TABLE docs (id int PRIMARY KEY, kind text, emb vector(2));
		INSERT INTO docs VALUES (1, 'a', '[1,0]'), (2, 'a', '[0,1]'), (3, 'b', '[1,0.1]'), (4, 'a', '[0.9,0.2]')`)
	conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 { // the template must have no session; ours may still be ending
		if _, err = admin.Exec(ctx, "CREATE DATABASE scratch TEMPLATE base"); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	svc, err := experiments.New(experiments.Config{ControlDir: t.TempDir(), Logger: log, Connector: experiments.StaticConnector{
		"main/main": base, "main/scratch": c.Postmaster.ConnString("postgres", "", "scratch")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	srv, err := mcp.New(mcp.Config{Service: svc, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return &env{svc: svc, srv: srv}
}

// stdioClient serves the MCP server over in-memory pipes for caller and
// returns an initialized client.
func (e *env) stdioClient(t *testing.T, caller experiments.Caller) *client.Client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- e.srv.ServeStdio(ctx, caller, inR, outW)
		outW.Close()
	}()
	c := client.NewClient(transport.NewIO(outR, inW, io.NopCloser(strings.NewReader(""))))
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		cancel()
		inW.Close()
		if err := <-done; err != nil {
			t.Errorf("serve stdio: %v", err)
		}
	})
	initialize(t, c)
	return c
}

// httpClient serves the HTTP API with /mcp mounted on a loopback port and
// returns an initialized client sending token ("" for none).
func (e *env) httpClient(t *testing.T, token string) *client.Client {
	t.Helper()
	api, err := agentapi.New(agentapi.Config{Service: e.svc, MCP: e.srv.Handler(),
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
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
			t.Errorf("serve: %v", err)
		}
	})
	var opts []transport.StreamableHTTPCOption
	if token != "" {
		opts = append(opts, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + token}))
	}
	c, err := client.NewStreamableHttpClient("http://"+ln.Addr().String()+"/mcp", opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	initialize(t, c)
	return c
}

func initialize(t *testing.T, c *client.Client) {
	t.Helper()
	req := mcpgo.InitializeRequest{}
	req.Params.ProtocolVersion = mcpgo.LATEST_PROTOCOL_VERSION
	req.Params.ClientInfo = mcpgo.Implementation{Name: "offshoot-test", Version: "0"}
	if _, err := c.Initialize(context.Background(), req); err != nil {
		t.Fatalf("initialize: %v", err)
	}
}

// callTool calls a tool and fails the test on a protocol error.
func callTool(t *testing.T, c *client.Client, name string, args map[string]any) *mcpgo.CallToolResult {
	t.Helper()
	req := mcpgo.CallToolRequest{}
	req.Params.Name, req.Params.Arguments = name, args
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := c.CallTool(ctx, req)
	if err != nil {
		t.Fatalf("%s: protocol error: %v", name, err)
	}
	return res
}

// ok calls a tool that must succeed and decodes its structured content.
func ok(t *testing.T, c *client.Client, name string, args map[string]any, out any) string {
	t.Helper()
	res := callTool(t, c, name, args)
	text := resultText(res)
	if res.IsError {
		t.Fatalf("%s %v: tool error: %s", name, args, text)
	}
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: structured content %s: %v", name, b, err)
		}
	}
	return text
}

// toolErr calls a tool that must fail with a tool error whose text holds
// every one of want.
func toolErr(t *testing.T, c *client.Client, name string, args map[string]any, want ...string) {
	t.Helper()
	res := callTool(t, c, name, args)
	text := resultText(res)
	if !res.IsError {
		t.Fatalf("%s %v: want a tool error, got %s", name, args, text)
	}
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("%s %v: error %q does not mention %q", name, args, text, w)
		}
	}
}

func resultText(res *mcpgo.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(mcpgo.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// listTools lists the tools and checks that every input schema compiles
// as JSON Schema.
func listTools(t *testing.T, c *client.Client) map[string]mcpgo.Tool {
	t.Helper()
	res, err := c.ListTools(context.Background(), mcpgo.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]mcpgo.Tool{}
	for _, tl := range res.Tools {
		b, err := json.Marshal(tl.InputSchema)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(string(b)))
		if err != nil {
			t.Fatalf("%s: schema %s: %v", tl.Name, b, err)
		}
		comp := jsonschema.NewCompiler()
		if err := comp.AddResource(tl.Name+".json", doc); err != nil {
			t.Fatal(err)
		}
		if _, err := comp.Compile(tl.Name + ".json"); err != nil {
			t.Errorf("%s: input schema is not valid JSON Schema: %v\n%s", tl.Name, err, b)
		}
		out[tl.Name] = tl
	}
	return out
}

type queryResult struct {
	Results []struct {
		Command   string  `json:"command"`
		Rows      [][]any `json:"rows"`
		Truncated bool    `json:"truncated"`
	} `json:"results"`
}

// flow runs the agent's loop: write on the fork, read on fork and parent
// (parent unchanged), diff.
func flow(t *testing.T, c *client.Client) {
	tools := listTools(t, c)
	for _, name := range []string{"run_sql", "run_sql_transaction", "diff_branches"} {
		if _, found := tools[name]; !found {
			t.Errorf("tool %s not listed", name)
		}
	}
	var w queryResult
	text := ok(t, c, "run_sql", map[string]any{"branch": "scratch", "sql": "INSERT INTO items VALUES (3, 'three'); UPDATE items SET name = 'TWO' WHERE id = 2"}, &w)
	if len(w.Results) != 2 || w.Results[0].Command != "INSERT 0 1" || !strings.Contains(text, "UPDATE 1") {
		t.Errorf("write: %+v\n%s", w, text)
	}
	count := func(branch string) string {
		var r queryResult
		ok(t, c, "run_sql", map[string]any{"branch": branch, "sql": "SELECT string_agg(name, ',' ORDER BY id) FROM items WHERE id > $1", "params": []any{0}, "read_only": true}, &r)
		return r.Results[0].Rows[0][0].(string)
	}
	if got := count("scratch"); got != "one,TWO,three" {
		t.Errorf("fork reads %q", got)
	}
	if got := count("main"); got != "one,two" {
		t.Errorf("parent changed: reads %q", got)
	}
	text = ok(t, c, "list_tables", map[string]any{"branch": "scratch"}, nil)
	if !strings.Contains(text, "public.items (table)") {
		t.Errorf("list_tables:\n%s", text)
	}
	var desc experiments.TableDescription
	ok(t, c, "describe_table", map[string]any{"branch": "scratch", "table": "items"}, &desc)
	if len(desc.Columns) != 2 || desc.Columns[0].Name != "id" || desc.Columns[0].Type != "integer" || !desc.Columns[1].NotNull ||
		len(desc.Constraints) != 1 || !strings.Contains(desc.Constraints[0], "PRIMARY KEY (id)") || len(desc.Indexes) != 1 {
		t.Errorf("describe_table: %+v", desc)
	}
	toolErr(t, c, "describe_table", map[string]any{"branch": "scratch", "table": "nope"}, "nope", "not found", "list_tables")
	var vs queryResult
	ok(t, c, "vector_search", map[string]any{"branch": "main", "table": "docs", "column": "emb", "vector": []any{1, 0}, "k": 2,
		"distance": "cosine", "filters": map[string]any{"kind": "a"}}, &vs)
	if len(vs.Results) != 1 || len(vs.Results[0].Rows) != 2 || vs.Results[0].Rows[0][0] != float64(1) || vs.Results[0].Rows[1][0] != float64(4) {
		t.Errorf("vector_search: %+v", vs)
	}
	toolErr(t, c, "vector_search", map[string]any{"branch": "main", "table": "docs", "column": "emb", "vector": []any{1, 0, 0}}, "dimensions")
	var d experiments.Diff
	text = ok(t, c, "diff_branches", map[string]any{"branch": "scratch", "against": "main"}, &d)
	if d.Schema.Changed || len(d.Tables) != 1 || d.Tables[0].Table != "public.items" || d.Tables[0].Added != 1 || d.Tables[0].Changed != 1 {
		t.Errorf("diff: %+v", d)
	}
	if !strings.Contains(text, "changed public.items: rows 2 -> 3, +1 -0 ~1") {
		t.Errorf("diff text:\n%s", text)
	}
}

func TestFlowStdio(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	flow(t, e.stdioClient(t, experiments.LocalCaller))
}

func TestFlowHTTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	flow(t, e.httpClient(t, ""))
}

func TestErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// An admin key first: a first key without admin scope is refused.
	if _, err := e.svc.CreateKey(experiments.WithCaller(context.Background(), experiments.LocalCaller),
		experiments.KeyRequest{Name: "root", Scopes: []experiments.Scope{{Role: experiments.RoleAdmin}}}); err != nil {
		t.Fatal(err)
	}
	nk, err := e.svc.CreateKey(experiments.WithCaller(context.Background(), experiments.LocalCaller),
		experiments.KeyRequest{Name: "reader", Scopes: []experiments.Scope{{Role: experiments.RoleRead, Project: "main"}}})
	if err != nil {
		t.Fatal(err)
	}
	wk, err := e.svc.CreateKey(experiments.WithCaller(context.Background(), experiments.LocalCaller),
		experiments.KeyRequest{Name: "writer", Scopes: []experiments.Scope{{Role: experiments.RoleWrite, Project: "main"}}})
	if err != nil {
		t.Fatal(err)
	}
	c := e.httpClient(t, wk.Token)

	t.Run("unknown branch", func(t *testing.T) {
		toolErr(t, c, "run_sql", map[string]any{"branch": "nope", "sql": "SELECT 1"}, "nope", "not found", "list_branches")
		toolErr(t, c, "diff_branches", map[string]any{"branch": "nope", "against": "main"}, "nope", "list_branches")
	})
	t.Run("bad SQL", func(t *testing.T) {
		toolErr(t, c, "run_sql", map[string]any{"branch": "main", "sql": "SELEC 1"}, "syntax error", "42601", "rolled back")
		toolErr(t, c, "run_sql", map[string]any{"branch": "main", "sql": "SELECT * FROM missing"}, "42P01", "list_tables")
	})
	t.Run("timeout", func(t *testing.T) {
		toolErr(t, c, "run_sql", map[string]any{"branch": "main", "sql": "SELECT pg_sleep(5)", "timeout_ms": 100}, "57014", "timeout_ms")
	})
	t.Run("bad arguments", func(t *testing.T) {
		toolErr(t, c, "run_sql", map[string]any{"branch": "main", "sql": "SELECT 1", "limit": 3}, "limit", "unknown argument")
		toolErr(t, c, "run_sql", map[string]any{"branch": "main", "sql": "SELECT 1", "max_rows": "ten"}, "max_rows", "want an integer, got a string")
		toolErr(t, c, "run_sql", map[string]any{"branch": "main", "sql": "SELECT 1", "params": "x"}, "params", "want an array, got a string")
		toolErr(t, c, "fork_branch", map[string]any{"name": "x", "parent": "main", "parent_id": "other"}, "parent_id", "give one of the two")
		toolErr(t, c, "run_sql", map[string]any{"branch": "main", "sql": "SELECT 1", "max_rows": 0}, "max_rows", "at least 1")
		toolErr(t, c, "run_sql_transaction", map[string]any{"branch": "main", "statements": []any{map[string]any{"sql": "SELECT 1"}}, "max_rows": 0}, "max_rows", "at least 1")
		toolErr(t, c, "run_sql", map[string]any{"branch": "main"}, "sql", "empty")
		toolErr(t, c, "run_sql_transaction", map[string]any{"branch": "main", "statements": []any{}}, "statements")
		toolErr(t, c, "run_experiment", map[string]any{"spec": "ab"}, "spec", "JSON object")
		toolErr(t, c, "run_experiment", map[string]any{"spec": map[string]any{"name": "ab", "variantz": []any{}}}, "spec.variantz", "unknown field")
		toolErr(t, c, "get_run", map[string]any{"id": "nope"}, "nope", "not found", "list_runs")
		toolErr(t, c, "compare_runs", map[string]any{"a": "nope:x", "b": "nope:y"}, "not found", "list_runs")
	})
	t.Run("list datasets", func(t *testing.T) {
		var l experiments.DatasetList
		text := ok(t, c, "list_datasets", map[string]any{}, &l)
		if len(l.Datasets) != 0 || l.Hint == "" || !strings.Contains(text, "hint: ") {
			t.Errorf("list_datasets without a datasets dir = %+v, %q", l, text)
		}
	})
	t.Run("all or nothing", func(t *testing.T) {
		toolErr(t, c, "run_sql_transaction", map[string]any{"branch": "scratch", "statements": []any{
			map[string]any{"sql": "INSERT INTO items VALUES ($1, $2)", "params": []any{10, "ten"}},
			map[string]any{"sql": "INSERT INTO items VALUES ($1, $2)", "params": []any{1, "dup"}},
		}}, "statement 1", "23505")
		var r queryResult
		ok(t, c, "run_sql", map[string]any{"branch": "scratch", "sql": "SELECT count(*) FROM items WHERE id = 10", "read_only": true}, &r)
		if n := r.Results[0].Rows[0][0]; n != float64(0) {
			t.Errorf("first statement of a failed transaction took effect: %v", n)
		}
	})
	t.Run("progress", func(t *testing.T) {
		got := make(chan mcpgo.JSONRPCNotification, 10)
		c.OnNotification(func(n mcpgo.JSONRPCNotification) {
			if n.Method == "notifications/progress" {
				got <- n
			}
		})
		req := mcpgo.CallToolRequest{}
		req.Params.Name = "run_sql"
		req.Params.Arguments = map[string]any{"branch": "main", "sql": "SELECT pg_sleep(0.1)", "read_only": true}
		req.Params.Meta = &mcpgo.Meta{ProgressToken: "p1"}
		if _, err := c.CallTool(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		select {
		case n := <-got:
			if n.Params.AdditionalFields["progressToken"] != "p1" || n.Params.AdditionalFields["progress"] != float64(0) {
				t.Errorf("progress notification %+v", n.Params.AdditionalFields)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no progress notification")
		}
	})
	t.Run("truncation", func(t *testing.T) {
		var r queryResult
		text := ok(t, c, "run_sql", map[string]any{"branch": "main", "sql": "SELECT g FROM generate_series(1, 500) g", "read_only": true}, &r)
		if !r.Results[0].Truncated || len(r.Results[0].Rows) != 50 || !strings.Contains(text, "TRUNCATED") {
			t.Errorf("truncated %v, %d rows, text:\n%s", r.Results[0].Truncated, len(r.Results[0].Rows), text)
		}
	})
	t.Run("read-only key", func(t *testing.T) {
		rc := e.httpClient(t, nk.Token)
		tools := listTools(t, rc)
		if _, found := tools["run_sql_transaction"]; found {
			t.Error("read-only key sees run_sql_transaction")
		}
		rs, found := tools["run_sql"]
		if !found || !*rs.Annotations.ReadOnlyHint || !strings.Contains(rs.Description, "READ ONLY") {
			t.Errorf("read-only key sees run_sql as %+v", rs)
		}
		if _, found := tools["diff_branches"]; !found {
			t.Error("read-only key does not see diff_branches")
		}
		toolErr(t, rc, "run_sql_transaction", map[string]any{"branch": "main", "statements": []any{map[string]any{"sql": "DELETE FROM items"}}},
			"changes data", "read scope only")
		for _, name := range []string{"run_experiment", "cancel_run"} {
			if _, found := tools[name]; found {
				t.Errorf("read-only key sees %s", name)
			}
		}
		if _, found := tools["get_run"]; !found {
			t.Error("read-only key does not see get_run")
		}
		toolErr(t, rc, "run_experiment", map[string]any{"spec": map[string]any{"name": "x"}}, "changes data", "read scope only")
		toolErr(t, rc, "cancel_run", map[string]any{"id": "r1"}, "changes data", "read scope only")
		toolErr(t, rc, "run_sql", map[string]any{"branch": "main", "sql": "DELETE FROM items"}, "25006", "read-only")
		toolErr(t, rc, "run_sql", map[string]any{"branch": "main", "sql": "SELECT 1", "read_only": false}, "read_only")
		var r queryResult
		ok(t, rc, "run_sql", map[string]any{"branch": "main", "sql": "SELECT count(*) FROM items"}, &r)
		if n := r.Results[0].Rows[0][0]; n != float64(2) {
			t.Errorf("count %v", n)
		}
		req := mcpgo.CallToolRequest{}
		req.Params.Name = "drop_everything"
		if _, err := rc.CallTool(context.Background(), req); err == nil {
			t.Error("unknown tool answered")
		}

		// Every refusal above is in the audit log, with the reader's key.
		page, err := e.svc.AuditLog(experiments.WithCaller(context.Background(), experiments.LocalCaller), experiments.AuditQuery{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for _, en := range page.Entries {
			if en.KeyID == nk.ID && en.Result == "denied" {
				got[en.Action+" "+en.Target]++
			}
		}
		for _, want := range []string{"mcp.run_sql_transaction mcp/run_sql_transaction", "mcp.run_experiment mcp/run_experiment",
			"mcp.cancel_run mcp/cancel_run", "mcp.run_sql mcp/run_sql", "mcp.unknown_tool mcp/drop_everything"} {
			if got[want] != 1 {
				t.Errorf("refusal %q audited %d times, want once (denied entries of the reader: %v)", want, got[want], got)
			}
		}
	})
}
