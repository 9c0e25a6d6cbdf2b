package experiments

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/experiments/internal/udiff"
)

// DiffRequest asks how Branch differs from Against, both in Project.
type DiffRequest struct {
	Project string `json:"-"`
	// Branch is the new side ("+" in the schema diff).
	Branch string `json:"-"`
	// Against is the base side ("-" in the schema diff). Required.
	Against string `json:"against"`
	// SampleRows caps the sample rows reported per table and per kind of
	// change. Default 10, at most 100; 0 takes the default.
	SampleRows int `json:"sample_rows"`
}

// Diff is the difference between two branches.
type Diff struct {
	Project string `json:"project"`
	Base    string `json:"base"`
	Branch  string `json:"branch"`
	// Schema compares normalized DDL read from the catalogs.
	Schema SchemaDiff `json:"schema"`
	// Tables lists every user table that differs in rows or exists on
	// one side only, sorted by name. Tables without a primary key that
	// exist on both sides are listed with their row counts.
	Tables []TableDiff `json:"tables"`
	// ChangedBytes is the size of the storage blocks that differ between
	// the branches; nil until storage provides it.
	ChangedBytes *int64 `json:"changed_bytes"`
}

// SchemaDiff is a unified diff of the normalized DDL of both sides:
// extensions, schemas, enum types, sequences, tables with columns, types,
// defaults and NOT NULL, views, constraints, indexes, triggers and
// functions, each sorted by name. Unified is empty when they are equal.
type SchemaDiff struct {
	Changed bool   `json:"changed"`
	Unified string `json:"unified"`
}

// TableDiff is the row-level difference of one table.
type TableDiff struct {
	Table string `json:"table"` // schema.name
	// Status is "added" (only on the branch), "removed" (only on the
	// base), "changed" (rows differ), or "unknown" (no usable primary key:
	// only row counts are compared).
	Status string `json:"status"`
	// PrimaryKey names the key columns; empty when the table has none.
	PrimaryKey []string `json:"primary_key"`
	BaseRows   int64    `json:"base_rows"`
	BranchRows int64    `json:"branch_rows"`
	Added      int64    `json:"added"`
	Removed    int64    `json:"removed"`
	Changed    int64    `json:"changed"`
	// Samples shows up to DiffRequest.SampleRows rows per kind of change.
	Samples []RowChange `json:"samples"`
	Note    string      `json:"note,omitempty"`
}

// RowChange is one added, removed or changed row: its key (as text) and
// the whole row as JSON on each side where it exists.
type RowChange struct {
	Kind string            `json:"kind"` // "added", "removed", "changed"
	Key  map[string]string `json:"key"`
	Old  json.RawMessage   `json:"old,omitempty"`
	New  json.RawMessage   `json:"new,omitempty"`
}

const (
	defaultSampleRows = 10
	maxSampleRows     = 100
)

