package merge

// Columns the source renamed since the base: a column keeps its attnum
// across a rename, so the base's and the source's column of one number
// are one column under two names.

import (
	"fmt"
	"slices"
	"sort"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/experiments/internal/pgcat"
)

// renamed returns the columns of st that the source renamed since bt:
// new name → the base's name.
func renamed(bt, st pgcat.Table) map[string]string {
	out := map[string]string{}
	for _, c := range st.Cols {
		if _, ok := bt.Col(c.Name); ok {
			continue
		}
		i := slices.IndexFunc(bt.Cols, func(b pgcat.Column) bool { return b.Num == c.Num })
		if i < 0 {
			continue // added since the base
		}
		if _, ok := st.Col(bt.Cols[i].Name); !ok {
			out[c.Name] = bt.Cols[i].Name
		}
	}
	return out
}

// renames returns the source's renames (see renamed) that the target
// has too, the same column under the new name: there the row merge
// reads the base's column for the source's.
func renames(bt, st, tt pgcat.Table) map[string]string {
	out := renamed(bt, st)
	for nw := range out {
		if c, _ := st.Col(nw); !slices.ContainsFunc(tt.Cols, func(t pgcat.Column) bool { return t.Name == nw && t.Num == c.Num }) {
			delete(out, nw)
		}
	}
	return out
}

// renameColumns replays the source's renames of rel's columns that the
// target left under the base's name (the same column, the new name
// free), and returns the base's and the target's table under the new
// names, for the column merge to compare the rest of each definition.
func renameColumns(rel string, bt, st, tt pgcat.Table) ([]step, pgcat.Table, pgcat.Table) {
	ren := renamed(bt, st)
	news := make([]string, 0, len(ren))
	for nw := range ren {
		news = append(news, nw)
	}
	sort.Strings(news)
	var steps []step
	for _, nw := range news {
		old := ren[nw]
		b, _ := bt.Col(old)
		t, ok := tt.Col(old)
		if _, taken := tt.Col(nw); !ok || taken || t.Num != b.Num {
			continue
		}
		steps = append(steps, step{order: createOrder["table"], table: rel, object: nw,
			sql: fmt.Sprintf("ALTER TABLE %s RENAME COLUMN %s TO %s", tt.Ident, pgx.Identifier{old}.Sanitize(), pgx.Identifier{nw}.Sanitize())})
		bt, tt = withName(bt, old, nw), withName(tt, old, nw)
	}
	return steps, bt, tt
}

// withName returns t with its column old named nw.
func withName(t pgcat.Table, old, nw string) pgcat.Table {
	t.Cols = slices.Clone(t.Cols)
	for i := range t.Cols {
		if t.Cols[i].Name == old {
			t.Cols[i].Name = nw
		}
	}
	t.PK = slices.Clone(t.PK)
	for i := range t.PK {
		if t.PK[i] == old {
			t.PK[i] = nw
		}
	}
	return t
}

// targetRenames returns the base's columns the target renamed since the
// base and the source has under the base's name: the base's name → the
// target's.
func targetRenames(bt, st, tt pgcat.Table) map[string]string {
	out := map[string]string{}
	for nw, old := range renamed(bt, tt) {
		b, _ := bt.Col(old)
		c, ok := st.Col(old)
		if _, taken := st.Col(nw); ok && !taken && c.Num == b.Num {
			out[old] = nw
		}
	}
	return out
}

// sharedBase returns the expressions over the base's columns that the
// target has too, under the same name, the name the source renamed it to
// (ren, see renames) or the name the target renamed it to (tren, see
// targetRenames), but the ones left out of the merge: on the base and on
// the target.
func (r *run) sharedBase(n string, bt, tt pgcat.Table, ren, tren map[string]string) (base, tgt []string) {
	now := map[string]string{}
	for nw, old := range ren {
		now[old] = nw
	}
	for _, c := range bt.Cols {
		name := c.Name
		if _, ok := tt.Col(name); !ok && now[name] != "" {
			name = now[name]
		}
		if _, ok := tt.Col(name); !ok && tren[name] != "" {
			name = tren[name]
		}
		if _, ok := tt.Col(name); !ok || r.skipCol[n+"\x00"+name] {
			continue
		}
		base = append(base, pgcat.Quote(c.Name))
		tgt = append(tgt, pgcat.Quote(name))
	}
	return base, tgt
}

// sharedSource returns the expressions over the source's columns that
// the target has too, under the same name or the name the target renamed
// it to (tren, see targetRenames), but the ones left out of the merge:
// on the source and on the target; then the target's names of those
// columns, and the source's columns the target renamed, by their
// target name.
func (r *run) sharedSource(n string, st, tt pgcat.Table, tren map[string]string) (src, tgt, cols []string, names map[string]string) {
	for _, c := range st.Cols {
		name := c.Name
		if _, ok := tt.Col(name); !ok && tren[name] != "" {
			name = tren[name]
		}
		if _, ok := tt.Col(name); !ok || r.skipCol[n+"\x00"+name] {
			continue
		}
		if name != c.Name {
			if names == nil {
				names = map[string]string{}
			}
			names[c.Name] = name
		}
		src = append(src, pgcat.Quote(c.Name))
		tgt = append(tgt, pgcat.Quote(name))
		cols = append(cols, name)
	}
	return src, tgt, cols, names
}
