package merge

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/experiments/internal/pgcat"
)

// batchSize is the number of keys read or rows written per statement.
const batchSize = 500

// rowChange is one key the source changed since the base.
type rowChange struct {
	key []string
	src Change
	// baseT is the base's hash over the columns base and target share;
	// srcT the source's over the columns source and target share.
	baseT, srcT string
}

// custom is a row a resolution gives values for; obj nil deletes it.
type custom struct {
	key []string
	obj map[string]any
	// over holds the values the resolution gives, which obj has over
	// the row it starts from.
	over    map[string]any
	present bool // the target has the row
}

// tablePlan is what the row merge writes to one target table.
type tablePlan struct {
	name   string
	st, tt pgcat.Table
	cols   []string // written: the source's columns the target has
	// names maps a source column the target renamed to its target name.
	names                    map[string]string
	inserts, updates, delete [][]string
	customs                  []custom
}

// rows merges the rows of every source table, writing parents before
// children and deleting children before parents.
func (r *run) rows(ctx context.Context) error {
	tgtTabs, err := pgcat.Tables(ctx, r.Target)
	if err != nil {
		return err
	}
	rank, err := fkRanks(ctx, r.Target)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(r.srcTabs))
	for n := range r.srcTabs {
		names = append(names, n)
	}
	sort.Strings(names)
	var plans []*tablePlan
	for _, n := range names {
		if r.skip[n] {
			continue
		}
		st := r.srcTabs[n]
		bt, inB := r.baseTabs[n]
		tt, inT := tgtTabs[n]
		if !inT {
			if err := r.missingOnTarget(ctx, n, bt, inB, st); err != nil {
				return err
			}
			continue
		}
		if len(st.PK) == 0 || !pgcat.SameKey(st, tt) || (inB && !pgcat.SameKey(bt, st)) {
			if err := r.unkeyed(ctx, n, bt, inB, st, tt); err != nil {
				return fmt.Errorf("table %s: %w", n, err)
			}
			continue
		}
		p, err := r.plan(ctx, n, bt, inB, st, tt)
		if err != nil {
			return fmt.Errorf("table %s: %w", n, err)
		}
		if p != nil {
			plans = append(plans, p)
		}
	}
	sort.SliceStable(plans, func(i, j int) bool { return rank[plans[i].name] < rank[plans[j].name] })
	t0 := time.Now()
	defer func() { r.res.Timings.Write += ms(time.Since(t0)) }()
	for _, p := range plans {
		if err := r.write(ctx, p); err != nil {
			return fmt.Errorf("table %s: %w", p.name, err)
		}
	}
	for i := len(plans) - 1; i >= 0; i-- {
		if err := r.writeDeletes(ctx, plans[i]); err != nil {
			return fmt.Errorf("table %s: %w", plans[i].name, err)
		}
	}
	return nil
}

// srcExprs returns the expressions over the source's columns (but the
// ones left out of the merge) on the source and on the base: a column
// the source renamed (ren, see renames) reads as the base's column, a
// column the base lacks as the value the source's rows that predate it
// read (its missing value), or NULL.
func (r *run) srcExprs(n string, bt pgcat.Table, inB bool, st pgcat.Table, ren map[string]string) (src, base []string) {
	for _, c := range st.Cols {
		if r.skipCol[n+"\x00"+c.Name] {
			continue
		}
		src = append(src, pgcat.Quote(c.Name))
		switch _, ok := bt.Col(c.Name); {
		case inB && ok:
			base = append(base, pgcat.Quote(c.Name))
		case inB && ren[c.Name] != "":
			base = append(base, pgcat.Quote(ren[c.Name]))
		case c.Missing != "":
			base = append(base, c.Missing)
		default:
			base = append(base, "NULL")
		}
	}
	return src, base
}

// shared returns the names of a's columns that b has too, but the ones
// left out of the merge.
func (r *run) shared(n string, a, b pgcat.Table) []string {
	var out []string
	for _, c := range common(a, b) {
		if !r.skipCol[n+"\x00"+c] {
			out = append(out, c)
		}
	}
	return out
}

