// Package merge is the mechanism of a three-way merge of two Postgres
// databases that share an ancestor: given connections to the base (the
// common ancestor's state), the source and the target, Run replays on the
// target, inside the caller's transaction, every change the source made
// since the base that the target did not make too, and reports the
// conflicts.
//
// # Model
//
// Schema first: the user objects of the three sides are compared as
// normalized DDL (see experiments/internal/pgcat). An object only the
// source changed is created, dropped or replaced on the target; a table
// whose definition changed is merged column by column (add, drop, rename,
// type, default, NOT NULL). An object both sides changed differently is a
// schema conflict. Rows second: for every source table with a primary
// key, the base and the source are streamed in key order with a 64-bit
// hash of each row, and merge-joined into the source's changes (insert,
// update, delete). Only the keys the source changed are then read on the target,
// so the target's share of the work follows the change. Rows travel as
// each column's text output and are written with the target's user
// triggers off: merged rows are data, not new events. A key the target
// changed too, to a different value, is a row conflict; a change the
// target's constraints refuse (unique, foreign key, check, not null) is a
// constraint conflict. Tables without a primary key merge only when one
// side left them unchanged; otherwise they are a table conflict whose fix
// is to add a key. Last, every sequence both sides have is advanced to
// cover both.
//
// # Resolution
//
// Every conflict has a stable ID (a hash of what conflicts) and goes to
// the Resolver, which keeps the target's state (Ours), takes the source's
// (Theirs), writes given values (Custom) or leaves it open. Run never
// commits: the caller rolls back when Result.Open() is not empty, or for a
// preview, and commits otherwise.
package merge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/offshootdb/offshoot/experiments/internal/pgcat"
)

// Strategy says how a merge treats conflicts.
type Strategy string

// Strategies.
const (
	// Fail, the default, applies nothing when there is any conflict.
	Fail Strategy = "fail"
	// Ours keeps the target's side of every conflict.
	Ours Strategy = "ours"
	// Theirs takes the source's side of every conflict it can.
	Theirs Strategy = "theirs"
	// Manual prepares a merge session whose conflicts are resolved one
	// by one before the merge completes.
	Manual Strategy = "manual"
)

// Valid reports whether s names a strategy ("" counts as Fail).
func (s Strategy) Valid() bool {
	switch s {
	case "", Fail, Ours, Theirs, Manual:
		return true
	}
	return false
}

// Kinds of conflict.
const (
	// KindRow: the same key changed differently on both sides.
	KindRow = "row"
	// KindConstraint: a source change the target's constraints refuse.
	KindConstraint = "constraint"
	// KindSchema: an object or column both sides changed differently, a
	// column one side dropped or renamed while the other changed values
	// in it, or a source change of the schema the target refuses.
	KindSchema = "schema"
	// KindTable: a table that cannot be merged row by row (no primary
	// key, a different key on each side, dropped on one side and changed
	// on the other).
	KindTable = "table"
)

// Choices of a Resolution.
const (
	// Ours keeps the target's state.
	ChoiceOurs = "ours"
	// Theirs takes the source's state.
	ChoiceTheirs = "theirs"
	// Custom writes Resolution.Values (row and constraint conflicts).
	ChoiceCustom = "custom"
)

// Change is what one side did to a key or an object since the base.
type Change string

// Changes.
const (
	Unchanged Change = ""
	Inserted  Change = "insert"
	Updated   Change = "update"
	Deleted   Change = "delete"
)

