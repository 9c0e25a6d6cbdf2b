package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	mcpclient "github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	mcpgo "github.com/mark3labs/mcp-go/mcp"
)

// apiAs calls the HTTP API with a bearer token ("" for none).
func (s *e2eServer) apiAs(token, method, path string, body any) (int, []byte) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.http+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 3 * time.Minute}).Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// mustAs is apiAs requiring status want, decoding the body into out.
func (s *e2eServer) mustAs(token string, want int, method, path string, body, out any) {
	s.t.Helper()
	code, b := s.apiAs(token, method, path, body)
	if code != want {
		s.t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			s.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// mcpAs is an MCP client over the server's streamable HTTP endpoint with
// a bearer token.
func (s *e2eServer) mcpAs(token string) *mcpclient.Client {
	s.t.Helper()
	c, err := mcpclient.NewStreamableHttpClient(s.http+"/mcp", transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + token}))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		s.t.Fatal(err)
	}
	req := mcpgo.InitializeRequest{}
	req.Params.ProtocolVersion = mcpgo.LATEST_PROTOCOL_VERSION
	req.Params.ClientInfo = mcpgo.Implementation{Name: "offshoot-security-test", Version: "0"}
	if _, err := c.Initialize(ctx, req); err != nil {
		s.t.Fatalf("mcp initialize: %v", err)
	}
	return c
}

