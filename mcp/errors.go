package mcp

import (
	"context"
	"errors"
	"fmt"
	"strings"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/offshootdb/offshoot/experiments"
)

// toolError is the one place where facade errors become MCP tool errors:
// a result with isError set whose text gives the cause and the next step,
// and whose structured content names the error kind for programs.
func (s *Server) toolError(t *tool, err error) *mcpgo.CallToolResult {
	kind, msg := s.explain(t, err)
	res := mcpgo.NewToolResultError(msg)
	res.StructuredContent = map[string]any{"error": kind, "message": msg}
	var qe *experiments.QueryError
	if errors.As(err, &qe) {
		res.StructuredContent = map[string]any{"error": kind, "message": msg, "postgres": qe}
	}
	return res
}

// explain returns the error's kind and a message for a model.
func (s *Server) explain(t *tool, err error) (kind, msg string) {
	var fe *experiments.FieldError
	var qe *experiments.QueryError
	name := t.def.Name
	switch {
	case errors.As(err, &fe):
		return "invalid-input", fmt.Sprintf("invalid argument %s: %s; fix it and call %s again", fe.Field, fe.Reason, name)
	case errors.As(err, &qe):
		return "query-failed", queryMessage(qe)
	case errors.Is(err, experiments.ErrInvalid):
		return "invalid-input", fmt.Sprintf("%v; fix the arguments and call %s again", err, name)
	case errors.Is(err, experiments.ErrUnauthenticated):
		return "unauthenticated", fmt.Sprintf("%v; the MCP client must send a valid API key (Authorization: Bearer osk_...)", err)
	case errors.Is(err, experiments.ErrForbidden):
		return "forbidden", fmt.Sprintf("%v; this key may not do that: stay on branches and projects it covers, use read_only for queries, or ask an operator for a key with a wider scope", err)
	case errors.Is(err, experiments.ErrNotFound):
		next := t.notFound
		if next == "" {
			next = "list_branches shows the existing branches and list_projects the projects"
		}
		return "not-found", fmt.Sprintf("%v; %s", err, next)
	case errors.Is(err, experiments.ErrConflict):
		return "conflict", fmt.Sprintf("%v; list_branches and list_snapshots show the current state: pick another name, or discard what is in the way if it is yours", err)
	case errors.Is(err, experiments.ErrCapacity):
		return "capacity", fmt.Sprintf("%v; retry in a few seconds, or discard_branch branches you no longer need", err)
	case errors.Is(err, experiments.ErrUnavailable):
		return "unavailable", fmt.Sprintf("%v; the server cannot serve this now: retry shortly; if it persists, an operator should run `offshoot doctor`", err)
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout", fmt.Sprintf("%s ran out of time; give it a larger timeout_ms if it has one, or make the work smaller", name)
	case errors.Is(err, context.Canceled):
		return "cancelled", fmt.Sprintf("%s was cancelled", name)
	}
	s.log.Error("mcp tool failed", "tool", name, "err", err)
	return "internal", fmt.Sprintf("internal error in %s (the server log has the cause); retry, and report it if it persists", name)
}

// queryMessage explains a Postgres error with a next step for the common
// SQLSTATEs.
func queryMessage(qe *experiments.QueryError) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Postgres rejected statement %s: %s (SQLSTATE %s)", experiments.StatementLabel(qe.Statement, qe.Part), qe.Message, qe.SQLState)
	if qe.Detail != "" {
		fmt.Fprintf(&b, "; detail: %s", qe.Detail)
	}
	if qe.Hint != "" {
		fmt.Fprintf(&b, "; hint: %s", qe.Hint)
	}
	if qe.Position > 0 {
		fmt.Fprintf(&b, "; at character %d", qe.Position)
	}
	b.WriteString(". The transaction was rolled back, nothing changed; ")
	switch {
	case qe.SQLState == "57014":
		b.WriteString("the statement hit its timeout: raise timeout_ms, add a LIMIT or a WHERE, or look at the plan with explain_sql")
	case qe.SQLState == "25006":
		b.WriteString("the transaction is READ ONLY: pass read_only false (needs a key with write scope), ideally on a fork made with fork_branch")
	case qe.SQLState == "42P01":
		b.WriteString("list_tables shows the tables of the branch")
	case qe.SQLState == "42703":
		b.WriteString("describe_table shows the columns of a table")
	case strings.HasPrefix(qe.SQLState, "42"):
		b.WriteString("fix the SQL and run it again")
	case strings.HasPrefix(qe.SQLState, "23"):
		b.WriteString("the data violates a constraint: check the values, or describe_table to see the constraints")
	default:
		b.WriteString("fix the statement or its parameters and run it again")
	}
	return b.String()
}
