package experiments

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/vectors"
)

// A lexical variant (type VariantLexical) retrieves with Postgres
// full-text search, the baseline practitioners compare embeddings
// against; it needs no embedding service. Its fork holds lexTable: one
// row per document (or per chunk, with chunking) and a generated tsvector
// column, to_tsvector(text_search_config, text), indexed by GIN. A query
// is turned into a tsquery (LexicalSpec.Query), matched with @@ and
// ranked by ts_rank or ts_rank_cd with the normalization bitmask; a
// chunked document scores as its best chunk (the max over its chunks), as
// a dense variant's document ranks by its nearest chunk. Ties rank by
// document id. A hit's Distance is the negated rank, so that ascending
// distance is the ranking, as for run_file variants.
//
// A lexical fork is a materialization like a dense one, keyed by the
// corpus fingerprint, chunking and text search configuration in a layout
// of its own (lexLayout), so that it is never taken for a dense one; the
// ranking function and query mode are search-time settings, and variants
// that differ only in them share one fork.

// VariantLexical is the VariantSpec.Type of a Postgres full-text search
// variant.
const VariantLexical = "lexical"

// Ranking functions and query modes of a LexicalSpec.
const (
	RankTS   = "ts_rank"
	RankTSCD = "ts_rank_cd"

	// LexicalOr matches documents holding any of the query's lexemes
	// (the OR of to_tsvector(config, query)'s lexemes): what IR
	// baselines such as BM25 do with natural-language queries.
	LexicalOr = "or"
	// LexicalAnd is plainto_tsquery: every lexeme must occur.
	LexicalAnd = "and"
	// LexicalWebsearch is websearch_to_tsquery: "quoted phrases", OR and
	// -exclusion, the other terms ANDed.
	LexicalWebsearch = "websearch"
)

// LexicalSpec configures a lexical variant. The zero value is the
// default: english, ts_rank, normalization 0, query or.
type LexicalSpec struct {
	// TextSearchConfig is the text search configuration of the tsvector
	// column and of the queries (e.g. "english", "simple",
	// "pg_catalog.german"). Default "english". A configuration the
	// server lacks fails the variant in its load phase.
	TextSearchConfig string `json:"text_search_config,omitempty"`
	// Rank is the ranking function: "ts_rank" (the default) or
	// "ts_rank_cd" (cover density).
	Rank string `json:"rank,omitempty"`
	// Normalization is the ranking function's normalization bitmask,
	// 0..63: 1 divides by 1 + log(document length), 2 by the document
	// length, 4 by the mean harmonic distance between extents
	// (ts_rank_cd only), 8 by the number of unique words, 16 by 1 +
	// log(unique words), 32 maps rank to rank/(rank+1). Default 0.
	Normalization int `json:"normalization,omitempty"`
	// Query is how a query's text becomes a tsquery: "or" (the
	// default), "and" (plainto_tsquery) or "websearch"
	// (websearch_to_tsquery).
	Query string `json:"query,omitempty"`
}

// withDefaults returns l (nil: the zero value) with its defaults filled.
func (l *LexicalSpec) withDefaults() LexicalSpec {
	var out LexicalSpec
	if l != nil {
		out = *l
	}
	if out.TextSearchConfig == "" {
		out.TextSearchConfig = "english"
	}
	if out.Rank == "" {
		out.Rank = RankTS
	}
	if out.Query == "" {
		out.Query = LexicalOr
	}
	return out
}

// build is the part of l that shapes the fork (its table and index): the
// rest are search-time settings.
func (l *LexicalSpec) build() *LexicalSpec {
	d := l.withDefaults()
	return &LexicalSpec{TextSearchConfig: d.TextSearchConfig}
}

