package experiments_test

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/offshootdb/offshoot/experiments"
)

// BenchmarkDiffRows measures Diff on a 100k-row table with 1% of rows
// changed, added or removed, against the baseline a user would write by
// hand: read both tables whole in key order and compare the rows' bytes in
// the client. Reports offshoot_ms, baseline_ms and their ratio (lower is
// better), each the median of 3 runs.
func BenchmarkDiffRows(b *testing.B) {
	const rows = 100_000
	c := pgtest.New(b, nil)
	ctx := context.Background()
	admin := c.Connect(b)
	for _, q := range []string{"CREATE DATABASE base", "CREATE DATABASE branch"} {
		if _, err := admin.Exec(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	dsn := func(db string) string { return c.Postmaster.ConnString("postgres", "", db) }
	for _, db := range []string{"base", "branch"} {
		conn, err := pgx.Connect(ctx, dsn(db))
		if err != nil {
			b.Fatal(err)
		}
		for _, q := range []string{
			"CREATE EXTENSION vector",
			"CREATE TABLE items (id int PRIMARY KEY, name text, score float8, emb vector(32))",
			fmt.Sprintf("INSERT INTO items SELECT g, 'item ' || g, g * 0.5, array_fill(g::real, ARRAY[32])::vector FROM generate_series(1, %d) g", rows),
			"ANALYZE items",
		} {
			if _, err := conn.Exec(ctx, q); err != nil {
				b.Fatal(err)
			}
		}
		if db == "branch" {
			for _, q := range []string{
				"UPDATE items SET name = 'changed' WHERE id % 300 = 0",
				"DELETE FROM items WHERE id % 301 = 0",
				fmt.Sprintf("INSERT INTO items SELECT g, 'new', 0, NULL FROM generate_series(%d, %d) g", rows+1, rows+rows/300),
			} {
				if _, err := conn.Exec(ctx, q); err != nil {
					b.Fatal(err)
				}
			}
		}
		conn.Close(ctx)
	}
	s, err := experiments.New(experiments.Config{ControlDir: b.TempDir(),
		Connector: experiments.StaticConnector{"p/base": dsn("base"), "p/branch": dsn("branch")}})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Open(ctx); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	actx := experiments.WithCaller(ctx, experiments.LocalCaller)

	var changed int64
	offshoot := median3(b, func() {
		d, err := s.Diff(actx, experiments.DiffRequest{Project: "p", Branch: "branch", Against: "base"})
		if err != nil {
			b.Fatal(err)
		}
		changed = d.Tables[0].Added + d.Tables[0].Removed + d.Tables[0].Changed
	})
	var naive int64
	baseline := median3(b, func() { naive = clientCompare(b, dsn("base"), dsn("branch")) })
	if changed != naive {
		b.Fatalf("diff found %d changed rows, client compare %d", changed, naive)
	}
	b.ReportMetric(float64(offshoot.Microseconds())/1000, "offshoot_ms")
	b.ReportMetric(float64(baseline.Microseconds())/1000, "baseline_ms")
	b.ReportMetric(float64(offshoot)/float64(baseline), "ratio")
}

func median3(b *testing.B, fn func()) time.Duration {
	var ds []time.Duration
	for range 3 {
		start := time.Now()
		fn()
		ds = append(ds, time.Since(start))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[1]
}

// clientCompare reads both tables in key order and counts differing rows.
func clientCompare(b *testing.B, baseDSN, branchDSN string) int64 {
	ctx := context.Background()
	open := func(dsn string) (*pgx.Conn, pgx.Rows) {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		rows, err := conn.Query(ctx, "SELECT id, name, score, emb::text FROM items ORDER BY id")
		if err != nil {
			b.Fatal(err)
		}
		return conn, rows
	}
	bc, br := open(baseDSN)
	defer bc.Close(ctx)
	hc, hr := open(branchDSN)
	defer hc.Close(ctx)
	type row struct {
		id  int32
		raw [][]byte
	}
	next := func(r pgx.Rows) (row, bool) {
		if !r.Next() {
			return row{}, false
		}
		var x row
		raw := r.RawValues()
		for _, v := range raw {
			x.raw = append(x.raw, append([]byte(nil), v...))
		}
		if err := r.Scan(&x.id, nil, nil, nil); err != nil {
			b.Fatal(err)
		}
		return x, true
	}
	var n int64
	x, xok := next(br)
	y, yok := next(hr)
	for xok || yok {
		switch {
		case !yok || xok && x.id < y.id:
			n++
			x, xok = next(br)
		case !xok || y.id < x.id:
			n++
			y, yok = next(hr)
		default:
			for i := range x.raw {
				if !bytes.Equal(x.raw[i], y.raw[i]) {
					n++
					break
				}
			}
			x, xok = next(br)
			y, yok = next(hr)
		}
	}
	if br.Err() != nil || hr.Err() != nil {
		b.Fatal(br.Err(), hr.Err())
	}
	return n
}
