package merge

// Tables merged whole: without a usable primary key, or dropped on the
// target.

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/offshootdb/offshoot/experiments/internal/pgcat"
)

// missingOnTarget handles a source table the target does not have (it
// dropped it): a conflict when the source changed its rows.
func (r *run) missingOnTarget(ctx context.Context, n string, bt pgcat.Table, inB bool, st pgcat.Table) error {
	if inB {
		changed, err := r.sourceChanged(ctx, n, bt, st)
		if err != nil || !changed {
			return err
		}
	}
	_, ok := r.conflict(Conflict{Kind: KindTable, Table: n, SourceChange: Updated, TargetChange: Deleted,
		Message: fmt.Sprintf("%s changed rows of %s, which %s dropped", r.SourceName, n, r.TargetName),
		Hint:    "keep the table dropped (ours), or create it on the target and merge again"})
	if ok && r.res.Conflicts[len(r.res.Conflicts)-1].Resolution.Choice != ChoiceOurs {
		r.reopen("only ours applies: the target has no such table")
	}
	return nil
}

// sourceChanged reports whether the source's rows of table n differ from
// the base's, by an aggregate hash of each side.
func (r *run) sourceChanged(ctx context.Context, n string, bt, st pgcat.Table) (bool, error) {
	srcE, baseE := r.srcExprs(n, bt, true, st, nil)
	a, err := aggregate(ctx, r.Base, bt, baseE)
	if err != nil {
		return false, err
	}
	b, err := aggregate(ctx, r.Source, st, srcE)
	return a != b, err
}

// unkeyed merges a table without a usable primary key: only when the
// target left it unchanged (the source's rows replace the target's), or
// the source did (nothing to do).
func (r *run) unkeyed(ctx context.Context, n string, bt pgcat.Table, inB bool, st, tt pgcat.Table) error {
	srcChanged := true
	tgtChanged := false
	if inB {
		var err error
		if srcChanged, err = r.sourceChanged(ctx, n, bt, st); err != nil {
			return err
		}
		cols := pgcat.Exprs(r.shared(n, bt, tt))
		a, err := aggregate(ctx, r.Base, bt, cols)
		if err != nil {
			return err
		}
		b, err := aggregate(ctx, r.Target, tt, cols)
		if err != nil {
			return err
		}
		tgtChanged = a != b
	} else {
		n, err := pgcat.CountRows(ctx, r.Target, tt)
		if err != nil {
			return err
		}
		tgtChanged = n > 0
	}
	if !srcChanged {
		r.res.Unchanged++
		return nil
	}
	if tgtChanged {
		why := "has no primary key"
		if len(st.PK) > 0 {
			why = "has a different primary key on each side"
		}
		res, ok := r.conflict(Conflict{Kind: KindTable, Table: n, SourceChange: Updated, TargetChange: Updated,
			Message: fmt.Sprintf("table %s %s and both %s and %s changed its rows: it cannot be merged row by row", n, why, r.SourceName, r.TargetName),
			Hint:    fmt.Sprintf("add the same primary key to %s on both branches (ALTER TABLE %s ADD PRIMARY KEY (...)) and merge again, or keep the target's rows (ours) or take the source's (theirs)", n, st.Ident)})
		if !ok || res.Choice != ChoiceTheirs {
			return nil
		}
	}
	return r.replace(ctx, n, st, tt)
}

// replace puts the source's rows of a table in place of the target's.
func (r *run) replace(ctx context.Context, n string, st, tt pgcat.Table) error {
	p := &tablePlan{name: n, st: st, tt: tt}
	for _, c := range r.shared(n, st, tt) {
		if col, _ := tt.Col(c); !col.Generated {
			p.cols = append(p.cols, c)
		}
	}
	if err := r.silence(ctx, tt); err != nil {
		return err
	}
	var ins, del int64
	pe, err := r.try(ctx, func() error {
		tag, err := r.Target.Exec(ctx, "DELETE FROM ONLY "+tt.Ident)
		if err != nil {
			return err
		}
		del = tag.RowsAffected()
		rows, err := r.Source.Query(ctx, fmt.Sprintf("SELECT %s FROM ONLY %s AS t", rowText(st, nil), st.Ident))
		if err != nil {
			return err
		}
		defer rows.Close()
		var batch []json.RawMessage
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			arr, _ := json.Marshal(batch)
			tag, err := r.Target.Exec(ctx, p.rowsSQL(Inserted), string(arr))
			ins += tag.RowsAffected()
			batch = batch[:0]
			return err
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				return err
			}
			if batch = append(batch, json.RawMessage(s)); len(batch) == batchSize {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		return flush()
	})
	if err != nil {
		return err
	}
	if pe != nil {
		_, ok := r.conflict(Conflict{Kind: KindConstraint, Table: n, Object: pe.ConstraintName, SourceChange: Updated,
			Message: fmt.Sprintf("%s refuses %s's rows of %s: %s", r.TargetName, r.SourceName, n, describe(pe)),
			Hint:    "keep the target's rows (ours)"}, pe.Code)
		if ok && r.res.Conflicts[len(r.res.Conflicts)-1].Resolution.Choice != ChoiceOurs {
			r.reopen("only ours applies")
		}
		return nil
	}
	r.tally(n, Deleted, del)
	r.tally(n, Inserted, ins)
	return nil
}
