package experiments

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/vectors"
)

// Iterative scan modes of SearchSpec.IterativeScan.
const (
	IterativeAuto    = "auto"
	IterativeOff     = "off"
	IterativeRelaxed = "relaxed_order"
	IterativeStrict  = "strict_order"
)

// Cache states of TimingSpec.Cache.
const (
	CacheWarm = "warm"
	CacheCold = "cold"
)

// TimingSpec says how latency and QPS are measured. Every query is first
// run once untimed to record its ranking; timing starts after that.
type TimingSpec struct {
	// Warmup is the number of untimed passes over every query before the
	// timed ones (after the ranking pass), at most 20. 0 means the
	// default, 1: a warm cache always gets one. With a cold cache there
	// is none.
	Warmup int `json:"warmup,omitempty"`
	// Repeats is the number of timed passes over every query at one
	// client; percentiles are reported pooled and per pass, with their
	// spread across passes. Default 3, at most 20.
	Repeats int `json:"repeats,omitempty"`
	// Clients is the number of concurrent clients, each on its own
	// connection to the fork, of the concurrent QPS pass (Repeats passes'
	// worth of queries), at most 64. 0 (the default) means the core count
	// of the server that runs it, resolved when the run measures.
	Clients int `json:"clients,omitempty"`
	// Cache is "warm" (the default: warm-up passes first) or "cold": the
	// fork's Postgres is restarted before every timed pass, so shared
	// buffers start empty (the OS page cache is not dropped). Cold needs
	// branches whose Postgres the server can restart (ForkRestarter).
	Cache string `json:"cache,omitempty"`
}

// ForkRestarter is optionally implemented by a RunBranches that can
// restart a fork's Postgres, for runs timed with a cold cache. Open
// connections to the fork break; new ones reach the restarted server.
type ForkRestarter interface {
	Restart(ctx context.Context, project, branch string) error
}

// Restart restarts a run fork's Postgres: its endpoint is suspended (a
// fast shutdown) and the next connection starts it again.
func (b storeBranches) Restart(ctx context.Context, project, branch string) error {
	if b.s.cfg.Compute == nil {
		return fmt.Errorf("restart %s: no compute: %w", branch, ErrUnavailable)
	}
	if err := b.s.cfg.Compute.Suspend(ctx, project, branch); err != nil {
		return fmt.Errorf("restart %s: %w", branch, computeErr(err))
	}
	return nil
}

func (ts *TimingSpec) validate() error {
	if ts.Warmup == 0 {
		ts.Warmup = 1
	}
	if ts.Repeats == 0 {
		ts.Repeats = 3
	}
	if ts.Cache == "" {
		ts.Cache = CacheWarm
	}
	switch {
	case ts.Warmup < 0 || ts.Warmup > 20:
		return invalid("timing.warmup", "must be in 1..20, or 0 for the default (1)")
	case ts.Repeats < 1 || ts.Repeats > 20:
		return invalid("timing.repeats", "must be in 1..20")
	case ts.Clients < 0 || ts.Clients > 64:
		return invalid("timing.clients", "must be in 1..64, or 0 for the server's cores")
	case ts.Cache != CacheWarm && ts.Cache != CacheCold:
		return invalid("timing.cache", "must be warm or cold")
	}
	return nil
}

// fetchRows is the number of rows a query fetches for k hits: k, or more
// when documents are chunked (several chunks of one document collapse to
// one hit).
func fetchRows(k int, chunked bool) int {
	if chunked {
		return min(k*4, 10000)
	}
	return k
}

// efSearchFor is the hnsw.ef_search a point searches with: the spec's, or
// max(40, fetch) up to 1000.
func efSearchFor(v VariantSpec, fetch int) int {
	if v.Search.EfSearch != 0 {
		return v.Search.EfSearch
	}
	return min(max(40, fetch), vectors.MaxEfSearch)
}

