package mcp

import (
	"context"
	"fmt"
	"strings"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/offshootdb/offshoot/experiments"
)

// Defaults of the tools, smaller than the HTTP API's: a model reads every
// row it gets.
const (
	// defaultToolRows is max_rows when the agent gives none.
	defaultToolRows = 50
	// textRows caps the rows of each result in the text rendering.
	textRows = 50
	// textCell caps one cell in the text rendering, in bytes.
	textCell = 200
)

// annotations sets all four hints of a tool, so none is left to mcp-go's
// defaults (which are "destructive, open world").
// toolRows is the max_rows of a query tool: defaultToolRows when the agent
// gives none; an explicit value below 1 is refused, as the schema says.
func toolRows(maxRows *int) (int, error) {
	if maxRows == nil {
		return defaultToolRows, nil
	}
	if *maxRows < 1 {
		return 0, &experiments.FieldError{Field: "max_rows", Reason: "must be at least 1 (leave it out for the default)"}
	}
	return *maxRows, nil
}

func annotations(readOnly, destructive, idempotent bool) mcpgo.ToolOption {
	return mcpgo.WithToolAnnotation(mcpgo.ToolAnnotation{
		ReadOnlyHint:    mcpgo.ToBoolPtr(readOnly),
		DestructiveHint: mcpgo.ToBoolPtr(destructive),
		IdempotentHint:  mcpgo.ToBoolPtr(idempotent),
		// Tools act on this server's databases only.
		OpenWorldHint: mcpgo.ToBoolPtr(false),
	})
}

// Common arguments.
func projectArg() mcpgo.ToolOption {
	return mcpgo.WithString("project", mcpgo.Description("Project (one Postgres cluster with its tree of branches). Default: the server's default project, usually \"main\"; list_projects shows them."))
}

func branchArg(desc string) mcpgo.ToolOption {
	return mcpgo.WithString("branch", mcpgo.Required(), mcpgo.Description(desc))
}

// toolTable lists every tool (tools/list sorts them by name).
func (s *Server) toolTable() []*tool {
	return append(append(append(append(s.branchTools(), s.runTools()...), s.mergeTools()...), s.replicaTools()...),
		s.runSQLTool(),
		s.runSQLTransactionTool(),
		s.diffBranchesTool(),
		s.explainSQLTool(),
		s.listTablesTool(),
		s.describeTableTool(),
		s.prepareMigrationTool(),
		s.completeMigrationTool(),
		s.vectorSearchTool(),
	)
}

type runSQLArgs struct {
	Project   string `json:"project"`
	Branch    string `json:"branch"`
	SQL       string `json:"sql"`
	Params    []any  `json:"params"`
	ReadOnly  *bool  `json:"read_only"`
	MaxRows   *int   `json:"max_rows"`
	TimeoutMS int    `json:"timeout_ms"`
}

func sqlLimitsArgs() []mcpgo.ToolOption {
	return []mcpgo.ToolOption{
		mcpgo.WithNumber("max_rows", mcpgo.Description(fmt.Sprintf("Most rows returned per statement; more are dropped and the result says truncated. Default %d, at most 100000. Keep it small: you read every row.", defaultToolRows)), mcpgo.Min(1), mcpgo.Max(100000)),
		mcpgo.WithNumber("timeout_ms", mcpgo.Description("Statement timeout in milliseconds. Default 30000 (30 s); at most the server's limit (5 min by default). A statement that runs longer is cancelled and reported as SQLSTATE 57014."), mcpgo.Min(1)),
	}
}