// Diff compares two branches of a project: normalized schema DDL as a
// unified diff, and rows of every table with a primary key, streamed from
// both sides in key order and merged on a 64-bit hash of each row's text
// (over the columns both sides have; added or dropped columns show in the
// schema diff), so the work is one ordered scan per side and memory stays
// bounded. Each side is read in one REPEATABLE READ snapshot. Needs read
// access to both branches. Safe for concurrent use.
func (s *Service) Diff(ctx context.Context, req DiffRequest) (*Diff, error) {
	for _, f := range []struct{ field, v string }{{"project", req.Project}, {"branch", req.Branch}, {"against", req.Against}} {
		if err := validName(f.field, f.v); err != nil {
			return nil, err
		}
	}
	if req.SampleRows < 0 || req.SampleRows > maxSampleRows {
		return nil, invalid("sample_rows", "must be between 0 and %d", maxSampleRows)
	}
	if req.SampleRows == 0 {
		req.SampleRows = defaultSampleRows
	}
	for _, b := range []string{req.Branch, req.Against} {
		if err := s.authorize(ctx, RoleRead, req.Project, b); err != nil {
			s.record(ctx, "diff", req.Project+"/"+req.Branch, "against "+req.Against, err)
			return nil, err
		}
	}
	base, releaseBase, err := s.connect(ctx, req.Project, req.Against, ReadOnly)
	if err != nil {
		return nil, err
	}
	defer releaseBase()
	head, releaseHead, err := s.connect(ctx, req.Project, req.Branch, ReadOnly)
	if err != nil {
		return nil, err
	}
	defer releaseHead()
	for _, c := range []*pgx.Conn{base, head} {
		if _, err := c.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
			return nil, fmt.Errorf("diff: begin: %w", err)
		}
		defer c.Exec(context.Background(), "ROLLBACK")
	}
	d := &Diff{Project: req.Project, Base: req.Against, Branch: req.Branch, Tables: []TableDiff{}}
	baseDDL, err := schemaDDL(ctx, base)
	if err != nil {
		return nil, fmt.Errorf("diff: schema of %s: %w", req.Against, err)
	}
	headDDL, err := schemaDDL(ctx, head)
	if err != nil {
		return nil, fmt.Errorf("diff: schema of %s: %w", req.Branch, err)
	}
	if u := udiff.Diff(req.Against, []byte(baseDDL), req.Branch, []byte(headDDL)); u != nil {
		d.Schema = SchemaDiff{Changed: true, Unified: string(u)}
	}
	baseTabs, err := userTables(ctx, base)
	if err != nil {
		return nil, fmt.Errorf("diff: tables of %s: %w", req.Against, err)
	}
	headTabs, err := userTables(ctx, head)
	if err != nil {
		return nil, fmt.Errorf("diff: tables of %s: %w", req.Branch, err)
	}
	names := map[string]bool{}
	for n := range baseTabs {
		names[n] = true
	}
	for n := range headTabs {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	for _, n := range sorted {
		bt, inBase := baseTabs[n]
		ht, inHead := headTabs[n]
		var td TableDiff
		switch {
		case !inBase:
			td = TableDiff{Table: n, Status: "added", PrimaryKey: ht.pk}
			if td.BranchRows, err = countRows(ctx, head, ht); err == nil {
				td.Added = td.BranchRows
			}
		case !inHead:
			td = TableDiff{Table: n, Status: "removed", PrimaryKey: bt.pk}
			if td.BaseRows, err = countRows(ctx, base, bt); err == nil {
				td.Removed = td.BaseRows
			}
		case len(bt.pk) == 0 || !sameKey(bt, ht):
			td = TableDiff{Table: n, Status: "unknown", PrimaryKey: ht.pk, Note: "no primary key: only row counts are compared"}
			if len(bt.pk) > 0 || len(ht.pk) > 0 {
				td.Note = "primary key differs between the branches: only row counts are compared"
			}
			if td.BaseRows, err = countRows(ctx, base, bt); err == nil {
				td.BranchRows, err = countRows(ctx, head, ht)
			}
		default:
			td, err = diffRows(ctx, n, base, head, bt, ht, req.SampleRows)
		}
		if err != nil {
			return nil, fmt.Errorf("diff: table %s: %w", n, err)
		}
		if td.Samples == nil {
			td.Samples = []RowChange{}
		}
		if td.PrimaryKey == nil {
			td.PrimaryKey = []string{}
		}
		if td.Status == "changed" && td.Added+td.Removed+td.Changed == 0 {
			continue
		}
		d.Tables = append(d.Tables, td)
	}
	return d, nil
}

// schemaDDL returns the normalized DDL of the user objects of a database,
// one object per paragraph, sorted by a key that groups a table's
// constraints, indexes and triggers after it.
func schemaDDL(ctx context.Context, conn *pgx.Conn) (string, error) {
	rows, err := conn.Query(ctx, schemaSQL)
	if err != nil {
		return "", err
	}
	ddl, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var key, def string
		err := r.Scan(&key, &def)
		return def, err
	})
	if err != nil {
		return "", err
	}
	return strings.Join(ddl, "\n\n") + "\n", nil
}

const userNS = `n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'`

func notExtMember(catalog, oid string) string {
	return fmt.Sprintf("NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '%s'::regclass AND d.objid = %s AND d.deptype = 'e')", catalog, oid)
}

