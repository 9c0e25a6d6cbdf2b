package merge

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/experiments/internal/pgcat"
)

// createOrder ranks object kinds for creation; drops run in the reverse
// order, before any creation.
var createOrder = map[string]int{
	"extension": 0, "schema": 1, "type": 2, "function": 3, "sequence": 4, "table": 5,
	"constraint": 6, "index": 7, "fkey": 8, "view": 9, "trigger": 10,
}

// step is one DDL statement of the schema replay.
type step struct {
	drop  bool
	order int
	sql   string
	// conflict, when the target refuses sql.
	table, object string
}

// schema replays the source's schema changes on the target and records
// the sides' tables for the row merge.
func (r *run) schema(ctx context.Context) error {
	// The three catalogs are read at once, each on its own connection.
	var objs [3]map[string]pgcat.Object
	var tabs [3]map[string]pgcat.Table
	var errs [3]error
	var wg sync.WaitGroup
	for i, c := range []*pgx.Conn{r.Base, r.Source, r.Target} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			list, err := pgcat.Objects(ctx, c)
			if err != nil {
				errs[i] = err
				return
			}
			objs[i] = map[string]pgcat.Object{}
			for _, o := range list {
				objs[i][o.Key] = o
			}
			tabs[i], errs[i] = pgcat.Tables(ctx, c)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		return err
	}
	r.baseTabs, r.srcTabs = tabs[0], tabs[1]
	tgtTabs := tabs[2]
	r.skip = map[string]bool{}
	keys := map[string]bool{}
	for _, m := range objs {
		for k := range m {
			keys[k] = true
		}
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var steps []step
	// droppedTables go with their objects; keptTables, dropped by the
	// source but kept by a conflict's resolution, keep theirs.
	droppedTables, keptTables := map[string]bool{}, map[string]bool{}
	for _, k := range sorted {
		b, inB := objs[0][k]
		s, inS := objs[1][k]
		t, inT := objs[2][k]
		if same(b, inB, s, inS) || same(s, inS, t, inT) {
			continue
		}
		kind := s.Kind
		if !inS {
			kind = b.Kind
		}
		if kind == "table" && inB && inS {
			if !inT {
				continue // dropped on the target: the row merge reports changed rows
			}
			ss, err := r.columns(ctx, b.Rel, tgtTabs)
			if err != nil {
				return err
			}
			steps = append(steps, ss...)
			continue
		}
		if kind == "table" && inB && !inS {
			// Dropped on the source: only when the target left it alone.
			changed, err := r.tableChanged(ctx, b.Rel, tgtTabs)
			if err != nil {
				return err
			}
			if !same(b, inB, t, inT) || changed {
				res, ok := r.conflict(Conflict{Kind: KindTable, Table: b.Rel, SourceChange: Deleted, TargetChange: Updated,
					Message: fmt.Sprintf("%s dropped table %s, which %s changed", r.SourceName, b.Rel, r.TargetName),
					Hint:    "keep the table (ours) or drop it with the target's changes (theirs)"})
				if !ok || res.Choice != ChoiceTheirs {
					keptTables[b.Rel] = true
					continue
				}
			}
			if inT {
				droppedTables[b.Rel] = true
				r.skip[b.Rel] = true
				steps = append(steps, step{drop: true, order: createOrder["table"], sql: t.Drop, table: b.Rel, object: k})
			}
			continue
		}
		if !same(b, inB, t, inT) {
			// Both sides changed the object, differently.
			rel := s.Rel
			if rel == "" {
				rel = b.Rel
			}
			c := Conflict{Kind: KindSchema, Table: rel, Object: k, SourceChange: change(inB, inS), TargetChange: change(inB, inT),
				Message: fmt.Sprintf("%s and %s both changed %s %s, differently", r.SourceName, r.TargetName, kind, objName(k)),
				Hint:    "keep the target's definition (ours) or take the source's (theirs)"}
			c.Base, c.Source, c.Target = ddlJSON(b, inB), ddlJSON(s, inS), ddlJSON(t, inT)
			res, ok := r.conflict(c, b.DDL, s.DDL, t.DDL)
			if !ok || res.Choice != ChoiceTheirs {
				continue
			}
			if kind == "table" {
				if !inT {
					steps = append(steps, step{order: createOrder[kind], sql: s.DDL, table: s.Rel, object: k})
				}
				continue // a table both created: its columns merge below, by the row merge's key
			}
		}
		switch {
		case !inS:
			if inT {
				steps = append(steps, step{drop: true, order: createOrder[kind], sql: t.Drop, table: b.Rel, object: k})
			}
		case inT && kind == "function":
			steps = append(steps, step{order: createOrder[kind], sql: s.DDL, table: s.Rel, object: k})
		case inT:
			if kind == "extension" || kind == "sequence" || kind == "schema" {
				continue // version and parameters are the target's
			}
			if kind == "type" {
				r.conflict(Conflict{Kind: KindSchema, Object: k, Base: ddlJSON(b, inB), Source: ddlJSON(s, inS), Target: ddlJSON(t, inT),
					SourceChange: Updated, Message: fmt.Sprintf("%s changed enum type %s, which a merge cannot replay", r.SourceName, objName(k)),
					Hint: "change the type on the target by hand (ALTER TYPE ... ADD VALUE), then merge again"}, s.DDL)
				continue
			}
			steps = append(steps, step{drop: true, order: createOrder[kind], sql: t.Drop, table: s.Rel, object: k},
				step{order: createOrder[kind], sql: s.DDL, table: s.Rel, object: k})
		default:
			sql := s.DDL
			if kind == "sequence" {
				sql = strings.Replace(sql, "CREATE SEQUENCE ", "CREATE SEQUENCE IF NOT EXISTS ", 1)
			}
			steps = append(steps, step{order: createOrder[kind], sql: sql, table: s.Rel, object: k})
		}
	}
	if err := r.droppedOnTarget(ctx, tgtTabs); err != nil {
		return err
	}
	// Objects of a dropped table go with it; those of a kept one stay.
	kept := steps[:0]
	for _, st := range steps {
		if st.drop && (droppedTables[st.table] || keptTables[st.table]) && createOrder["table"] < st.order {
			continue
		}
		kept = append(kept, st)
	}
	sort.SliceStable(kept, func(i, j int) bool {
		a, b := kept[i], kept[j]
		if a.drop != b.drop {
			return a.drop
		}
		if a.drop {
			return a.order > b.order
		}
		return a.order < b.order
	})
	for _, st := range kept {
		pe, err := r.try(ctx, func() error {
			_, err := r.Target.Exec(ctx, st.sql)
			return err
		})
		if err != nil {
			return fmt.Errorf("%s: %w", st.sql, err)
		}
		if pe == nil {
			r.res.Schema = append(r.res.Schema, st.sql)
			continue
		}
		if st.table != "" && !st.drop {
			if _, ok := r.srcTabs[st.table]; ok && strings.HasPrefix(st.object, "3 ") && strings.HasSuffix(st.object, " 0") {
				r.skip[st.table] = true // the table could not be created: no rows either
			}
		}
		res, ok := r.conflict(Conflict{Kind: KindSchema, Table: st.table, Object: st.object, Source: jsonString(st.sql),
			Message: fmt.Sprintf("%s refuses %s's change: %s", r.TargetName, r.SourceName, describe(pe)),
			Hint:    "change the target so that it accepts the statement, or keep the target's schema (ours)"}, st.sql)
		if ok && res.Choice != ChoiceOurs {
			r.reopen("the target refuses the statement")
		}
	}
	return nil
}