// iterativeFor is the iterative scan a point of an indexed variant uses,
// and, when the spec turns iterative scans off although ef_search caps
// the hits below the rows fetched, an error. Auto enables relaxed_order
// for HNSW when ef_search < fetch, and always for IVFFlat (its scan only
// goes past the probed lists when they hold fewer rows than fetched).
func iterativeFor(v VariantSpec, fetch int) (vectors.IterativeScan, error) {
	mode := v.Search.IterativeScan
	if mode == "" {
		mode = IterativeAuto
	}
	hnsw := v.Index != nil && v.Index.Type == "hnsw"
	capped := hnsw && efSearchFor(v, fetch) < fetch
	switch mode {
	case IterativeAuto:
		if capped || (v.Index != nil && v.Index.Type == "ivfflat") {
			return vectors.ScanRelaxed, nil
		}
		return vectors.ScanOff, nil
	case IterativeOff:
		if capped {
			return "", fmt.Errorf("ef_search %d caps the hits below the %d rows a query fetches, and iterative_scan is off", efSearchFor(v, fetch), fetch)
		}
		return vectors.ScanOff, nil
	}
	return vectors.IterativeScan(mode), nil
}

// validateSearch checks variant v (field f) against the rows a query
// fetches: its iterative scan mode, and that no ef_search of its sweep
// caps the hits with iterative scans off.
func (v VariantSpec) validateSearch(f string, fetch int) error {
	switch v.Search.IterativeScan {
	case "", IterativeAuto, IterativeOff, IterativeRelaxed:
	case IterativeStrict:
		if v.Index != nil && v.Index.Type == "ivfflat" {
			return invalid(f+".search.iterative_scan", "strict_order is for HNSW; IVFFlat has relaxed_order")
		}
	default:
		return invalid(f+".search.iterative_scan", "must be auto, off, relaxed_order or strict_order")
	}
	if err := v.validateRerank(f, fetch); err != nil {
		return err
	}
	if v.Index == nil || v.Index.Type != "hnsw" || v.Search.IterativeScan != IterativeOff {
		return nil
	}
	what := "rows a query fetches (k)"
	if v.binary() {
		// The rerank candidates are what the index scan fetches; a sweep
		// of them is checked at its largest.
		fetch = rerankFor(v, fetch)
		if v.Sweep != nil && len(v.Sweep.Rerank) > 0 {
			fetch = slices.Max(v.Sweep.Rerank)
		}
		what = "rerank candidates a query fetches"
	}
	hint := fmt.Sprintf("is below the %d %s; with iterative_scan off, recall would be capped: raise it or set search.iterative_scan to auto", fetch, what)
	if v.Sweep != nil && len(v.Sweep.EfSearch) > 0 {
		for j, ef := range v.Sweep.EfSearch {
			if ef < fetch {
				return invalid(fmt.Sprintf("%s.sweep.ef_search[%d]", f, j), "%d %s", ef, hint)
			}
		}
		return nil
	}
	if ef := efSearchFor(v, fetch); ef < fetch {
		return invalid(f+".search.ef_search", "%d %s", ef, hint)
	}
	return nil
}

// PlanSummary is the plan of a point's evaluation query, from EXPLAIN
// (FORMAT JSON) of the query run under the exact settings it is measured
// with (planned with the first query's vector; each execution is planned
// with its own arguments under the same settings).
type PlanSummary struct {
	// Nodes are the plan's node types, depth first ("Limit", "Index Scan").
	Nodes []string `json:"nodes"`
	// Index is the index the plan scans; empty for none.
	Index string `json:"index,omitempty"`
	// UsesIndex is true when the plan scans the variant's ANN index. An
	// indexed point is only recorded when it is.
	UsesIndex bool `json:"uses_index"`
	// Forced is true when the planner chose another plan (PlannerNodes)
	// and the point was measured with sequential scans disabled to make
	// it scan the index.
	Forced       bool     `json:"forced,omitempty"`
	PlannerNodes []string `json:"planner_nodes,omitempty"`
	// EfSearch, Probes and IterativeScan are the index settings in effect
	// (zero or empty without an index).
	EfSearch      int    `json:"ef_search,omitempty"`
	Probes        int    `json:"probes,omitempty"`
	IterativeScan string `json:"iterative_scan,omitempty"`
	// Rerank is, for a binary quantized point, the candidates the index
	// scan fetches by Hamming distance for re-ranking (the inner LIMIT).
	Rerank int `json:"rerank,omitempty"`
	// Rows is the LIMIT: the rows a query fetches for k hits.
	Rows int `json:"rows"`
}

