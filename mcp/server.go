package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"runtime/debug"
	"strings"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/offshootdb/offshoot/experiments"
)

// Errors returned by this package.
var (
	// ErrConfig means the server configuration is unusable.
	ErrConfig = errors.New("mcp: bad config")
)

// Config configures a Server. Only Service is required.
type Config struct {
	// Service is the facade every tool calls. Required.
	Service *experiments.Service
	// Logger receives internal errors. Default slog.Default().
	Logger *slog.Logger
	// DefaultProject is the project of tools called without one.
	// Default "main" (as the CLI).
	DefaultProject string
	// Version is reported to clients in the initialize handshake.
	// Default "dev".
	Version string
}

// Server is the MCP surface of the facade: tools and resources. It holds
// no state of its own besides the tool table; every tool call is one
// facade call made for the caller in the call's context
// (experiments.WithCaller). Safe for concurrent use.
type Server struct {
	cfg   Config
	svc   *experiments.Service
	log   *slog.Logger
	mcp   *server.MCPServer
	tools map[string]*tool
}

// New builds the server and registers every tool and resource.
func New(cfg Config) (*Server, error) {
	if cfg.Service == nil {
		return nil, fmt.Errorf("%w: Service is required", ErrConfig)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DefaultProject == "" {
		cfg.DefaultProject = "main"
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	s := &Server{cfg: cfg, svc: cfg.Service, log: cfg.Logger, tools: map[string]*tool{}}
	hooks := &server.Hooks{}
	hooks.AddAfterListTools(s.filterListed)
	hooks.AddOnError(s.auditUnknownTool)
	s.mcp = server.NewMCPServer("offshoot", cfg.Version,
		server.WithToolCapabilities(false),
		server.WithResourceCapabilities(false, false),
		server.WithHooks(hooks),
		server.WithInstructions(instructions),
	)
	for _, t := range s.toolTable() {
		s.tools[t.def.Name] = t
		s.mcp.AddTool(t.def, s.handler(t))
	}
	s.addResources()
	return s, nil
}

const instructions = `offshoot gives you Git-like branches of a real PostgreSQL + pgvector database.
Branches are cheap copy-on-write forks: fork_branch, try something risky on the fork
(run_sql), look at the result (run_sql, diff_branches), then discard_branch. The parent
is never touched. Prefer working on a fork over writing to a shared branch.
To compare retrieval setups (embedders, indexes, search parameters) on a test
collection, run_experiment forks one branch per variant; poll
get_run until it is done, then compare_runs.`

// MCPServer returns the underlying mcp-go server, for transports.
func (s *Server) MCPServer() *server.MCPServer { return s.mcp }

// Handler returns the streamable HTTP transport. It serves every path it
// is given (mount it at /mcp) and expects the caller in each request's
// context (experiments.WithCaller), put there by the HTTP server's
// authentication (agentapi.Config.MCP); a request without one is treated
// as read-only and refused by the facade.
func (s *Server) Handler() http.Handler {
	// mcp-go's DNS rebinding protection stays on: a request arriving on a
	// loopback address must name a loopback host.
	return server.NewStreamableHTTPServer(s.mcp, server.WithStreamableHTTPLogger(s.log))
}

// ServeStdio serves one client over in and out (newline-delimited
// JSON-RPC) for caller until ctx is done or in ends. One stdio session per
// process at a time.
func (s *Server) ServeStdio(ctx context.Context, caller experiments.Caller, in io.Reader, out io.Writer) error {
	ss := server.NewStdioServer(s.mcp)
	ss.SetErrorLogger(slog.NewLogLogger(s.log.Handler(), slog.LevelWarn))
	ctx = experiments.WithCaller(ctx, caller)
	err := ss.Listen(ctx, in, out)
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) {
		return nil
	}
	return fmt.Errorf("mcp stdio: %w", err)
}

// access says what scope a tool needs, which decides who sees it.
type access int

const (
	// readTool reads only; every caller sees it.
	readTool access = iota
	// writeTool changes data; hidden from callers without write scope.
	writeTool
	// mixedTool writes unless asked not to (run_sql): callers without write
	// scope see its read-only variant, and their calls run READ ONLY.
	mixedTool
)

// tool is one MCP tool: its definition and an adapter to one facade call
// that returns the structured result and its text rendering.
type tool struct {
	def    mcpgo.Tool
	access access
	// readOnlyDef is the definition shown to read-only callers (mixedTool).
	readOnlyDef *mcpgo.Tool
	// next is the next step suggested when a call fails with ErrNotFound.
	notFound string
	run      func(ctx context.Context, c call) (structured any, text string, err error)
}

// call is one tool call as the adapters see it.
type call struct {
	args json.RawMessage
	// readOnly is set for callers without write scope.
	readOnly bool
	project  string
	// notify sends a progress notification when the client asked for
	// progress (a progressToken in _meta); otherwise it does nothing.
	notify func(progress, total float64, message string)
}

// projectOr returns p, or the default project when p is empty.
func (c call) projectOr(p string) string {
	if p == "" {
		return c.project
	}
	return p
}

// bind decodes the call's arguments into v: numbers kept exact, unknown
// arguments refused with an error naming them.
func (c call) bind(v any) error {
	raw := bytes.TrimSpace(c.args)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		raw = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			return &experiments.FieldError{Field: te.Field, Reason: fmt.Sprintf("want %s, got %s", jsonKind(te.Type), jsonArticle(te.Value))}
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return &experiments.FieldError{Field: f, Reason: "unknown argument; the tool's input schema lists the arguments"}
		default:
			return &experiments.FieldError{Field: "arguments", Reason: "not a valid JSON object: " + err.Error()}
		}
	}
	return nil
}

