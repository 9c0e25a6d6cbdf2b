package experiments

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/offshootdb/offshoot/vectors"
)

// Knobs (environment) of BenchmarkExperimentCycle: EXP_BENCH_CYCLES (cycles
// per side, default 5), EXP_BENCH_VECTORS (rows loaded per cycle, default
// 10000), EXP_BENCH_QUERIES (top-10 searches per cycle, default 100),
// EXP_BENCH_BASE_ROWS (rows of app data in the "base=data" case, about
// 270 bytes each on disk, default 1000000: about 270 MiB).

// cycleSettings are the Postgres settings of both sides: the endpoint's
// defaults, spelled out so that the native cluster runs with the same.
var cycleSettings = map[string]string{"shared_buffers": "128MB", "max_connections": "100", "max_wal_size": "1GB"}

// cycleSide is one way of running experiment cycles: fork the base, hand
// back a connection to the fork, and discard the fork.
type cycleSide struct {
	name    string
	fork    func(ctx context.Context, name string) (*pgx.Conn, func(), error)
	discard func(ctx context.Context, name string) error
}

// cyclePhases are the durations of one cycle's phases.
type cyclePhases struct{ fork, load, index, query, discard, total time.Duration }

// BenchmarkExperimentCycle measures the experiment cycle of issue 9: fork
// the base, load 10k seeded vector(384) rows (binary COPY, vectors.Load),
// build an HNSW index (cosine, m 16, ef_construction 64), run 100 top-10
// searches (ef_search 40), discard the fork. offshoot forks a
// copy-on-write branch through the facade exactly as a run does
// (storeBranches: a pinned base, CreateBranch, the branch's own endpoint on
// a FUSE mount, DeleteBranch); the baseline is native Postgres on local
// disk, same binary and settings, forking with CREATE DATABASE ... TEMPLATE
// (the default WAL_LOG strategy) and discarding with DROP DATABASE. Cycles
// alternate between the sides (and which goes first) so machine noise hits
// both. Two bases: "empty" (pgvector only, as the issue states the cycle)
// and "data" (about 270 MiB of app data in the base, the realistic case of
// a production-like branch). Reports cycles per hour of each side and
// their ratio offshoot/native (higher is better), plus per-phase medians.
func BenchmarkExperimentCycle(b *testing.B) {
	for _, bc := range []struct {
		name     string
		baseRows int
	}{{"empty", 0}, {"data", cycleEnvInt("EXP_BENCH_BASE_ROWS", 1000000)}} {
		b.Run("base="+bc.name, func(b *testing.B) { benchmarkCycle(b, bc.baseRows) })
	}
}

