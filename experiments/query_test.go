package experiments_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/offshootdb/offshoot/experiments"
)

// newService opens a Service over conn in a temporary control dir.
func newService(t *testing.T, conn experiments.Connector) *experiments.Service {
	t.Helper()
	s, err := experiments.New(experiments.Config{ControlDir: t.TempDir(), Connector: conn,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func admin() context.Context {
	return experiments.WithCaller(context.Background(), experiments.LocalCaller)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestQuery(t *testing.T) {
	t.Parallel()
	c := pgtest.New(t, nil)
	s := newService(t, experiments.StaticConnector{"p/main": c.ConnString})
	ctx := admin()
	q := func(req experiments.QueryRequest) (*experiments.QueryResult, error) {
		req.Project, req.Branch = "p", "main"
		return s.Query(ctx, req)
	}

	t.Run("types", func(t *testing.T) {
		res, err := q(experiments.QueryRequest{SQL: `SELECT 1::int2 AS i2, 2::int4 AS i4, 9007199254740993::int8 AS i8,
			12345678901234567890.123::numeric AS num, 'NaN'::float8 AS nan, 1.5::float4 AS f4, true AS b, 'héllo'::text AS t,
			NULL::int AS n, '2024-03-01 12:34:56.789+02'::timestamptz AS tz, '2024-03-01 12:34:56'::timestamp AS ts,
			'2024-03-01'::date AS d, '\x00ff10'::bytea AS by, '{"b": [1, 2.50], "a": null}'::jsonb AS jb,
			'{"z":1,  "a":2}'::json AS js, '[1,2.5,-3]'::vector AS v, '[0.5,1]'::halfvec AS hv, ARRAY[1,2,NULL] AS arr,
			'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, interval '1 day 2 hours' AS iv`})
		if err != nil {
			t.Fatal(err)
		}
		r := res.Results[0]
		var types []string
		for _, col := range r.Columns {
			types = append(types, col.Name+":"+col.Type)
		}
		wantTypes := "i2:smallint i4:integer i8:bigint num:numeric nan:double precision f4:real b:boolean t:text n:integer " +
			"tz:timestamp with time zone ts:timestamp without time zone d:date by:bytea jb:jsonb js:json v:vector hv:halfvec arr:integer[] u:uuid iv:interval"
		if got := strings.Join(types, " "); got != wantTypes {
			t.Errorf("types\n got %s\nwant %s", got, wantTypes)
		}
		want := `[[1,2,9007199254740993,12345678901234567890.123,"NaN",1.5,true,"héllo",null,"2024-03-01T10:34:56.789Z",` +
			`"2024-03-01T12:34:56","2024-03-01","AP8Q",{"a":null,"b":[1,2.50]},{"z":1,"a":2},[1,2.5,-3],[0.5,1],[1,2,null],` +
			`"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","1 day 02:00:00"]]`
		if got := mustJSON(t, r.Rows); got != want {
			t.Errorf("rows\n got %s\nwant %s", got, want)
		}
		if r.Truncated || r.Command != "SELECT 1" {
			t.Errorf("truncated %v command %q", r.Truncated, r.Command)
		}
	})

	t.Run("vector column typmod", func(t *testing.T) {
		res, err := q(experiments.QueryRequest{Statements: []experiments.Statement{
			{SQL: "CREATE TABLE emb (id int PRIMARY KEY, e vector(3))"},
			{SQL: "INSERT INTO emb VALUES ($1, $2), (2, '[4,5,6]')", Params: []any{json.Number("1"), []any{json.Number("1.25"), json.Number("2"), json.Number("3")}}},
			{SQL: "SELECT id, e, e <-> $1 AS dist FROM emb ORDER BY id", Params: []any{"[1.25,2,3]"}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Results) != 3 {
			t.Fatalf("%d results, want 3", len(res.Results))
		}
		if res.Results[1].RowsAffected != 2 {
			t.Errorf("insert affected %d", res.Results[1].RowsAffected)
		}
		sel := res.Results[2]
		if sel.Columns[1].Type != "vector(3)" || sel.Columns[2].Type != "double precision" {
			t.Errorf("columns %+v", sel.Columns)
		}
		if got := mustJSON(t, sel.Rows[0][:2]); got != `[1,[1.25,2,3]]` {
			t.Errorf("row %s", got)
		}
	})

	t.Run("truncation", func(t *testing.T) {
		for _, tc := range []struct {
			n, max    int
			rows      int
			truncated bool
		}{{50, 10, 10, true}, {10, 10, 10, false}, {3, 0, 3, false}} {
			res, err := q(experiments.QueryRequest{SQL: "SELECT g FROM generate_series(1, $1) g", Params: []any{tc.n}, MaxRows: tc.max})
			if err != nil {
				t.Fatal(err)
			}
			r := res.Results[0]
			if len(r.Rows) != tc.rows || r.Truncated != tc.truncated {
				t.Errorf("n=%d max=%d: %d rows truncated=%v, want %d %v", tc.n, tc.max, len(r.Rows), r.Truncated, tc.rows, tc.truncated)
			}
		}
	})

	t.Run("timeout", func(t *testing.T) {
		_, err := q(experiments.QueryRequest{SQL: "SELECT pg_sleep(30)", TimeoutMS: 200})
		var qe *experiments.QueryError
		if !errors.As(err, &qe) || qe.SQLState != "57014" {
			t.Fatalf("err = %v, want SQLSTATE 57014", err)
		}
		if !errors.Is(err, experiments.ErrQuery) {
			t.Error("not ErrQuery")
		}
	})

	t.Run("syntax error has position", func(t *testing.T) {
		_, err := q(experiments.QueryRequest{SQL: "SELECT 1 FROM pg_class WHER true"})
		var qe *experiments.QueryError
		if !errors.As(err, &qe) || qe.SQLState != "42601" || qe.Position != 29 {
			t.Fatalf("err = %#v, want 42601 at 29", err)
		}
		_, err = q(experiments.QueryRequest{SQL: "SELECT nosuch FROM pg_class", ReadOnly: true})
		if !errors.As(err, &qe) || qe.SQLState != "42703" || qe.Position != 8 || qe.Message == "" {
			t.Fatalf("err = %#v, want 42703 at 8", err)
		}
	})

	t.Run("read only", func(t *testing.T) {
		_, err := q(experiments.QueryRequest{SQL: "CREATE TABLE ro (a int)", ReadOnly: true})
		var qe *experiments.QueryError
		if !errors.As(err, &qe) || qe.SQLState != "25006" {
			t.Fatalf("err = %v, want 25006 read_only_sql_transaction", err)
		}
		_, err = q(experiments.QueryRequest{Statements: []experiments.Statement{{SQL: "COMMIT"}, {SQL: "CREATE TABLE ro (a int)"}}, ReadOnly: true})
		if !errors.Is(err, experiments.ErrInvalid) {
			t.Fatalf("COMMIT inside a read-only query: err = %v, want ErrInvalid", err)
		}
		for _, escape := range []string{"SET TRANSACTION READ WRITE", "SET transaction_read_only = off", "SELECT set_config('transaction_read_only', 'off', true)"} {
			_, err = q(experiments.QueryRequest{Statements: []experiments.Statement{{SQL: escape}, {SQL: "CREATE TABLE ro (a int)"}}, ReadOnly: true})
			if !errors.As(err, &qe) {
				t.Fatalf("%s in a read-only query: err = %v, want a QueryError", escape, err)
			}
		}
		res, err := q(experiments.QueryRequest{SQL: "SELECT count(*) FROM pg_class WHERE relname = 'ro'", ReadOnly: true})
		if err != nil || mustJSON(t, res.Results[0].Rows) != "[[0]]" {
			t.Fatalf("table ro exists after read-only queries: %v %v", err, res)
		}
	})

	t.Run("one transaction", func(t *testing.T) {
		_, err := q(experiments.QueryRequest{SQL: "CREATE TABLE tx (a int); INSERT INTO tx VALUES (1); SELECT 1/0"})
		var qe *experiments.QueryError
		if !errors.As(err, &qe) || qe.SQLState != "22012" || qe.Statement != 0 || qe.Part != 2 {
			t.Fatalf("err = %v (%+v), want 22012 in part 2 of statement 0", err, qe)
		}
		res, err := q(experiments.QueryRequest{SQL: "SELECT to_regclass('tx') IS NULL"})
		if err != nil || mustJSON(t, res.Results[0].Rows) != "[[true]]" {
			t.Fatalf("table tx survived a failed transaction: %v %v", err, res)
		}
		res, err = q(experiments.QueryRequest{SQL: "CREATE TABLE tx (a int); INSERT INTO tx VALUES (1), (2); SELECT sum(a) FROM tx"})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Results) != 3 || res.Results[1].Command != "INSERT 0 2" || mustJSON(t, res.Results[2].Rows) != "[[3]]" ||
			res.Results[1].Part != 1 || res.Results[2].Part != 2 {
			t.Fatalf("results %s", mustJSON(t, res.Results))
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for _, tc := range []struct {
			req   experiments.QueryRequest
			field string
		}{
			{experiments.QueryRequest{}, "sql"},
			{experiments.QueryRequest{SQL: "SELECT 1", Statements: []experiments.Statement{{SQL: "SELECT 2"}}}, "sql"},
			{experiments.QueryRequest{SQL: "SELECT 1", TimeoutMS: -1}, "timeout_ms"},
			{experiments.QueryRequest{SQL: "SELECT 1", TimeoutMS: 3600_000}, "timeout_ms"},
			{experiments.QueryRequest{SQL: "SELECT 1", MaxRows: 1_000_000}, "max_rows"},
			{experiments.QueryRequest{SQL: "SELECT $1", Params: []any{[]any{"x"}}}, "params[0]"},
			{experiments.QueryRequest{Statements: []experiments.Statement{{SQL: " "}}}, "statements[0].sql"},
		} {
			_, err := q(tc.req)
			var fe *experiments.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || !errors.Is(err, experiments.ErrInvalid) {
				t.Errorf("%+v: err = %v, want a FieldError on %s", tc.req, err, tc.field)
			}
		}
		_, err := s.Query(ctx, experiments.QueryRequest{Project: "p", Branch: "nope", SQL: "SELECT 1"})
		if !errors.Is(err, experiments.ErrNotFound) {
			t.Errorf("unknown branch: err = %v, want ErrNotFound", err)
		}
	})

	t.Run("no caller", func(t *testing.T) {
		_, err := s.Query(context.Background(), experiments.QueryRequest{Project: "p", Branch: "main", SQL: "SELECT 1"})
		if !errors.Is(err, experiments.ErrUnauthenticated) {
			t.Errorf("err = %v, want ErrUnauthenticated", err)
		}
	})
}

func TestQueryWithoutCompute(t *testing.T) {
	s := newService(t, nil)
	_, err := s.Query(admin(), experiments.QueryRequest{Project: "p", Branch: "main", SQL: "SELECT 1"})
	if !errors.Is(err, experiments.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

// TestQueryAuditSQL: every query's audit entry carries its SQL, all
// statements of it, as text by default or as its SHA-256 when the
// operator configures hashing; failed and refused queries too.
func TestQueryAuditSQL(t *testing.T) {
	t.Parallel()
	c := pgtest.New(t, nil)
	const one, two = "SELECT 41 + 1", "SELECT 'secret'::text"
	sum := sha256.Sum256([]byte(one + ";\n" + two))
	for _, tc := range []struct {
		mode string
		want string
	}{
		{"", one + ";\n" + two},
		{experiments.AuditSQLText, one + ";\n" + two},
		{experiments.AuditSQLHash, "sha256:" + hex.EncodeToString(sum[:])},
	} {
		t.Run("mode="+tc.mode, func(t *testing.T) {
			s, err := experiments.New(experiments.Config{ControlDir: t.TempDir(), AuditSQL: tc.mode,
				Connector: experiments.StaticConnector{"p/main": c.ConnString}})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Open(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			stmts := []experiments.Statement{{SQL: one}, {SQL: two}}
			if _, err := s.Query(admin(), experiments.QueryRequest{Project: "p", Branch: "main", Statements: stmts}); err != nil {
				t.Fatal(err)
			}
			reader := experiments.WithCaller(context.Background(), experiments.Caller{KeyID: "r", Scopes: []experiments.Scope{{Role: experiments.RoleRead, Project: "p"}}})
			if _, err := s.Query(reader, experiments.QueryRequest{Project: "p", Branch: "main", Statements: stmts}); !errors.Is(err, experiments.ErrForbidden) {
				t.Fatalf("reader writes: %v", err)
			}
			page, err := s.AuditLog(admin(), experiments.AuditQuery{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range page.Entries {
				if e.Action == "query" {
					got = append(got, e.Result+" "+e.SQL)
					if tc.mode == experiments.AuditSQLHash && strings.Contains(e.Detail+e.Error, "secret") {
						t.Errorf("hashed audit entry holds the text: %+v", e)
					}
				}
			}
			if want := []string{"ok " + tc.want, "denied " + tc.want}; strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("query audit entries %q, want %q", got, want)
			}
		})
	}
	if _, err := experiments.New(experiments.Config{ControlDir: t.TempDir(), AuditSQL: "md5"}); !errors.Is(err, experiments.ErrInvalid) {
		t.Errorf("AuditSQL md5: %v, want ErrInvalid", err)
	}
}
