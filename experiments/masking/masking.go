// Package masking is the model of a project's masking policy and the SQL
// that applies it to a branch.
//
// A Policy is a list of Rules, each naming one column of one table and how
// its values are replaced: by a fixed value, a keyed hash, a
// format-preserving fake, NULL or an SQL expression. Hash and fake are
// deterministic: the masked value depends only on the original value (as
// text) and the project's secret, never on the table or the row, so a
// primary key and the foreign keys that reference it stay equal when they
// get the same method and format, and two masked forks of the same data
// hold the same masked values. The secret is a query parameter of the
// generated statements ($1), never part of their text.
//
// The package is pure: it validates policies and builds SQL text; the
// caller runs it (experiments applies it to a fresh fork).
package masking

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Errors returned by this package.
var (
	// ErrInvalid means a policy or rule is malformed; the message names
	// the rule and field.
	ErrInvalid = errors.New("invalid masking policy")
	// ErrUnsupported means a rule's method cannot produce values of its
	// column's type (e.g. hash on a boolean); use method sql instead.
	ErrUnsupported = errors.New("masking method does not fit the column type")
)

// Method is how a rule replaces values.
type Method string

// Methods.
const (
	// Fixed replaces every non-NULL value by Rule.Value (cast to the
	// column type). NULLs stay NULL.
	Fixed Method = "fixed"
	// Hash replaces a value by a keyed SHA-256 of it: hex text for string
	// columns (truncated to a varchar/char length), a non-negative number
	// within the type's range for integer and numeric columns, a UUID for
	// uuid columns. Integer hashes can collide (1 in 2^31 per pair for
	// integer, 2^63 for bigint); a collision on a unique column fails the
	// masking.
	Hash Method = "hash"
	// Fake replaces a string value by a format-preserving fake derived
	// from the same keyed hash; see Format.
	Fake Method = "fake"
	// Null sets the column to NULL (fails on NOT NULL columns).
	Null Method = "null"
	// SQL sets the column to Rule.Expr, an SQL expression evaluated per
	// row that may name the row's columns. Only admins set policies, so
	// the expression is trusted; it must not use $1 (in a table that also
	// has hash or fake rules, $1 is the secret).
	SQL Method = "sql"
)

// Format is the shape of a fake value.
type Format string

// Formats of Fake. Every format keeps NULL as NULL and "" as "".
const (
	// Email gives "<16 hex digits>@example.com".
	Email Format = "email"
	// Digits replaces every ASCII digit by a digit and keeps everything
	// else, so length, separators and prefixes survive.
	Digits Format = "digits"
	// Phone is Digits.
	Phone Format = "phone"
	// Text replaces every ASCII letter by a letter of the same case and
	// every digit by a digit, keeping length, spaces and punctuation. The
	// default format.
	Text Format = "text"
	// Name is Text: "Ada Lovelace" becomes e.g. "Qsw Zkrbhxpm".
	Name Format = "name"
)

// Rule masks one column.
type Rule struct {
	// Table is "schema.table", or "table" for schema public. Names are
	// matched exactly as the catalog stores them (no case folding).
	Table  string `json:"table"`
	Column string `json:"column"`
	Method Method `json:"method"`
	// Value is the replacement of method fixed (required there).
	Value *string `json:"value,omitempty"`
	// Format is the shape of method fake; default text.
	Format Format `json:"format,omitempty"`
	// Expr is the expression of method sql (required there).
	Expr string `json:"expr,omitempty"`
}

// Policy is a project's masking policy.
type Policy struct {
	Rules []Rule `json:"rules"`
}