var schemaSQL = `
WITH rels AS (
  SELECT c.oid, n.nspname, c.relname, c.relkind, c.relpersistence
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE ` + userNS + ` AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND ` + notExtMember("pg_class", "c.oid") + `
), objs(key, ddl) AS (
  SELECT '0 ' || extname, format('CREATE EXTENSION %I VERSION %L;', extname, extversion) FROM pg_extension
  UNION ALL
  SELECT '1 ' || n.nspname, format('CREATE SCHEMA %I;', n.nspname) FROM pg_namespace n
  WHERE ` + userNS + ` AND ` + notExtMember("pg_namespace", "n.oid") + `
  UNION ALL
  SELECT '2 ' || n.nspname || '.' || t.typname,
    format('CREATE TYPE %I.%I AS ENUM (%s);', n.nspname, t.typname,
      (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid))
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
  WHERE t.typtype = 'e' AND ` + userNS + ` AND ` + notExtMember("pg_type", "t.oid") + `
  UNION ALL
  SELECT '3 ' || r.nspname || '.' || r.relname || ' 0',
    format(E'CREATE %sTABLE %I.%I (\n%s\n)%s;',
      CASE WHEN r.relpersistence = 'u' THEN 'UNLOGGED ' WHEN r.relkind = 'f' THEN 'FOREIGN ' ELSE '' END,
      r.nspname, r.relname,
      (SELECT coalesce(string_agg('    ' || quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod)
          || CASE WHEN a.attcollation <> 0 AND a.attcollation <> ty.typcollation THEN ' COLLATE ' || a.attcollation::regcollation::text ELSE '' END
          || CASE a.attidentity WHEN 'a' THEN ' GENERATED ALWAYS AS IDENTITY' WHEN 'd' THEN ' GENERATED BY DEFAULT AS IDENTITY' ELSE '' END
          || CASE WHEN a.attgenerated = 's' THEN ' GENERATED ALWAYS AS (' || pg_get_expr(ad.adbin, ad.adrelid) || ') STORED'
                  WHEN ad.adbin IS NOT NULL THEN ' DEFAULT ' || pg_get_expr(ad.adbin, ad.adrelid) ELSE '' END
          || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END, E',\n' ORDER BY a.attnum), '')
       FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
       LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
       WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped),
      CASE WHEN r.relkind = 'p' THEN ' PARTITION BY ' || pg_get_partkeydef(r.oid) ELSE '' END)
  FROM rels r WHERE r.relkind IN ('r', 'p', 'f')
  UNION ALL
  SELECT '3 ' || r.nspname || '.' || r.relname || ' 0',
    format(E'CREATE %sVIEW %I.%I AS\n%s', CASE WHEN r.relkind = 'm' THEN 'MATERIALIZED ' ELSE '' END, r.nspname, r.relname, pg_get_viewdef(r.oid))
  FROM rels r WHERE r.relkind IN ('v', 'm')
  UNION ALL
  SELECT '3 ' || r.nspname || '.' || r.relname || ' 0',
    format('CREATE SEQUENCE %I.%I AS %s INCREMENT %s MINVALUE %s MAXVALUE %s START %s%s;', r.nspname, r.relname,
      format_type(s.seqtypid, NULL), s.seqincrement, s.seqmin, s.seqmax, s.seqstart, CASE WHEN s.seqcycle THEN ' CYCLE' ELSE '' END)
  FROM rels r JOIN pg_sequence s ON s.seqrelid = r.oid
  UNION ALL
  SELECT '3 ' || r.nspname || '.' || r.relname || ' 1 ' || con.conname,
    format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s;', r.nspname, r.relname, con.conname, pg_get_constraintdef(con.oid))
  FROM pg_constraint con JOIN rels r ON r.oid = con.conrelid
  UNION ALL
  SELECT '3 ' || r.nspname || '.' || r.relname || ' 2 ' || i.relname, pg_get_indexdef(x.indexrelid) || ';'
  FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN rels r ON r.oid = x.indrelid
  WHERE NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = x.indexrelid AND con.contype IN ('p', 'u', 'x'))
  UNION ALL
  SELECT '3 ' || r.nspname || '.' || r.relname || ' 3 ' || tg.tgname, pg_get_triggerdef(tg.oid) || ';'
  FROM pg_trigger tg JOIN rels r ON r.oid = tg.tgrelid WHERE NOT tg.tgisinternal
  UNION ALL
  SELECT '4 ' || n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
    rtrim(pg_get_functiondef(p.oid), E'\n') || ';'
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE p.prokind IN ('f', 'p', 'w') AND ` + userNS + ` AND ` + notExtMember("pg_proc", "p.oid") + `
)
SELECT key, ddl FROM objs ORDER BY key COLLATE "C", ddl COLLATE "C"`