func same(a pgcat.Object, inA bool, b pgcat.Object, inB bool) bool {
	return inA == inB && (!inA || a.DDL == b.DDL)
}

func change(inBase, inSide bool) Change {
	switch {
	case inBase && !inSide:
		return Deleted
	case !inBase && inSide:
		return Inserted
	}
	return Updated
}

func ddlJSON(o pgcat.Object, ok bool) []byte {
	if !ok {
		return nil
	}
	return jsonString(o.DDL)
}

// objName turns an object key into its name: "3 public.t 2 t_idx" → "public.t t_idx".
func objName(key string) string {
	_, rest, _ := strings.Cut(key, " ")
	return strings.TrimSuffix(rest, " 0")
}

// colDef is what a column merge compares: everything but the missing value.
func colDef(c pgcat.Column) string {
	s := c.Type
	switch c.Identity {
	case "a":
		s += " GENERATED ALWAYS AS IDENTITY"
	case "d":
		s += " GENERATED BY DEFAULT AS IDENTITY"
	}
	if c.Generated {
		s += " GENERATED ALWAYS AS (" + c.Default + ") STORED"
	} else if c.Default != "" {
		s += " DEFAULT " + c.Default
	}
	if c.NotNull {
		s += " NOT NULL"
	}
	return s
}