func (s *Server) runSQLTool() *tool {
	const desc = "Run SQL on a branch in one transaction and return the rows. " +
		"Use it to read data (read_only true, the safe default when you only look) or to change a branch, ideally a fork made with fork_branch so the parent stays untouched. " +
		"Without params the text may hold several statements separated by semicolons; with params it is one statement using $1, $2, .... " +
		"A failing statement rolls the whole transaction back. Do not send BEGIN/COMMIT. " +
		"Cost: wakes the branch's compute if it is suspended (a second or two), then as much as the SQL costs. " +
		"Returns per statement the command tag, columns with Postgres types and rows as JSON values (truncated at max_rows, marked). " +
		"Unless read_only is true this CHANGES DATA on the branch."
	opts := append([]mcpgo.ToolOption{
		mcpgo.WithDescription(desc),
		annotations(false, true, false),
		projectArg(),
		branchArg("Branch to run on, e.g. \"main\" or a fork's name; list_branches shows them."),
		mcpgo.WithString("sql", mcpgo.Required(), mcpgo.Description("SQL text. Several statements separated by ; only without params.")),
		mcpgo.WithArray("params", mcpgo.Description("Values of $1, $2, ... in order: numbers, strings, booleans, null; an array of numbers is a pgvector literal; an object is JSON text.")),
		mcpgo.WithBoolean("read_only", mcpgo.Description("Run the transaction READ ONLY: nothing can change. Default false; keys with read scope only always run read-only.")),
	}, sqlLimitsArgs()...)
	def := mcpgo.NewTool("run_sql", opts...)
	ro := mcpgo.NewTool("run_sql", append([]mcpgo.ToolOption{
		mcpgo.WithDescription("Run read-only SQL on a branch (this key has read scope only, so every query runs in a READ ONLY transaction and cannot change data). " +
			"Without params the text may hold several statements separated by semicolons; with params it is one statement using $1, $2, .... " +
			"Cost: wakes the branch's compute if it is suspended, then as much as the SQL costs. " +
			"Returns per statement the command tag, columns with Postgres types and rows as JSON values (truncated at max_rows, marked)."),
		annotations(true, false, true),
		projectArg(),
		branchArg("Branch to run on, e.g. \"main\"; list_branches shows them."),
		mcpgo.WithString("sql", mcpgo.Required(), mcpgo.Description("SQL text (read-only statements).")),
		mcpgo.WithArray("params", mcpgo.Description("Values of $1, $2, ... in order: numbers, strings, booleans, null; an array of numbers is a pgvector literal; an object is JSON text.")),
		mcpgo.WithBoolean("read_only", mcpgo.Description("Always true for this key; false is refused.")),
	}, sqlLimitsArgs()...)...)
	return &tool{def: def, readOnlyDef: &ro, access: mixedTool,
		run: func(ctx context.Context, c call) (any, string, error) {
			var a runSQLArgs
			if err := c.bind(&a); err != nil {
				return nil, "", err
			}
			req := experiments.QueryRequest{Project: c.projectOr(a.Project), Branch: a.Branch, SQL: a.SQL, Params: a.Params,
				ReadOnly: c.readOnly || (a.ReadOnly != nil && *a.ReadOnly), TimeoutMS: a.TimeoutMS}
			if c.readOnly && a.ReadOnly != nil && !*a.ReadOnly {
				s.svc.RecordRefusal(ctx, "mcp.run_sql", "mcp/run_sql", "read_only false; key has read scope only")
				return nil, "", &experiments.FieldError{Field: "read_only", Reason: "this key has read scope only, so queries run read-only; leave read_only out or pass true"}
			}
			rows, err := toolRows(a.MaxRows)
			if err != nil {
				return nil, "", err
			}
			req.MaxRows = rows
			res, err := s.svc.Query(ctx, req)
			if err != nil {
				return nil, "", err
			}
			return res, renderQuery(res, req.MaxRows), nil
		}}
}

type runSQLTransactionArgs struct {
	Project    string                  `json:"project"`
	Branch     string                  `json:"branch"`
	Statements []experiments.Statement `json:"statements"`
	MaxRows    *int                    `json:"max_rows"`
	TimeoutMS  int                     `json:"timeout_ms"`
}