func benchmarkCycle(b *testing.B, baseRows int) {
	ctx := context.Background()
	const dim = 384
	cycles := cycleEnvInt("EXP_BENCH_CYCLES", 5)
	n := cycleEnvInt("EXP_BENCH_VECTORS", 10000)
	nq := cycleEnvInt("EXP_BENCH_QUERIES", 100)
	rng := rand.New(rand.NewSource(20261202))
	rows := make([]vectors.Row, n)
	for i := range rows {
		id := strconv.Itoa(i + 1)
		rows[i] = vectors.Row{ID: id, DocID: id, Embedding: randomVector(rng, dim)}
	}
	queries := make([][]float32, nq)
	for i := range queries {
		queries[i] = randomVector(rng, dim)
	}
	fill := fmt.Sprintf("CREATE TABLE app_data AS SELECT g AS id, md5(g::text) || repeat('x', 200) AS payload FROM generate_series(1, %d) g", baseRows)
	sides := []cycleSide{offshootCycleSide(b, fill, baseRows > 0), nativeCycleSide(b, fill, baseRows > 0)}
	b.Logf("%d cycles per side: %d x %d vectors, HNSW, %d queries; base app data %d rows", cycles, n, dim, nq, baseRows)

	phases := map[string][]cyclePhases{}
	b.ResetTimer()
	for c := range cycles {
		order := sides
		if c%2 == 1 {
			order = []cycleSide{sides[1], sides[0]}
		}
		for _, sd := range order {
			p, err := runCycle(ctx, sd, fmt.Sprintf("cycle-%d", c), rows, queries)
			if err != nil {
				b.Fatalf("%s cycle %d: %v", sd.name, c, err)
			}
			phases[sd.name] = append(phases[sd.name], p)
			b.Logf("%s cycle %d: fork %v load %v index %v query %v discard %v, total %v", sd.name, c,
				p.fork.Round(time.Millisecond), p.load.Round(time.Millisecond), p.index.Round(time.Millisecond),
				p.query.Round(time.Millisecond), p.discard.Round(time.Millisecond), p.total.Round(time.Millisecond))
		}
	}
	b.StopTimer()
	perHour := map[string]float64{}
	for name, ps := range phases {
		med := func(f func(cyclePhases) time.Duration) time.Duration {
			ds := make([]time.Duration, len(ps))
			for i, p := range ps {
				ds[i] = f(p)
			}
			sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
			return ds[len(ds)/2]
		}
		var total time.Duration
		for _, p := range ps {
			total += p.total
		}
		perHour[name] = float64(len(ps)) / total.Hours()
		for _, m := range []struct {
			unit string
			f    func(cyclePhases) time.Duration
		}{
			{"fork", func(p cyclePhases) time.Duration { return p.fork }},
			{"load", func(p cyclePhases) time.Duration { return p.load }},
			{"index", func(p cyclePhases) time.Duration { return p.index }},
			{"query", func(p cyclePhases) time.Duration { return p.query }},
			{"discard", func(p cyclePhases) time.Duration { return p.discard }},
		} {
			b.ReportMetric(float64(med(m.f).Microseconds())/1000, name+"-"+m.unit+"-ms")
		}
	}
	b.ReportMetric(perHour["offshoot"], "offshoot-cycles/h")
	b.ReportMetric(perHour["native"], "native-cycles/h")
	b.ReportMetric(perHour["offshoot"]/perHour["native"], "ratio")
}

// runCycle runs one experiment cycle on side sd with a fork named name.
func runCycle(ctx context.Context, sd cycleSide, name string, rows []vectors.Row, queries [][]float32) (cyclePhases, error) {
	var p cyclePhases
	start := time.Now()
	conn, release, err := sd.fork(ctx, name)
	p.fork = time.Since(start)
	if err != nil {
		return p, fmt.Errorf("fork: %w", err)
	}
	work := func() error {
		defer release()
		if err := vectors.RegisterTypes(ctx, conn); err != nil {
			return err
		}
		tbl := vectors.Table{Name: "items", Dims: len(rows[0].Embedding)}
		t := time.Now()
		if err := vectors.CreateTable(ctx, conn, tbl); err != nil {
			return fmt.Errorf("create table: %w", err)
		}
		if _, err := vectors.Load(ctx, conn, tbl, rows, vectors.LoadOptions{}); err != nil {
			return fmt.Errorf("load: %w", err)
		}
		p.load = time.Since(t)
		t = time.Now()
		if _, err := vectors.CreateIndex(ctx, conn, tbl, vectors.Index{Method: vectors.HNSW, Metric: vectors.Cosine, MaintenanceWorkMem: "256MB"}); err != nil {
			return fmt.Errorf("index: %w", err)
		}
		p.index = time.Since(t)
		t = time.Now()
		for i, q := range queries {
			res, err := vectors.Search(ctx, conn, tbl, vectors.Query{Vector: q, K: 10, Metric: vectors.Cosine, EfSearch: 40})
			if err != nil {
				return fmt.Errorf("query %d: %w", i, err)
			}
			if len(res.Hits) != 10 {
				return fmt.Errorf("query %d: %d hits, want 10", i, len(res.Hits))
			}
		}
		p.query = time.Since(t)
		return nil
	}
	if err := work(); err != nil {
		_ = sd.discard(ctx, name)
		return p, err
	}
	t := time.Now()
	if err := sd.discard(ctx, name); err != nil {
		return p, fmt.Errorf("discard: %w", err)
	}
	p.discard = time.Since(t)
	p.total = time.Since(start)
	return p, nil
}

