package experiments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	pgxvec "github.com/pgvector/pgvector-go/pgx"
)

// QueryRequest is SQL to run on one branch, in one transaction.
type QueryRequest struct {
	Project string `json:"-"`
	Branch  string `json:"-"`
	// SQL is the text to run. Without Params and without ReadOnly it may hold
	// several statements separated by semicolons (simple protocol);
	// otherwise it is one statement. Give SQL or Statements, not both.
	SQL string `json:"sql,omitempty"`
	// Params are the values of $1, $2, ... in SQL. Each is sent as text and
	// typed by Postgres: numbers and booleans as written, strings as is,
	// null as NULL, arrays of numbers as a pgvector literal "[1,2,3]",
	// objects as JSON text. Pass other arrays as Postgres literals ("{1,2}").
	Params []any `json:"params,omitempty"`
	// Statements run in order in the same transaction, each with its own
	// parameters.
	Statements []Statement `json:"statements,omitempty"`
	// ReadOnly runs the transaction READ ONLY; required for keys that only
	// have read scope.
	ReadOnly bool `json:"read_only,omitempty"`
	// TimeoutMS is the statement timeout in milliseconds. Default 30000,
	// at most Config.MaxQueryTimeout.
	TimeoutMS int `json:"timeout_ms,omitempty"`
	// MaxRows caps the rows returned per result; more rows set Truncated.
	// Default 1000, at most 100000.
	MaxRows int `json:"max_rows,omitempty"`
}

// Statement is one statement of a multi-statement query.
type Statement struct {
	SQL    string `json:"sql"`
	Params []any  `json:"params,omitempty"`
}

// QueryResult is the outcome of a successful query: one Result per
// statement (several for a multi-statement SQL text).
type QueryResult struct {
	Results    []Result `json:"results"`
	DurationMS float64  `json:"duration_ms"`
}

// Result is the outcome of one statement.
type Result struct {
	// Statement is the index of the request statement that produced it.
	Statement int `json:"statement"`
	// Part is the index of the result within that statement's SQL text:
	// one SQL text of several statements (simple protocol) gives results
	// 0, 1, 2, ... of one Statement.
	Part int `json:"part"`
	// Command is Postgres' command tag, e.g. "SELECT 2" or "INSERT 0 1".
	Command      string   `json:"command"`
	RowsAffected int64    `json:"rows_affected"`
	Columns      []Column `json:"columns"`
	// Rows hold JSON-friendly values (see the API docs): numbers, strings,
	// booleans, RFC 3339 timestamps, base64 bytea, raw JSON, float arrays.
	Rows [][]any `json:"rows"`
	// Truncated reports that the statement returned more than MaxRows rows.
	Truncated bool `json:"truncated"`
}

// Column names a result column and its Postgres type, as format_type
// prints it (e.g. "integer", "vector(3)", "timestamp with time zone").
type Column struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	TypeOID uint32 `json:"type_oid"`
	typmod  int32
}

const (
	defaultQueryTimeout = 30 * time.Second
	defaultMaxRows      = 1000
	maxMaxRows          = 100000
	// queryGrace is how long past the statement timeout the client side
	// waits before cancelling, so that Postgres reports the timeout itself.
	queryGrace = 2 * time.Second
)

