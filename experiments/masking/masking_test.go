package masking

import (
	"errors"
	"strings"
	"testing"
)

func str(s string) *string { return &s }

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Policy
		err  string // "" for valid
	}{
		{"empty", Policy{}, "at least one rule"},
		{"hash", Policy{Rules: []Rule{{Table: "public.customers", Column: "id", Method: Hash}}}, ""},
		{"no schema", Policy{Rules: []Rule{{Table: "customers", Column: "email", Method: Fake, Format: Email}}}, ""},
		{"fixed", Policy{Rules: []Rule{{Table: "t", Column: "c", Method: Fixed, Value: str("x")}}}, ""},
		{"fixed without value", Policy{Rules: []Rule{{Table: "t", Column: "c", Method: Fixed}}}, "needs a value"},
		{"sql", Policy{Rules: []Rule{{Table: "t", Column: "c", Method: SQL, Expr: "upper(c)"}}}, ""},
		{"sql without expr", Policy{Rules: []Rule{{Table: "t", Column: "c", Method: SQL, Expr: " "}}}, "needs an expr"},
		{"unknown method", Policy{Rules: []Rule{{Table: "t", Column: "c", Method: "scramble"}}}, "want fixed, hash"},
		{"unknown format", Policy{Rules: []Rule{{Table: "t", Column: "c", Method: Fake, Format: "ssn"}}}, "want email"},
		{"format on hash", Policy{Rules: []Rule{{Table: "t", Column: "c", Method: Hash, Format: Email}}}, "only for method fake"},
		{"expr on null", Policy{Rules: []Rule{{Table: "t", Column: "c", Method: Null, Expr: "1"}}}, "only for method sql"},
		{"injected table", Policy{Rules: []Rule{{Table: `t; DROP TABLE x`, Column: "c", Method: Null}}}, "table"},
		{"three-part table", Policy{Rules: []Rule{{Table: "a.b.c", Column: "c", Method: Null}}}, "table"},
		{"quoted column", Policy{Rules: []Rule{{Table: "t", Column: `c"`, Method: Null}}}, "column"},
		{"twice", Policy{Rules: []Rule{{Table: "t", Column: "c", Method: Null}, {Table: "public.t", Column: "c", Method: Hash}}}, "masked twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			if tc.err == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("Validate = %v, want ErrInvalid containing %q", err, tc.err)
			}
		})
	}
}

func TestSetExpr(t *testing.T) {
	text := Column{Type: "text", TypName: "text", Category: "S"}
	for _, tc := range []struct {
		name string
		r    Rule
		c    Column
		want []string // substrings of the expression; nil: ErrUnsupported
	}{
		{"null", Rule{Column: "c", Method: Null}, text, []string{"NULL"}},
		{"fixed quotes", Rule{Column: "c", Method: Fixed, Value: str("O'Brien")}, text, []string{`'O''Brien'`, "CAST("}},
		{"hash text", Rule{Column: "c", Method: Hash}, Column{Type: "character varying(20)", TypName: "varchar", Category: "S"},
			[]string{"sha256(convert_to($1::text || \"c\"::text, 'UTF8'))", "AS character varying(20))"}},
		{"hash int4", Rule{Column: "Id", Method: Hash}, Column{Type: "integer", TypName: "int4", Category: "N"}, []string{`"Id"`, "& 2147483647", "AS integer)"}},
		{"hash int8", Rule{Column: "c", Method: Hash}, Column{Type: "bigint", TypName: "int8", Category: "N"}, []string{"& 9223372036854775807"}},
		{"hash uuid", Rule{Column: "c", Method: Hash}, Column{Type: "uuid", TypName: "uuid", Category: "U"}, []string{"AS uuid"}},
		{"hash bool", Rule{Column: "c", Method: Hash}, Column{Type: "boolean", TypName: "bool", Category: "B"}, nil},
		{"fake email", Rule{Column: "c", Method: Fake, Format: Email}, text, []string{"@example.com"}},
		{"fake digits keeps letters", Rule{Column: "c", Method: Fake, Format: Digits}, text, []string{"chr(48 + "}},
		{"fake int", Rule{Column: "c", Method: Fake}, Column{Type: "integer", TypName: "int4", Category: "N"}, nil},
		{"sql", Rule{Column: "c", Method: SQL, Expr: "upper(c)"}, text, []string{"CAST((upper(c)) AS text)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := tc.r.SetExpr(tc.c)
			if tc.want == nil {
				if !errors.Is(err, ErrUnsupported) {
					t.Fatalf("SetExpr = %q, %v; want ErrUnsupported", e, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(e, w) {
					t.Errorf("SetExpr = %s\nwant it to contain %s", e, w)
				}
			}
			if tc.r.Format == Digits && strings.Contains(e, "chr(97") {
				t.Errorf("digits fake replaces letters: %s", e)
			}
		})
	}
}

func TestUpdate(t *testing.T) {
	p := Policy{Rules: []Rule{
		{Table: "orders", Column: "customer_id", Method: Hash},
		{Table: "customers", Column: "id", Method: Hash},
		{Table: "public.customers", Column: "name", Method: Null},
	}}
	i4 := Column{Type: "integer", TypName: "int4", Category: "N"}
	stmts, err := p.Update([]Column{i4, i4, {Type: "text", TypName: "text", Category: "S"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(stmts) != 2 || !strings.HasPrefix(stmts[0].SQL, `UPDATE "public"."customers" SET "id" = `) || !strings.Contains(stmts[0].SQL, `, "name" = NULL`) ||
		!strings.HasPrefix(stmts[1].SQL, `UPDATE "public"."orders" SET "customer_id" = `) || !stmts[0].Secret || !stmts[1].Secret {
		t.Fatalf("Update = %+v", stmts)
	}
	// The same method on the same type gives the same expression in both
	// tables (what keeps joins intact), up to the column name.
	c0, c1 := stmts[0].SQL, stmts[1].SQL
	a := strings.ReplaceAll(strings.TrimPrefix(c0[:strings.Index(c0, `, "name" = `)], `UPDATE "public"."customers" SET "id" = `), `"id"`, "X")
	b := strings.ReplaceAll(strings.TrimPrefix(c1, `UPDATE "public"."orders" SET "customer_id" = `), `"customer_id"`, "X")
	if a != b {
		t.Errorf("hash expressions differ:\n%s\n%s", a, b)
	}
	// A table without hash or fake rules takes no secret, even when a
	// fixed value spells $1.
	fixed, err := Policy{Rules: []Rule{{Table: "t", Column: "c", Method: Fixed, Value: str("costs $1")}}}.Update([]Column{{Type: "text", TypName: "text", Category: "S"}})
	if err != nil || fixed[0].Secret {
		t.Errorf("fixed-only Update = %+v, %v; want no secret", fixed, err)
	}
	if _, err := p.Update([]Column{i4}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Update with missing types = %v, want ErrInvalid", err)
	}
}