func (s *Server) runSQLTransactionTool() *tool {
	opts := append([]mcpgo.ToolOption{
		mcpgo.WithDescription("Run a list of statements on a branch in ONE transaction, all or nothing: if any statement fails, none of them takes effect. " +
			"Use it for a change that must not be left half done (a migration with its data backfill, moving rows between tables). " +
			"Each statement has its own params. The timeout applies to each statement. " +
			"Cost: wakes the branch's compute if suspended, then what the SQL costs. " +
			"Returns one result per statement (command tag, columns, rows truncated at max_rows). " +
			"This CHANGES DATA on the branch; try it on a fork (fork_branch) first."),
		annotations(false, true, false),
		projectArg(),
		branchArg("Branch to run on; list_branches shows them."),
		mcpgo.WithArray("statements", mcpgo.Required(), mcpgo.MinItems(1),
			mcpgo.Description("Statements in order, each {\"sql\": \"...\", \"params\": [...]} (params optional)."),
			mcpgo.Items(map[string]any{
				"type":     "object",
				"required": []string{"sql"},
				"properties": map[string]any{
					"sql":    map[string]any{"type": "string", "description": "One SQL statement, using $1, $2, ... for params."},
					"params": map[string]any{"type": "array", "description": "Values of $1, $2, ...: numbers, strings, booleans, null; an array of numbers is a pgvector literal."},
				},
				"additionalProperties": false,
			})),
	}, sqlLimitsArgs()...)
	return &tool{def: mcpgo.NewTool("run_sql_transaction", opts...), access: writeTool,
		run: func(ctx context.Context, c call) (any, string, error) {
			var a runSQLTransactionArgs
			if err := c.bind(&a); err != nil {
				return nil, "", err
			}
			if len(a.Statements) == 0 {
				return nil, "", &experiments.FieldError{Field: "statements", Reason: "give at least one statement"}
			}
			req := experiments.QueryRequest{Project: c.projectOr(a.Project), Branch: a.Branch, Statements: a.Statements, TimeoutMS: a.TimeoutMS}
			rows, err := toolRows(a.MaxRows)
			if err != nil {
				return nil, "", err
			}
			req.MaxRows = rows
			res, err := s.svc.Query(ctx, req)
			if err != nil {
				return nil, "", err
			}
			return res, renderQuery(res, req.MaxRows), nil
		}}
}

type diffArgs struct {
	Project    string `json:"project"`
	Branch     string `json:"branch"`
	Against    string `json:"against"`
	SampleRows int    `json:"sample_rows"`
}

func (s *Server) diffBranchesTool() *tool {
	def := mcpgo.NewTool("diff_branches",
		mcpgo.WithDescription("Compare two branches of a project: the schema as a unified diff of normalized DDL, and per table the rows added, removed and changed (tables with a primary key), with a few sample rows. "+
			"Use it after changing a fork to see exactly what you changed relative to its parent before you keep, merge by hand or discard it. "+
			"Cost: one ordered scan of every table on both sides; seconds for large tables. Read-only. "+
			"Returns schema.changed, schema.unified and one entry per differing table."),
		annotations(true, false, true),
		projectArg(),
		branchArg("The changed side (\"+\" in the diff), e.g. your fork."),
		mcpgo.WithString("against", mcpgo.Required(), mcpgo.Description("The base side (\"-\" in the diff), usually the fork's parent, e.g. \"main\".")),
		mcpgo.WithNumber("sample_rows", mcpgo.Description("Sample rows per table and kind of change. Default 10, at most 100."), mcpgo.Min(0), mcpgo.Max(100)),
	)
	return &tool{def: def, access: readTool,
		run: func(ctx context.Context, c call) (any, string, error) {
			var a diffArgs
			if err := c.bind(&a); err != nil {
				return nil, "", err
			}
			d, err := s.svc.Diff(ctx, experiments.DiffRequest{Project: c.projectOr(a.Project), Branch: a.Branch, Against: a.Against, SampleRows: a.SampleRows})
			if err != nil {
				return nil, "", err
			}
			return d, renderDiff(d), nil
		}}
}

