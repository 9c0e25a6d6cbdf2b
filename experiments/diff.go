package experiments

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/experiments/internal/pgcat"
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
	baseObjs, err := pgcat.Objects(ctx, base)
	if err != nil {
		return nil, fmt.Errorf("diff: schema of %s: %w", req.Against, err)
	}
	headObjs, err := pgcat.Objects(ctx, head)
	if err != nil {
		return nil, fmt.Errorf("diff: schema of %s: %w", req.Branch, err)
	}
	if u := udiff.Diff(req.Against, []byte(pgcat.SchemaDDL(baseObjs)), req.Branch, []byte(pgcat.SchemaDDL(headObjs))); u != nil {
		d.Schema = SchemaDiff{Changed: true, Unified: string(u)}
	}
	baseTabs, err := pgcat.Tables(ctx, base)
	if err != nil {
		return nil, fmt.Errorf("diff: tables of %s: %w", req.Against, err)
	}
	headTabs, err := pgcat.Tables(ctx, head)
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
			td = TableDiff{Table: n, Status: "added", PrimaryKey: ht.PK}
			if td.BranchRows, err = pgcat.CountRows(ctx, head, ht); err == nil {
				td.Added = td.BranchRows
			}
		case !inHead:
			td = TableDiff{Table: n, Status: "removed", PrimaryKey: bt.PK}
			if td.BaseRows, err = pgcat.CountRows(ctx, base, bt); err == nil {
				td.Removed = td.BaseRows
			}
		case len(bt.PK) == 0 || !pgcat.SameKey(bt, ht):
			td = TableDiff{Table: n, Status: "unknown", PrimaryKey: ht.PK, Note: "no primary key: only row counts are compared"}
			if len(bt.PK) > 0 || len(ht.PK) > 0 {
				td.Note = "primary key differs between the branches: only row counts are compared"
			}
			if td.BaseRows, err = pgcat.CountRows(ctx, base, bt); err == nil {
				td.BranchRows, err = pgcat.CountRows(ctx, head, ht)
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

// diffRows merges the ordered key/hash streams of both sides.
func diffRows(ctx context.Context, name string, base, head *pgx.Conn, bt, ht pgcat.Table, sample int) (TableDiff, error) {
	td := TableDiff{Table: name, Status: "changed", PrimaryKey: ht.PK}
	// Hash the columns both sides have, in the base's order.
	var cols []string
	for _, c := range bt.Cols {
		if _, ok := ht.Col(c.Name); ok {
			cols = append(cols, c.Name)
		}
	}
	br, err := pgcat.RowStream(ctx, base, bt, "", pgcat.Exprs(cols))
	if err != nil {
		return td, err
	}
	defer br.Close()
	hr, err := pgcat.RowStream(ctx, head, ht, "", pgcat.Exprs(cols))
	if err != nil {
		return td, err
	}
	defer hr.Close()
	n := len(bt.PK)
	var samples [3][][]string // added, removed, changed keys
	add := func(kind int, key []string) {
		if len(samples[kind]) < sample {
			samples[kind] = append(samples[kind], key)
		}
	}
	err = pgcat.Join(pgcat.Ordered(br, n), pgcat.Ordered(hr, n), bt.PKTypes, func(b, h *pgcat.KeyedRow) error {
		switch {
		case h == nil: // only in base
			td.Removed++
			td.BaseRows++
			add(1, b.Key)
		case b == nil: // only in head
			td.Added++
			td.BranchRows++
			add(0, h.Key)
		default:
			if b.Hashes[0] != h.Hashes[0] {
				td.Changed++
				add(2, h.Key)
			}
			td.BaseRows++
			td.BranchRows++
		}
		return nil
	})
	if err != nil {
		return td, err
	}
	br.Close()
	hr.Close()
	for kind, keys := range samples {
		for _, key := range keys {
			rc := RowChange{Kind: [...]string{"added", "removed", "changed"}[kind], Key: map[string]string{}}
			for i, k := range bt.PK {
				rc.Key[k] = key[i]
			}
			if kind != 0 {
				if rc.Old, err = pgcat.FetchRow(ctx, base, bt, key); err != nil {
					return td, err
				}
			}
			if kind != 1 {
				if rc.New, err = pgcat.FetchRow(ctx, head, ht, key); err != nil {
					return td, err
				}
			}
			td.Samples = append(td.Samples, rc)
		}
	}
	return td, nil
}