// tsConfigRE is what a text search configuration's name may be: an
// identifier, optionally schema-qualified, lowercase (it is written into
// SQL as a literal).
var tsConfigRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?$`)

func (v *VariantSpec) validateLexical(f string) error {
	if v.Embedder != "" {
		return invalid(f+".embedder", "a %s variant retrieves with Postgres full-text search and takes no embedder; remove it", VariantLexical)
	}
	if v.RunFile != "" || v.Distance != "" || v.VectorType != "" || v.Quantization != "" || v.Index != nil || v.Search != (SearchSpec{}) ||
		v.Hybrid != nil || v.Sweep != nil {
		return invalid(f, "a %s variant takes only name, chunking and lexical (not run_file, distance, vector_type, quantization, index, search, hybrid or sweep)", VariantLexical)
	}
	if c := v.Chunking; c != nil && (c.Size < 1 || c.Overlap < 0 || c.Overlap >= c.Size) {
		return invalid(f+".chunking", "need size ≥ 1 and 0 ≤ overlap < size")
	}
	l := v.Lexical.withDefaults()
	if !tsConfigRE.MatchString(l.TextSearchConfig) {
		return invalid(f+".lexical.text_search_config", "%q is not a text search configuration name (such as english, simple or pg_catalog.german)", l.TextSearchConfig)
	}
	switch l.Rank {
	case RankTS, RankTSCD:
	default:
		return invalid(f+".lexical.rank", "must be %s or %s, not %q", RankTS, RankTSCD, l.Rank)
	}
	if l.Normalization < 0 || l.Normalization > 63 {
		return invalid(f+".lexical.normalization", "must be a bitmask in 0..63 (1, 2, 4, 8, 16, 32 or their sum)")
	}
	switch l.Query {
	case LexicalOr, LexicalAnd, LexicalWebsearch:
	default:
		return invalid(f+".lexical.query", "must be %s, %s or %s, not %q", LexicalOr, LexicalAnd, LexicalWebsearch, l.Query)
	}
	return nil
}

// Provenance settings of lexical and hybrid variants.
const (
	settingTextSearch    = "text_search_config"
	settingFusion        = "fusion"
	settingHybridDense   = "hybrid.dense"
	settingHybridLexical = "hybrid.lexical"
)

// lexTable is the table a lexical fork's documents (or chunks) are
// loaded into; lexIndex its GIN index.
const (
	lexTable = "offshoot_exp_lexical"
	lexIndex = "offshoot_exp_lexical_tsv"
)

// lexLayout versions what a lexical materialization holds (lexTable and
// lexIndex); see matLayout.
const lexLayout = "offshoot_exp_lexical/v1"

// lexicalKey is the materialization key of lexical variant v of a corpus.
func lexicalKey(corpus SetFingerprint, v VariantSpec) *MaterializationKey {
	return &MaterializationKey{Corpus: corpus, Chunking: v.Chunking, Layout: lexLayout,
		TextSearchConfig: v.Lexical.withDefaults().TextSearchConfig, Index: IndexSpec{Type: "gin"}}
}

// lexModelID is the ModelID a lexical variant records: what ranks it.
func lexModelID(l LexicalSpec) string { return "postgres-fts:" + l.TextSearchConfig }

// buildLexical loads docs into lexTable on conn (chunked as v says; the
// tsvector column computed as rows are copied) and builds its GIN index,
// recording rows, phases and the index in vr. With fit (the fork is to be
// kept as a materialization) it also stores the document hashes the next
// corpus's delta is computed against. On error it returns the phase that
// failed.
func (s *Service) buildLexical(ctx context.Context, conn *pgx.Conn, v VariantSpec, docs corpus, fit bool, vr *VariantRun,
	progress progressFunc) (*loadedFork, string, error) {
	l := v.Lexical.withDefaults()
	lf := &loadedFork{lexical: true, chunked: v.Chunking != nil}
	vr.ModelID = lexModelID(l)
	progress("load", &PhaseProgress{Unit: "docs", Total: int64(docs.docs)})
	t := time.Now()
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_ts_config c JOIN pg_namespace n ON n.oid = c.cfgnamespace "+
		"WHERE c.cfgname = $1 AND (n.nspname = $2 OR $2 = '' AND pg_ts_config_is_visible(c.oid)))",
		tsConfigName(l.TextSearchConfig), tsConfigSchema(l.TextSearchConfig)).Scan(&exists); err != nil {
		return nil, "load", err
	}
	if !exists {
		return nil, "load", fmt.Errorf("lexical.text_search_config: the server has no text search configuration %q (SELECT cfgname FROM pg_ts_config lists them)", l.TextSearchConfig)
	}
	tbl := pgx.Identifier{lexTable}.Sanitize()
	if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE TABLE %s (id text PRIMARY KEY, doc_id text NOT NULL, body text NOT NULL, "+
		"tsv tsvector GENERATED ALWAYS AS (to_tsvector(%s::regconfig, body)) STORED)", tbl, quoteLiteral(l.TextSearchConfig))); err != nil {
		return nil, "load", err
	}
	n, err := s.copyLexical(ctx, conn, v, docs, progress)
	vr.Rows = n
	if err == nil && fit {
		err = storeDocHashes(ctx, conn, docs)
	}
	vr.Timings.Load = ms(time.Since(t))
	if err != nil {
		return nil, "load", err
	}
	progress("index", nil)
	t = time.Now()
	if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE INDEX %s ON %s USING gin (tsv)", pgx.Identifier{lexIndex}.Sanitize(), tbl)); err != nil {
		return nil, "index", err
	}
	if _, err := conn.Exec(ctx, "ANALYZE "+tbl); err != nil {
		return nil, "index", err
	}
	vr.Timings.Index = ms(time.Since(t))
	vr.IndexName = lexIndex
	if err := conn.QueryRow(ctx, "SELECT pg_relation_size($1::regclass)", lexIndex).Scan(&vr.IndexBytes); err != nil {
		return nil, "index", err
	}
	return lf, "", nil
}

// copyLexical copies the documents of docs into lexTable on conn, chunked
// as v says, and returns the rows copied.
func (s *Service) copyLexical(ctx context.Context, conn *pgx.Conn, v VariantSpec, docs corpus, progress progressFunc) (int64, error) {
	var chunker *vectors.Chunker
	if v.Chunking != nil {
		chunker = &vectors.Chunker{Size: v.Chunking.Size, Overlap: v.Chunking.Overlap}
	}
	total := int64(docs.docs)
	batch := max(s.cfg.IngestBatch, 1)
	var rows [][]any
	var ndocs, copied int64
	flush := func() error {
		if len(rows) == 0 {
			return nil
		}
		n, err := conn.CopyFrom(ctx, pgx.Identifier{lexTable}, []string{"id", "doc_id", "body"}, pgx.CopyFromRows(rows))
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "54000" { // a tsvector holds at most 1 MB
			return fmt.Errorf("copy %d rows: %w (split long documents with chunking)", len(rows), err)
		}
		if err != nil {
			return fmt.Errorf("copy %d rows: %w", len(rows), err)
		}
		copied += n
		rows = rows[:0]
		progress("load", &PhaseProgress{Unit: "docs", Done: ndocs, Total: total, Detail: fmt.Sprintf("%d rows copied", copied)})
		return nil
	}
	err := docs.each(ctx, func(d evals.Doc) error {
		ndocs++
		text := docText(d)
		if chunker == nil {
			rows = append(rows, []any{d.ID, d.ID, text})
		} else {
			cs, err := chunker.Split(d.ID, text)
			if err != nil {
				return err
			}
			for _, c := range cs {
				rows = append(rows, []any{c.ID(), d.ID, c.Text})
			}
		}
		if len(rows) >= batch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	return copied, err
}

// adoptLexical readies a fork of lexical materialization m for
// evaluating v.
func adoptLexical(v VariantSpec, m *Materialization, vr *VariantRun) (*loadedFork, error) {
	if want := lexModelID(v.Lexical.withDefaults()); m.ModelID != want {
		return nil, fmt.Errorf("the materialization ranks with %s, the variant with %s", m.ModelID, want)
	}
	vr.ModelID, vr.Rows, vr.IndexName, vr.IndexBytes = m.ModelID, m.Rows, m.IndexName, m.IndexBytes
	return &loadedFork{lexical: true, chunked: v.Chunking != nil}, nil
}

// lexicalProvenance reads what a loaded lexical fork of v runs with.
func lexicalProvenance(ctx context.Context, conn *pgx.Conn, v VariantSpec) (*VariantProvenance, error) {
	l := v.Lexical.withDefaults()
	p := &VariantProvenance{ModelID: lexModelID(l), Chunking: v.Chunking, Normalization: "none (lexical)",
		Settings: map[string]string{settingTextSearch: l.TextSearchConfig}}
	if err := conn.QueryRow(ctx, "SELECT version(), coalesce((SELECT extversion FROM pg_extension WHERE extname = 'vector'), '')").
		Scan(&p.Postgres, &p.PGVector); err != nil {
		return nil, fmt.Errorf("provenance: versions: %w", err)
	}
	if err := conn.QueryRow(ctx, "SELECT indexdef FROM pg_indexes WHERE indexname = $1", lexIndex).Scan(&p.IndexDDL); err != nil {
		return nil, fmt.Errorf("provenance: index %s: %w", lexIndex, err)
	}
	return p, nil
}

// lexicalSQL is the statement a lexical point ranks with, for the query
// text $1 and the limit $2 (documents): each matching row ranked, a
// chunked document by its best chunk, ties by document id.
func lexicalSQL(l LexicalSpec, chunked bool) string {
	l = (&l).withDefaults()
	cfg := quoteLiteral(l.TextSearchConfig) + "::regconfig"
	var tsq string
	switch l.Query {
	case LexicalAnd:
		tsq = "plainto_tsquery(" + cfg + ", $1)"
	case LexicalWebsearch:
		tsq = "websearch_to_tsquery(" + cfg + ", $1)"
	default:
		// The lexemes of the query as to_tsvector gives them, quoted so
		// that they are taken as they are (not parsed again), ORed.
		tsq = "(SELECT coalesce(string_agg('''' || replace(replace(l, '\\', '\\\\'), '''', '''''') || '''', ' | ' ORDER BY l), '')" +
			" FROM unnest(tsvector_to_array(to_tsvector(" + cfg + ", $1))) l)::tsquery"
	}
	rank := fmt.Sprintf("%s(t.tsv, q.q, %d)", l.Rank, l.Normalization)
	from := fmt.Sprintf("%s t, (SELECT %s AS q) q WHERE t.tsv @@ q.q", pgx.Identifier{lexTable}.Sanitize(), tsq)
	if chunked {
		return fmt.Sprintf("SELECT t.doc_id, max(%s) AS score FROM %s GROUP BY t.doc_id ORDER BY score DESC, t.doc_id LIMIT $2", rank, from)
	}
	return fmt.Sprintf("SELECT t.doc_id, %s AS score FROM %s ORDER BY score DESC, t.doc_id LIMIT $2", rank, from)
}

// lexicalSearch runs sql for one query and returns its hits and latency
// (the statement including reading its rows).
func lexicalSearch(ctx context.Context, conn *pgx.Conn, sql, text string, k int) ([]RankedDoc, time.Duration, error) {
	t := time.Now()
	rows, err := conn.Query(ctx, sql, text, k)
	if err != nil {
		return nil, 0, err
	}
	var hits []RankedDoc
	for rows.Next() {
		var id string
		var score float32
		if err := rows.Scan(&id, &score); err != nil {
			rows.Close()
			return nil, 0, err
		}
		hits = append(hits, RankedDoc{Doc: id, Distance: -float64(score)})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	return hits, time.Since(t), nil
}

// evalLexical evaluates every query of ds with lexical point v on the
// loaded fork fk, as evalPoint does a dense point: the plan of the first
// query, the rankings of one untimed pass, then the timed passes.
func (s *Service) evalLexical(ctx context.Context, run *Run, fk *evalFork, chunked bool, v VariantSpec, ds *evals.Dataset, vr VariantRun) VariantRun {
	fail := func(phase string, err error) VariantRun {
		vr.Status = statusOf(ctx, StatusFailed)
		vr.Error = phase + ": " + err.Error()
		vr.Results = nil
		return vr
	}
	t := time.Now()
	queries := append([]evals.Query(nil), ds.Queries...)
	if len(queries) == 0 {
		return fail("eval", fmt.Errorf("no queries"))
	}
	sort.Slice(queries, func(i, j int) bool { return queries[i].ID < queries[j].ID })
	l := v.Lexical.withDefaults()
	sql := lexicalSQL(l, chunked)
	k := run.Spec.K
	vr.Provenance = vr.Provenance.withLexical(l)
	var plan []byte
	if err := fk.conn.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+sql, queries[0].Text, k).Scan(&plan); err != nil {
		return fail("plan", err)
	}
	nodes, idx, err := planNodes(plan)
	if err != nil {
		return fail("plan", err)
	}
	vr.Plan = &PlanSummary{Nodes: nodes, Index: strings.Join(idx, ","), Rows: k}
	for _, i := range idx {
		vr.Plan.UsesIndex = vr.Plan.UsesIndex || i == lexIndex
	}
	results := s.newResultWriter(run.ID, v.Name)
	rankings := map[string][]string{}
	for _, q := range queries {
		hits, lat, err := lexicalSearch(ctx, fk.conn, sql, q.Text, k)
		if err != nil {
			return fail("eval", fmt.Errorf("query %s: %w", q.ID, err))
		}
		ids := make([]string, len(hits))
		for i, h := range hits {
			ids[i] = h.Doc
		}
		rankings[q.ID] = ids
		if err := results.add(QueryRanking{Query: q.ID, Hits: hits, LatencyUS: lat.Microseconds()}); err != nil {
			return fail("eval", err)
		}
	}
	if err := results.flush(); err != nil {
		return fail("eval", err)
	}
	search := func(conn *pgx.Conn, i int) (time.Duration, error) {
		_, lat, err := lexicalSearch(ctx, conn, sql, queries[i%len(queries)].Text, k)
		return lat, err
	}
	lat, tr, medians, err := s.timeSearches(ctx, fk, len(queries), search, run.Spec.Timing)
	if err != nil {
		return fail("timing", err)
	}
	vr.Latency, vr.Timing = lat, &tr
	timed := timedByQuery(queries, medians)
	vr.Timings.Eval = ms(time.Since(t))
	if err := s.recordMeasures(run, v.Name, ds, rankings, timed, &vr); err != nil {
		return fail("eval", err)
	}
	if ctx.Err() != nil {
		return fail("eval", ctx.Err())
	}
	vr.Status = StatusSucceeded
	return vr
}

// withLexical returns a copy of p (nil stays nil) with the search
// settings of lexical point l.
func (p *VariantProvenance) withLexical(l LexicalSpec) *VariantProvenance {
	if p == nil {
		return nil
	}
	cp := *p
	cp.Settings = make(map[string]string, len(p.Settings)+3)
	for k, v := range p.Settings {
		cp.Settings[k] = v
	}
	cp.Settings["lexical.rank"] = l.Rank
	cp.Settings["lexical.normalization"] = strconv.Itoa(l.Normalization)
	cp.Settings["lexical.query"] = l.Query
	return &cp
}

// quoteLiteral quotes s as an SQL string literal (standard conforming
// strings).
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func tsConfigName(c string) string {
	if _, name, ok := strings.Cut(c, "."); ok {
		return name
	}
	return c
}

func tsConfigSchema(c string) string {
	if schema, _, ok := strings.Cut(c, "."); ok {
		return schema
	}
	return ""
}