// String prints the plan for people: "Limit > Index Scan on i (forced;
// planner: Limit > Sort > Seq Scan) ef_search=40 iterative=relaxed_order".
func (p PlanSummary) String() string {
	s := strings.Join(p.Nodes, " > ")
	if p.Index != "" {
		s += " on " + p.Index
	}
	if p.Forced {
		s += " (forced; planner: " + strings.Join(p.PlannerNodes, " > ") + ")"
	}
	if p.EfSearch > 0 {
		s += fmt.Sprintf(" ef_search=%d", p.EfSearch)
	}
	if p.Probes > 0 {
		s += fmt.Sprintf(" probes=%d", p.Probes)
	}
	if p.IterativeScan != "" {
		s += " iterative=" + p.IterativeScan
	}
	if p.Rerank > 0 {
		s += fmt.Sprintf(" rerank=%d", p.Rerank)
	}
	return s + fmt.Sprintf(" limit=%d", p.Rows)
}

// planNodes reads EXPLAIN (FORMAT JSON) output: the node types depth
// first and the indexes scanned.
func planNodes(explain []byte) (nodes, indexes []string, err error) {
	type node struct {
		Type  string `json:"Node Type"`
		Index string `json:"Index Name"`
		Plans []node `json:"Plans"`
	}
	var doc []struct {
		Plan node `json:"Plan"`
	}
	if err := json.Unmarshal(explain, &doc); err != nil {
		return nil, nil, fmt.Errorf("read plan: %w", err)
	}
	if len(doc) != 1 || doc[0].Plan.Type == "" {
		return nil, nil, fmt.Errorf("read plan: want one plan, got %d", len(doc))
	}
	var walk func(n node)
	walk = func(n node) {
		nodes = append(nodes, n.Type)
		if n.Index != "" {
			indexes = append(indexes, n.Index)
		}
		for _, c := range n.Plans {
			walk(c)
		}
	}
	walk(doc[0].Plan)
	return nodes, indexes, nil
}

// explainPoint plans q on the fork and returns its summary. With index
// set (an ANN point), a plan that does not scan it is planned again with
// the index forced (q.ForceIndex, which the caller's measurements must
// then use too); a plan that still does not scan it is an error.
func explainPoint(ctx context.Context, conn *pgx.Conn, tbl vectors.Table, q *vectors.Query, index string) (PlanSummary, error) {
	ps := PlanSummary{Rows: q.K, EfSearch: q.EfSearch, Probes: q.Probes, IterativeScan: string(q.IterativeScan), Rerank: q.Rerank}
	plan := func() error {
		b, err := vectors.Explain(ctx, conn, tbl, *q)
		if err != nil {
			return err
		}
		nodes, idx, err := planNodes(b)
		if err != nil {
			return err
		}
		ps.Nodes, ps.Index, ps.UsesIndex = nodes, strings.Join(idx, ","), index != "" && slices.Contains(idx, index)
		return nil
	}
	if err := plan(); err != nil {
		return ps, err
	}
	if index == "" || ps.UsesIndex {
		return ps, nil
	}
	ps.PlannerNodes, ps.Forced, q.ForceIndex = ps.Nodes, true, true
	if err := plan(); err != nil {
		return ps, err
	}
	if !ps.UsesIndex {
		return ps, fmt.Errorf("plan %s does not scan index %s even with sequential scans off", strings.Join(ps.Nodes, " > "), index)
	}
	return ps, nil
}