func (s *Server) explainSQLTool() *tool {
	def := mcpgo.NewTool("explain_sql",
		mcpgo.WithDescription("Show how Postgres executes one statement: EXPLAIN (ANALYZE, BUFFERS) with real row counts, timings and buffer use. "+
			"The statement really runs, but on a throwaway fork of the branch that is discarded afterwards, so even an UPDATE or DELETE leaves the branch untouched. "+
			"Use it to find why a query is slow or to check that an index is used. "+
			"Cost: a fork (instant) plus starting its compute (a second or two) plus the statement itself. Needs write scope (it creates the temporary fork). "+
			"Returns the plan as text."),
		annotations(false, false, true),
		projectArg(),
		branchArg("Branch whose data and schema the statement runs against (it is not changed)."),
		mcpgo.WithString("sql", mcpgo.Required(), mcpgo.Description("One statement to explain, e.g. a SELECT; $1, $2, ... with params.")),
		mcpgo.WithArray("params", mcpgo.Description("Values of $1, $2, ...: numbers, strings, booleans, null; an array of numbers is a pgvector literal.")),
		mcpgo.WithNumber("timeout_ms", mcpgo.Description("Statement timeout in milliseconds. Default 30000."), mcpgo.Min(1)),
	)
	return newTool(def, writeTool, "", func(ctx context.Context, c call, a struct {
		Project   string `json:"project"`
		Branch    string `json:"branch"`
		SQL       string `json:"sql"`
		Params    []any  `json:"params"`
		TimeoutMS int    `json:"timeout_ms"`
	}) (any, string, error) {
		ex, err := s.svc.Explain(ctx, experiments.ExplainRequest{Project: c.projectOr(a.Project), Branch: a.Branch, SQL: a.SQL, Params: a.Params, TimeoutMS: a.TimeoutMS})
		if err != nil {
			return nil, "", err
		}
		return ex, clipText(ex.Plan, 16000) + "\n", nil
	})
}