// validate checks the request and returns its statements and limits.
func (s *Service) validateQuery(req *QueryRequest) ([]Statement, time.Duration, int, error) {
	if err := validName("project", req.Project); err != nil {
		return nil, 0, 0, err
	}
	if err := validName("branch", req.Branch); err != nil {
		return nil, 0, 0, err
	}
	stmts := req.Statements
	switch {
	case req.SQL != "" && len(stmts) > 0:
		return nil, 0, 0, invalid("sql", "give sql or statements, not both")
	case req.SQL == "" && len(stmts) == 0:
		return nil, 0, 0, invalid("sql", "is empty")
	case req.SQL != "":
		stmts = []Statement{{SQL: req.SQL, Params: req.Params}}
	case len(req.Params) > 0:
		return nil, 0, 0, invalid("params", "goes with sql; put params inside each of statements")
	}
	for i, st := range stmts {
		if strings.TrimSpace(st.SQL) == "" {
			return nil, 0, 0, invalid(fmt.Sprintf("statements[%d].sql", i), "is empty")
		}
	}
	timeout := defaultQueryTimeout
	if req.TimeoutMS < 0 {
		return nil, 0, 0, invalid("timeout_ms", "must be positive")
	}
	if req.TimeoutMS > 0 {
		timeout = time.Duration(req.TimeoutMS) * time.Millisecond
	}
	if timeout > s.cfg.MaxQueryTimeout {
		return nil, 0, 0, invalid("timeout_ms", "at most %d", s.cfg.MaxQueryTimeout.Milliseconds())
	}
	rows := defaultMaxRows
	if req.MaxRows < 0 || req.MaxRows > maxMaxRows {
		return nil, 0, 0, invalid("max_rows", "must be between 1 and %d", maxMaxRows)
	}
	if req.MaxRows > 0 {
		rows = req.MaxRows
	}
	return stmts, timeout, rows, nil
}

// Query runs the request's statements on a branch in one transaction
// (READ ONLY when asked) with a statement timeout and a row limit. It
// needs write access to the branch, or read access when ReadOnly. A
// statement Postgres rejects rolls the transaction back and returns a
// *QueryError (SQLSTATE 57014 for the timeout). Every call is audited
// with its SQL (AuditEntry.SQL, per Config.AuditSQL).
// Safe for concurrent use.
func (s *Service) Query(ctx context.Context, req QueryRequest) (*QueryResult, error) {
	var res *QueryResult
	need := RoleWrite
	if req.ReadOnly {
		need = RoleRead
	}
	sqls := []string{req.SQL}
	if req.SQL == "" {
		sqls = sqls[:0]
		for _, st := range req.Statements {
			sqls = append(sqls, st.SQL)
		}
	}
	err := func() error {
		stmts, timeout, maxRows, err := s.validateQuery(&req)
		if err != nil {
			return err
		}
		if err := s.authorize(ctx, need, req.Project, req.Branch); err != nil {
			return err
		}
		access := ReadWrite
		if c, _ := CallerFrom(ctx); req.ReadOnly {
			access = ReadOnly
		} else if c.Allows(RoleAdmin, req.Project, req.Branch) {
			access = Superuser
		}
		// A following replica is a hot standby: its transactions can only
		// read, so a query there runs READ ONLY without being asked to.
		sb, err := s.StandbyOf(req.Project, req.Branch)
		if err != nil {
			return err
		}
		conn, release, err := s.connect(ctx, req.Project, req.Branch, access)
		if err != nil {
			return err
		}
		defer release()
		res, err = runQuery(ctx, conn, stmts, req.ReadOnly, sb != nil, timeout, maxRows)
		var qe *QueryError
		if sb != nil && errors.As(err, &qe) && qe.SQLState == pgReadOnlyTransaction {
			qe.Message = fmt.Sprintf("branch %s/%s is a read-only replica of its source; promote it first (offshoot replica promote %s) or write on a fork of it: %s",
				req.Project, req.Branch, req.Project, qe.Message)
		}
		return err
	}()
	s.recordEntry(ctx, AuditEntry{Action: "query", Target: req.Project + "/" + req.Branch, SQL: s.auditSQL(sqls...)}, err)
	return res, err
}

// clip shortens s to at most n bytes, on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func (s *Service) connect(ctx context.Context, project, branch string, access Access) (*pgx.Conn, func(), error) {
	if s.cfg.Connector == nil {
		return nil, nil, fmt.Errorf("connect %s/%s: no compute is configured: %w", project, branch, ErrUnavailable)
	}
	conn, release, err := s.cfg.Connector.Conn(ctx, project, branch, access)
	if err != nil {
		return nil, nil, fmt.Errorf("connect %s/%s: %w", project, branch, err)
	}
	if _, ok := conn.TypeMap().TypeForName("vector"); !ok {
		// Databases without the extension simply return vectors as text.
		_ = pgxvec.RegisterTypes(ctx, conn)
	}
	return conn, release, nil
}

