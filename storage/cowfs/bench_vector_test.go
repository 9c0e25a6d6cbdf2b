package cowfs

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/offshootdb/offshoot/storage"
	"github.com/offshootdb/offshoot/vectors"
	"github.com/pgvector/pgvector-go"
)

// Knobs (environment) of the pgvector and bulk-load benchmarks:
// COWFS_BENCH_VECTORS (rows of the HNSW benchmark, default 100000),
// COWFS_BENCH_QUERIES (timed HNSW searches per cluster, default 2000),
// COWFS_BENCH_COPY_ROWS (rows of the COPY benchmark, default 1000000).

// benchSeed seeds the benchmarks' vectors so that every run loads and
// queries the same data.
const benchSeed = 20261127

// randomVectors returns n seeded vectors of dim uniform [0,1) components.
func randomVectors(rng *rand.Rand, n, dim int) [][]float32 {
	out := make([][]float32, n)
	for i := range out {
		v := make([]float32, dim)
		for j := range v {
			v[j] = rng.Float32()
		}
		out[i] = v
	}
	return out
}

// benchConn connects to a benchmark cluster's postgres database with the
// pgvector types registered; the connection closes when the benchmark ends.
func benchConn(b *testing.B, c *benchCluster) *pgx.Conn {
	b.Helper()
	ctx := context.Background()
	conn := c.s.connect(ctx)
	if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS vector"); err != nil {
		b.Fatal(err)
	}
	if err := vectors.RegisterTypes(ctx, conn); err != nil {
		b.Fatal(err)
	}
	return conn
}

// BenchmarkHNSW: load seeded random vector(384) rows (binary COPY,
// vectors.Load) into a branch and into native disk, build an HNSW index
// (L2, m 16, ef_construction 64, maintenance_work_mem 512MB so the graph is
// built in memory as pgvector recommends) on each, then time single-client
// top-10 searches with hnsw.ef_search 40 over a fixed set of seeded query
// vectors, interleaving branch and native in slices after a warm-up.
// Reports build times and QPS and their ratios branch/native.
func BenchmarkHNSW(b *testing.B) {
	ctx := context.Background()
	const dim = 384
	n := envInt("COWFS_BENCH_VECTORS", 100000)
	nq := envInt("COWFS_BENCH_QUERIES", 2000)
	b.Logf("seed %d, %d vectors x %d dims, %d queries", benchSeed, n, dim, nq)
	rng := rand.New(rand.NewSource(benchSeed))
	embs := randomVectors(rng, n, dim)
	rows := make([]vectors.Row, n)
	for i, e := range embs {
		id := strconv.Itoa(i + 1)
		rows[i] = vectors.Row{ID: id, DocID: id, Embedding: e}
	}
	queries := randomVectors(rng, nq, dim)
	warm := randomVectors(rng, max(nq/10, 1), dim)

	dir := pgtest.Dir(b)
	f := newFixture(b, nil)
	native := nativeCluster(b, dir)
	branch := branchCluster(b, f, "branch", MountOptions{})
	clusters := []*benchCluster{native, branch}
	conns := map[string]*pgx.Conn{}
	t := vectors.Table{Name: "items", Dims: dim}
	ix := vectors.Index{Method: vectors.HNSW, Metric: vectors.L2, MaintenanceWorkMem: "512MB"}

	for _, c := range clusters {
		conn := benchConn(b, c)
		conns[c.name] = conn
		start := time.Now()
		if err := vectors.CreateTable(ctx, conn, t); err != nil {
			b.Fatal(err)
		}
		if _, err := vectors.Load(ctx, conn, t, rows, vectors.LoadOptions{}); err != nil {
			b.Fatal(err)
		}
		c.s.exec(ctx, "VACUUM ANALYZE items", "CHECKPOINT")
		b.Logf("%s: loaded %d rows in %v", c.name, n, time.Since(start))
	}

	build := map[string]time.Duration{}
	for _, c := range clusters {
		info, err := vectors.CreateIndex(ctx, conns[c.name], t, ix)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		c.s.exec(ctx, "CHECKPOINT")
		build[c.name] = info.BuildTime
		b.Logf("%s: HNSW build %v (checkpoint after it %v), index %d MB", c.name, info.BuildTime, time.Since(start), info.SizeBytes>>20)
	}

	const search = "SELECT id FROM items ORDER BY embedding <-> $1 LIMIT 10"
	for _, c := range clusters {
		conn := conns[c.name]
		if _, err := conn.Exec(ctx, "SET hnsw.ef_search = 40"); err != nil {
			b.Fatal(err)
		}
		r, err := conn.Query(ctx, "EXPLAIN "+search, pgvector.NewVector(queries[0]))
		if err != nil {
			b.Fatal(err)
		}
		lines, err := pgx.CollectRows(r, pgx.RowTo[string])
		if err != nil {
			b.Fatal(err)
		}
		if plan := strings.Join(lines, "\n"); !strings.Contains(plan, "Index Scan using "+t.IndexName(ix)) {
			b.Fatalf("%s: search does not use the HNSW index:\n%s", c.name, plan)
		}
	}
	runQueries := func(conn *pgx.Conn, qs [][]float32) {
		for _, q := range qs {
			r, err := conn.Query(ctx, search, pgvector.NewVector(q))
			if err != nil {
				b.Fatal(err)
			}
			ids, err := pgx.CollectRows(r, pgx.RowTo[string])
			if err != nil || len(ids) != 10 {
				b.Fatalf("search: %d hits, %v", len(ids), err)
			}
		}
	}
	for _, c := range clusters {
		runQueries(conns[c.name], warm)
	}
	// Interleave in slices (alternating which cluster goes first) so that
	// noise from other work on the machine hits both alike.
	const slices = 8
	elapsed := map[string]time.Duration{}
	for s := range slices {
		qs := queries[s*nq/slices : (s+1)*nq/slices]
		order := clusters
		if s%2 == 1 {
			order = []*benchCluster{branch, native}
		}
		for _, c := range order {
			start := time.Now()
			runQueries(conns[c.name], qs)
			elapsed[c.name] += time.Since(start)
		}
	}
	qps := func(name string) float64 { return float64(nq) / elapsed[name].Seconds() }
	b.Logf("QPS native %.0f, branch %.0f", qps("native"), qps("branch"))
	b.ReportMetric(build["branch"].Seconds(), "hnsw-build-branch-s")
	b.ReportMetric(build["native"].Seconds(), "hnsw-build-native-s")
	b.ReportMetric(build["branch"].Seconds()/build["native"].Seconds(), "hnsw-build-ratio")
	b.ReportMetric(qps("branch"), "hnsw-qps-branch")
	b.ReportMetric(qps("native"), "hnsw-qps-native")
	b.ReportMetric(qps("branch")/qps("native"), "hnsw-qps-ratio")
}