// TimingReport is how a point's latency and QPS were measured.
// VariantRun.Latency holds the one-client latencies pooled over every
// timed pass; per-query latencies (QueryRanking.LatencyUS) are their
// median over the passes. A latency is the time of the search statement
// including reading its rows; QPS counts whole searches (each its own
// transaction with its settings) per second of wall time.
type TimingReport struct {
	// Cache is "warm" or "cold" (Postgres restarted before every timed
	// pass).
	Cache   string `json:"cache"`
	Warmup  int    `json:"warmup"`
	Repeats int    `json:"repeats"`
	// Passes are the one-client timed passes, in order.
	Passes []evals.LatencyStats `json:"passes"`
	// P50Spread, P95Spread and P99Spread are the differences between the
	// largest and the smallest percentile across Passes.
	P50Spread time.Duration `json:"p50_spread_ns"`
	P95Spread time.Duration `json:"p95_spread_ns"`
	P99Spread time.Duration `json:"p99_spread_ns"`
	// Concurrent is the pass of Clients concurrent clients.
	Concurrent evals.LatencyStats `json:"concurrent"`
}

// String prints the report for people.
func (tr TimingReport) String() string {
	return fmt.Sprintf("%s cache, %d warm-up, %d passes: spread p50 ±%v p95 ±%v p99 ±%v; %d clients: qps=%.1f p50=%v p99=%v",
		tr.Cache, tr.Warmup, tr.Repeats, tr.P50Spread.Round(time.Microsecond), tr.P95Spread.Round(time.Microsecond),
		tr.P99Spread.Round(time.Microsecond), tr.Concurrent.Clients, tr.Concurrent.QPS,
		tr.Concurrent.P50.Round(time.Microsecond), tr.Concurrent.P99.Round(time.Microsecond))
}

// evalFork is the connection of a group's evaluation to its fork, which
// a cold timing pass replaces after restarting the fork's Postgres.
type evalFork struct {
	s       *Service
	project string
	branch  string
	conn    *pgx.Conn
	release func()
}

func (f *evalFork) close() {
	if f.release != nil {
		f.release()
		f.release = nil
	}
}

// restart restarts the fork's Postgres and reconnects.
func (f *evalFork) restart(ctx context.Context) error {
	r, ok := f.s.cfg.Branches.(ForkRestarter)
	if !ok {
		return fmt.Errorf("cold cache: branches cannot restart a fork's Postgres: %w", ErrUnavailable)
	}
	f.close()
	if err := r.Restart(ctx, f.project, f.branch); err != nil {
		return err
	}
	conn, release, err := f.s.connect(ctx, f.project, f.branch, ReadWrite)
	if err != nil {
		return err
	}
	f.conn, f.release = conn, release
	return nil
}

// timeQueries measures the searches of qvecs with q's settings: warm-up
// passes, Repeats timed passes at one client and one concurrent pass of
// Clients clients on connections of their own. It returns the pooled
// one-client stats, the report and each query's median latency.
func (s *Service) timeQueries(ctx context.Context, fk *evalFork, tbl vectors.Table, q vectors.Query, qvecs [][]float32, ts TimingSpec) (evals.LatencyStats, TimingReport, []time.Duration, error) {
	search := func(conn *pgx.Conn, i int) (time.Duration, error) {
		qq := q
		qq.Vector = qvecs[i%len(qvecs)]
		res, err := vectors.Search(ctx, conn, tbl, qq)
		return res.Latency, err
	}
	return s.timeSearches(ctx, fk, len(qvecs), search, ts)
}