var ident = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]{0,62}$`)

// SplitTable returns the schema and name of a rule's table ("public" when
// no schema is given).
func SplitTable(t string) (schema, name string) {
	if s, n, ok := strings.Cut(t, "."); ok {
		return s, n
	}
	return "public", t
}

// Validate checks a policy: at least one rule; each with a table and
// column that are plain identifiers, a known method with the fields it
// needs and none it ignores; no column named twice. Errors wrap ErrInvalid.
func (p Policy) Validate() error {
	if len(p.Rules) == 0 {
		return fmt.Errorf("%w: give at least one rule", ErrInvalid)
	}
	seen := map[string]bool{}
	for i, r := range p.Rules {
		if err := r.validate(); err != nil {
			return fmt.Errorf("rule %d: %w", i, err)
		}
		s, n := SplitTable(r.Table)
		k := s + "." + n + "." + r.Column
		if seen[k] {
			return fmt.Errorf("rule %d: %w: column %s of %s.%s is masked twice", i, ErrInvalid, r.Column, s, n)
		}
		seen[k] = true
	}
	return nil
}

func (r Rule) validate() error {
	s, n := SplitTable(r.Table)
	if strings.Count(r.Table, ".") > 1 || !ident.MatchString(s) || !ident.MatchString(n) {
		return fmt.Errorf("%w: table %q: want schema.table of identifiers ([A-Za-z_][A-Za-z0-9_$]*)", ErrInvalid, r.Table)
	}
	if !ident.MatchString(r.Column) {
		return fmt.Errorf("%w: column %q: want an identifier ([A-Za-z_][A-Za-z0-9_$]*)", ErrInvalid, r.Column)
	}
	if r.Value != nil && r.Method != Fixed {
		return fmt.Errorf("%w: value is only for method fixed", ErrInvalid)
	}
	if r.Format != "" && r.Method != Fake {
		return fmt.Errorf("%w: format is only for method fake", ErrInvalid)
	}
	if r.Expr != "" && r.Method != SQL {
		return fmt.Errorf("%w: expr is only for method sql", ErrInvalid)
	}
	switch r.Method {
	case Fixed:
		if r.Value == nil {
			return fmt.Errorf("%w: method fixed needs a value", ErrInvalid)
		}
	case Fake:
		switch r.Format {
		case "", Email, Digits, Phone, Text, Name:
		default:
			return fmt.Errorf("%w: format %q: want email, phone, name, digits or text", ErrInvalid, r.Format)
		}
	case SQL:
		if strings.TrimSpace(r.Expr) == "" {
			return fmt.Errorf("%w: method sql needs an expr", ErrInvalid)
		}
	case Hash, Null:
	default:
		return fmt.Errorf("%w: method %q: want fixed, hash, fake, null or sql", ErrInvalid, r.Method)
	}
	return nil
}

// Column describes a column as the catalog does.
type Column struct {
	// Type is format_type(atttypid, atttypmod), e.g. "character varying(20)".
	Type string
	// TypName is pg_type.typname, e.g. "int4", "varchar", "uuid".
	TypName string
	// Category is pg_type.typcategory: 'S' string, 'N' numeric, ...
	Category string
}

// ColumnQuery reads a Column: parameters $1 the quoted table name
// (QuotedTable), $2 the column name. No row: the table or column is missing.
// The last value says whether the column's type belongs to the bootstrap
// superuser (built-in or an extension's): masking casts values of the
// column as the superuser, and a cast of a user's own type could run the
// user's code with superuser rights.
const ColumnQuery = `SELECT format_type(a.atttypid, a.atttypmod), t.typname, t.typcategory::text, t.typowner = 10
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped`

// QuotedTable is a rule table's quoted, schema-qualified name.
func QuotedTable(table string) string {
	s, n := SplitTable(table)
	return pgx.Identifier{s, n}.Sanitize()
}

// hashOf is the keyed digest of a column's value as bytea; $1 is the secret.
func hashOf(col string) string {
	return fmt.Sprintf("sha256(convert_to($1::text || %s::text, 'UTF8'))", col)
}

var intMax = map[string]string{"int2": "32767", "int4": "2147483647", "int8": "9223372036854775807"}

// SetExpr returns the SQL expression that replaces the rule's column, of
// type c, in an UPDATE of its table; $1 is the project's secret.
// Errors wrap ErrUnsupported.
func (r Rule) SetExpr(c Column) (string, error) {
	col := pgx.Identifier{r.Column}.Sanitize()
	cast := func(e string) string { return fmt.Sprintf("CAST(%s AS %s)", e, c.Type) }
	hex := fmt.Sprintf("encode(%s, 'hex')", hashOf(col))
	switch r.Method {
	case Null:
		return "NULL", nil
	case Fixed:
		return fmt.Sprintf("CASE WHEN %s IS NULL THEN NULL ELSE %s END", col, cast(quoteLiteral(*r.Value))), nil
	case SQL:
		return cast("(" + r.Expr + ")"), nil
	case Hash:
		switch {
		case c.Category == "S":
			return cast(hex), nil
		case c.TypName == "uuid":
			return fmt.Sprintf("CAST(substr(%s, 1, 32) AS uuid)", hex), nil
		case c.Category == "N" && c.TypName != "money":
			max, ok := intMax[c.TypName]
			if !ok {
				max = intMax["int8"]
			}
			return cast(fmt.Sprintf("(CAST(CAST('x' || substr(%s, 1, 16) AS bit(64)) AS bigint) & %s)", hex, max)), nil
		}
		return "", fmt.Errorf("%w: hash of %s %s; use method sql", ErrUnsupported, r.Column, c.Type)
	case Fake:
		if c.Category != "S" {
			return "", fmt.Errorf("%w: fake of %s %s (fakes are for text columns); use hash or sql", ErrUnsupported, r.Column, c.Type)
		}
		if r.Format == Email {
			return cast(fmt.Sprintf("CASE WHEN %s = '' THEN '' ELSE substr(%s, 1, 16) || '@example.com' END", col, hex)), nil
		}
		return cast(charwise(col, r.Format == Digits || r.Format == Phone)), nil
	}
	return "", fmt.Errorf("%w: method %q", ErrInvalid, r.Method)
}

// charwise is a format-preserving fake: each ASCII digit (and, unless
// digitsOnly, letter) of the value is replaced by one chosen by a byte of
// the keyed digest at its position; other characters stay.
func charwise(col string, digitsOnly bool) string {
	pick := "(get_byte(k.d, (t.i::int - 1) % 32) + (t.i::int - 1) / 32)"
	cases := "WHEN t.c BETWEEN '0' AND '9' THEN chr(48 + " + pick + " % 10) "
	if !digitsOnly {
		cases += "WHEN t.c BETWEEN 'a' AND 'z' THEN chr(97 + " + pick + " % 26) " +
			"WHEN t.c BETWEEN 'A' AND 'Z' THEN chr(65 + " + pick + " % 26) "
	}
	return fmt.Sprintf("CASE WHEN %[1]s IS NULL THEN NULL WHEN %[1]s::text = '' THEN '' ELSE "+
		"(SELECT string_agg(CASE %[2]sELSE t.c END, '' ORDER BY t.i) "+
		"FROM (SELECT %[3]s AS d) k, unnest(string_to_array(%[1]s::text, NULL)) WITH ORDINALITY AS t(c, i)) END",
		col, cases, hashOf(col))
}

func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// Tables returns the distinct tables of a policy, sorted.
func (p Policy) Tables() []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range p.Rules {
		s, n := SplitTable(r.Table)
		k := s + "." + n
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Statement is one UPDATE of a table.
type Statement struct {
	SQL string
	// Secret reports that SQL takes the project's secret as $1 (a rule
	// of the table hashes or fakes); otherwise it takes no parameter.
	Secret bool
}

// Update returns one UPDATE statement per table of the policy, in table
// order, given each rule's column type (cols[i] for p.Rules[i]).
func (p Policy) Update(cols []Column) ([]Statement, error) {
	if len(cols) != len(p.Rules) {
		return nil, fmt.Errorf("%w: %d column types for %d rules", ErrInvalid, len(cols), len(p.Rules))
	}
	sets := map[string][]string{}
	secret := map[string]bool{}
	for i, r := range p.Rules {
		e, err := r.SetExpr(cols[i])
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", r.Table, r.Column, err)
		}
		s, n := SplitTable(r.Table)
		k := s + "." + n
		sets[k] = append(sets[k], pgx.Identifier{r.Column}.Sanitize()+" = "+e)
		secret[k] = secret[k] || r.Method == Hash || r.Method == Fake
	}
	var out []Statement
	for _, t := range p.Tables() {
		out = append(out, Statement{SQL: "UPDATE " + QuotedTable(t) + " SET " + strings.Join(sets[t], ", "), Secret: secret[t]})
	}
	return out, nil
}
