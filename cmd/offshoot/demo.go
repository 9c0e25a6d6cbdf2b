package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/experiments"
)

func init() {
	subcommands = append(subcommands, newDemoCmd)
}

// demoDataset is where demo looks for Cranfield when --dataset is not given.
const demoDataset = "../shared/datasets/cranfield"

func newDemoCmd(a *app) *cobra.Command {
	var c client
	var project, dataset string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the newcomer demo on a running server: an embedder A/B plus an ef_search sweep on Cranfield",
		Long: `demo creates the project "demo" (once), loads Cranfield into its main branch
as three tables (cranfield.docs, cranfield.queries, cranfield.qrels, with COPY
through the pgwire proxy, once), then runs one experiment whose dataset is SQL
on that branch, with three variants, each on its own copy-on-write fork:
hash-bow vs hash-char (256 dims, HNSW) and an HNSW ef_search sweep (10, 20, 40,
80). It prints a progress line per variant and phase, the A/B comparison
(verdict, deltas, p-values) and the sweep's recall–QPS table with the
Pareto-optimal points. The forks are discarded afterwards; the base branch is
not changed by the run.

Start a server first (make run, or offshoot serve).`,
		Example: "  offshoot demo --dataset ../shared/datasets/cranfield",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), a, &c, project, dataset)
		},
	}
	addClientFlags(cmd, a, &c)
	cmd.Flags().StringVar(&project, "project", "demo", "project to create (or reuse) and run in")
	cmd.Flags().StringVar(&dataset, "dataset", "", "Cranfield (a BEIR directory) (default "+demoDataset+" when it exists)")
	return cmd
}

func runDemo(ctx context.Context, a *app, c *client, project, dataset string) error {
	if dataset == "" {
		if fi, err := os.Stat(demoDataset); err != nil || !fi.IsDir() {
			return &exitError{code: exitBadInput, err: fmt.Errorf("--dataset is required (no %s here)", demoDataset)}
		}
		dataset = demoDataset
	}
	ds, err := evals.LoadBEIR(dataset, "test")
	if err != nil {
		return &exitError{code: exitBadInput, err: fmt.Errorf("--dataset %s: %w", dataset, err)}
	}
	_, err = c.do(ctx, "POST", "/v1/projects", map[string]any{"name": project}, nil)
	var ee *exitError
	switch {
	case err == nil:
		fmt.Fprintf(a.stdout, "created project %s (initdb and pgvector on copy-on-write storage)\n", project)
	case errors.As(err, &ee) && ee.code == exitConflict:
		fmt.Fprintf(a.stdout, "using the existing project %s\n", project)
	default:
		return fmt.Errorf("create project %s: %w", project, err)
	}
	schema, err := loadDemoBase(ctx, a.stdout, c, project, ds)
	if err != nil {
		return err
	}
	docs := pgx.Identifier{schema, "docs"}.Sanitize()
	hnsw := &experiments.IndexSpec{Type: "hnsw"}
	sp := experiments.ExperimentSpec{
		Name: "demo", Project: project, Base: experiments.BranchPoint{Branch: "main"},
		Dataset: experiments.DatasetSpec{
			// The text a BEIR run embeds: title, a blank line, text.
			CorpusSQL:  "SELECT id, CASE WHEN title = '' THEN text ELSE btrim(title || E'\\n\\n' || text, E' \\t\\n\\r') END FROM " + docs,
			QueriesSQL: "SELECT id, text FROM " + pgx.Identifier{schema, "queries"}.Sanitize(),
			QrelsSQL:   "SELECT query_id, doc_id, grade FROM " + pgx.Identifier{schema, "qrels"}.Sanitize(),
		},
		Metrics: []string{"ndcg_cut.10", "recall.100"},
		Variants: []experiments.VariantSpec{
			{Name: "bow", Embedder: "hash-bow?dims=256", Index: hnsw},
			{Name: "char", Embedder: "hash-char?dims=256", Index: hnsw},
			{Name: "ef", Embedder: "hash-bow?dims=256", Index: hnsw, Sweep: &experiments.SweepSpec{EfSearch: []int{10, 20, 40, 80}}},
		},
	}
	var r experiments.Run
	if _, err := c.do(ctx, "POST", "/v1/runs", &sp, &r); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "run %s: %d variants on copy-on-write forks of %s/main (variants that differ only in search parameters share one), dataset from SQL on the branch\n", r.ID, len(r.Variants), project)
	if err := waitRun(ctx, a.stdout, c, r.ID); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, "\nA/B: hash-bow (A) vs hash-char (B)")
	var rc experiments.RunComparison
	q := url.Values{"a": {r.ID + ":bow"}, "b": {r.ID + ":char"}, "metric": {"ndcg_cut_10"}}
	if _, err := c.do(ctx, "GET", "/v1/runs/compare?"+q.Encode(), nil, &rc); err != nil {
		return err
	}
	if err := printComparison(a.stdout, &rc, 10); err != nil {
		return err
	}
	var sw struct {
		Sweep    []experiments.SweepPoint `json:"sweep"`
		Variants []struct {
			Name string                   `json:"name"`
			Plan *experiments.PlanSummary `json:"plan"`
		} `json:"variants"`
	}
	if _, err := c.do(ctx, "GET", "/v1/runs/"+url.PathEscape(r.ID)+"?results=false", nil, &sw); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, "\nHNSW ef_search sweep (hash-bow), recall–QPS (* Pareto-optimal among all variants):")
	for _, p := range sw.Sweep {
		if !strings.HasPrefix(p.Variant, "ef-") {
			continue
		}
		mark := " "
		if p.Pareto {
			mark = "*"
		}
		plan := ""
		for _, v := range sw.Variants {
			if v.Name == p.Variant && v.Plan != nil {
				plan = "  " + strings.Join(v.Plan.Nodes, " > ")
				if v.Plan.Forced {
					plan += " (index forced: the planner chose " + strings.Join(v.Plan.PlannerNodes, " > ") + ")"
				}
				if v.Plan.IterativeScan != "" && v.Plan.IterativeScan != "off" {
					plan += " iterative " + v.Plan.IterativeScan
				}
			}
		}
		fmt.Fprintf(a.stdout, "  %s %-30s recall %.4f  qps %.1f%s\n", mark, p.Variant, p.Recall, p.QPS, plan)
	}
	fmt.Fprintf(a.stdout, "\nmore: offshoot run show %s --plot sweep.svg; offshoot run compare %s:bow %s:char --html ab.html\n", r.ID, r.ID, r.ID)
	return nil
}