// table is a user table as the row diff needs it.
type table struct {
	ident   string // quoted schema.name
	pk      []string
	pkTypes []uint32
	cols    []string
}

func sameKey(a, b table) bool {
	if len(a.pk) != len(b.pk) {
		return false
	}
	for i := range a.pk {
		if a.pk[i] != b.pk[i] || a.pkTypes[i] != b.pkTypes[i] {
			return false
		}
	}
	return true
}

// userTables lists ordinary tables (partitions included, partitioned
// parents not, so rows are counted once) with their primary keys.
func userTables(ctx context.Context, conn *pgx.Conn) (map[string]table, error) {
	rows, err := conn.Query(ctx, `
SELECT n.nspname, c.relname,
  coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_index x
    CROSS JOIN unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
    WHERE x.indrelid = c.oid AND x.indisprimary), '{}'),
  coalesce((SELECT array_agg(a.atttypid ORDER BY k.ord) FROM pg_index x
    CROSS JOIN unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
    WHERE x.indrelid = c.oid AND x.indisprimary), '{}'),
  coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '{}')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND `+userNS+` AND `+notExtMember("pg_class", "c.oid"))
	if err != nil {
		return nil, err
	}
	out := map[string]table{}
	var ns, name string
	var t table
	_, err = pgx.ForEachRow(rows, []any{&ns, &name, &t.pk, &t.pkTypes, &t.cols}, func() error {
		t.ident = pgx.Identifier{ns, name}.Sanitize()
		out[ns+"."+name] = t
		t = table{}
		return nil
	})
	return out, err
}

func countRows(ctx context.Context, conn *pgx.Conn, t table) (int64, error) {
	var n int64
	err := conn.QueryRow(ctx, "SELECT count(*) FROM ONLY "+t.ident).Scan(&n)
	return n, err
}

func isIntType(oid uint32) bool { return oid == oidInt2 || oid == oidInt4 || oid == oidInt8 }

// keyedRow is one row of the diff stream: its key as text and a hash.
type keyedRow struct {
	key  []string
	hash string
}

// rowStream runs the ordered key/hash scan of one side.
func rowStream(ctx context.Context, conn *pgx.Conn, t table, cols []string) (pgx.Rows, error) {
	var sel, order []string
	for i, k := range t.pk {
		// Qualified, so ORDER BY sees the column, not the text output.
		id := "t." + pgx.Identifier{k}.Sanitize()
		sel = append(sel, fmt.Sprintf("%s::text AS k%d", id, i))
		if isIntType(t.pkTypes[i]) {
			order = append(order, id)
		} else {
			order = append(order, "("+id+"::text) COLLATE \"C\"")
		}
	}
	var row []string
	for _, c := range cols {
		row = append(row, "t."+pgx.Identifier{c}.Sanitize())
	}
	// hashtextextended is a 64-bit hash, twice as fast as md5 here.
	q := fmt.Sprintf("SELECT %s, hashtextextended(ROW(%s)::text, 0) FROM ONLY %s AS t ORDER BY %s",
		strings.Join(sel, ", "), strings.Join(row, ", "), t.ident, strings.Join(order, ", "))
	return conn.Query(ctx, q, pgx.QueryExecModeSimpleProtocol)
}

// compareKeys orders keys the way rowStream sorts them: integer columns
// numerically, others by the bytes of their text.
func compareKeys(a, b []string, types []uint32) int {
	for i := range a {
		if isIntType(types[i]) {
			x, _ := strconv.ParseInt(a[i], 10, 64)
			y, _ := strconv.ParseInt(b[i], 10, 64)
			if x != y {
				if x < y {
					return -1
				}
				return 1
			}
			continue
		}
		if c := bytes.Compare([]byte(a[i]), []byte(b[i])); c != 0 {
			return c
		}
	}
	return 0
}