// plan finds the source's changes to table n and decides each against
// the target.
func (r *run) plan(ctx context.Context, n string, bt pgcat.Table, inB bool, st, tt pgcat.Table) (*tablePlan, error) {
	var ren map[string]string
	if inB {
		ren = renames(bt, st, tt)
	}
	srcE, baseE := r.srcExprs(n, bt, inB, st, ren)
	var tren map[string]string
	if inB {
		tren = targetRenames(bt, st, tt)
	}
	btBase, btTgt := r.sharedBase(n, bt, tt, ren, tren)
	stSrc, stTgt, stCols, names := r.sharedSource(n, st, tt, tren)
	var changes []rowChange
	var region Region
	narrow := false
	if inB && narrowable(bt, st, ren) {
		var err error
		if region, narrow, err = r.changedRegion(ctx, bt, st); err != nil {
			return nil, err
		}
		if narrow && region.Empty() {
			r.res.Unchanged++
			r.res.SkippedByBlocks++
			return nil, nil
		}
	}
	t0 := time.Now()
	// Narrowed, the base's rows are read while the source's are.
	var baseRows pgcat.Stream
	var baseErr error
	var baseDone chan struct{}
	if narrow {
		baseDone = make(chan struct{})
		go func() {
			defer close(baseDone)
			baseRows, baseErr = pgcat.BlockRows(ctx, r.Base, bt, region.Blocks, region.Tuples, baseE, btBase)
		}()
		defer func() { <-baseDone }()
	}
	stream := func(c *pgx.Conn, t pgcat.Table, hashes ...[]string) (pgcat.Stream, error) {
		if narrow && c == r.Base {
			<-baseDone
			return baseRows, baseErr
		}
		if narrow {
			return pgcat.BlockRows(ctx, c, t, region.Blocks, region.Tuples, hashes...)
		}
		rows, err := pgcat.RowStream(ctx, c, t, "", hashes...)
		if err != nil {
			return nil, err
		}
		return pgcat.Ordered(rows, len(t.PK)), nil
	}
	sr, err := stream(r.Source, st, srcE, stSrc)
	if err != nil {
		return nil, err
	}
	defer sr.Close()
	if narrow {
		r.res.NarrowedByBlocks++
	}
	if inB {
		br, err := stream(r.Base, bt, baseE, btBase)
		if err != nil {
			return nil, err
		}
		defer br.Close()
		if changes, err = joinChanges(br, sr, st); err != nil {
			return nil, err
		}
	} else {
		for {
			s, ok, err := sr.Next()
			if err != nil {
				return nil, err
			}
			if !ok {
				break
			}
			changes = append(changes, rowChange{key: s.Key, src: Inserted, srcT: s.Hashes[1]})
		}
	}
	sr.Close()
	t1 := time.Now()
	r.res.Timings.Read += ms(t1.Sub(t0))
	defer func() { r.res.Timings.Lookup += ms(time.Since(t1)) }()
	if len(changes) == 0 {
		r.res.Unchanged++
		return nil, nil
	}
	p := &tablePlan{name: n, st: st, tt: tt, names: names}
	for _, c := range stCols {
		if col, _ := tt.Col(c); !col.Generated {
			p.cols = append(p.cols, c)
		}
	}
	for i := 0; i < len(changes); i += batchSize {
		batch := changes[i:min(i+batchSize, len(changes))]
		keys := make([][]string, len(batch))
		for j, c := range batch {
			keys[j] = c.key
		}
		tr, err := pgcat.RowStream(ctx, r.Target, tt, keyFilter(tt, keys), btTgt, stTgt)
		if err != nil {
			return nil, err
		}
		tgt := map[string][]string{}
		for {
			t, ok, err := pgcat.Next(tr, len(tt.PK))
			if err != nil {
				tr.Close()
				return nil, err
			}
			if !ok {
				break
			}
			tgt[strings.Join(t.Key, "\x00")] = t.Hashes
		}
		for _, c := range batch {
			if err := r.decide(ctx, p, bt, c, tgt[strings.Join(c.key, "\x00")]); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

// narrowable reports whether the base's and the source's rows of a table
// may be compared only where their heaps differ: a column change that
// writes no heap block (a rename, a column dropped and added again under
// its name, a type change Postgres does not rewrite the table for)
// changes what every row reads while storage sees no change. A column
// only the source has (added since the base: its rows read its missing
// value on both sides, see srcExprs), a column only the base has (not
// compared) and a rename the base's side reads through (ren, see
// renames) keep the table narrowable.
func narrowable(bt, st pgcat.Table, ren map[string]string) bool {
	for _, c := range st.Cols {
		b, ok := bt.Col(c.Name)
		if !ok && ren[c.Name] != "" {
			b, ok = bt.Col(ren[c.Name])
		}
		if ok && (b.Num != c.Num || b.Type != c.Type) {
			return false
		}
		if !ok && slices.ContainsFunc(bt.Cols, func(b pgcat.Column) bool { return b.Num == c.Num }) {
			return false // renamed
		}
	}
	return true
}

// joinChanges merge-joins the base's and the source's ordered streams
// (each with the hash over the source's columns, then the hash over the
// columns shared with the target) into the source's changes.
func joinChanges(br, sr pgcat.Stream, st pgcat.Table) ([]rowChange, error) {
	var out []rowChange
	err := pgcat.Join(br, sr, st.PKTypes, func(b, s *pgcat.KeyedRow) error {
		switch {
		case s == nil:
			out = append(out, rowChange{key: b.Key, src: Deleted, baseT: b.Hashes[1]})
		case b == nil:
			out = append(out, rowChange{key: s.Key, src: Inserted, srcT: s.Hashes[1]})
		case b.Hashes[0] != s.Hashes[0]:
			out = append(out, rowChange{key: s.Key, src: Updated, baseT: b.Hashes[1], srcT: s.Hashes[1]})
		}
		return nil
	})
	return out, err
}

// keyFilter is a WHERE clause over the table t AS t keeping the given
// keys, typed by t's own row type.
func keyFilter(t pgcat.Table, keys [][]string) string {
	objs := make([]map[string]string, len(keys))
	for i, k := range keys {
		objs[i] = keyMap(t.PK, k)
	}
	b, _ := json.Marshal(objs)
	var tc, rc []string
	for _, k := range t.PK {
		tc = append(tc, pgcat.Quote(k))
		rc = append(rc, "r."+pgx.Identifier{k}.Sanitize())
	}
	return fmt.Sprintf("(%s) IN (SELECT %s FROM jsonb_populate_recordset(NULL::%s, %s::jsonb) r)",
		strings.Join(tc, ", "), strings.Join(rc, ", "), t.Ident, literal(string(b)))
}

func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func keyMap(pk, key []string) map[string]string {
	m := make(map[string]string, len(pk))
	for i, k := range pk {
		m[k] = key[i]
	}
	return m
}

// decide classifies one source change against the target's hashes of the
// key (nil when the target has no such row) and plans the write.
func (r *run) decide(ctx context.Context, p *tablePlan, bt pgcat.Table, c rowChange, th []string) error {
	inBase, inSrc, inTgt := c.src != Inserted, c.src != Deleted, th != nil
	var tc Change
	switch {
	case inBase && !inTgt:
		tc = Deleted
	case !inBase && inTgt:
		tc = Inserted
	case inBase && inTgt && th[0] != c.baseT:
		tc = Updated
	}
	if tc == Unchanged {
		p.take(c.key, inSrc, inTgt)
		return nil
	}
	if (!inSrc && !inTgt) || (inSrc && inTgt && th[1] == c.srcT) {
		return nil // both made the same change
	}
	conf := Conflict{Kind: KindRow, Table: p.name, Key: keyMap(p.st.PK, c.key), SourceChange: c.src, TargetChange: tc,
		Message: fmt.Sprintf("%s and %s both changed this row of %s, differently", r.SourceName, r.TargetName, p.name),
		Hint:    "keep the target's row (ours), take the source's (theirs) or give the row's values (custom)"}
	var err error
	if inBase {
		if conf.Base, err = pgcat.FetchRow(ctx, r.Base, bt, c.key); err != nil {
			return err
		}
	}
	if inSrc {
		if conf.Source, err = pgcat.FetchRow(ctx, r.Source, p.st, c.key); err != nil {
			return err
		}
	}
	if inTgt {
		if conf.Target, err = pgcat.FetchRow(ctx, r.Target, p.tt, c.key); err != nil {
			return err
		}
	}
	res, ok := r.conflict(conf, c.srcT, strings.Join(th, ","))
	if !ok {
		return nil
	}
	switch res.Choice {
	case ChoiceTheirs:
		p.take(c.key, inSrc, inTgt)
	case ChoiceCustom:
		cu, err := customRow(c.key, p.st.PK, res.Values, conf.Target, conf.Source, inTgt)
		if err != nil {
			r.reopen(err.Error())
			return nil
		}
		p.customs = append(p.customs, cu)
	}
	return nil
}

// take plans writing the source's state of key.
func (p *tablePlan) take(key []string, inSrc, inTgt bool) {
	switch {
	case inSrc && inTgt:
		p.updates = append(p.updates, key)
	case inSrc:
		p.inserts = append(p.inserts, key)
	case inTgt:
		p.delete = append(p.delete, key)
	}
}

// customRow builds the row a custom resolution writes: values over the
// target's row, or the source's where the target has none; the key stays.
func customRow(key, pk []string, values, target, source json.RawMessage, inTgt bool) (custom, error) {
	cu := custom{key: key, present: inTgt}
	if len(values) == 0 {
		return cu, fmt.Errorf("custom resolution without values")
	}
	if string(values) == "null" {
		return cu, nil
	}
	over := map[string]any{}
	if err := json.Unmarshal(values, &over); err != nil {
		return cu, fmt.Errorf("custom values must be a JSON object of column values: %v", err)
	}
	cu.obj = map[string]any{}
	start := target
	if start == nil {
		start = source
	}
	if start != nil {
		if err := json.Unmarshal(start, &cu.obj); err != nil {
			return cu, err
		}
	}
	for k, v := range over {
		cu.obj[k] = v
	}
	cu.over = over
	for i, k := range pk {
		cu.obj[k] = key[i]
	}
	return cu, nil
}

// fkRanks ranks the target's tables so that a table referenced by a
// foreign key ranks below the tables referencing it (cycles stop at the
// number of foreign keys).
func fkRanks(ctx context.Context, conn *pgx.Conn) (map[string]int, error) {
	rows, err := conn.Query(ctx, `
SELECT sn.nspname || '.' || s.relname, tn.nspname || '.' || t.relname
FROM pg_constraint c
JOIN pg_class s ON s.oid = c.conrelid JOIN pg_namespace sn ON sn.oid = s.relnamespace
JOIN pg_class t ON t.oid = c.confrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace
WHERE c.contype = 'f' AND c.conrelid <> c.confrelid`)
	if err != nil {
		return nil, err
	}
	type edge struct{ child, parent string }
	edges, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (edge, error) {
		var e edge
		err := r.Scan(&e.child, &e.parent)
		return e, err
	})
	if err != nil {
		return nil, err
	}
	rank := map[string]int{}
	for range len(edges) + 1 {
		changed := false
		for _, e := range edges {
			if rank[e.child] <= rank[e.parent] && rank[e.parent] < len(edges) {
				rank[e.child] = rank[e.parent] + 1
				changed = true
			}
		}
		if !changed {
			break
		}
	}
	return rank, nil
}

// sequences advances every sequence of the target that the source has
// too to the source's value when that is ahead.
func (r *run) sequences(ctx context.Context) error {
	read := func(conn *pgx.Conn) (map[string]*int64, error) {
		rows, err := conn.Query(ctx, "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename), last_value FROM pg_sequences WHERE increment_by > 0")
		if err != nil {
			return nil, err
		}
		out := map[string]*int64{}
		var name string
		var last *int64
		_, err = pgx.ForEachRow(rows, []any{&name, &last}, func() error {
			out[name] = last
			return nil
		})
		return out, err
	}
	src, err := read(r.Source)
	if err != nil {
		return err
	}
	tgt, err := read(r.Target)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(src))
	for n := range src {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := src[n]
		t, ok := tgt[n]
		if !ok || s == nil || (t != nil && *t >= *s) {
			continue
		}
		if _, err := r.Target.Exec(ctx, "SELECT setval($1::regclass, $2)", n, *s); err != nil {
			return fmt.Errorf("advance %s: %w", n, err)
		}
		r.res.Sequences++
	}
	return nil
}