// loadDemoBase loads ds into the main branch of project, through the
// proxy with COPY, as schema <dataset>.docs, .queries and .qrels, unless a
// previous demo did already (same row counts); a schema of that name with
// other contents is refused (exitConflict), never replaced. It returns the
// schema.
func loadDemoBase(ctx context.Context, w io.Writer, c *client, project string, ds *evals.Dataset) (string, error) {
	schema := demoSchema(ds.Name)
	var cs struct {
		URI string `json:"uri"`
	}
	if _, err := c.do(ctx, "GET", branchURL(project, "main")+"/connection?password=true", nil, &cs); err != nil {
		return "", err
	}
	conn, err := pgx.Connect(ctx, cs.URI)
	if err != nil {
		return "", fmt.Errorf("connect to %s/main through the proxy: %w", project, err)
	}
	defer conn.Close(context.Background())
	id := func(table string) string { return pgx.Identifier{schema, table}.Sanitize() }
	var docs, queries, judged int
	err = conn.QueryRow(ctx, fmt.Sprintf("SELECT (SELECT count(*) FROM %s), (SELECT count(*) FROM %s), (SELECT count(*) FROM %s)",
		id("docs"), id("queries"), id("qrels"))).Scan(&docs, &queries, &judged)
	if err == nil && docs == len(ds.Corpus) && queries == len(ds.Queries) && judged == ds.Qrels.NumJudgments() {
		fmt.Fprintf(w, "%s/main already holds %s: %d docs, %d queries, %d judgments\n", project, ds.Name, docs, queries, judged)
		return schema, nil
	}
	// A schema of that name holding something else is the user's: never
	// replace it. (The load below is one transaction, so an interrupted
	// demo leaves no half-loaded schema behind.)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists); err != nil {
		return "", fmt.Errorf("load %s into %s/main: %w", ds.Name, project, err)
	}
	if exists {
		return "", &exitError{code: exitConflict, err: fmt.Errorf("%s/main already has a schema %s that is not this dataset; drop it, or run the demo in another project (--project)", project, schema)}
	}
	start := time.Now()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return "", err
	}
	defer tx.Rollback(context.Background())
	for _, q := range []string{
		"CREATE SCHEMA " + pgx.Identifier{schema}.Sanitize(),
		"CREATE TABLE " + id("docs") + " (id text PRIMARY KEY, title text NOT NULL, text text NOT NULL)",
		"CREATE TABLE " + id("queries") + " (id text PRIMARY KEY, text text NOT NULL)",
		"CREATE TABLE " + id("qrels") + " (query_id text NOT NULL, doc_id text NOT NULL, grade int NOT NULL, PRIMARY KEY (query_id, doc_id))",
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return "", fmt.Errorf("load %s into %s/main: %w", ds.Name, project, err)
		}
	}
	var rows = map[string][][]any{}
	for _, d := range ds.Corpus {
		rows["docs"] = append(rows["docs"], []any{d.ID, d.Title, d.Text})
	}
	for _, q := range ds.Queries {
		rows["queries"] = append(rows["queries"], []any{q.ID, q.Text})
	}
	for q, m := range ds.Qrels {
		for d, g := range m {
			rows["qrels"] = append(rows["qrels"], []any{q, d, g})
		}
	}
	for _, t := range []struct {
		name string
		cols []string
	}{{"docs", []string{"id", "title", "text"}}, {"queries", []string{"id", "text"}}, {"qrels", []string{"query_id", "doc_id", "grade"}}} {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{schema, t.name}, t.cols, pgx.CopyFromRows(rows[t.name])); err != nil {
			return "", fmt.Errorf("load %s.%s into %s/main: %w", schema, t.name, project, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return "", fmt.Errorf("load %s into %s/main: %w", ds.Name, project, err)
	}
	fmt.Fprintf(w, "loaded %s into %s/main through the proxy (COPY, %v): %s.docs %d rows, %s.queries %d, %s.qrels %d\n",
		ds.Name, project, time.Since(start).Round(time.Millisecond), schema, len(rows["docs"]), schema, len(rows["queries"]), schema, len(rows["qrels"]))
	return schema, nil
}

// demoSchema is the schema a dataset is loaded into: its directory name,
// lowercased, other characters than [a-z0-9_] as '_'.
func demoSchema(name string) string {
	b := []byte(strings.ToLower(name))
	for i, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '_') {
			b[i] = '_'
		}
	}
	if len(b) == 0 || b[0] >= '0' && b[0] <= '9' {
		b = append([]byte("ds_"), b...)
	}
	return string(b)
}