// Conflict is one conflict of a merge.
type Conflict struct {
	// ID is stable across runs of the same merge while the conflict
	// stays the same: a resolution given for it applies on the next run.
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// Table is schema.name (unquoted) for row, constraint and table
	// conflicts and for schema conflicts on a table; Object the DDL
	// object key or column of a schema conflict.
	Table  string `json:"table,omitempty"`
	Object string `json:"object,omitempty"`
	// Key is the primary key of a row or constraint conflict, as text.
	Key map[string]string `json:"key,omitempty"`
	// SourceChange and TargetChange say what each side did since the base.
	SourceChange Change `json:"source_change,omitempty"`
	TargetChange Change `json:"target_change,omitempty"`
	// Base, Source and Target are the row (as a JSON object) or the DDL
	// (as a JSON string) on each side; absent where it does not exist.
	Base   json.RawMessage `json:"base,omitempty"`
	Source json.RawMessage `json:"source,omitempty"`
	Target json.RawMessage `json:"target,omitempty"`
	// Message says what conflicts; Hint how to fix it.
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
	// Resolution is how it was resolved; nil while it is open.
	Resolution *Resolution `json:"resolution,omitempty"`
}

// Resolution resolves one conflict.
type Resolution struct {
	// Choice is ours, theirs or custom.
	Choice string `json:"choice"`
	// Values, for custom, is a JSON object of column values written over
	// the target's row (or, where the target has none, the source's);
	// the JSON null deletes the row.
	Values json.RawMessage `json:"values,omitempty"`
}

// Resolver decides a conflict; ok false leaves it open.
type Resolver func(c *Conflict) (r Resolution, ok bool)

// Resolve is the Resolver of a strategy: Ours and Theirs decide every
// conflict, Fail and Manual none. Where the source's side cannot apply
// (a change the target's constraints refuse), Theirs leaves the conflict
// open rather than drop the change silently: it needs ours or custom
// values. decided, keyed by conflict ID, comes first.
func Resolve(s Strategy, decided map[string]Resolution) Resolver {
	return func(c *Conflict) (Resolution, bool) {
		if r, ok := decided[c.ID]; ok {
			return r, true
		}
		switch s {
		case Ours:
			return Resolution{Choice: ChoiceOurs}, true
		case Theirs:
			return Resolution{Choice: ChoiceTheirs}, true
		}
		return Resolution{}, false
	}
}

// TableCounts counts the rows a merge wrote to one table.
type TableCounts struct {
	Table    string `json:"table"`
	Inserted int64  `json:"inserted"`
	Updated  int64  `json:"updated"`
	Deleted  int64  `json:"deleted"`
}

// Result is what Run did on the target's transaction.
type Result struct {
	// Schema lists the DDL statements replayed, in order.
	Schema []string `json:"schema"`
	// Tables counts the rows written per table, for tables with writes,
	// sorted by name.
	Tables []TableCounts `json:"tables"`
	// Sequences is the number of sequences advanced.
	Sequences int `json:"sequences"`
	// Conflicts lists every conflict, resolved or open, in the order found.
	Conflicts []Conflict `json:"conflicts"`
	// Unchanged counts the source tables Run found no change in.
	Unchanged int `json:"unchanged_tables"`
	// SkippedByBlocks counts the tables storage showed the source did
	// not write since the base (never read); NarrowedByBlocks those read
	// only in the heap blocks either side wrote.
	SkippedByBlocks  int `json:"skipped_by_blocks"`
	NarrowedByBlocks int `json:"narrowed_by_blocks"`
	// Timings are Run's phases.
	Timings Timings `json:"timings"`
}

