package agentapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/offshootdb/offshoot/experiments"
	"github.com/offshootdb/offshoot/storage"
)

// env is a running API server over a real cluster: branch "main" of
// project "p" is database postgres, "feature/x" is database feat.
type env struct {
	url string
	svc *experiments.Service
	srv *Server
	st  *storage.Store // set by storeEnv
}

// cluster starts one Postgres for a test, with databases postgres and feat.
func cluster(t *testing.T) experiments.StaticConnector {
	t.Helper()
	c := pgtest.New(t, nil)
	if _, err := c.Connect(t).Exec(context.Background(), "CREATE DATABASE feat"); err != nil {
		t.Fatal(err)
	}
	feat := c.Postmaster.ConnString("postgres", "", "feat")
	conn, err := pgx.Connect(context.Background(), feat)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), "CREATE EXTENSION vector"); err != nil {
		t.Fatal(err)
	}
	return experiments.StaticConnector{"p/main": c.ConnString, "p/feature/x": feat}
}

// start serves the API on addr ("127.0.0.1:0" unless given) until the
// test ends.
func start(t *testing.T, conn experiments.Connector, addr string, cfg Config) *env {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	svc, err := experiments.New(experiments.Config{ControlDir: t.TempDir(), Connector: conn, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	cfg.Service, cfg.Logger = svc, log
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		svc.Close()
	})
	port := ln.Addr().(*net.TCPAddr).Port
	return &env{url: "http://127.0.0.1:" + strconv.Itoa(port), svc: svc, srv: srv}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// call sends a request and decodes the JSON answer into out (if not nil).
func (e *env) call(t *testing.T, method, path, token string, body any, out any) (int, http.Header) {
	t.Helper()
	return e.callAuth(t, method, path, token, false, body, out)
}

// callAuth is call with, when basic, a Basic authorization header.
func (e *env) callAuth(t *testing.T, method, path, token string, basic bool, body any, out any) (int, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		if s, ok := body.(string); ok {
			rd = strings.NewReader(s)
		} else {
			rd = bytes.NewReader(must(json.Marshal(body)))
		}
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if basic {
		req.SetBasicAuth("postgres", "secret")
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("%s %s: status %d with Content-Type %q: %s", method, path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode, resp.Header
}

func queryPath(branch string) string {
	return "/v1/projects/p/branches/" + url.PathEscape(branch) + "/query"
}

func TestQueryAndDiffOverHTTP(t *testing.T) {
	t.Parallel()
	conn := cluster(t)
	e := start(t, conn, "", Config{BodyLimit: 4096})

	// A request that outlives the server's request timeout gets 504.
	short := start(t, conn, "", Config{RequestTimeout: 300 * time.Millisecond})
	var tp Problem
	if code, _ := short.call(t, "POST", queryPath("main"), "", map[string]any{"sql": "SELECT pg_sleep(20)", "timeout_ms": 60000}, &tp); code != 504 || tp.Code != "timeout" {
		t.Errorf("request timeout: %d %+v", code, tp)
	}

	var res experiments.QueryResult
	code, hdr := e.call(t, "POST", queryPath("main"), "", map[string]any{
		"sql": "SELECT $1::int + 1 AS n, '[1,2.5,3]'::vector(3) AS v, now() AS t, '\\x0102'::bytea AS b", "params": []any{41}}, &res)
	if code != 200 || hdr.Get("X-Request-Id") == "" {
		t.Fatalf("query: %d %v", code, hdr)
	}
	r := res.Results[0]
	if got := string(must(json.Marshal(r.Rows[0][:2]))); got != `[42,[1,2.5,3]]` {
		t.Errorf("row %s", got)
	}
	if _, err := time.Parse(time.RFC3339Nano, r.Rows[0][2].(string)); err != nil {
		t.Errorf("timestamp %v: %v", r.Rows[0][2], err)
	}
	if r.Rows[0][3] != "AQI=" || r.Columns[1].Type != "vector(3)" || r.Columns[2].Type != "timestamp with time zone" {
		t.Errorf("row %v columns %+v", r.Rows[0], r.Columns)
	}

	code, _ = e.call(t, "POST", queryPath("main"), "", map[string]any{"sql": "SELECT generate_series(1, 100)", "max_rows": 7}, &res)
	if code != 200 || len(res.Results[0].Rows) != 7 || !res.Results[0].Truncated {
		t.Errorf("truncation: %d %+v", code, res)
	}

	problem := func(method, path string, body any, status int, codeWant string) Problem {
		t.Helper()
		var p Problem
		code, _ := e.call(t, method, path, "", body, &p)
		if code != status || p.Status != status || p.Code != codeWant || p.Type != problemTypeBase+codeWant || p.Title == "" || p.RequestID == "" {
			t.Errorf("%s %s %v: %d %+v, want %d %s", method, path, body, code, p, status, codeWant)
		}
		return p
	}
	p := problem("POST", queryPath("main"), map[string]any{"sql": "SELECT pg_sleep(10)", "timeout_ms": 100}, 422, "query-failed")
	if p.Postgres == nil || p.Postgres.SQLState != "57014" {
		t.Errorf("timeout problem %+v", p.Postgres)
	}
	p = problem("POST", queryPath("main"), map[string]any{"sql": "SELECT * FROM nowhere"}, 422, "query-failed")
	if p.Postgres == nil || p.Postgres.SQLState != "42P01" || p.Postgres.Position != 15 || !strings.Contains(p.Detail, "nowhere") {
		t.Errorf("bad SQL problem %+v %+v", p, p.Postgres)
	}
	for _, tc := range []struct {
		body  any
		field string
	}{
		{map[string]any{"sql": "SELECT 1", "timeout_ms": "soon"}, "timeout_ms"},
		{map[string]any{"sql": "SELECT 1", "colour": "red"}, "colour"},
		{map[string]any{"sql": "SELECT 1", "max_rows": -4}, "max_rows"},
		{"{not json", "body"},
		{"", "body"},
	} {
		if p := problem("POST", queryPath("main"), tc.body, 400, "invalid-input"); p.Field != tc.field {
			t.Errorf("%v: field %q, want %q", tc.body, p.Field, tc.field)
		}
	}
	problem("POST", queryPath("nope"), map[string]any{"sql": "SELECT 1"}, 404, "not-found")
	problem("POST", queryPath("main"), map[string]any{"sql": strings.Repeat("x", 5000)}, 413, "body-too-large")
	problem("GET", "/v1/nothing", nil, 404, "route-not-found")
	problem("PUT", "/v1/keys", nil, 405, "method-not-allowed")

	// Diff: a table created and rows changed on feature/x.
	code, _ = e.call(t, "POST", queryPath("main"), "", map[string]any{"sql": "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 20) g"}, nil)
	code2, _ := e.call(t, "POST", queryPath("feature/x"), "", map[string]any{"sql": "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 20) g; " +
		"UPDATE t SET v = 'changed' WHERE id = 3; DELETE FROM t WHERE id = 4; CREATE TABLE extra (k text PRIMARY KEY)"}, nil)
	if code != 200 || code2 != 200 {
		t.Fatalf("setup queries: %d %d", code, code2)
	}
	var d experiments.Diff
	code, _ = e.call(t, "GET", "/v1/projects/p/branches/feature%2Fx/diff?against=main&sample_rows=5", "", nil, &d)
	if code != 200 {
		t.Fatalf("diff: %d", code)
	}
	if !strings.Contains(d.Schema.Unified, "+CREATE TABLE public.extra (") || d.Branch != "feature/x" || d.Base != "main" {
		t.Errorf("diff schema:\n%s", d.Schema.Unified)
	}
	var tdiff *experiments.TableDiff
	for i := range d.Tables {
		if d.Tables[i].Table == "public.t" {
			tdiff = &d.Tables[i]
		}
	}
	if tdiff == nil || tdiff.Changed != 1 || tdiff.Removed != 1 || tdiff.Added != 0 || len(tdiff.Samples) != 2 {
		t.Fatalf("diff of t: %+v", tdiff)
	}
	if p := problem("GET", "/v1/projects/p/branches/main/diff", nil, 400, "invalid-input"); p.Field != "against" {
		t.Errorf("diff without against: field %q", p.Field)
	}
	if p := problem("GET", "/v1/projects/p/branches/main/diff?against=x&sample_rows=many", nil, 400, "invalid-input"); p.Field != "sample_rows" {
		t.Errorf("field %q", p.Field)
	}

	// Latency is recorded per route template.
	req := must(http.Get(e.url + "/metrics"))
	metrics := string(must(io.ReadAll(req.Body)))
	req.Body.Close()
	for _, want := range []string{
		`offshoot_http_request_duration_seconds_count{code="200",method="POST",route="/v1/projects/:project/branches/:branch/query"}`,
		`offshoot_http_request_duration_seconds_count{code="404",method="GET",route="unmatched"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	e := start(t, nil, "", Config{})
	for _, path := range []string{"/healthz", "/readyz", "/v1/openapi.json"} {
		if code, _ := e.call(t, "GET", path, "", nil, nil); code != 200 {
			t.Errorf("%s: %d", path, code)
		}
	}
	// Without compute, queries are unavailable (503 with Retry-After).
	var p Problem
	code, hdr := e.call(t, "POST", queryPath("main"), "", map[string]any{"sql": "SELECT 1"}, &p)
	if code != 503 || p.Code != "unavailable" || hdr.Get("Retry-After") == "" {
		t.Errorf("query without compute: %d %+v", code, p)
	}
	if err := e.svc.Close(); err != nil {
		t.Fatal(err)
	}
	if code, _ := e.call(t, "GET", "/readyz", "", nil, &p); code != 503 || p.Code != "unavailable" {
		t.Errorf("readyz after close: %d %+v", code, p)
	}
}

func TestProblemFor(t *testing.T) {
	for _, tc := range []struct {
		err      error
		status   int
		code     string
		internal bool
	}{
		{&experiments.FieldError{Field: "x", Reason: "bad"}, 400, "invalid-input", false},
		{experiments.ErrUnauthenticated, 401, "unauthenticated", false},
		{errors.Join(errors.New("ctx"), experiments.ErrForbidden), 403, "forbidden", false},
		{experiments.ErrNotFound, 404, "not-found", false},
		{experiments.ErrConflict, 409, "conflict", false},
		{&experiments.QueryError{SQLState: "42601"}, 422, "query-failed", false},
		{experiments.ErrCapacity, 429, "capacity", false},
		{experiments.ErrUnavailable, 503, "unavailable", false},
		{context.DeadlineExceeded, 504, "timeout", false},
		{errors.New("disk on fire at /secret/path"), 500, "internal", true},
	} {
		p, internal := problemFor(tc.err)
		if p.Status != tc.status || p.Code != tc.code || internal != tc.internal {
			t.Errorf("%v: %d %s internal=%v, want %d %s %v", tc.err, p.Status, p.Code, internal, tc.status, tc.code, tc.internal)
		}
		if tc.internal && strings.Contains(p.Detail, "secret") {
			t.Errorf("internal error leaked: %q", p.Detail)
		}
	}
}
