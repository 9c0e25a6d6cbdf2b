package vectors

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/offshootdb/offshoot/compute/pg/pgtest"
)

// TestBinaryQuantization: re-ranking Hamming candidates. With every row a
// candidate the re-ranked search is exact search, hit for hit (filter
// included), on vector and halfvec tables; a Binary index is named and
// built over the bits, and is the smallest; bad combinations are refused.
func TestBinaryQuantization(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	ctx := context.Background()
	conn := pgtest.New(t, nil).Connect(t)
	const n, dims = 400, 64
	rng := rand.New(rand.NewPCG(1, 2))
	vec := func() []float32 {
		v := make([]float32, dims)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	var rows []Row
	for i := range n {
		rows = append(rows, Row{ID: fmt.Sprintf("r%03d", i), DocID: fmt.Sprintf("d%03d", i),
			Metadata: map[string]any{"parity": []string{"even", "odd"}[i%2]}, Embedding: vec()})
	}
	rows[7].Embedding = make([]float32, dims) // a zero vector: no cosine distance
	queries := [][]float32{vec(), vec(), vec()}
	sizes := map[string]int64{}
	for _, vt := range []VectorType{Vector, HalfVec} {
		tbl := Table{Name: "bq_" + string(vt), Dims: dims, Type: vt}
		if err := CreateTable(ctx, conn, tbl); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(ctx, conn, tbl, rows, LoadOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, m := range []Metric{Cosine, L2, InnerProduct} {
			for _, filter := range []map[string]any{nil, {"parity": "odd"}} {
				for _, qv := range queries {
					exact, err := Search(ctx, conn, tbl, Query{Vector: qv, K: 10, Metric: m, Exact: true, Filter: filter})
					if err != nil {
						t.Fatal(err)
					}
					all, err := Search(ctx, conn, tbl, Query{Vector: qv, K: 10, Metric: m, Rerank: n, Filter: filter})
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(exact.Hits, all.Hits) {
						t.Fatalf("%s %s filter %v: re-ranking every row gave %v, exact search %v", vt, m, filter, all.Hits, exact.Hits)
					}
					few, err := Search(ctx, conn, tbl, Query{Vector: qv, K: 10, Metric: m, Rerank: 10, Filter: filter})
					if err != nil || len(few.Hits) != 10 {
						t.Fatalf("%s %s: %d hits of 10 candidates, %v", vt, m, len(few.Hits), err)
					}
				}
			}
		}
		for _, ix := range []Index{{Method: HNSW, Metric: Cosine}, {Method: HNSW, Metric: Cosine, Binary: true}} {
			info, err := CreateIndex(ctx, conn, tbl, ix)
			if err != nil {
				t.Fatal(err)
			}
			sizes[info.Name] = info.SizeBytes
			var def string
			if err := conn.QueryRow(ctx, "SELECT indexdef FROM pg_indexes WHERE indexname = $1", info.Name).Scan(&def); err != nil {
				t.Fatal(err)
			}
			want := string(vt) + "_cosine_ops"
			if ix.Binary {
				want = fmt.Sprintf("((binary_quantize(embedding))::bit(%d)) bit_hamming_ops", dims)
			}
			if !strings.Contains(def, want) || info.Name != tbl.IndexName(ix) {
				t.Errorf("index %s: %s, want %s", info.Name, def, want)
			}
		}
	}
	t.Logf("index sizes: %v", sizes)
	if b, h, v := sizes["bq_vector_hnsw_hamming_idx"], sizes["bq_halfvec_hnsw_cosine_idx"], sizes["bq_vector_hnsw_cosine_idx"]; !(b < h && h < v) {
		t.Errorf("index sizes bit %d, halfvec %d, vector %d: want increasing", b, h, v)
	}

	tbl := Table{Name: "bq_vector", Dims: dims}
	for _, q := range []Query{
		{Vector: queries[0], K: 10, Rerank: 9},
		{Vector: queries[0], K: 10, Rerank: 10001},
		{Vector: queries[0], K: 10, Rerank: 20, Exact: true},
	} {
		if _, err := Search(ctx, conn, tbl, q); !errors.Is(err, ErrBadQuery) {
			t.Errorf("k %d rerank %d exact %v: %v, want ErrBadQuery", q.K, q.Rerank, q.Exact, err)
		}
	}
	wide := Table{Name: "wide", Dims: MaxIndexDimsVector + 1}
	if err := CreateTable(ctx, conn, wide); err != nil {
		t.Fatal(err)
	}
	if _, err := CreateIndex(ctx, conn, wide, Index{Method: HNSW, Metric: Cosine}); !errors.Is(err, ErrBadIndex) {
		t.Errorf("a %d-dim vector index: %v, want ErrBadIndex", wide.Dims, err)
	}
	for _, ix := range []Index{{Method: HNSW, Metric: Cosine, Binary: true}} {
		if _, err := CreateIndex(ctx, conn, wide, ix); err != nil {
			t.Errorf("a %d-dim binary index: %v", wide.Dims, err)
		}
	}
}

// TestSizeBuildStorage: the build estimate follows the indexed bytes per
// vector: 4 per dimension, 2 for halfvec, 1/8 for a binary index.
func TestSizeBuildStorage(t *testing.T) {
	est := func(vt VectorType, binary bool) int64 {
		return SizeBuild(Table{Name: "t", Dims: 1024, Type: vt}, Index{Method: HNSW, Binary: binary}, 1000, 1<<30, 4).EstimatedBytes
	}
	v, h, b := est(Vector, false), est(HalfVec, false), est(Vector, true)
	per := func(x int64) int64 { return x/1000 - 8 - 2*16*16 - hnswElementOverhead }
	if per(v) != 4096 || per(h) != 2048 || per(b) != 128 || est(HalfVec, true) != b {
		t.Errorf("vector bytes per element: vector %d, halfvec %d, binary %d", per(v), per(h), per(b))
	}
}