// timeSearches is timeQueries for any search: search(conn, i) runs query
// i mod n of a point on conn and returns its latency.
func (s *Service) timeSearches(ctx context.Context, fk *evalFork, n int, search func(conn *pgx.Conn, i int) (time.Duration, error),
	ts TimingSpec) (evals.LatencyStats, TimingReport, []time.Duration, error) {
	if err := ts.validate(); err != nil { // also fills the defaults of runs stored before timing existed
		return evals.LatencyStats{}, TimingReport{}, nil, err
	}
	if ts.Clients == 0 {
		ts.Clients = min(runtime.NumCPU(), 64)
	}
	tr := TimingReport{Cache: ts.Cache, Warmup: ts.Warmup, Repeats: ts.Repeats}
	cold := ts.Cache == CacheCold
	if cold {
		tr.Warmup = 0
	}
	for range tr.Warmup {
		if _, _, err := timedPass(ctx, []*pgx.Conn{fk.conn}, n, search); err != nil {
			return evals.LatencyStats{}, tr, nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	perQuery := make([][]time.Duration, n)
	var all []time.Duration
	var wall time.Duration
	for range ts.Repeats {
		if cold {
			if err := fk.restart(ctx); err != nil {
				return evals.LatencyStats{}, tr, nil, err
			}
		}
		durs, w, err := timedPass(ctx, []*pgx.Conn{fk.conn}, n, search)
		if err != nil {
			return evals.LatencyStats{}, tr, nil, err
		}
		st, err := evals.SummarizeLatency(durs, max(w, time.Nanosecond), 1)
		if err != nil {
			return evals.LatencyStats{}, tr, nil, err
		}
		tr.Passes = append(tr.Passes, st)
		for i, d := range durs {
			perQuery[i] = append(perQuery[i], d)
		}
		all, wall = append(all, durs...), wall+w
	}
	pooled, err := evals.SummarizeLatency(all, max(wall, time.Nanosecond), 1)
	if err != nil {
		return evals.LatencyStats{}, tr, nil, err
	}
	spread := func(f func(evals.LatencyStats) time.Duration) time.Duration {
		lo, hi := f(tr.Passes[0]), f(tr.Passes[0])
		for _, p := range tr.Passes[1:] {
			lo, hi = min(lo, f(p)), max(hi, f(p))
		}
		return hi - lo
	}
	tr.P50Spread = spread(func(p evals.LatencyStats) time.Duration { return p.P50 })
	tr.P95Spread = spread(func(p evals.LatencyStats) time.Duration { return p.P95 })
	tr.P99Spread = spread(func(p evals.LatencyStats) time.Duration { return p.P99 })
	medians := make([]time.Duration, n)
	for i, ds := range perQuery {
		slices.Sort(ds)
		medians[i] = ds[(len(ds)-1)/2]
	}

	if cold {
		if err := fk.restart(ctx); err != nil {
			return evals.LatencyStats{}, tr, nil, err
		}
	}
	conns := []*pgx.Conn{fk.conn}
	for range ts.Clients - 1 {
		conn, release, err := s.connect(ctx, fk.project, fk.branch, ReadWrite)
		if err != nil {
			return evals.LatencyStats{}, tr, nil, fmt.Errorf("concurrent clients: %w", err)
		}
		defer release()
		conns = append(conns, conn)
	}
	durs, w, err := timedPass(ctx, conns, n*ts.Repeats, search)
	if err != nil {
		return evals.LatencyStats{}, tr, nil, fmt.Errorf("concurrent clients: %w", err)
	}
	if tr.Concurrent, err = evals.SummarizeLatency(durs, max(w, time.Nanosecond), len(conns)); err != nil {
		return evals.LatencyStats{}, tr, nil, err
	}
	return pooled, tr, medians, nil
}

// timedPass runs search for i in [0, n) from one goroutine per
// connection, each taking the next i as it finishes (evals.ClosedLoop),
// and returns each search's latency and the pass's wall time. The first
// error stops the pass. Every goroutine has returned when it returns.
func timedPass(ctx context.Context, conns []*pgx.Conn, n int, search func(conn *pgx.Conn, i int) (time.Duration, error)) ([]time.Duration, time.Duration, error) {
	return evals.ClosedLoop(ctx, n, len(conns), func(_ context.Context, c, i int) (time.Duration, error) {
		return search(conns[c], i)
	})
}
