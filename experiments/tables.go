package experiments

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// TableInfo is one relation as ListTables lists it.
type TableInfo struct {
	Schema string `json:"schema"`
	Name   string `json:"name"`
	// Kind is "table", "partitioned table", "view" or "materialized view".
	Kind string `json:"kind"`
	// EstimatedRows is Postgres' estimate (pg_class.reltuples); -1 when
	// the table was never analyzed.
	EstimatedRows int64 `json:"estimated_rows"`
	// TotalBytes includes indexes and TOAST.
	TotalBytes int64 `json:"total_bytes"`
}

// TableColumn is one column of a described table.
type TableColumn struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	NotNull bool   `json:"not_null"`
	Default string `json:"default,omitempty"`
}

// TableDescription is a table's columns, constraints and indexes.
type TableDescription struct {
	TableInfo
	Columns     []TableColumn `json:"columns"`
	Constraints []string      `json:"constraints"` // "name: definition"
	Indexes     []string      `json:"indexes"`     // CREATE INDEX statements
}

const listTablesSQL = `SELECT n.nspname, c.relname,
	CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view' ELSE 'materialized view' END,
	c.reltuples::bigint, pg_total_relation_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
  AND NOT c.relispartition
ORDER BY 1, 2`

// ListTables lists the user tables, views and materialized views of a
// branch (read scope), by schema and name. Partitions are left out.
func (s *Service) ListTables(ctx context.Context, project, branch string) ([]TableInfo, error) {
	res, err := s.Query(ctx, QueryRequest{Project: project, Branch: branch, SQL: listTablesSQL, ReadOnly: true, MaxRows: maxMaxRows})
	if err != nil {
		return nil, err
	}
	out := []TableInfo{}
	for _, r := range res.Results[0].Rows {
		out = append(out, TableInfo{Schema: str(r[0]), Name: str(r[1]), Kind: str(r[2]), EstimatedRows: num(r[3]), TotalBytes: num(r[4])})
	}
	return out, nil
}

// DescribeTable describes one table or view of a branch (read scope):
// table is "name" (found on the search path) or "schema.name". An
// unknown table is ErrNotFound.
func (s *Service) DescribeTable(ctx context.Context, project, branch, table string) (*TableDescription, error) {
	if strings.TrimSpace(table) == "" {
		return nil, invalid("table", "is required")
	}
	res, err := s.Query(ctx, QueryRequest{Project: project, Branch: branch, ReadOnly: true, MaxRows: maxMaxRows, Statements: []Statement{
		{SQL: `SELECT n.nspname, c.relname,
			CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' ELSE c.relkind::text END,
			c.reltuples::bigint, pg_total_relation_size(c.oid)
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)`, Params: []any{table}},
		{SQL: `SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, coalesce(pg_get_expr(d.adbin, d.adrelid), '')
			FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
			WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, Params: []any{table}},
		{SQL: `SELECT conname || ': ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = to_regclass($1) ORDER BY conname`, Params: []any{table}},
		{SQL: `SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = to_regclass($1) ORDER BY indexrelid::regclass::text`, Params: []any{table}},
	}})
	if err != nil {
		return nil, err
	}
	rs := res.Results
	if len(rs[0].Rows) == 0 {
		return nil, fmt.Errorf("table %q on branch %s: %w", table, branch, ErrNotFound)
	}
	r := rs[0].Rows[0]
	d := &TableDescription{TableInfo: TableInfo{Schema: str(r[0]), Name: str(r[1]), Kind: str(r[2]), EstimatedRows: num(r[3]), TotalBytes: num(r[4])},
		Columns: []TableColumn{}, Constraints: []string{}, Indexes: []string{}}
	for _, c := range rs[1].Rows {
		nn, _ := c[2].(bool)
		d.Columns = append(d.Columns, TableColumn{Name: str(c[0]), Type: str(c[1]), NotNull: nn, Default: str(c[3])})
	}
	for _, c := range rs[2].Rows {
		d.Constraints = append(d.Constraints, str(c[0]))
	}
	for _, c := range rs[3].Rows {
		d.Indexes = append(d.Indexes, str(c[0]))
	}
	return d, nil
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// num reads an integer the query layer returned (a json.Number).
func num(v any) int64 {
	n, _ := v.(json.Number)
	i, _ := n.Int64()
	return i
}