// jsonKind names what a Go type decodes from, as an agent reads a JSON
// schema ("an array", "a string"), not as Go prints it ("[]interface {}").
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a JSON value"
}

// jsonArticle is json.UnmarshalTypeError.Value ("string", "number 1.5",
// "array") with an article.
func jsonArticle(v string) string {
	if v == "" {
		return "something else"
	}
	switch v[0] {
	case 'a', 'e', 'i', 'o', 'u':
		return "an " + v
	}
	return "a " + v
}

// canWrite reports whether a caller has any scope that permits writes.
func canWrite(c experiments.Caller) bool {
	for _, sc := range c.Scopes {
		if sc.Role == experiments.RoleAdmin || sc.Role == experiments.RoleWrite {
			return true
		}
	}
	return false
}

// readOnlyCaller reports whether the context's caller lacks write scope.
// A context without a caller counts as read-only; the facade refuses it
// anyway.
func readOnlyCaller(ctx context.Context) bool {
	c, ok := experiments.CallerFrom(ctx)
	return !ok || !canWrite(c)
}

// filterListed hides write tools from read-only callers and shows them
// the read-only variant of mixed tools. It edits the listed result, so
// calls still reach every tool and a refused one answers with a tool
// error that says why (a filtered call would be a protocol error).
func (s *Server) filterListed(ctx context.Context, _ any, _ *mcpgo.ListToolsRequest, res *mcpgo.ListToolsResult) {
	if res == nil || !readOnlyCaller(ctx) {
		return
	}
	out := res.Tools[:0]
	for _, d := range res.Tools {
		t := s.tools[d.Name]
		switch {
		case t == nil:
			out = append(out, d)
		case t.access == readTool:
			out = append(out, d)
		case t.access == mixedTool && t.readOnlyDef != nil:
			out = append(out, *t.readOnlyDef)
		}
	}
	res.Tools = out
}

// auditUnknownTool audits calls of tools that do not exist, which mcp-go
// refuses before any handler runs (probing, or a stale tool list).
func (s *Server) auditUnknownTool(ctx context.Context, _ any, method mcpgo.MCPMethod, message any, err error) {
	if method != mcpgo.MethodToolsCall || !errors.Is(err, server.ErrToolNotFound) {
		return
	}
	name := ""
	if req, ok := message.(*mcpgo.CallToolRequest); ok {
		name = req.Params.Name
	}
	s.svc.RecordRefusal(ctx, "mcp.unknown_tool", "mcp/"+clipName(name), "no such tool")
}

// clipName bounds a client-chosen name kept in the audit log.
func clipName(n string) string {
	if len(n) > 100 {
		return n[:100]
	}
	return n
}

// progress returns the call's notify: it sends notifications/progress
// to a client that asked for progress (a progressToken in _meta), and
// does nothing for others. The handler sends "started" (0 of 1) for every
// call; get_run with wait_seconds sends a step per change of a run. No end
// notification is sent, since mcp-go may deliver it after the result on
// streamable HTTP.
func (s *Server) progress(ctx context.Context, req mcpgo.CallToolRequest, name string) func(progress, total float64, message string) {
	ms := server.ServerFromContext(ctx)
	if req.Params.Meta == nil || req.Params.Meta.ProgressToken == nil || ms == nil {
		return func(float64, float64, string) {}
	}
	token := req.Params.Meta.ProgressToken
	return func(progress, total float64, message string) {
		if err := ms.SendNotificationToClient(ctx, "notifications/progress", map[string]any{
			"progressToken": token, "progress": progress, "total": total, "message": message}); err != nil {
			s.log.Debug("mcp progress", "tool", name, "err", err)
		}
	}
}

// handler adapts a tool to mcp-go: it never returns a Go error (which
// would be a protocol failure); every failure, panics included, becomes a
// tool result with isError set.
func (s *Server) handler(t *tool) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcpgo.CallToolRequest) (res *mcpgo.CallToolResult, _ error) {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("mcp tool panicked", "tool", t.def.Name, "panic", r, "stack", string(debug.Stack()))
				res = mcpgo.NewToolResultError(fmt.Sprintf("internal error in %s (logged on the server); retry, and report it if it persists", t.def.Name))
			}
		}()
		ro := readOnlyCaller(ctx)
		if ro && t.access == writeTool {
			c, _ := experiments.CallerFrom(ctx)
			s.svc.RecordRefusal(ctx, "mcp."+t.def.Name, "mcp/"+t.def.Name, "tool changes data; key has read scope only")
			return mcpgo.NewToolResultError(fmt.Sprintf(
				"%s changes data, and key %q has read scope only; use the read-only tools (run_sql with read_only, diff_branches, list_branches, ...) or ask an operator for a key with write scope (offshoot key create --scope write:PROJECT)",
				t.def.Name, c.KeyID)), nil
		}
		args := req.Params.RawArguments
		if len(args) == 0 && req.Params.Arguments != nil {
			b, err := json.Marshal(req.Params.Arguments)
			if err != nil {
				return s.toolError(t, err), nil
			}
			args = b
		}
		notify := s.progress(ctx, req, t.def.Name)
		notify(0, 1, t.def.Name+" started (a suspended branch compute wakes first)")
		structured, text, err := t.run(ctx, call{args: args, readOnly: ro, project: s.cfg.DefaultProject, notify: notify})
		if err != nil {
			return s.toolError(t, err), nil
		}
		return mcpgo.NewToolResultStructured(structured, text), nil
	}
}