// Timings are the phases of a merge, in milliseconds. Rows includes
// Prepare (the block comparison's set-up: a checkpoint of the base, and
// the source's WAL since its last checkpoint or a checkpoint of it),
// which Run does when the first table needs it, and the row merge's
// parts over all tables: Compare (storage's block comparison),
// Read (the changed rows of the base and the source), Lookup (the
// changed keys on the target, and deciding each) and Write (the writes
// to the target).
type Timings struct {
	Schema    float64 `json:"schema_ms"`
	Prepare   float64 `json:"prepare_ms"`
	Rows      float64 `json:"rows_ms"`
	Compare   float64 `json:"compare_ms"`
	Read      float64 `json:"read_ms"`
	Lookup    float64 `json:"lookup_ms"`
	Write     float64 `json:"write_ms"`
	Sequences float64 `json:"sequences_ms"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Open returns the conflicts left open.
func (r *Result) Open() []Conflict {
	var out []Conflict
	for _, c := range r.Conflicts {
		if c.Resolution == nil {
			out = append(out, c)
		}
	}
	return out
}

// Sides are the three databases of a merge. Run reads Base and Source in
// READ ONLY REPEATABLE READ transactions of its own; Target must be in a
// transaction the caller began (REPEATABLE READ, so that what Run reads
// and writes on it is one consistent state) and ends.
type Sides struct {
	Base, Source, Target *pgx.Conn
	// Names label the sides in messages.
	BaseName, SourceName, TargetName string
	// Blocks, when set, narrows the comparison of base and source to
	// what storage says they can differ in.
	Blocks Blocks
}

// run is the state of one Run.
type run struct {
	Sides
	resolve Resolver
	res     *Result
	counts  map[string]*TableCounts
	sp      int // savepoint counter
	// prepared is set once Blocks.Prepare ran.
	prepared bool
	// Tables of the base and the source, by schema.name.
	baseTabs, srcTabs map[string]pgcat.Table
	// skip holds tables, skipCol table\x00column pairs, the row merge leaves alone.
	skip, skipCol map[string]bool
	// silenced holds the target's tables whose user triggers are off
	// while the row merge writes; triggers what to turn back on.
	silenced map[string]bool
	triggers []userTrigger
}

// Run merges the source's changes since the base into the target, within
// the target's open transaction, and reports what it did and every
// conflict (resolved by resolve, or open). It returns an error only when
// the merge itself could not be computed (a connection failed, a
// statement other than a change the target refuses failed); the
// target's transaction must then be rolled back.
func Run(ctx context.Context, sides Sides, resolve Resolver) (*Result, error) {
	r := &run{Sides: sides, resolve: resolve, res: &Result{Schema: []string{}, Tables: []TableCounts{}, Conflicts: []Conflict{}},
		counts: map[string]*TableCounts{}}
	for _, c := range []*pgx.Conn{sides.Base, sides.Source} {
		// SELECT 1 takes the snapshot now, before Blocks.Prepare.
		if _, err := c.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1"); err != nil {
			return nil, fmt.Errorf("merge: begin: %w", err)
		}
		defer c.Exec(context.Background(), "ROLLBACK")
	}
	// Function bodies may name objects created later in the replay.
	// Deferrable constraints are checked as each write runs, so that a
	// change the target refuses is a constraint conflict (in a preview
	// too), not a failed commit.
	if _, err := sides.Target.Exec(ctx, "SET LOCAL check_function_bodies = off; SET CONSTRAINTS ALL IMMEDIATE"); err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	t0 := time.Now()
	if err := r.schema(ctx); err != nil {
		return nil, fmt.Errorf("merge: schema: %w", err)
	}
	t1 := time.Now()
	if err := r.rows(ctx); err != nil {
		return nil, fmt.Errorf("merge: rows: %w", err)
	}
	if err := r.restoreTriggers(ctx); err != nil {
		return nil, fmt.Errorf("merge: rows: %w", err)
	}
	t2 := time.Now()
	if err := r.sequences(ctx); err != nil {
		return nil, fmt.Errorf("merge: sequences: %w", err)
	}
	tm := &r.res.Timings
	tm.Schema, tm.Rows, tm.Sequences = ms(t1.Sub(t0)), ms(t2.Sub(t1)), ms(time.Since(t2))
	for _, c := range r.counts {
		if c.Inserted+c.Updated+c.Deleted > 0 {
			r.res.Tables = append(r.res.Tables, *c)
		}
	}
	sort.Slice(r.res.Tables, func(i, j int) bool { return r.res.Tables[i].Table < r.res.Tables[j].Table })
	return r.res, nil
}

// conflict records c with its ID set and asks the resolver; it returns
// the resolution, or ok false when c stays open.
func (r *run) conflict(c Conflict, parts ...string) (Resolution, bool) {
	h := sha256.New()
	for _, p := range append([]string{c.Kind, c.Table, c.Object}, parts...) {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	keys := make([]string, 0, len(c.Key))
	for k := range c.Key {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		h.Write([]byte(k + "=" + c.Key[k]))
		h.Write([]byte{0})
	}
	c.ID = hex.EncodeToString(h.Sum(nil)[:6])
	res, ok := r.resolve(&c)
	if ok {
		c.Resolution = &res
	}
	r.res.Conflicts = append(r.res.Conflicts, c)
	return res, ok
}

// reopen marks the last conflict open again, with why its resolution
// could not apply.
func (r *run) reopen(why string) { r.reopenAt(len(r.res.Conflicts)-1, why) }

// reopenAt marks conflict i open again, with why its resolution could
// not apply.
func (r *run) reopenAt(i int, why string) {
	c := &r.res.Conflicts[i]
	c.Resolution = nil
	c.Message += "; " + why
}

// CheckValues reports why values cannot resolve c as custom values, or
// nil: they must be a JSON object (or null, to delete the row) of the
// row's columns (as the conflict shows the row: the target's, else the
// source's or the base's) that leaves the key as it is.
func (c *Conflict) CheckValues(values json.RawMessage) error {
	if c.Kind != KindRow && c.Kind != KindConstraint {
		return fmt.Errorf("custom values resolve row and constraint conflicts only; this one is a %s conflict: choose ours or theirs", c.Kind)
	}
	var v any
	d := json.NewDecoder(bytes.NewReader(values))
	d.UseNumber() // a bigint key compares exactly
	if err := d.Decode(&v); err != nil || d.More() {
		return errors.New("want a JSON object of column values, or null to delete the row")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		if v == nil {
			return nil
		}
		return errors.New("want a JSON object of column values, or null to delete the row")
	}
	var cols map[string]json.RawMessage
	for _, row := range []json.RawMessage{c.Target, c.Source, c.Base} {
		if len(row) > 0 && json.Unmarshal(row, &cols) == nil {
			break
		}
	}
	names := make([]string, 0, len(obj))
	for k := range obj {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if key, ok := c.Key[k]; ok {
			if textOf(obj[k]) != key {
				return fmt.Errorf("column %s is the row's key (%s): custom values cannot change it", k, key)
			}
			continue
		}
		if _, ok := cols[k]; cols != nil && !ok {
			return fmt.Errorf("the row of %s has no column %s", c.Table, k)
		}
	}
	return nil
}

func (r *run) count(table string) *TableCounts {
	c := r.counts[table]
	if c == nil {
		c = &TableCounts{Table: table}
		r.counts[table] = c
	}
	return c
}

// try runs fn on the target inside a savepoint. An error Postgres raised
// for the statement (not a broken connection or a serialization failure)
// rolls back to the savepoint and comes back as a *pgconn.PgError with
// refused true; any other error is fatal.
func (r *run) try(ctx context.Context, fn func() error) (pgErr *pgconn.PgError, err error) {
	r.sp++
	sp := fmt.Sprintf("merge_%d", r.sp)
	if _, err := r.Target.Exec(ctx, "SAVEPOINT "+sp); err != nil {
		return nil, err
	}
	ferr := fn()
	if ferr == nil {
		_, err := r.Target.Exec(ctx, "RELEASE SAVEPOINT "+sp)
		return nil, err
	}
	var pe *pgconn.PgError
	if !errors.As(ferr, &pe) || fatalState(pe.Code) {
		return nil, ferr
	}
	if _, err := r.Target.Exec(ctx, "ROLLBACK TO SAVEPOINT "+sp); err != nil {
		return nil, err
	}
	return pe, nil
}

// fatalState reports whether a SQLSTATE must end the merge rather than
// count as a change the target refuses: serialization failures,
// deadlocks, cancels, lost connections and resource exhaustion.
func fatalState(code string) bool {
	for _, p := range []string{"40", "57", "08", "53", "58", "XX"} {
		if strings.HasPrefix(code, p) {
			return true
		}
	}
	return false
}

func describe(pe *pgconn.PgError) string {
	s := pe.Message
	if pe.Detail != "" {
		s += " (" + pe.Detail + ")"
	}
	return s
}

func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}
