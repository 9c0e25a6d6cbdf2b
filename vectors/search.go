package vectors

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgvector/pgvector-go"
)

// Query is one top-k search.
type Query struct {
	Vector []float32
	// K is the number of hits wanted (1..10000).
	K int
	// Metric is the distance; empty means Cosine. An index is only used
	// if one exists for the metric.
	Metric Metric
	// Filter, if non-empty, keeps rows whose metadata contains it (jsonb
	// @>): {"lang": "en"} is equality on a key, nested objects and arrays
	// follow jsonb containment. With an ANN index the filter applies after
	// the index scan, so fewer than K hits may come back unless
	// IterativeScan is on.
	Filter map[string]any
	// Exact disables index scans (SET LOCAL enable_indexscan = off): a
	// sequential scan that is the ground truth for ANN recall.
	Exact bool
	// EfSearch sets hnsw.ef_search (1..1000); 0 keeps the server's (40).
	EfSearch int
	// Probes sets ivfflat.probes; 0 keeps the server's (1).
	Probes int
	// IterativeScan sets pgvector 0.8 iterative scans; empty keeps the
	// server's (off).
	IterativeScan IterativeScan
	// ForceIndex turns sequential scans off (SET LOCAL enable_seqscan =
	// off) so that the planner takes an index it would otherwise skip,
	// as it does on small tables or when the LIMIT exceeds ef_search.
	ForceIndex bool
	// IDs, if not nil, restricts the search to the rows with these ids (a
	// primary key lookup). With Exact it gives the exact top K among them,
	// in the order a full exact search gives them: the same distance
	// function and ties by id; the rows are found through the primary
	// key's bitmap scan, not by a sequential scan of the table.
	IDs []string
	// Rerank, if positive, searches binary quantized (pgvector's
	// pattern): the Rerank rows nearest to the query by Hamming distance
	// between binary_quantize of the embedding and of the query (through
	// an Index with Binary set, when there is one) are re-ranked by
	// Metric on the full embedding, and the K nearest returned, ties by
	// id; candidates whose distance is NaN (cosine of a zero vector)
	// are dropped. K ≤ Rerank ≤ 10000; EfSearch and Probes then bound
	// the candidate scan.
	Rerank int
}

// Hit is one search result. Distance is the metric's operator value (for
// InnerProduct, the negative inner product).
type Hit struct {
	ID       string
	DocID    string
	Distance float64
}

// Result is a search's hits, closest first (ties by id, NaN distances
// last), and its latency:
// the wall time of the SELECT including reading every row, excluding the
// transaction and settings around it.
type Result struct {
	Hits    []Hit
	Latency time.Duration
}

// sortKey orders NaN (cosine distance of a zero vector) last, as
// Postgres does.
func sortKey(d float64) float64 {
	if math.IsNaN(d) {
		return math.Inf(1)
	}
	return d
}

// Search runs q against t in its own transaction (settings are SET LOCAL,
// so they never leak into db's session). Exact searches order ties by id in
// SQL; index scans return hits in index order, and ties among the returned
// hits are then ordered by id, so equal inputs give equal results.
func Search(ctx context.Context, db DB, t Table, q Query) (Result, error) {
	sql, args, sets, err := t.searchSQL(q)
	if err != nil {
		return Result{}, err
	}
	if err := ensureTypes(ctx, db); err != nil {
		return Result{}, err
	}
	var res Result
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if err := setLocal(ctx, tx, sets); err != nil {
			return err
		}
		start := time.Now()
		rows, err := tx.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		res.Hits, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Hit, error) {
			var h Hit
			err := r.Scan(&h.ID, &h.DocID, &h.Distance)
			return h, err
		})
		res.Latency = time.Since(start)
		return err
	})
	if err != nil {
		return Result{}, fmt.Errorf("search %s: %w", t.Name, err)
	}
	sort.SliceStable(res.Hits, func(i, j int) bool {
		a, b := sortKey(res.Hits[i].Distance), sortKey(res.Hits[j].Distance)
		if a != b {
			return a < b
		}
		return res.Hits[i].ID < res.Hits[j].ID
	})
	return res, nil
}

// ZeroRows counts the rows of t whose embedding is the zero vector (the
// embedding of a text without features): rows with no Cosine distance to
// any query (it is NaN), which an HNSW or IVFFlat cosine index leaves out
// and a Rerank search drops. It scans the whole table.
func ZeroRows(ctx context.Context, db DB, t Table) (int64, error) {
	if err := t.validate(); err != nil {
		return 0, err
	}
	var n int64
	sql := fmt.Sprintf("SELECT count(*) FROM %s WHERE (embedding <=> embedding) = 'NaN'", t.ident().Sanitize())
	if err := db.QueryRow(ctx, sql).Scan(&n); err != nil {
		return 0, fmt.Errorf("zero rows of %s: %w", t.Name, err)
	}
	return n, nil
}

