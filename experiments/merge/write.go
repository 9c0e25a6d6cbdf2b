package merge

// Writing the planned row changes to the target, and the conflicts a
// refusal of the target makes.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/offshootdb/offshoot/experiments/internal/pgcat"
)

// write inserts and updates the planned rows, from the source, and the
// custom rows; a batch the target refuses is retried row by row, and
// each refused row is a constraint conflict.
func (r *run) write(ctx context.Context, p *tablePlan) error {
	if err := r.silence(ctx, p.tt); err != nil {
		return err
	}
	for _, op := range []struct {
		kind Change
		keys [][]string
	}{{Inserted, p.inserts}, {Updated, p.updates}} {
		for i := 0; i < len(op.keys); i += batchSize {
			batch := op.keys[i:min(i+batchSize, len(op.keys))]
			rows, err := fetchRows(ctx, r.Source, p.st, batch, p.names)
			if err != nil {
				return err
			}
			if err := r.writeBatch(ctx, p, op.kind, rows); err != nil {
				return err
			}
		}
	}
	for _, cu := range p.customs {
		if err := r.writeCustom(ctx, p, cu); err != nil {
			return err
		}
	}
	return nil
}

// fetchRows reads the rows of the given keys as JSON objects of column
// text values (see rowText).
func fetchRows(ctx context.Context, conn *pgx.Conn, t pgcat.Table, keys [][]string, names map[string]string) ([]json.RawMessage, error) {
	rows, err := conn.Query(ctx, fmt.Sprintf("SELECT %s FROM ONLY %s AS t WHERE %s", rowText(t, names), t.Ident, keyFilter(t, keys)), pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (json.RawMessage, error) {
		var s string
		err := r.Scan(&s)
		return json.RawMessage(s), err
	})
}

// rowText is the expression over the row t of table tb that carries it
// from one database to another: a JSON object of each column's text
// output, null for SQL NULL. The text is what the column's type reads
// back exactly (a json value keeps its whitespace and duplicate keys; a
// JSON null is the string "null", not SQL NULL), which a row as JSON
// (to_jsonb) does not keep. A column in names is keyed by the name it
// maps to (the target's name of a column the target renamed).
func rowText(tb pgcat.Table, names map[string]string) string {
	keys := make([]string, len(tb.Cols))
	vals := make([]string, len(tb.Cols))
	for i, c := range tb.Cols {
		keys[i] = literal(c.Name)
		if nw, ok := names[c.Name]; ok {
			keys[i] = literal(nw)
		}
		vals[i] = pgcat.Quote(c.Name) + "::text"
	}
	return fmt.Sprintf("json_object(ARRAY[%s]::text[], ARRAY[%s]::text[])::text", strings.Join(keys, ", "), strings.Join(vals, ", "))
}