// accountRows is a pgx.CopyFromSource of n pgbench_accounts-like rows
// (aid, bid, abalance, 84-character filler), generated as they are sent.
type accountRows struct {
	n, i   int
	filler string
}

func (r *accountRows) Next() bool { r.i++; return r.i <= r.n }

func (r *accountRows) Values() ([]any, error) {
	return []any{int32(r.i), int32((r.i-1)/100000 + 1), int32(0), r.filler}, nil
}

func (r *accountRows) Err() error { return nil }

// BenchmarkCopy: bulk load pgbench_accounts-like rows with binary COPY
// (pgx CopyFrom, one statement) into a fresh table on a branch, on native
// disk and on a pass-through FUSE file system (floorCluster), followed by a
// CHECKPOINT so that the time covers writing the table's files, not only
// the WAL. Three rounds, the clusters taking turns in an order rotated from
// round to round. Reports the mean time per load and the median of the
// rounds' ratios branch/native, floor/native and branch/floor.
func BenchmarkCopy(b *testing.B) {
	ctx := context.Background()
	n := envInt("COWFS_BENCH_COPY_ROWS", 1000000)
	dir := pgtest.Dir(b)
	f := newFixture(b, nil)
	native := nativeCluster(b, dir)
	branch := branchCluster(b, f, "branch", MountOptions{})
	floor := floorCluster(b, dir)
	mount := branch.mount
	const rounds = 3
	total, cpu := map[string]time.Duration{}, map[string]time.Duration{}
	perRound := map[string][]float64{} // seconds per load
	clusters := []*benchCluster{native, branch, floor}
	for round := range rounds {
		for k := range clusters {
			c := clusters[(k+round)%len(clusters)]
			table := fmt.Sprintf("accounts%d", round)
			c.s.exec(ctx, "CREATE TABLE "+table+" (aid int NOT NULL, bid int, abalance int, filler char(84))")
			conn := c.s.connect(ctx)
			st0, eng0, cpu0, idle0 := snapStats(mount.Stats()), f.s.EngineStats(), processCPU(), machineIdle()
			start := time.Now()
			got, err := conn.CopyFrom(ctx, pgx.Identifier{table}, []string{"aid", "bid", "abalance", "filler"},
				&accountRows{n: n, filler: strings.Repeat(" ", 84)})
			if err != nil || got != int64(n) {
				b.Fatalf("%s: copy %d of %d rows: %v", c.name, got, n, err)
			}
			copied := time.Since(start)
			if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
				b.Fatal(err)
			}
			d, dc := time.Since(start), processCPU()-cpu0
			total[c.name] += d
			perRound[c.name] = append(perRound[c.name], d.Seconds())
			cpu[c.name] += dc
			b.Logf("%s round %d: COPY %d rows %v, with checkpoint %v; CPU of this process %v; the machine idle %.0f%%",
				c.name, round, n, copied, d, dc, 100*idleShare(idle0, d))
			if c == branch {
				logWritePath(b, snapStats(mount.Stats()).sub(st0), f.s.EngineStats().Sub(eng0))
			}
			conn.Close(ctx)
		}
	}
	br, nat := total["branch"].Seconds()/rounds, total["native"].Seconds()/rounds
	b.ReportMetric(br, "copy-branch-s")
	b.ReportMetric(nat, "copy-native-s")
	b.ReportMetric(medianRatio(perRound["branch"], perRound["native"]), "copy-ratio")
	b.ReportMetric(total["fuse-floor"].Seconds()/rounds, "copy-floor-s")
	b.ReportMetric(medianRatio(perRound["fuse-floor"], perRound["native"]), "copy-floor-ratio")
	b.ReportMetric(medianRatio(perRound["branch"], perRound["fuse-floor"]), "copy-vs-floor")
	// This process is the client on both sides and, on the branch, the
	// store and its FUSE server too: the difference is what the server
	// spends per load, a number other work on the machine barely moves.
	b.ReportMetric((cpu["branch"]-cpu["native"]).Seconds()/rounds, "copy-server-cpu-s")
}