// mcpCall calls a tool and returns its text and whether it is an error.
func mcpCall(t *testing.T, c *mcpclient.Client, tool string, args map[string]any) (string, bool) {
	t.Helper()
	req := mcpgo.CallToolRequest{}
	req.Params.Name = tool
	req.Params.Arguments = args
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := c.CallTool(ctx, req)
	if err != nil {
		return err.Error(), true
	}
	var b strings.Builder
	for _, part := range res.Content {
		if tc, ok := part.(mcpgo.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String(), res.IsError
}

// escapes are what a scoped key must not be able to do on the host or to
// other sessions. Each must fail with insufficient_privilege (42501) or,
// for a read-only session, because it writes (25006).
var escapes = []string{
	"COPY (SELECT 1) TO PROGRAM 'id > /tmp/offshoot-escape'",
	"SELECT pg_read_file('/etc/hostname')",
	"SELECT pg_read_binary_file('/etc/hostname')",
	"SELECT lo_import('/etc/hostname')",
	"SELECT pg_ls_dir('/')",
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'postgres' AND pid <> pg_backend_pid()",
	"CREATE EXTENSION file_fdw",
	"ALTER ROLE current_user SUPERUSER",
	// The database's defaults apply to the server's superuser sessions
	// too: a search_path with public first would run a user's operators
	// and functions in them.
	"ALTER DATABASE postgres SET search_path = public, pg_catalog",
}

// TestE2ESecurity: a read key and a write key, through HTTP, MCP and the
// connection string they are given, cannot leave their database role;
// a branch's password opens that branch only; rotation invalidates it;
// and the proxy tells a stranger nothing and wakes nothing.
func TestE2ESecurity(t *testing.T) {
	s := newE2EServer(t)
	var admin, read, write struct {
		Token string `json:"token"`
	}
	s.must(201, "POST", "/v1/keys", map[string]any{"name": "admin", "scopes": []string{"admin"}}, &admin)
	s.mustAs(admin.Token, 201, "POST", "/v1/keys", map[string]any{"name": "reader", "scopes": []string{"read:main"}}, &read)
	s.mustAs(admin.Token, 201, "POST", "/v1/keys", map[string]any{"name": "agent", "scopes": []string{"write:main:agent-*"}}, &write)
	for _, b := range []string{"agent-1", "other"} {
		s.mustAs(admin.Token, 201, "POST", "/v1/projects/main/branches", map[string]any{"name": b}, nil)
	}
	// Something only the superuser may terminate: a superuser session.
	var su struct{ URI string }
	s.mustAs(admin.Token, 200, "GET", branchPath("main")+"/connection?password=true", nil, &su)
	suConn, err := pgx.Connect(context.Background(), su.URI)
	if err != nil {
		t.Fatalf("admin's superuser connection: %v", err)
	}
	defer suConn.Close(context.Background())

	t.Run("http", func(t *testing.T) {
		for _, k := range []struct {
			token, branch string
			readOnly      bool
		}{{read.Token, "main", true}, {write.Token, "agent-1", false}} {
			for _, sql := range escapes {
				code, b := s.apiAs(k.token, "POST", branchPath(k.branch)+"/query", map[string]any{"sql": sql, "read_only": k.readOnly})
				if code < 400 || !(bytes.Contains(b, []byte("42501")) || (k.readOnly && bytes.Contains(b, []byte("25006")))) {
					t.Errorf("%s on %s (read_only %t): %d %s, want refused with 42501", sql, k.branch, k.readOnly, code, b)
				}
			}
		}
	})
	t.Run("mcp", func(t *testing.T) {
		for _, k := range []struct {
			token, branch string
		}{{read.Token, "main"}, {write.Token, "agent-1"}} {
			c := s.mcpAs(k.token)
			for _, sql := range escapes {
				text, isErr := mcpCall(t, c, "run_sql", map[string]any{"branch": k.branch, "sql": sql})
				if !isErr || !(strings.Contains(text, "42501") || strings.Contains(text, "25006")) {
					t.Errorf("run_sql %s on %s: error %t %q, want refused with 42501", sql, k.branch, isErr, text)
				}
			}
			text, isErr := mcpCall(t, c, "get_connection_string", map[string]any{"branch": k.branch, "include_password": true})
			if isErr || strings.Contains(text, "postgres:") {
				t.Errorf("get_connection_string: error %t %q, want a URI without the superuser", isErr, text)
			}
		}
	})
	var agentURI string
	t.Run("connection string", func(t *testing.T) {
		var c struct{ URI, User string }
		s.mustAs(write.Token, 200, "GET", branchPath("agent-1")+"/connection?password=true", nil, &c)
		if c.User != "offshoot_write" {
			t.Fatalf("write key's connection user %q, want offshoot_write", c.User)
		}
		if code, b := s.apiAs(write.Token, "GET", branchPath("agent-1")+"/connection?password=true&role=superuser", nil); code != 403 {
			t.Fatalf("write key asking for the superuser: %d %s", code, b)
		}
		if code, b := s.apiAs(write.Token, "GET", branchPath("other")+"/connection?password=true", nil); code != 403 {
			t.Fatalf("write key on a branch outside its pattern: %d %s", code, b)
		}
		agentURI = c.URI
		conn, err := pgx.Connect(context.Background(), c.URI)
		if err != nil {
			t.Fatalf("connect with the key's connection string: %v", err)
		}
		defer conn.Close(context.Background())
		for _, sql := range append(escapes, "ALTER SYSTEM SET work_mem = '1MB'") {
			_, err := conn.Exec(context.Background(), sql)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
				t.Errorf("%s through the proxy: %v, want 42501", sql, err)
			}
		}
		if err := suConn.Ping(context.Background()); err != nil {
			t.Fatalf("the superuser session was terminated: %v", err)
		}
		// The same password on another branch, or the parent, opens nothing.
		for _, other := range []string{"other", "main"} {
			_, err := pgx.Connect(context.Background(), strings.Replace(c.URI, "endpoint%3Dagent-1", "endpoint%3D"+other, 1))
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
				t.Errorf("agent-1's password on %s: %v, want 28P01", other, err)
			}
		}
	})
	t.Run("rotation", func(t *testing.T) {
		s.mustAs(write.Token, 200, "POST", branchPath("agent-1")+"/credentials/rotate", map[string]any{}, nil)
		_, err := pgx.Connect(context.Background(), agentURI)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
			t.Fatalf("old password after rotation: %v, want 28P01", err)
		}
		var c struct{ URI string }
		s.mustAs(write.Token, 200, "GET", branchPath("agent-1")+"/connection?password=true", nil, &c)
		conn, err := pgx.Connect(context.Background(), c.URI)
		if err != nil {
			t.Fatalf("new password: %v", err)
		}
		conn.Close(context.Background())
	})
	t.Run("mcp errors are problems", func(t *testing.T) {
		for _, tc := range []struct {
			method, session string
			body            any
		}{
			{"GET", "", nil}, // no session: no empty stream held open
			{"POST", "no-such-session", map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}},
		} {
			var rd io.Reader
			if tc.body != nil {
				b, _ := json.Marshal(tc.body)
				rd = bytes.NewReader(b)
			}
			req, _ := http.NewRequest(tc.method, s.http+"/mcp", rd)
			req.Header.Set("Authorization", "Bearer "+admin.Token)
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("Content-Type", "application/json")
			if tc.session != "" {
				req.Header.Set("Mcp-Session-Id", tc.session)
			}
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				t.Fatalf("%s /mcp: %v", tc.method, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 400 || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("%s /mcp (session %q): %d %s %s, want a problem+json error", tc.method, tc.session, resp.StatusCode, resp.Header.Get("Content-Type"), b)
			}
		}
	})
	t.Run("proxy tells strangers nothing", func(t *testing.T) {
		s.mustAs(admin.Token, 200, "POST", branchPath("other")+"/endpoint", map[string]any{"action": "suspend"}, nil)
		var before struct {
			State string `json:"state"`
			Wakes int64  `json:"wakes"`
		}
		s.mustAs(admin.Token, 200, "GET", branchPath("other")+"/endpoint", nil, &before)
		host, port, _ := strings.Cut(s.proxy, ":")
		var msgs []string
		for _, tc := range []struct{ user, options string }{
			{"offshoot_write", "endpoint=other"},                // no password was ever issued... or a wrong one
			{"nosuchrole", "endpoint=other"},                    // unknown role
			{"offshoot_write", "endpoint=nosuch"},               // unknown branch
			{"offshoot_write", "endpoint=other project=nosuch"}, // unknown project
		} {
			dsn := fmt.Sprintf("host=%s port=%s user=%s password=wrong dbname=postgres sslmode=disable options='%s'", host, port, tc.user, tc.options)
			_, err := pgx.Connect(context.Background(), dsn)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) {
				t.Fatalf("%+v: %v, want a Postgres error", tc, err)
			}
			msgs = append(msgs, pgErr.Code+" "+strings.Replace(pgErr.Message, tc.user, "ROLE", 1))
		}
		for _, m := range msgs[1:] {
			if m != msgs[0] {
				t.Errorf("failures differ: %q vs %q", msgs[0], m)
			}
		}
		if !strings.HasPrefix(msgs[0], "28P01 ") {
			t.Errorf("failure %q, want 28P01 password authentication failed", msgs[0])
		}
		var after struct {
			State string `json:"state"`
			Wakes int64  `json:"wakes"`
		}
		s.mustAs(admin.Token, 200, "GET", branchPath("other")+"/endpoint", nil, &after)
		if after.Wakes != before.Wakes || after.State != before.State {
			t.Errorf("endpoint of other went from %+v to %+v on failed logins", before, after)
		}
	})
}