// columns merges the columns of a table whose definition changed on the
// source: a column only the source added, dropped or changed is replayed.
func (r *run) columns(ctx context.Context, rel string, tgtTabs map[string]pgcat.Table) ([]step, error) {
	bt, st, tt := r.baseTabs[rel], r.srcTabs[rel], tgtTabs[rel]
	if st.Ident == "" || tt.Ident == "" {
		return nil, nil // not an ordinary table (a view, a partitioned parent)
	}
	var names []string
	seen := map[string]bool{}
	for _, t := range []pgcat.Table{st, bt, tt} {
		for _, c := range t.Cols {
			if !seen[c.Name] {
				seen[c.Name] = true
				names = append(names, c.Name)
			}
		}
	}
	def := func(t pgcat.Table, n string) (string, bool) {
		c, ok := t.Col(n)
		return colDef(c), ok
	}
	steps, bt, tt := renameColumns(rel, bt, st, tt)
	for _, n := range names {
		b, inB := def(bt, n)
		s, inS := def(st, n)
		t, inT := def(tt, n)
		if (inB == inS && b == s) || (inS == inT && s == t) {
			continue
		}
		if inB && !inS && inT && b == t {
			// Dropped (or renamed) on the source: only when the target
			// left its values alone.
			changed, err := r.columnChanged(ctx, r.Target, bt, tt, n)
			if err != nil {
				return nil, err
			}
			if changed {
				res, ok := r.conflict(Conflict{Kind: KindSchema, Table: rel, Object: n, SourceChange: Deleted, TargetChange: Updated,
					Base: jsonString(b), Target: jsonString(t),
					Message: fmt.Sprintf("%s dropped or renamed column %s of %s, whose values %s changed", r.SourceName, n, rel, r.TargetName),
					Hint:    "keep the column with the target's values (ours) or drop it with the target's changes (theirs)"}, b, t)
				if !ok || res.Choice != ChoiceTheirs {
					continue
				}
			}
			steps = append(steps, alterColumn(st, tt, n, rel)...)
			continue
		}
		if inB != inT || b != t {
			c := Conflict{Kind: KindSchema, Table: rel, Object: n, SourceChange: change(inB, inS), TargetChange: change(inB, inT),
				Message: fmt.Sprintf("%s and %s both changed column %s of %s, differently", r.SourceName, r.TargetName, n, rel),
				Hint:    "keep the target's column (ours) or take the source's (theirs)"}
			for _, v := range []struct {
				dst *[]byte
				s   string
				ok  bool
			}{{(*[]byte)(&c.Base), b, inB}, {(*[]byte)(&c.Source), s, inS}, {(*[]byte)(&c.Target), t, inT}} {
				if v.ok {
					*v.dst = jsonString(v.s)
				}
			}
			res, ok := r.conflict(c, b, s, t)
			if !ok || res.Choice != ChoiceTheirs {
				if inB && !inS {
					continue
				}
				r.skipCols(rel, n)
				continue
			}
		}
		steps = append(steps, alterColumn(st, tt, n, rel)...)
	}
	return steps, nil
}

// droppedOnTarget finds the columns the target dropped (or renamed) whose
// values the source changed, of the tables all three sides have: a
// schema conflict that only ours resolves (the target has no such
// column), keeping the column out of the row merge.
func (r *run) droppedOnTarget(ctx context.Context, tgtTabs map[string]pgcat.Table) error {
	names := make([]string, 0, len(r.baseTabs))
	for n := range r.baseTabs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, rel := range names {
		bt := r.baseTabs[rel]
		st, inS := r.srcTabs[rel]
		tt, inT := tgtTabs[rel]
		if !inS || !inT || r.skip[rel] {
			continue
		}
		for _, c := range bt.Cols {
			sc, inSc := st.Col(c.Name)
			if _, inTc := tt.Col(c.Name); inTc || !inSc || colDef(sc) != colDef(c) {
				continue // a column the source changed too is the column merge's
			}
			if tt.HasNum(c.Num) {
				continue // renamed on the target: the source's changes go under its name
			}
			changed, err := r.columnChanged(ctx, r.Source, bt, st, c.Name)
			if err != nil {
				return err
			}
			if !changed {
				continue
			}
			def := colDef(c)
			res, ok := r.conflict(Conflict{Kind: KindSchema, Table: rel, Object: c.Name, SourceChange: Updated, TargetChange: Deleted,
				Base: jsonString(def), Source: jsonString(def),
				Message: fmt.Sprintf("%s dropped or renamed column %s of %s, whose values %s changed", r.TargetName, c.Name, rel, r.SourceName),
				Hint:    fmt.Sprintf("keep the target's columns without %s's changes to %s (ours), or add the column back on the target and merge again", r.SourceName, c.Name)},
				def, "target")
			if ok && res.Choice != ChoiceOurs {
				r.reopen("only ours applies: the target has no such column")
			}
			r.skipCols(rel, c.Name)
		}
	}
	return nil
}