func (s *Server) listTablesTool() *tool {
	def := mcpgo.NewTool("list_tables",
		mcpgo.WithDescription("List the tables, views and materialized views of a branch's database with their estimated row counts and sizes. "+
			"Use it to orient yourself in an unfamiliar database before writing SQL. Cheap: reads the catalog (wakes the branch's compute if suspended). "+
			"Returns schema, name, kind, estimated_rows and total_bytes per relation."),
		annotations(true, false, true),
		projectArg(),
		branchArg("Branch whose database to look at, e.g. \"main\"."),
	)
	return newTool(def, readTool, "", func(ctx context.Context, c call, a branchRef) (any, string, error) {
		ts, err := s.svc.ListTables(ctx, c.projectOr(a.Project), a.Branch)
		if err != nil {
			return nil, "", err
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%d relation(s)\n", len(ts))
		for _, t := range ts {
			fmt.Fprintf(&b, "%s.%s (%s): ~%d rows, %d bytes\n", t.Schema, t.Name, t.Kind, t.EstimatedRows, t.TotalBytes)
		}
		return map[string]any{"tables": ts}, b.String(), nil
	})
}

func (s *Server) describeTableTool() *tool {
	def := mcpgo.NewTool("describe_table",
		mcpgo.WithDescription("Describe one table or view of a branch: columns with types, NOT NULL and defaults, constraints (primary key, foreign keys, checks) and indexes. "+
			"Use it before writing SQL against a table you have not seen. Cheap: reads the catalog. Returns the description as JSON."),
		annotations(true, false, true),
		projectArg(),
		branchArg("Branch whose database to look at."),
		mcpgo.WithString("table", mcpgo.Required(), mcpgo.Description("Table name, \"name\" (search path) or \"schema.name\"; list_tables shows them.")),
	)
	return newTool(def, readTool, "list_tables shows the tables of the branch, list_branches the branches", func(ctx context.Context, c call, a struct {
		Project string `json:"project"`
		Branch  string `json:"branch"`
		Table   string `json:"table"`
	}) (any, string, error) {
		d, err := s.svc.DescribeTable(ctx, c.projectOr(a.Project), a.Branch, a.Table)
		if err != nil {
			return nil, "", err
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%s.%s (%s, ~%d rows)\n", d.Schema, d.Name, d.Kind, d.EstimatedRows)
		for _, col := range d.Columns {
			fmt.Fprintf(&b, "  %s %s", col.Name, col.Type)
			if col.NotNull {
				b.WriteString(" NOT NULL")
			}
			if col.Default != "" {
				fmt.Fprintf(&b, " DEFAULT %s", col.Default)
			}
			b.WriteString("\n")
		}
		for _, x := range d.Constraints {
			fmt.Fprintf(&b, "constraint %s\n", x)
		}
		for _, x := range d.Indexes {
			fmt.Fprintf(&b, "%s\n", x)
		}
		return d, b.String(), nil
	})
}

func (s *Server) prepareMigrationTool() *tool {
	def := mcpgo.NewTool("prepare_migration",
		mcpgo.WithDescription("Try a schema migration safely: fork the branch, run the migration SQL on the fork (one transaction), and report the resulting schema diff and how long it took. The branch itself is not touched. "+
			"Use it for every schema change to a branch others rely on; check the diff (and the fork with run_sql if you like), then call complete_migration with the returned id to apply it for real. "+
			"Cost: a fork plus starting its compute plus the migration on the fork. A migration that fails returns the Postgres error and leaves nothing behind. "+
			"Returns id, fork, schema.unified and duration_ms."),
		annotations(false, false, false),
		projectArg(),
		branchArg("Branch the migration is for, e.g. \"main\"; it stays unchanged until complete_migration."),
		mcpgo.WithString("sql", mcpgo.Required(), mcpgo.Description("The migration: DDL (and any data changes that go with it), several statements separated by ; are fine.")),
		mcpgo.WithNumber("timeout_ms", mcpgo.Description("Statement timeout in milliseconds, on the fork and later on the branch. Default 30000."), mcpgo.Min(1)),
	)
	return newTool(def, writeTool, "", func(ctx context.Context, c call, a struct {
		Project   string `json:"project"`
		Branch    string `json:"branch"`
		SQL       string `json:"sql"`
		TimeoutMS int    `json:"timeout_ms"`
	}) (any, string, error) {
		m, err := s.svc.PrepareMigration(ctx, experiments.MigrationRequest{Project: c.projectOr(a.Project), Branch: a.Branch, SQL: a.SQL, TimeoutMS: a.TimeoutMS})
		if err != nil {
			return nil, "", err
		}
		schema := "schema unchanged\n"
		if m.Schema.Changed {
			schema = clipText(m.Schema.Unified, 8000)
		}
		return m, fmt.Sprintf("migration %s tried on fork %s in %.1f ms; branch %s unchanged\n%s\nnext: complete_migration with id %q applies it to %s\n",
			m.ID, m.Fork, m.DurationMS, m.Branch, schema, m.ID, m.Branch), nil
	})
}

func (s *Server) completeMigrationTool() *tool {
	def := mcpgo.NewTool("complete_migration",
		mcpgo.WithDescription("Apply a migration prepared with prepare_migration to its branch for real, in one transaction, then discard the fork it was tried on. This CHANGES DATA (the schema) of the branch. "+
			"Use it only after checking what prepare_migration reported. If the branch changed meanwhile and the SQL fails, nothing changes and the fork stays. "+
			"Cost: the migration on the branch. Returns the migration with completed_at."),
		annotations(false, true, false),
		projectArg(),
		mcpgo.WithString("id", mcpgo.Required(), mcpgo.Description("The id prepare_migration returned.")),
	)
	return newTool(def, writeTool, "prepare_migration returns the id to pass here", func(ctx context.Context, c call, a struct {
		Project string `json:"project"`
		ID      string `json:"id"`
	}) (any, string, error) {
		m, err := s.svc.CompleteMigration(ctx, c.projectOr(a.Project), a.ID)
		if err != nil {
			return nil, "", err
		}
		return m, fmt.Sprintf("migration %s applied to branch %s; fork %s discarded\n", m.ID, m.Branch, m.Fork), nil
	})
}

func (s *Server) vectorSearchTool() *tool {
	def := mcpgo.NewTool("vector_search",
		mcpgo.WithDescription("Find the k rows of a table whose pgvector column is nearest to a query vector (nearest first), optionally only rows whose columns equal given values. "+
			"Use it to check retrieval quality on a branch, e.g. after loading embeddings or building an index on a fork. Read-only. "+
			"Cost: one query; uses an HNSW/IVFFlat index matching the distance if there is one, else an exact scan of the table. "+
			"Returns every column of each row plus distance. The query must be a vector of numbers (embed text yourself)."),
		annotations(true, false, true),
		projectArg(),
		branchArg("Branch to search."),
		mcpgo.WithString("table", mcpgo.Required(), mcpgo.Description("Table, \"name\" or \"schema.name\"; list_tables shows them.")),
		mcpgo.WithString("column", mcpgo.Required(), mcpgo.Description("The vector column to search; describe_table shows the columns and their types.")),
		mcpgo.WithArray("vector", mcpgo.Required(), mcpgo.WithNumberItems(), mcpgo.Description("Query embedding, e.g. [0.1, -0.3, ...]; same dimension as the column.")),
		mcpgo.WithNumber("k", mcpgo.Description("How many rows. Default 10, at most 1000."), mcpgo.Min(1), mcpgo.Max(1000)),
		mcpgo.WithString("distance", mcpgo.Enum("l2", "cosine", "inner"), mcpgo.Description("Distance: l2 (default, <->), cosine (<=>) or inner (negative inner product, <#>). Match the index's operator class to use it.")),
		mcpgo.WithObject("filters", mcpgo.Description("Keep only rows whose column equals the value, e.g. {\"lang\": \"en\"}; all must match.")),
		mcpgo.WithNumber("timeout_ms", mcpgo.Description("Statement timeout in milliseconds. Default 30000."), mcpgo.Min(1)),
	)
	return newTool(def, readTool, "list_tables and describe_table show the tables and columns", func(ctx context.Context, c call, a struct {
		Project   string         `json:"project"`
		Branch    string         `json:"branch"`
		Table     string         `json:"table"`
		Column    string         `json:"column"`
		Vector    []float64      `json:"vector"`
		K         int            `json:"k"`
		Distance  string         `json:"distance"`
		Filters   map[string]any `json:"filters"`
		TimeoutMS int            `json:"timeout_ms"`
	}) (any, string, error) {
		res, err := s.svc.VectorSearch(ctx, experiments.VectorSearchRequest{Project: c.projectOr(a.Project), Branch: a.Branch, Table: a.Table, Column: a.Column,
			Vector: a.Vector, K: a.K, Distance: a.Distance, Filters: a.Filters, TimeoutMS: a.TimeoutMS})
		if err != nil {
			return nil, "", err
		}
		return res, renderQuery(res, a.K), nil
	})
}

// clipText shortens s to at most n bytes on a rune boundary, marking the cut.
func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && (s[n]&0xC0) == 0x80 {
		n--
	}
	return s[:n] + "…"
}

// oneLine makes s fit in a table cell.
func oneLine(s string) string {
	return strings.NewReplacer("\n", `\n`, "\r", `\r`, "\t", `\t`, "|", `\|`).Replace(s)
}
