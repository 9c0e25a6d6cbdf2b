package vectors

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/compute/pg/pgtest"
)

// BenchmarkVectorStorage compares the storage types of a dense variant
// on one real PostgreSQL 15 cluster, in one run: an HNSW index (cosine,
// m 16, ef_construction 64) over vector(384) (the baseline), over
// halfvec(384), and a binary index (binary_quantize(embedding)::bit(384),
// bit_hamming_ops) over the vector table searched with 40 Hamming
// candidates re-ranked by the full vectors. Seeded unit vectors with a
// 32-dimensional latent structure (latentRows; VEC_STORAGE_BENCH_ROWS,
// default 50,000), 200 queries from the same distribution, k 10,
// ef_search 40. Each repetition (VEC_STORAGE_BENCH_REPS, default 3) builds every
// index once in rotating order after a CHECKPOINT, times every query
// once (after one untimed pass) and drops the index. Reported: medians
// over the repetitions of build time, index size, p50 latency and
// recall@10 against exact search on the full-precision vectors, and the
// ratios to vector's.
//
//	go test ./vectors -run '^$' -bench 'VectorStorage' -benchtime 1x
func BenchmarkVectorStorage(b *testing.B) {
	n, reps := envInt(b, "VEC_STORAGE_BENCH_ROWS", 50_000), envInt(b, "VEC_STORAGE_BENCH_REPS", 3)
	const dims, k, nq, ef, rerank = 384, 10, 200, 40, 40
	ctx := context.Background()
	conn := pgtest.New(b, nil).Connect(b)
	if err := RegisterTypes(ctx, conn); err != nil {
		b.Fatal(err)
	}
	all := latentRows(n+nq, dims, 32)
	rows := all[:n]
	queries := make([][]float32, nq)
	for i := range queries {
		queries[i] = all[n+i].Embedding
	}
	vec, half := Table{Name: "bs_vector", Dims: dims}, Table{Name: "bs_halfvec", Dims: dims, Type: HalfVec}
	for _, t := range []Table{vec, half} {
		if err := CreateTable(ctx, conn, t); err != nil {
			b.Fatal(err)
		}
		if _, err := Load(ctx, conn, t, rows, LoadOptions{}); err != nil {
			b.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "VACUUM ANALYZE "+t.ident().Sanitize()); err != nil {
			b.Fatal(err)
		}
	}
	// The ground truth: exact search on the full-precision vectors.
	truth := make([][]string, nq)
	for i, q := range queries {
		res, err := Search(ctx, conn, vec, Query{Vector: q, K: k, Exact: true})
		if err != nil {
			b.Fatal(err)
		}
		truth[i] = ids(res)
	}
	type storage struct {
		name string
		tbl  Table
		ix   Index
		q    Query
	}
	kinds := []storage{
		{"vector", vec, Index{Method: HNSW, Metric: Cosine}, Query{K: k, EfSearch: ef, ForceIndex: true}},
		{"halfvec", half, Index{Method: HNSW, Metric: Cosine}, Query{K: k, EfSearch: ef, ForceIndex: true}},
		{"binary", vec, Index{Method: HNSW, Metric: Cosine, Binary: true}, Query{K: k, EfSearch: ef, Rerank: rerank, ForceIndex: true}},
	}
	build, size, p50, recall := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	b.ResetTimer()
	for range b.N {
		for r := range reps {
			for j := range kinds {
				s := kinds[(r+j)%len(kinds)]
				plan := SizeBuild(s.tbl, s.ix, int64(n), 1<<30, 2)
				s.ix.MaintenanceWorkMem, s.ix.ParallelWorkers = plan.Setting(), plan.ParallelWorkers
				if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
					b.Fatal(err)
				}
				info, err := CreateIndex(ctx, conn, s.tbl, s.ix)
				if err != nil {
					b.Fatal(err)
				}
				var lat []time.Duration
				rec := 0.0
				for pass := range 2 { // untimed, then timed
					for i, qv := range queries {
						q := s.q
						q.Vector = qv
						res, err := Search(ctx, conn, s.tbl, q)
						if err != nil {
							b.Fatal(err)
						}
						if pass == 1 {
							lat = append(lat, res.Latency)
							rec += overlapAt(ids(res), truth[i], k)
						}
					}
				}
				slices.Sort(lat)
				build[s.name] = append(build[s.name], info.BuildTime.Seconds())
				size[s.name] = append(size[s.name], float64(info.SizeBytes)/(1<<20))
				p50[s.name] = append(p50[s.name], float64(lat[len(lat)/2].Microseconds()))
				recall[s.name] = append(recall[s.name], rec/float64(nq))
				b.Logf("rep %d %s: build %v, index %d bytes, p50 %v, recall@%d %.4f", r, s.name, info.BuildTime.Round(time.Millisecond),
					info.SizeBytes, lat[len(lat)/2], k, rec/float64(nq))
				if err := DropIndex(ctx, conn, s.tbl, s.ix); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.StopTimer()
	for _, s := range kinds {
		b.ReportMetric(median(build[s.name]), s.name+"-build-s")
		b.ReportMetric(median(size[s.name]), s.name+"-index-MiB")
		b.ReportMetric(median(p50[s.name]), s.name+"-p50-us")
		b.ReportMetric(median(recall[s.name]), s.name+"-recall")
		if s.name != "vector" {
			b.ReportMetric(median(build[s.name])/median(build["vector"]), s.name+"/vector-build")
			b.ReportMetric(median(size[s.name])/median(size["vector"]), s.name+"/vector-index")
			b.ReportMetric(median(p50[s.name])/median(p50["vector"]), s.name+"/vector-p50")
			b.ReportMetric(median(recall[s.name])/median(recall["vector"]), s.name+"/vector-recall")
		}
	}
}

// latentRows makes n seeded unit vectors of dims dimensions that vary in
// a latent space of latent dimensions (a fixed random linear map of
// Gaussian latent vectors, plus 10% isotropic noise): like text
// embeddings, and unlike uniformly random vectors, whose neighbours are
// all about equally far, they have nearest neighbours worth finding.
func latentRows(n, dims, latent int) []Row {
	rng := rand.New(rand.NewPCG(42, 8))
	basis := make([][]float64, latent)
	for i := range basis {
		basis[i] = make([]float64, dims)
		for j := range basis[i] {
			basis[i][j] = rng.NormFloat64()
		}
	}
	rows := make([]Row, n)
	for i := range rows {
		v := make([]float64, dims)
		for _, b := range basis {
			z := rng.NormFloat64()
			for j := range v {
				v[j] += z * b[j]
			}
		}
		var ss float64
		for j := range v {
			v[j] += 0.1 * math.Sqrt(float64(latent)) * rng.NormFloat64()
			ss += v[j] * v[j]
		}
		e := make([]float32, dims)
		for j := range v {
			e[j] = float32(v[j] / math.Sqrt(ss))
		}
		rows[i] = Row{ID: strconv.Itoa(i), DocID: strconv.Itoa(i), End: 40, CharEnd: 40,
			Content: "a benchmark chunk", Embedding: e}
	}
	return rows
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}