// pgReadOnlyTransaction is SQLSTATE read_only_sql_transaction: a write in
// a READ ONLY transaction or on a hot standby.
const pgReadOnlyTransaction = "25006"

// runQuery runs stmts in one transaction: READ ONLY when readOnly (the
// caller asked; statements cannot lift it) or standby (a hot standby,
// where READ WRITE cannot even begin), READ WRITE otherwise.
func runQuery(ctx context.Context, conn *pgx.Conn, stmts []Statement, readOnly, standby bool, timeout time.Duration, maxRows int) (*QueryResult, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout+queryGrace)
	defer cancel()
	pc := conn.PgConn()
	mode := "READ WRITE"
	if readOnly || standby {
		mode = "READ ONLY"
	}
	begin := fmt.Sprintf("BEGIN ISOLATION LEVEL READ COMMITTED %s; SET LOCAL statement_timeout = %d", mode, timeout.Milliseconds())
	if readOnly {
		// Take a snapshot now: once one is taken, SET TRANSACTION READ WRITE
		// and friends fail, so the statements cannot lift READ ONLY.
		begin += "; SELECT 1"
	}
	if err := pc.Exec(ctx, begin).Close(); err != nil {
		// Postgres refusing the transaction (a standby promoted or
		// demoted meanwhile, a bad setting) fails the query, as a
		// statement would.
		return nil, queryError(0, err)
	}
	committed := false
	defer func() {
		if !committed && pc.TxStatus() != 'I' && !pc.IsClosed() {
			rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer rcancel()
			_ = pc.Exec(rctx, "ROLLBACK").Close()
		}
	}()
	out := &QueryResult{Results: []Result{}}
	for i, st := range stmts {
		var err error
		if len(st.Params) == 0 && !readOnly {
			err = execSimple(ctx, conn, i, st.SQL, maxRows, out)
		} else {
			err = execParams(ctx, conn, i, st, maxRows, out)
		}
		if err != nil {
			return nil, err
		}
		if pc.TxStatus() != 'T' {
			return nil, invalid(fieldOf(len(stmts), i), "statement ended the transaction; a query runs in one transaction, leave out BEGIN, COMMIT and ROLLBACK")
		}
	}
	if err := typeNames(ctx, conn, out.Results); err != nil {
		return nil, err
	}
	if err := pc.Exec(ctx, "COMMIT").Close(); err != nil {
		return nil, queryError(len(stmts)-1, err)
	}
	committed = true
	out.DurationMS = float64(time.Since(start).Microseconds()) / 1000
	return out, nil
}

func fieldOf(n, i int) string {
	if n == 1 {
		return "sql"
	}
	return fmt.Sprintf("statements[%d].sql", i)
}

func execSimple(ctx context.Context, conn *pgx.Conn, idx int, sql string, maxRows int, out *QueryResult) error {
	mrr := conn.PgConn().Exec(ctx, sql)
	var first error
	firstPart, part := 0, 0
	for mrr.NextResult() {
		r, err := readResult(conn, mrr.ResultReader(), idx, maxRows)
		if err != nil && first == nil {
			first, firstPart = err, part
		}
		r.Part = part
		part++
		out.Results = append(out.Results, r)
	}
	if err := mrr.Close(); err != nil {
		// The failing statement of the text is the one after the last
		// result that completed.
		return withPart(queryError(idx, err), part)
	}
	if first != nil {
		return withPart(queryError(idx, first), firstPart)
	}
	return nil
}

func execParams(ctx context.Context, conn *pgx.Conn, idx int, st Statement, maxRows int, out *QueryResult) error {
	vals := make([][]byte, len(st.Params))
	for j, p := range st.Params {
		v, err := paramText(p)
		if err != nil {
			return invalid(fmt.Sprintf("params[%d]", j), "%v", err)
		}
		vals[j] = v
	}
	rr := conn.PgConn().ExecParams(ctx, st.SQL, vals, nil, nil, nil)
	r, err := readResult(conn, rr, idx, maxRows)
	if err != nil {
		return queryError(idx, err)
	}
	out.Results = append(out.Results, r)
	return nil
}