// columnChanged reports whether the rows of side's table differ from
// the base's bt over its column n and the key columns both have: rows
// inserted or deleted count, as rows whose n changed do.
func (r *run) columnChanged(ctx context.Context, side *pgx.Conn, bt, t pgcat.Table, n string) (bool, error) {
	var cols []string
	for _, k := range bt.PK {
		if _, ok := t.Col(k); ok {
			cols = append(cols, k)
		}
	}
	cols = append(cols, n)
	a, err := aggregate(ctx, r.Base, bt, pgcat.Exprs(cols))
	if err != nil {
		return false, err
	}
	b, err := aggregate(ctx, side, t, pgcat.Exprs(cols))
	return a != b, err
}

// skipCols keeps column n of rel out of the row merge.
func (r *run) skipCols(rel, n string) {
	if r.skipCol == nil {
		r.skipCol = map[string]bool{}
	}
	r.skipCol[rel+"\x00"+n] = true
}

// alterColumn makes column n of the target's table tt as the source's st has it.
func alterColumn(st, tt pgcat.Table, n, rel string) []step {
	cs, inS := st.Col(n)
	ct, inT := tt.Col(n)
	id := pgx.Identifier{n}.Sanitize()
	mk := func(drop bool, format string, args ...any) step {
		return step{drop: drop, order: createOrder["table"], sql: fmt.Sprintf("ALTER TABLE %s "+format, append([]any{tt.Ident}, args...)...), table: rel, object: n}
	}
	switch {
	case !inS:
		return []step{mk(true, "DROP COLUMN %s", id)}
	case !inT:
		return []step{mk(false, "ADD COLUMN %s %s", id, colDef(cs))}
	}
	var out []step
	if cs.Type != ct.Type {
		out = append(out, mk(false, "ALTER COLUMN %s TYPE %s USING %s::%s", id, cs.Type, id, cs.Type))
	}
	if cs.Default != ct.Default && !cs.Generated {
		if cs.Default == "" {
			out = append(out, mk(false, "ALTER COLUMN %s DROP DEFAULT", id))
		} else {
			out = append(out, mk(false, "ALTER COLUMN %s SET DEFAULT %s", id, cs.Default))
		}
	}
	if cs.NotNull != ct.NotNull {
		if cs.NotNull {
			out = append(out, mk(false, "ALTER COLUMN %s SET NOT NULL", id))
		} else {
			out = append(out, mk(false, "ALTER COLUMN %s DROP NOT NULL", id))
		}
	}
	return out
}

// tableChanged reports whether the target's rows of rel differ from the
// base's, over the columns both have.
func (r *run) tableChanged(ctx context.Context, rel string, tgtTabs map[string]pgcat.Table) (bool, error) {
	bt, ok := r.baseTabs[rel]
	tt, ok2 := tgtTabs[rel]
	if !ok || !ok2 {
		return false, nil
	}
	cols := common(bt, tt)
	a, err := aggregate(ctx, r.Base, bt, pgcat.Exprs(cols))
	if err != nil {
		return false, err
	}
	b, err := aggregate(ctx, r.Target, tt, pgcat.Exprs(cols))
	return a != b, err
}

// common returns the names of a's columns that b has too.
func common(a, b pgcat.Table) []string {
	var out []string
	for _, c := range a.Cols {
		if _, ok := b.Col(c.Name); ok {
			out = append(out, c.Name)
		}
	}
	return out
}

// aggregate is an order-independent fingerprint of a table's rows over
// exprs: the row count and the sum of the rows' 64-bit hashes.
func aggregate(ctx context.Context, conn *pgx.Conn, t pgcat.Table, exprs []string) (string, error) {
	var s string
	err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count(*) || ':' || coalesce(sum(hashtextextended(ROW(%s)::text, 0)::numeric), 0) FROM ONLY %s AS t",
		strings.Join(exprs, ", "), t.Ident)).Scan(&s)
	return s, err
}
