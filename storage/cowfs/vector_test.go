package cowfs

import (
	"context"
	"math/rand"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/offshootdb/offshoot/storage"
)

// TestPgvectorOnBranch runs the same pgvector steps (vector(384), HNSW
// index, index scans) on a branch and on a plain local-disk cluster and
// compares the results.
func TestPgvectorOnBranch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	seed := time.Now().UnixNano()
	if s := os.Getenv("COWFS_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	t.Logf("seed %d (set COWFS_SEED to repeat)", seed)
	rng := rand.New(rand.NewSource(seed))
	// HNSW builds are randomized per backend (pgvector draws node levels
	// from Postgres' per-process PRNG), so two builds agree only where the
	// search is exact: with ef_search >= the number of rows the search
	// explores the whole graph, so the index returns the exact neighbours
	// and the branch's results can be compared with plain disk's.
	const n, dim, queries = 1000, 384, 20
	vec := func() string {
		var b strings.Builder
		b.WriteByte('[')
		for i := range dim {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatFloat(float64(rng.Float32()), 'f', 5, 32))
		}
		b.WriteByte(']')
		return b.String()
	}
	ids := make([]int32, n)
	vecs := make([]string, n)
	for i := range n {
		ids[i], vecs[i] = int32(i+1), vec()
	}
	qs := make([]string, queries)
	for i := range qs {
		qs[i] = vec()
	}

	run := func(cs string) [][]int32 {
		s := &server{t: t, cs: cs}
		conn := s.connect(ctx)
		for _, q := range []string{
			"CREATE EXTENSION IF NOT EXISTS vector",
			"CREATE TABLE items (id int PRIMARY KEY, v vector(384))",
		} {
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := conn.Exec(ctx, "INSERT INTO items SELECT * FROM unnest($1::int[], $2::vector[])", ids, vecs); err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{
			"CREATE INDEX ON items USING hnsw (v vector_l2_ops)",
			"SET hnsw.ef_search = 1000",
			"SET enable_seqscan = off",
		} {
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		rows, err := conn.Query(ctx, "EXPLAIN SELECT id FROM items ORDER BY v <-> $1::vector LIMIT 10", qs[0])
		if err != nil {
			t.Fatal(err)
		}
		var plan string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan += line + "\n"
		}
		if !strings.Contains(plan, "Index Scan using items_v_idx") {
			t.Fatalf("plan does not use the HNSW index: %s", plan)
		}
		var out [][]int32
		for _, q := range qs {
			rows, err := conn.Query(ctx, "SELECT id FROM items ORDER BY v <-> $1::vector LIMIT 10", q)
			if err != nil {
				t.Fatal(err)
			}
			var got []int32
			for rows.Next() {
				var id int32
				if err := rows.Scan(&id); err != nil {
					t.Fatal(err)
				}
				got = append(got, id)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			out = append(out, got)
		}
		return out
	}

	native := pgtest.New(t, nil)
	f := newFixture(t, nil)
	pw := f.initProject("p")
	if _, err := f.s.Fork("p", "main", "vectors", storage.AtHead(), storage.BranchOptions{}); err != nil {
		t.Fatal(err)
	}
	m := f.mount("vectors", f.head("p", "vectors"), MountOptions{})
	b := startPG(t, m.Dir(), f.dir, pw, nil)

	want := run(native.ConnString)
	got := run(b.cs)
	for i := range qs {
		if len(want[i]) != 10 || !slices.Equal(got[i], want[i]) {
			t.Errorf("query %d: branch %v, plain disk %v", i, got[i], want[i])
		}
	}
	b.amcheck(ctx)
}