// next reads one keyed row; ok is false at the end.
func next(rows pgx.Rows, nkey int) (keyedRow, bool, error) {
	if !rows.Next() {
		return keyedRow{}, false, rows.Err()
	}
	vals := rows.RawValues()
	r := keyedRow{key: make([]string, nkey), hash: string(vals[nkey])}
	for i := range nkey {
		r.key[i] = string(vals[i])
	}
	return r, true, nil
}

// diffRows merges the ordered key/hash streams of both sides.
func diffRows(ctx context.Context, name string, base, head *pgx.Conn, bt, ht table, sample int) (TableDiff, error) {
	td := TableDiff{Table: name, Status: "changed", PrimaryKey: ht.pk}
	// Hash the columns both sides have, in the base's order.
	inHead := map[string]bool{}
	for _, c := range ht.cols {
		inHead[c] = true
	}
	var cols []string
	for _, c := range bt.cols {
		if inHead[c] {
			cols = append(cols, c)
		}
	}
	br, err := rowStream(ctx, base, bt, cols)
	if err != nil {
		return td, err
	}
	defer br.Close()
	hr, err := rowStream(ctx, head, ht, cols)
	if err != nil {
		return td, err
	}
	defer hr.Close()
	n := len(bt.pk)
	var samples [3][][]string // added, removed, changed keys
	add := func(kind int, key []string) {
		if len(samples[kind]) < sample {
			samples[kind] = append(samples[kind], key)
		}
	}
	b, bok, err := next(br, n)
	if err != nil {
		return td, err
	}
	h, hok, err := next(hr, n)
	if err != nil {
		return td, err
	}
	for bok || hok {
		c := 0
		switch {
		case !bok:
			c = 1
		case !hok:
			c = -1
		default:
			c = compareKeys(b.key, h.key, bt.pkTypes)
		}
		switch {
		case c < 0: // only in base
			td.Removed++
			td.BaseRows++
			add(1, b.key)
			b, bok, err = next(br, n)
		case c > 0: // only in head
			td.Added++
			td.BranchRows++
			add(0, h.key)
			h, hok, err = next(hr, n)
		default:
			if b.hash != h.hash {
				td.Changed++
				add(2, h.key)
			}
			td.BaseRows++
			td.BranchRows++
			b, bok, err = next(br, n)
			if err == nil {
				h, hok, err = next(hr, n)
			}
		}
		if err != nil {
			return td, err
		}
	}
	br.Close()
	hr.Close()
	for kind, keys := range samples {
		for _, key := range keys {
			rc := RowChange{Kind: [...]string{"added", "removed", "changed"}[kind], Key: map[string]string{}}
			for i, k := range bt.pk {
				rc.Key[k] = key[i]
			}
			if kind != 0 {
				if rc.Old, err = fetchRow(ctx, base, bt, key); err != nil {
					return td, err
				}
			}
			if kind != 1 {
				if rc.New, err = fetchRow(ctx, head, ht, key); err != nil {
					return td, err
				}
			}
			td.Samples = append(td.Samples, rc)
		}
	}
	return td, nil
}

// fetchRow returns one row as JSON by its key text; Postgres types the
// text parameters from the key columns.
func fetchRow(ctx context.Context, conn *pgx.Conn, t table, key []string) (json.RawMessage, error) {
	var where []string
	params := make([][]byte, len(key))
	for i, k := range t.pk {
		where = append(where, fmt.Sprintf("%s = $%d", pgx.Identifier{k}.Sanitize(), i+1))
		params[i] = []byte(key[i])
	}
	q := fmt.Sprintf("SELECT to_jsonb(t)::text FROM ONLY %s AS t WHERE %s", t.ident, strings.Join(where, " AND "))
	res := conn.PgConn().ExecParams(ctx, q, params, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, res.Err
	}
	if len(res.Rows) == 0 {
		return nil, nil
	}
	return json.RawMessage(append([]byte(nil), res.Rows[0][0]...)), nil
}
