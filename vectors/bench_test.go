package vectors

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/pgvector/pgvector-go"
)

// benchRows makes n seeded random unit vectors of dims dimensions.
func benchRows(n, dims int) []Row {
	rng := rand.New(rand.NewPCG(42, 7))
	rows := make([]Row, n)
	for i := range rows {
		v := make([]float32, dims)
		var ss float64
		for j := range v {
			x := rng.NormFloat64()
			v[j] = float32(x)
			ss += x * x
		}
		for j := range v {
			v[j] = float32(float64(v[j]) / math.Sqrt(ss))
		}
		rows[i] = Row{ID: fmt.Sprint(i), DocID: fmt.Sprint(i / 4), Start: 0, End: 40, CharEnd: 40,
			Content: fmt.Sprintf("chunk %d of a benchmark document", i), Embedding: v}
	}
	return rows
}

// insertRows is the baseline a user would write instead of COPY: batched
// multi-row INSERT ... VALUES (...), (...) with bound parameters. With
// textVectors the vectors are bound as pgvector text literals (what a
// connection without registered pgvector types sends); otherwise they are
// bound in binary like COPY's.
func insertRows(ctx context.Context, conn *pgx.Conn, t Table, rows []Row, batch int, textVectors bool) error {
	cols := strings.Join(tableColumns, ", ")
	for lo := 0; lo < len(rows); lo += batch {
		part := rows[lo:min(lo+batch, len(rows))]
		var sb strings.Builder
		fmt.Fprintf(&sb, "INSERT INTO %s (%s) VALUES ", t.ident().Sanitize(), cols)
		args := make([]any, 0, len(part)*len(tableColumns))
		for i, r := range part {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString("(")
			for j := range tableColumns {
				if j > 0 {
					sb.WriteString(", ")
				}
				fmt.Fprintf(&sb, "$%d", i*len(tableColumns)+j+1)
			}
			sb.WriteString(")")
			v, err := t.values(r)
			if err != nil {
				return err
			}
			if textVectors {
				v[len(v)-1] = pgvector.NewVector(r.Embedding).String()
			}
			args = append(args, v...)
		}
		if _, err := conn.Exec(ctx, sb.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkLoad compares Load (binary COPY, 5,000 rows per COPY) with
// batched multi-row INSERT (1,000 rows per statement) for 100,000 384-dim
// vectors into the same table layout on one real PostgreSQL 15 cluster, in
// one run. Reported: vectors/s of each and the COPY/INSERT ratios, against
// INSERT with binary-bound vectors and with text-bound vectors. Each
// iteration loads every variant once into a fresh table after a CHECKPOINT,
// rotating the order; use -benchtime Nx for N rounds.
//
//	go test ./vectors -run '^$' -bench BenchmarkLoad -benchtime 3x
func BenchmarkLoad(b *testing.B) {
	const n, dims = 100_000, 384
	ctx := context.Background()
	c := pgtest.New(b, nil)
	conn := c.Connect(b)
	if err := RegisterTypes(ctx, conn); err != nil {
		b.Fatal(err)
	}
	rows := benchRows(n, dims)
	var copyT, insT, insTextT time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		run := func(name string, load func(Table) error) time.Duration {
			t := Table{Name: fmt.Sprintf("bench_%s_%d", name, i), Dims: dims}
			if err := CreateTable(ctx, conn, t); err != nil {
				b.Fatal(err)
			}
			if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			if err := load(t); err != nil {
				b.Fatal(err)
			}
			d := time.Since(start)
			var got int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+t.ident().Sanitize()).Scan(&got); err != nil || got != n {
				b.Fatalf("%s: %d rows, %v", name, got, err)
			}
			if err := DropTable(ctx, conn, t); err != nil {
				b.Fatal(err)
			}
			return d
		}
		variants := []func(){
			func() {
				copyT += run("copy", func(t Table) error { _, err := Load(ctx, conn, t, rows, LoadOptions{}); return err })
			},
			func() {
				insT += run("insert", func(t Table) error { return insertRows(ctx, conn, t, rows, 1000, false) })
			},
			func() {
				insTextT += run("inserttext", func(t Table) error { return insertRows(ctx, conn, t, rows, 1000, true) })
			},
		}
		// Rotate the order so that no variant always runs first.
		for j := range variants {
			variants[(i+j)%len(variants)]()
		}
	}
	total := float64(n * b.N)
	b.ReportMetric(total/copyT.Seconds(), "copy_vec/s")
	b.ReportMetric(total/insT.Seconds(), "insert_vec/s")
	b.ReportMetric(total/insTextT.Seconds(), "insert_text_vec/s")
	b.ReportMetric(insT.Seconds()/copyT.Seconds(), "copy/insert")
	b.ReportMetric(insTextT.Seconds()/copyT.Seconds(), "copy/insert_text")
}