// readResult reads up to maxRows rows and drains the rest.
func readResult(conn *pgx.Conn, rr *pgconn.ResultReader, idx, maxRows int) (Result, error) {
	r := Result{Statement: idx, Rows: [][]any{}}
	fds := rr.FieldDescriptions()
	r.Columns = make([]Column, len(fds))
	for i, fd := range fds {
		r.Columns[i] = Column{Name: fd.Name, TypeOID: fd.DataTypeOID, typmod: fd.TypeModifier}
	}
	tm := conn.TypeMap()
	var convErr error
	for rr.NextRow() {
		if len(r.Rows) == maxRows {
			r.Truncated = true
			continue // drain: the rest is read and dropped
		}
		raw := rr.Values()
		row := make([]any, len(raw))
		for i, b := range raw {
			v, err := jsonValue(tm, fds[i].DataTypeOID, b)
			if err != nil && convErr == nil {
				convErr = fmt.Errorf("column %s: %w", fds[i].Name, err)
			}
			row[i] = v
		}
		r.Rows = append(r.Rows, row)
	}
	tag, err := rr.Close()
	if err != nil {
		return r, err
	}
	if convErr != nil {
		return r, convErr
	}
	r.Command = tag.String()
	r.RowsAffected = tag.RowsAffected()
	return r, nil
}

// typeNames fills in each column's type name with format_type.
func typeNames(ctx context.Context, conn *pgx.Conn, results []Result) error {
	var oids []uint32
	var mods []int32
	for _, r := range results {
		for _, c := range r.Columns {
			oids = append(oids, c.TypeOID)
			mods = append(mods, c.typmod)
		}
	}
	if len(oids) == 0 {
		return nil
	}
	rows, err := conn.Query(ctx, "SELECT format_type(o, NULLIF(m, -1)) FROM unnest($1::oid[], $2::int4[]) WITH ORDINALITY AS u(o, m, n) ORDER BY n", oids, mods)
	if err != nil {
		return fmt.Errorf("type names: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("type names: %w", err)
	}
	k := 0
	for i := range results {
		for j := range results[i].Columns {
			results[i].Columns[j].Type = names[k]
			k++
		}
	}
	return nil
}

// paramText encodes one JSON parameter as Postgres text input (nil = NULL).
func paramText(p any) ([]byte, error) {
	switch v := p.(type) {
	case nil:
		return nil, nil
	case string:
		return []byte(v), nil
	case bool:
		return []byte(strconv.FormatBool(v)), nil
	case json.Number:
		return []byte(v), nil
	case float64:
		return strconv.AppendFloat(nil, v, 'g', -1, 64), nil
	case int:
		return strconv.AppendInt(nil, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(nil, v, 10), nil
	case []float32:
		b, _ := json.Marshal(v)
		return b, nil
	case []any:
		var sb strings.Builder
		sb.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				sb.WriteByte(',')
			}
			switch e := e.(type) {
			case json.Number:
				sb.WriteString(string(e))
			case float64:
				sb.WriteString(strconv.FormatFloat(e, 'g', -1, 64))
			default:
				return nil, fmt.Errorf("array elements must be numbers (a vector); pass other arrays as a Postgres literal string")
			}
		}
		sb.WriteByte(']')
		return []byte(sb.String()), nil
	case map[string]any:
		return json.Marshal(v)
	default:
		return nil, fmt.Errorf("unsupported parameter type %T", p)
	}
}

// queryError converts a Postgres error to a *QueryError; other errors are
// returned wrapped.
// withPart sets the part of a QueryError (see Result.Part).
func withPart(err error, part int) error {
	var qe *QueryError
	if errors.As(err, &qe) {
		qe.Part = part
	}
	return err
}

func queryError(idx int, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return &QueryError{Statement: idx, SQLState: pe.Code, Severity: pe.Severity, Message: pe.Message,
			Detail: pe.Detail, Hint: pe.Hint, Position: int(pe.Position)}
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return err
	}
	return fmt.Errorf("statement %d: %w", idx, err)
}