// offshootCycleSide is the real stack (storeService) with project
// "bench", whose main branch is the base.
func offshootCycleSide(b *testing.B, fill string, withData bool) cycleSide {
	ctx := context.Background()
	svc := storeService(b, "bench", cycleSettings)
	actx := WithCaller(ctx, LocalCaller)
	if withData {
		// As an admin: CHECKPOINT needs a superuser (or pg_checkpoint),
		// which the ReadWrite role is not since issue 19.
		conn, release, err := svc.connect(actx, "bench", "main", Superuser)
		if err != nil {
			b.Fatal(err)
		}
		for _, q := range []string{fill, "CHECKPOINT"} {
			if _, err := conn.Exec(ctx, q); err != nil {
				b.Fatal(err)
			}
		}
		release()
	}
	br := storeBranches{svc}
	base, err := br.Resolve(actx, "bench", BranchPoint{Branch: "main"})
	if err != nil {
		b.Fatal(err)
	}
	return cycleSide{
		name: "offshoot",
		fork: func(ctx context.Context, name string) (*pgx.Conn, func(), error) {
			ctx = WithCaller(ctx, LocalCaller)
			if _, err := br.Fork(ctx, "bench", base, name); err != nil {
				return nil, nil, err
			}
			return svc.connect(ctx, "bench", name, ReadWrite)
		},
		discard: func(ctx context.Context, name string) error {
			return br.Discard(WithCaller(ctx, LocalCaller), "bench", name)
		},
	}
}

// nativeCycleSide is a cluster on local disk whose database base (with
// pgvector) is the template of every fork.
func nativeCycleSide(b *testing.B, fill string, withData bool) cycleSide {
	ctx := context.Background()
	c := pgtest.New(b, cycleSettings)
	exec := func(ctx context.Context, db string, sqls ...string) error {
		conn, err := pgx.Connect(ctx, c.Postmaster.ConnString("postgres", "", db))
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		for _, q := range sqls {
			if _, err := conn.Exec(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		return nil
	}
	setup := []string{"CREATE EXTENSION IF NOT EXISTS vector"}
	if withData {
		setup = append(setup, fill)
	}
	if err := exec(ctx, "postgres", "CREATE DATABASE base"); err != nil {
		b.Fatal(err)
	}
	if err := exec(ctx, "base", append(setup, "CHECKPOINT")...); err != nil {
		b.Fatal(err)
	}
	if conn, err := pgx.Connect(ctx, c.ConnString); err == nil {
		var size int64
		if conn.QueryRow(ctx, "SELECT pg_database_size('base')").Scan(&size) == nil {
			b.Logf("native base database: %d MiB", size>>20)
		}
		conn.Close(ctx)
	}
	db := func(name string) string { return pgx.Identifier{"fork_" + name}.Sanitize() }
	return cycleSide{
		name: "native",
		fork: func(ctx context.Context, name string) (*pgx.Conn, func(), error) {
			if err := exec(ctx, "postgres", "CREATE DATABASE "+db(name)+" TEMPLATE base"); err != nil {
				return nil, nil, err
			}
			conn, err := pgx.Connect(ctx, c.Postmaster.ConnString("postgres", "", "fork_"+name))
			if err != nil {
				return nil, nil, err
			}
			return conn, func() { conn.Close(context.Background()) }, nil
		},
		discard: func(ctx context.Context, name string) error {
			return exec(ctx, "postgres", "DROP DATABASE "+db(name)+" WITH (FORCE)")
		},
	}
}

// randomVector is a seeded vector of dim uniform [-1,1) components.
func randomVector(rng *rand.Rand, dim int) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = rng.Float32()*2 - 1
	}
	return v
}

func cycleEnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v >= 0 {
		return v
	}
	return def
}