// machineIdle returns the time the machine's CPUs spent idle or waiting
// for I/O so far, summed over CPUs (/proc/stat, at USER_HZ 100): with it
// a load's log says whether the two cores were busy throughout (a load
// bound by CPU) or waited (on the disk or on a request round trip).
func machineIdle() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait ...
	if len(f) < 6 || f[0] != "cpu" {
		return 0
	}
	idle, _ := strconv.ParseInt(f[4], 10, 64)
	iowait, _ := strconv.ParseInt(f[5], 10, 64)
	return time.Duration(idle+iowait) * 10 * time.Millisecond
}

// idleShare is the share of the machine's CPU time spent idle over wall
// time d since the machineIdle reading idle0.
func idleShare(idle0, d time.Duration) float64 {
	return (machineIdle() - idle0).Seconds() / (d.Seconds() * float64(runtime.NumCPU()))
}

// processCPU returns the CPU time (user and system) this process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// statsSnap is a plain copy of a mount's Stats.
type statsSnap struct {
	lookups, getattrs, setattrs, opens, reads, writes, writeBytes, fsyncs, storeSyncs, volatileFsyncs uint64
}

func snapStats(s *Stats) statsSnap {
	return statsSnap{s.Lookups.Load(), s.GetAttrs.Load(), s.SetAttrs.Load(), s.Opens.Load(), s.Reads.Load(),
		s.Writes.Load(), s.WriteBytes.Load(), s.Fsyncs.Load(), s.StoreSyncs.Load(), s.VolatileFsyncs.Load()}
}

func (a statsSnap) sub(b statsSnap) statsSnap {
	return statsSnap{a.lookups - b.lookups, a.getattrs - b.getattrs, a.setattrs - b.setattrs, a.opens - b.opens,
		a.reads - b.reads, a.writes - b.writes, a.writeBytes - b.writeBytes, a.fsyncs - b.fsyncs, a.storeSyncs - b.storeSyncs,
		a.volatileFsyncs - b.volatileFsyncs}
}

func (a statsSnap) String() string {
	return fmt.Sprintf("%d lookups, %d getattrs, %d setattrs, %d opens, %d reads, %d writes (%d B), %d fsyncs (%d store syncs, %d of volatile files)",
		a.lookups, a.getattrs, a.setattrs, a.opens, a.reads, a.writes, a.writeBytes, a.fsyncs, a.storeSyncs, a.volatileFsyncs)
}

// logWritePath logs where a bulk write's bytes went, per 8 KiB that
// Postgres wrote through the mount: FUSE requests and their mean size,
// attribute updates, fsyncs, and what the engine wrote (WAL, flushes,
// compactions) for it.
func logWritePath(b *testing.B, st statsSnap, e storage.EngineStats) {
	pages := float64(st.writeBytes) / 8192
	if pages == 0 {
		return
	}
	per := func(v float64) float64 { return v / pages }
	b.Logf("write path: %.0f MiB through FUSE in %d WRITE requests (mean %.0f KiB), per 8 KiB: %.3f writes, %.4f setattrs, %.4f getattrs, %.5f fsyncs (%d, %d store syncs)",
		float64(st.writeBytes)/(1<<20), st.writes, float64(st.writeBytes)/float64(max(st.writes, 1))/1024,
		per(float64(st.writes)), per(float64(st.setattrs)), per(float64(st.getattrs)), per(float64(st.fsyncs)), st.fsyncs, st.storeSyncs)
	b.Logf("engine per 8 KiB written: WAL %.0f B in / %.0f B written; flushes %d writing %.0f B sstables + %.0f B blob files; compactions %d writing %.0f B sstables + %.0f B blob files; ingested %.0f B; total engine write amplification %.2f",
		per(float64(e.WALBytesIn)), per(float64(e.WALBytesWritten)), e.Flushes, per(float64(e.FlushTableBytes)), per(float64(e.FlushBlobBytes)),
		e.Compactions, per(float64(e.CompactTableBytes)), per(float64(e.CompactBlobBytes)), per(float64(e.IngestedBytes)),
		float64(e.WALBytesWritten+e.FlushTableBytes+e.FlushBlobBytes+e.CompactTableBytes+e.CompactBlobBytes+e.IngestedBytes)/float64(st.writeBytes))
}