// rowsSQL is the statement that writes (kind Inserted or Updated) or
// deletes (Deleted) the rows in $1, a JSON array of rowText objects, on
// the target: each value is read by the type of the target's column.
func (p *tablePlan) rowsSQL(kind Change) string {
	cols := append([]string{}, p.tt.PK...)
	if kind != Deleted {
		for _, c := range p.cols {
			if !slicesContains(cols, c) {
				cols = append(cols, c)
			}
		}
	}
	defs := make([]string, len(cols))
	for i, c := range cols {
		defs[i] = pgx.Identifier{c}.Sanitize() + " text"
	}
	src := fmt.Sprintf("jsonb_to_recordset($1::jsonb) AS r(%s)", strings.Join(defs, ", "))
	val := func(c string) string {
		col, _ := p.tt.Col(c)
		return "r." + pgx.Identifier{c}.Sanitize() + "::" + col.Type
	}
	var match []string
	for _, k := range p.tt.PK {
		match = append(match, "t."+pgx.Identifier{k}.Sanitize()+" = "+val(k))
	}
	switch kind {
	case Inserted:
		var ids, vals []string
		for _, c := range p.cols {
			ids = append(ids, pgx.Identifier{c}.Sanitize())
			vals = append(vals, val(c))
		}
		return fmt.Sprintf("INSERT INTO %s AS t (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %s", p.tt.Ident, strings.Join(ids, ", "), strings.Join(vals, ", "), src)
	case Updated:
		var set []string
		for _, c := range p.cols {
			col, _ := p.tt.Col(c)
			if slicesContains(p.tt.PK, c) || col.Identity == "a" {
				continue
			}
			set = append(set, pgx.Identifier{c}.Sanitize()+" = "+val(c))
		}
		if len(set) == 0 {
			return ""
		}
		return fmt.Sprintf("UPDATE ONLY %s AS t SET %s FROM %s WHERE %s", p.tt.Ident, strings.Join(set, ", "), src, strings.Join(match, " AND "))
	}
	return fmt.Sprintf("DELETE FROM ONLY %s AS t USING %s WHERE %s", p.tt.Ident, src, strings.Join(match, " AND "))
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// exec runs a rowsSQL statement for rows in a savepoint.
func (r *run) exec(ctx context.Context, sql string, rows []json.RawMessage) (int64, *pgconn.PgError, error) {
	if sql == "" || len(rows) == 0 {
		return 0, nil, nil
	}
	arr, err := json.Marshal(rows)
	if err != nil {
		return 0, nil, err
	}
	var n int64
	pe, err := r.try(ctx, func() error {
		tag, err := r.Target.Exec(ctx, sql, string(arr))
		n = tag.RowsAffected()
		return err
	})
	return n, pe, err
}

func (r *run) tally(table string, kind Change, n int64) {
	c := r.count(table)
	switch kind {
	case Inserted:
		c.Inserted += n
	case Updated:
		c.Updated += n
	case Deleted:
		c.Deleted += n
	}
}

// writeBatch writes rows (kind Inserted, Updated or Deleted) in one
// statement, or row by row when the target refuses the batch.
func (r *run) writeBatch(ctx context.Context, p *tablePlan, kind Change, rows []json.RawMessage) error {
	sql := p.rowsSQL(kind)
	n, pe, err := r.exec(ctx, sql, rows)
	if err != nil || pe == nil {
		r.tally(p.name, kind, n)
		return err
	}
	for _, row := range rows {
		n, pe, err := r.exec(ctx, sql, []json.RawMessage{row})
		if err != nil {
			return err
		}
		r.tally(p.name, kind, n)
		if pe != nil {
			if err := r.refused(ctx, p, kind, row, pe); err != nil {
				return err
			}
		}
	}
	return nil
}

// refused records a source row change the target refuses as a constraint
// conflict and applies its resolution.
func (r *run) refused(ctx context.Context, p *tablePlan, kind Change, row json.RawMessage, pe *pgconn.PgError) error {
	var obj map[string]any
	if err := json.Unmarshal(row, &obj); err != nil {
		return err
	}
	key := make([]string, len(p.tt.PK))
	for i, k := range p.tt.PK {
		key[i] = textOf(obj[k])
	}
	target, err := pgcat.FetchRow(ctx, r.Target, p.tt, key)
	if err != nil {
		return err
	}
	c := Conflict{Kind: KindConstraint, Table: p.name, Object: pe.ConstraintName, Key: keyMap(p.tt.PK, key), SourceChange: kind,
		Target:  target,
		Message: fmt.Sprintf("%s refuses %s's %s of this row of %s: %s", r.TargetName, r.SourceName, kind, p.name, describe(pe)),
		Hint:    "skip the source's change (ours) or give values that satisfy the constraint (custom)"}
	if kind != Deleted {
		if c.Source, err = pgcat.FetchRow(ctx, r.Source, p.st, key); err != nil {
			return err
		}
	}
	res, ok := r.conflict(c, string(row), pe.Code)
	if !ok {
		return nil
	}
	switch res.Choice {
	case ChoiceTheirs:
		r.reopen("the target refuses the source's row: resolve with ours or custom")
	case ChoiceCustom:
		cu, err := customRow(key, p.tt.PK, res.Values, target, c.Source, target != nil)
		if err != nil {
			r.reopen(err.Error())
			return nil
		}
		return r.writeCustom(ctx, p, cu)
	}
	return nil
}

// textOf renders a JSON value of a key column as the key's text.
func textOf(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// writeCustom writes one custom row; a refusal reopens its conflict.
func (r *run) writeCustom(ctx context.Context, p *tablePlan, cu custom) error {
	kind := Updated
	var row []byte
	var err error
	switch {
	case cu.obj == nil && !cu.present:
		return nil
	case cu.obj == nil:
		kind = Deleted
		row, err = json.Marshal(keyMap(p.tt.PK, cu.key))
	default:
		if !cu.present {
			kind = Inserted
		}
		var pe *pgconn.PgError
		row, pe, err = r.customText(ctx, p, cu)
		if err != nil {
			return err
		}
		if pe != nil {
			r.reopenAt(r.customConflict(p, cu), "the target refuses the custom values: "+describe(pe))
			return nil
		}
	}
	if err != nil {
		return err
	}
	n, pe, err := r.exec(ctx, p.rowsSQL(kind), []json.RawMessage{row})
	if err != nil {
		return err
	}
	r.tally(p.name, kind, n)
	if pe != nil {
		r.reopenAt(r.customConflict(p, cu), "the target refuses the custom values: "+describe(pe))
	}
	return nil
}

// customConflict returns the index of the conflict whose custom values
// cu are: the last conflict of cu's key of table p resolved custom (a
// row conflict's values are written after every conflict of the table
// was recorded, a constraint conflict's right away).
func (r *run) customConflict(p *tablePlan, cu custom) int {
	key := keyMap(p.tt.PK, cu.key)
	for i := len(r.res.Conflicts) - 1; i >= 0; i-- {
		c := r.res.Conflicts[i]
		if c.Table != p.name || c.Resolution == nil || c.Resolution.Choice != ChoiceCustom || len(c.Key) != len(key) {
			continue
		}
		same := true
		for k, v := range key {
			same = same && c.Key[k] == v
		}
		if same {
			return i
		}
	}
	return len(r.res.Conflicts) - 1
}

// customText returns the row a custom resolution writes, in the rowText
// form rowsSQL writes: the row it starts from (the target's, or the
// source's where the target has none), as it is, with the values the
// resolution gives (read as jsonb_populate_record reads them into the
// target's row type) and the key over it. Values the target's types do
// not take come back as the *pgconn.PgError.
func (r *run) customText(ctx context.Context, p *tablePlan, cu custom) ([]byte, *pgconn.PgError, error) {
	conn, t, names := r.Source, p.st, p.names
	if cu.present {
		conn, t, names = r.Target, p.tt, nil
	}
	row := map[string]*string{}
	start, err := fetchRows(ctx, conn, t, [][]string{cu.key}, names)
	if err != nil {
		return nil, nil, err
	}
	if len(start) > 0 {
		if err := json.Unmarshal(start[0], &row); err != nil {
			return nil, nil, err
		}
	}
	over := map[string]any{}
	var cols []pgcat.Column
	for _, c := range p.tt.Cols {
		if v, ok := cu.over[c.Name]; ok {
			over[c.Name] = v
			cols = append(cols, c)
		}
	}
	if len(cols) > 0 {
		obj, err := json.Marshal(over)
		if err != nil {
			return nil, nil, err
		}
		var s string
		pe, err := r.try(ctx, func() error {
			return r.Target.QueryRow(ctx, fmt.Sprintf("SELECT %s FROM jsonb_populate_record(NULL::%s, $1::jsonb) AS t",
				rowText(pgcat.Table{Cols: cols}, nil), p.tt.Ident), string(obj)).Scan(&s)
		})
		if err != nil || pe != nil {
			return nil, pe, err
		}
		if err := json.Unmarshal([]byte(s), &row); err != nil {
			return nil, nil, err
		}
	}
	for i, k := range p.tt.PK {
		row[k] = &cu.key[i]
	}
	b, err := json.Marshal(row)
	return b, nil, err
}

// writeDeletes deletes the planned rows.
func (r *run) writeDeletes(ctx context.Context, p *tablePlan) error {
	if len(p.delete) > 0 {
		if err := r.silence(ctx, p.tt); err != nil {
			return err
		}
	}
	for i := 0; i < len(p.delete); i += batchSize {
		batch := p.delete[i:min(i+batchSize, len(p.delete))]
		rows := make([]json.RawMessage, len(batch))
		for j, k := range batch {
			b, err := json.Marshal(keyMap(p.tt.PK, k))
			if err != nil {
				return err
			}
			rows[j] = b
		}
		if err := r.writeBatch(ctx, p, Deleted, rows); err != nil {
			return err
		}
	}
	return nil
}

// userTrigger is a trigger the row merge turned off, and its state
// (pg_trigger.tgenabled: O, R or A) to turn it back on in.
type userTrigger struct {
	table, name, enabled string
}

// silence turns off the user triggers of the target's table t (every
// trigger but those that enforce constraints: foreign keys, deferrable
// unique keys) for the rest of the row merge: merged rows are data, as
// pg_dump restores them, not new events, so a trigger does not apply a
// second time what it did on the source, nor count or audit them on the
// target. restoreTriggers turns them back on before Run returns.
func (r *run) silence(ctx context.Context, t pgcat.Table) error {
	if r.silenced[t.Ident] {
		return nil
	}
	if r.silenced == nil {
		r.silenced = map[string]bool{}
	}
	r.silenced[t.Ident] = true
	rows, err := r.Target.Query(ctx, `
SELECT tg.tgname, tg.tgenabled::text FROM pg_trigger tg
WHERE tg.tgrelid = $1::regclass AND tg.tgenabled <> 'D'
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.oid = tg.tgconstraint AND c.contype <> 't')
ORDER BY tg.tgname`, t.Ident)
	if err != nil {
		return fmt.Errorf("triggers of %s: %w", t.Ident, err)
	}
	tgs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (userTrigger, error) {
		tg := userTrigger{table: t.Ident}
		err := row.Scan(&tg.name, &tg.enabled)
		return tg, err
	})
	if err != nil {
		return fmt.Errorf("triggers of %s: %w", t.Ident, err)
	}
	for _, tg := range tgs {
		if _, err := r.Target.Exec(ctx, fmt.Sprintf("ALTER TABLE %s DISABLE TRIGGER %s", tg.table, pgx.Identifier{tg.name}.Sanitize())); err != nil {
			return fmt.Errorf("disable trigger %s on %s: %w", tg.name, tg.table, err)
		}
		r.triggers = append(r.triggers, tg)
	}
	return nil
}

// restoreTriggers turns the triggers silence turned off back on, each in
// the state it had.
func (r *run) restoreTriggers(ctx context.Context) error {
	for _, tg := range r.triggers {
		mode := "ENABLE"
		switch tg.enabled {
		case "R":
			mode = "ENABLE REPLICA"
		case "A":
			mode = "ENABLE ALWAYS"
		}
		if _, err := r.Target.Exec(ctx, fmt.Sprintf("ALTER TABLE %s %s TRIGGER %s", tg.table, mode, pgx.Identifier{tg.name}.Sanitize())); err != nil {
			return fmt.Errorf("enable trigger %s on %s: %w", tg.name, tg.table, err)
		}
	}
	r.triggers = nil
	return nil
}