// setLocal runs the SET LOCAL statements sets in tx in one round trip
// (one simple-protocol query): a search is timed alone, but every round
// trip before it is time an evaluation waits.
func setLocal(ctx context.Context, tx pgx.Tx, sets []string) error {
	if len(sets) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, strings.Join(sets, "; "))
	return err
}

// searchSQL is the statement, arguments and SET LOCAL settings of q on t.
// Every execution is planned with its arguments under the settings in
// effect (plan_cache_mode = force_custom_plan), so the plan Explain shows
// is the plan Search runs.
func (t Table) searchSQL(q Query) (sql string, args []any, sets []string, err error) {
	if err := t.validate(); err != nil {
		return "", nil, nil, err
	}
	if len(q.Vector) != t.Dims {
		return "", nil, nil, fmt.Errorf("search %s: query has %d dims, table %d: %w", t.Name, len(q.Vector), t.Dims, ErrDimsMismatch)
	}
	if q.K < 1 || q.K > 10000 {
		return "", nil, nil, fmt.Errorf("search %s: k %d not in 1..10000: %w", t.Name, q.K, ErrBadQuery)
	}
	metric := q.Metric
	if metric == "" {
		metric = Cosine
	}
	op, err := metric.operator()
	if err != nil {
		return "", nil, nil, fmt.Errorf("search %s: %w", t.Name, err)
	}
	sets, err = q.settings()
	if err != nil {
		return "", nil, nil, fmt.Errorf("search %s: %w", t.Name, err)
	}
	sets = append(sets, "SET LOCAL plan_cache_mode = force_custom_plan")
	var vec any = pgvector.NewVector(q.Vector)
	if t.vtype() == HalfVec {
		vec = pgvector.NewHalfVector(q.Vector)
	}
	args = []any{vec, q.K}
	var conds []string
	if len(q.Filter) > 0 {
		f, err := json.Marshal(q.Filter)
		if err != nil {
			return "", nil, nil, fmt.Errorf("search %s: filter: %w: %w", t.Name, ErrBadQuery, err)
		}
		args = append(args, f)
		conds = append(conds, fmt.Sprintf("metadata @> $%d::jsonb", len(args)))
	}
	if q.IDs != nil {
		args = append(args, q.IDs)
		conds = append(conds, fmt.Sprintf("id = ANY($%d::text[])", len(args)))
	}
	where := ""
	if len(conds) > 0 {
		where = "WHERE " + strings.Join(conds, " AND ") + " "
	}
	if q.Rerank != 0 {
		if q.Rerank < q.K || q.Rerank > 10000 {
			return "", nil, nil, fmt.Errorf("search %s: rerank %d not in k..10000: %w", t.Name, q.Rerank, ErrBadQuery)
		}
		args = append(args, q.Rerank)
		// binary_quantize takes vector and halfvec: $1 says which. A
		// candidate without a distance (cosine of a zero vector, which
		// an HNSW or IVFFlat cosine index leaves out too) is dropped.
		sql = fmt.Sprintf(`SELECT id, doc_id, distance FROM (
	SELECT id, doc_id, embedding %s $1 AS distance FROM %s %sORDER BY %s <~> %s LIMIT $%d) AS candidates
WHERE distance <> 'NaN' ORDER BY distance, id LIMIT $2`, op, t.ident().Sanitize(), where, t.bitExpr("embedding"),
			t.bitExpr("$1::"+string(t.vtype())), len(args))
		return sql, args, sets, nil
	}
	order := "embedding " + op + " $1"
	if q.Exact {
		order += ", id"
	}
	sql = fmt.Sprintf("SELECT id, doc_id, embedding %s $1 FROM %s %sORDER BY %s LIMIT $2",
		op, t.ident().Sanitize(), where, order)
	return sql, args, sets, nil
}

// Explain returns the plan of the statement Search runs for q, as
// EXPLAIN (FORMAT JSON) prints it, planned with q's arguments under q's
// settings in a transaction of its own. It does not run the query.
func Explain(ctx context.Context, db DB, t Table, q Query) ([]byte, error) {
	sql, args, sets, err := t.searchSQL(q)
	if err != nil {
		return nil, err
	}
	if err := ensureTypes(ctx, db); err != nil {
		return nil, err
	}
	var plan []byte
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if err := setLocal(ctx, tx, sets); err != nil {
			return err
		}
		return tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+sql, args...).Scan(&plan)
	})
	if err != nil {
		return nil, fmt.Errorf("explain search %s: %w", t.Name, err)
	}
	return plan, nil
}
