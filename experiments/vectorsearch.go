package experiments

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// VectorSearchRequest asks for the K rows of Table nearest to Vector by
// the pgvector column Column.
type VectorSearchRequest struct {
	Project string `json:"-"`
	Branch  string `json:"-"`
	// Table is "name" or "schema.name".
	Table  string `json:"table"`
	Column string `json:"column"`
	// Vector is the query embedding; its dimension must match the column.
	Vector []float64 `json:"vector"`
	// K is how many rows to return. Default 10, at most 1000.
	K int `json:"k,omitempty"`
	// Distance is "l2" (<->, the default), "cosine" (<=>) or "inner"
	// (<#>, negative inner product).
	Distance string `json:"distance,omitempty"`
	// Filters keep rows whose column equals the value (compared as text
	// typed by Postgres), all of them.
	Filters map[string]any `json:"filters,omitempty"`
	// TimeoutMS is the statement timeout, as in QueryRequest.
	TimeoutMS int `json:"timeout_ms,omitempty"`
}

var distanceOps = map[string]string{"": "<->", "l2": "<->", "cosine": "<=>", "inner": "<#>"}

// VectorSearch runs a nearest-neighbour query on a branch (read scope) in
// a READ ONLY transaction: every column of the K nearest rows plus their
// distance, nearest first. It uses an index on the column when one
// matches the distance (HNSW or IVFFlat), else scans exactly.
func (s *Service) VectorSearch(ctx context.Context, req VectorSearchRequest) (*QueryResult, error) {
	op, ok := distanceOps[req.Distance]
	if !ok {
		return nil, invalid("distance", "want l2, cosine or inner")
	}
	if strings.TrimSpace(req.Table) == "" {
		return nil, invalid("table", "is required")
	}
	if strings.TrimSpace(req.Column) == "" {
		return nil, invalid("column", "is required")
	}
	if len(req.Vector) == 0 {
		return nil, invalid("vector", "give the query embedding as an array of numbers")
	}
	if req.K == 0 {
		req.K = 10
	}
	if req.K < 0 || req.K > 1000 {
		return nil, invalid("k", "want 1..1000")
	}
	vec := make([]any, len(req.Vector))
	for i, f := range req.Vector {
		vec[i] = f
	}
	params := []any{vec}
	col := pgx.Identifier{req.Column}.Sanitize()
	var where []string
	keys := make([]string, 0, len(req.Filters))
	for k := range req.Filters {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		params = append(params, req.Filters[k])
		where = append(where, fmt.Sprintf("%s = $%d", pgx.Identifier{k}.Sanitize(), len(params)))
	}
	sql := fmt.Sprintf("SELECT *, %s %s $1::vector AS distance FROM %s", col, op, pgx.Identifier(strings.SplitN(req.Table, ".", 2)).Sanitize())
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += fmt.Sprintf(" ORDER BY %s %s $1::vector LIMIT %d", col, op, req.K)
	return s.Query(ctx, QueryRequest{Project: req.Project, Branch: req.Branch, SQL: sql, Params: params, ReadOnly: true, MaxRows: req.K, TimeoutMS: req.TimeoutMS})
}
