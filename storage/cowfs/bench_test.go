package cowfs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/offshootdb/offshoot/compute/pg"
	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/offshootdb/offshoot/storage"
)

// Benchmarks compare Postgres on a branch mount with the same Postgres on
// plain local disk, in the same run, and report ratios (branch/native):
//
//	go test ./storage/cowfs -run '^$' -bench . -benchtime 1x -timeout 30m
//
// Knobs (environment): COWFS_BENCH_SCALE (pgbench scale, default 10),
// COWFS_BENCH_SECONDS (per pgbench mode and cluster, split into
// COWFS_BENCH_ROUNDS rounds, default 20 and 3), COWFS_BENCH_CLIENTS
// (TPC-B's connections, default 4; select-only takes 2),
// COWFS_BENCH_FORK_SCALE (database size for the fork benchmark, default
// 16, about 250 MB; 68 is about 1 GiB), COWFS_BENCH_FORK_REPS (its
// repetitions, default 5),
// COWFS_BENCH_CPUPROFILE (BenchmarkPgbench writes a CPU profile of this
// process for each pgbench run to $COWFS_BENCH_CPUPROFILE.<cluster>.<mode>.<round>),
// COWFS_BENCH_WAL_COMPRESSION (both clusters' wal_compression, default
// lz4 as on compute's endpoints), COWFS_BENCH_LOCAL_WAL (tier, the default
// as in `offshoot serve` since session 37's benchmarks: branch clusters run
// with MountOptions.LocalWAL, their pg_wal on local disk and absorbed by
// the store, docs/wal-tier.md; store: their WAL goes through the mount, as
// with wal_path: store; symlink: their pg_wal is a plain symlink to local
// disk and never reaches the store, the ceiling of such a tier, an
// experiment and not a mode offshoot has).

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// benchSettings are the same for native and branch clusters.
var benchSettings = map[string]string{
	"shared_buffers":  "128MB",
	"max_wal_size":    "1GB",
	"max_connections": "30",
}

// branchSettings are benchSettings plus what compute sets on every
// endpoint for its copy-on-write mount (compute/start.go): WAL segments
// are created, not recycled, and backends that write pages themselves ask
// for their write-back every 256 kB. (wal_compression, which compute sets
// too, is set on both; see init.)
var branchSettings = map[string]string{
	"shared_buffers":      "128MB",
	"max_wal_size":        "1GB",
	"max_connections":     "30",
	"wal_recycle":         "off",
	"backend_flush_after": "256kB",
}

// Both clusters compress full-page images as compute does on every
// endpoint (wal_compression=lz4), unless COWFS_BENCH_WAL_COMPRESSION
// names another value (off, pglz, zstd).
func init() {
	v := os.Getenv("COWFS_BENCH_WAL_COMPRESSION")
	if v == "" {
		v = "lz4"
	}
	benchSettings["wal_compression"] = v
	branchSettings["wal_compression"] = v
}

// benchCluster is a Postgres cluster for a benchmark: native (data on
// local disk) or on a branch mount.
type benchCluster struct {
	name  string
	s     *server
	mount *MountPoint // nil for native
}

func nativeCluster(b *testing.B, dir string) *benchCluster {
	ctx := context.Background()
	data := filepath.Join(dir, "native")
	if err := pg.InitDB(ctx, pg.InitOptions{DataDir: data}); err != nil {
		b.Fatal(err)
	}
	return &benchCluster{name: "native", s: startPG(b, data, dir, "", benchSettings)}
}

// floorCluster is a cluster on a pass-through FUSE file system: go-fuse's
// loopback over a directory on local disk, mounted with the options Mount
// uses (fuseOptions: writeback cache, 1 MiB writes, 64 background
// requests, explicit cache control, noatime), pg_wal a symlink to local
// disk as with the WAL tier.
// Its server only forwards each request to the directory, so its time is
// what FUSE itself costs Postgres here: the floor of any store behind a
// FUSE mount, which the branch's ratio can be read against.
func floorCluster(b *testing.B, dir string) *benchCluster {
	ctx := context.Background()
	back, mnt, wal := filepath.Join(dir, "floor-back"), filepath.Join(dir, "floor"), filepath.Join(dir, "floor-wal")
	for _, d := range []string{back, mnt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	root, err := fusefs.NewLoopbackRoot(back)
	if err != nil {
		b.Fatal(err)
	}
	long := time.Hour
	mo := fuseOptions(true, true)
	mo.FsName, mo.Name = "floor", "floor"
	srv, err := fusefs.Mount(mnt, root, &fusefs.Options{AttrTimeout: &long, EntryTimeout: &long, NullPermissions: true, MountOptions: *mo})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Unmount() }) // after Postgres stops (cleanups run last first)
	data := filepath.Join(mnt, "data")
	if err := pg.InitDB(ctx, pg.InitOptions{DataDir: data}); err != nil {
		b.Fatal(err)
	}
	walToLocal(b, data, wal)
	return &benchCluster{name: "fuse-floor", s: startPG(b, data, dir, "", branchSettings)}
}

// walToLocal moves a cluster's pg_wal to local, leaving a symlink to it.
func walToLocal(b *testing.B, data, local string) {
	pgWAL := filepath.Join(data, "pg_wal")
	for _, args := range [][]string{{"cp", "-a", pgWAL, local}, {"rm", "-r", pgWAL}, {"ln", "-s", local, pgWAL}, {"chown", "-h", "postgres:postgres", pgWAL}} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			b.Fatalf("%v: %v: %s", args, err, out)
		}
	}
}

func branchCluster(b *testing.B, f *fixture, project string, o MountOptions) *benchCluster {
	ctx := context.Background()
	if _, _, err := f.s.CreateProject(project); err != nil {
		b.Fatal(err)
	}
	h := f.head(project, "main")
	m := f.mount(project, h, o)
	if err := pg.InitDB(ctx, pg.InitOptions{DataDir: m.Dir()}); err != nil {
		b.Fatal(err)
	}
	switch v := os.Getenv("COWFS_BENCH_LOCAL_WAL"); v {
	case "store": // wal_path: store, the WAL through the mount
		b.Logf("%s: pg_wal through the mount", project)
	case "", "tier": // the mount's local WAL tier, serve's default (wal_path: local)
		if err := m.Unmount(ctx); err != nil {
			b.Fatal(err)
		}
		o.LocalWAL = filepath.Join(f.dir, project+"-localwal")
		m = f.mount(project+"-tier", h, o)
		b.Logf("%s: pg_wal on local disk, absorbed by the store (%s)", project, o.LocalWAL)
	case "symlink": // the ceiling: pg_wal on local disk, never in the store
		local := filepath.Join(f.dir, project+"-wal")
		walToLocal(b, m.Dir(), local)
		b.Logf("%s: pg_wal on local disk, not in the store (%s)", project, local)
	default:
		b.Fatalf("COWFS_BENCH_LOCAL_WAL=%q: want tier, store or symlink", v)
	}
	return &benchCluster{name: project, s: startPG(b, m.Dir(), f.dir, "", branchSettings), mount: m}
}

// asCompute is the mount options compute gives an endpoint's branch
// (compute/cowvolumes.go): postmaster.pid volatile (every mount removes
// it), and under the local WAL tier (COWFS_BENCH_LOCAL_WAL empty or tier,
// serve's default) pg_wal on local disk.
func asCompute(f *fixture, name string) MountOptions {
	o := MountOptions{Volatile: []string{"postmaster.pid"}}
	if v := os.Getenv("COWFS_BENCH_LOCAL_WAL"); v == "" || v == "tier" {
		o.LocalWAL = filepath.Join(f.dir, name+"-localwal")
	}
	return o
}

// BenchmarkPgbench: pgbench initialization (bulk COPY, index build,
// vacuum), TPC-B and select-only, native vs branch (default mount
// options), and branch with the FUSE writeback cache (the default) vs
// without. Each of the three is measured in COWFS_BENCH_ROUNDS rounds (3),
// the clusters taking turns in an order rotated from round to round so
// that noise from other work on the machine hits every cluster alike; a
// ratio is the median of the rounds' ratios, a TPS the mean of the rounds'.
func BenchmarkPgbench(b *testing.B) {
	ctx := context.Background()
	scale := envInt("COWFS_BENCH_SCALE", 10)
	secs := envInt("COWFS_BENCH_SECONDS", 20)
	clients := envInt("COWFS_BENCH_CLIENTS", 4)
	rounds := max(envInt("COWFS_BENCH_ROUNDS", 3), 1)
	dir := pgtest.Dir(b)
	f := newFixture(b, nil)
	clusters := []*benchCluster{
		nativeCluster(b, dir),
		branchCluster(b, f, "branch", MountOptions{}),
		branchCluster(b, f, "branch-nowb", MountOptions{NoWritebackCache: true}),
	}
	// The pass-through FUSE floor takes part in the load only.
	loaders := append(slices.Clone(clusters), floorCluster(b, dir))
	// inTurn runs one round: every cluster of cs once, starting with a
	// different one each round.
	inTurn := func(round int, cs []*benchCluster, run func(c *benchCluster)) {
		for k := range cs {
			run(cs[(k+round)%len(cs)])
		}
	}
	report := func(metric string, perRound map[string][]float64) {
		b.ReportMetric(medianRatio(perRound["branch"], perRound["native"]), metric+"-ratio")
		b.ReportMetric(medianRatio(perRound["branch"], perRound["branch-nowb"]), metric+"-wb/nowb")
		b.Logf("%s per round: native %.3f, branch %.3f, branch-nowb %.3f", metric, perRound["native"], perRound["branch"], perRound["branch-nowb"])
	}

	initTime := map[string][]float64{} // seconds per round
	for round := range rounds {
		inTurn(round, loaders, func(c *benchCluster) {
			stop := startProfile(b, fmt.Sprintf("%s.init.%d", c.name, round))
			start, cpu0, idle0 := time.Now(), processCPU(), machineIdle()
			_, out := c.s.pgbenchOut(ctx, "-i", "-q", "-s", strconv.Itoa(scale))
			loaded := time.Since(start)
			c.s.exec(ctx, "CHECKPOINT")
			d := time.Since(start)
			stop()
			initTime[c.name] = append(initTime[c.name], d.Seconds())
			// pgbench is a process of its own: this one is the store and its
			// FUSE server (idle for the native cluster). Its own line names
			// the phases: drop, create, generate (COPY), vacuum, primary keys.
			b.Logf("%s round %d: pgbench -i -s %d: %v (CHECKPOINT after it %v); CPU of this process %v; the machine idle %.0f%%; %s",
				c.name, round, scale, d, d-loaded, processCPU()-cpu0, 100*idleShare(idle0, d), pgbenchDoneRE.FindString(out))
		})
	}
	report("init-time", initTime)
	b.ReportMetric(medianRatio(initTime["fuse-floor"], initTime["native"]), "init-time-floor-ratio")
	b.ReportMetric(medianRatio(initTime["branch"], initTime["fuse-floor"]), "init-time-vs-floor")
	b.Logf("init-time per round: fuse-floor %.3f", initTime["fuse-floor"])

	for _, mode := range []struct {
		name           string
		conns, threads int
		args           []string
		// settle runs VACUUM and CHECKPOINT before each round.
		settle bool
	}{
		{"tpcb", clients, 2, nil, false},
		// Two connections, a pgbench thread each: with two connections a
		// thread, select-only on this 2-vCPU machine flipped from run to
		// run between two speeds (59-61k and 89-98k TPS natively, with
		// 10,000 interrupts a second in the slow one), whichever cluster
		// it ran on; with four threads it still did beside the other
		// clusters. The VACUUM and CHECKPOINT first (-n: not pgbench's
		// own VACUUM) write out what TPC-B left behind, so that a round
		// measures reads and not that write-back.
		{"select-only", 2, 2, []string{"-S", "-n"}, true},
	} {
		tps := map[string][]float64{}
		for round := range rounds {
			inTurn(round, clusters, func(c *benchCluster) {
				if mode.settle {
					c.s.exec(ctx, "VACUUM")
					c.s.exec(ctx, "CHECKPOINT")
				}
				args := append([]string{"-c", strconv.Itoa(mode.conns), "-j", strconv.Itoa(mode.threads), "-T", strconv.Itoa(max(secs/rounds, 1)), "-r"}, mode.args...)
				var st0 statsSnap
				if c.mount != nil {
					st0 = snapStats(c.mount.Stats())
				}
				eng0, cpu0 := f.s.EngineStats(), processCPU()
				stop := startProfile(b, fmt.Sprintf("%s.%s.%d", c.name, mode.name, round))
				t, out := c.s.pgbenchOut(ctx, args...)
				stop()
				b.Logf("%s %s round %d: %.0f tps", c.name, mode.name, round, t)
				if c.mount != nil {
					logPerTransaction(b, out, snapStats(c.mount.Stats()).sub(st0), f.s.EngineStats().Sub(eng0), processCPU()-cpu0)
				} else {
					logPerTransaction(b, out, statsSnap{}, storage.EngineStats{}, 0)
				}
				tps[c.name] = append(tps[c.name], t)
			})
		}
		b.ReportMetric(mean(tps["native"]), mode.name+"-native-tps")
		b.ReportMetric(mean(tps["branch"]), mode.name+"-branch-tps")
		report(mode.name, tps)
	}
}

// medianRatio is the median over rounds of a[i]/b[i] (the upper one of an
// even count).
func medianRatio(a, b []float64) float64 {
	var rs []float64
	for i := range min(len(a), len(b)) {
		rs = append(rs, a[i]/b[i])
	}
	return median(rs)
}

// median is the median of xs (the upper one of an even count; 0 for none).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func mean(xs []float64) float64 {
	var sum float64
	for _, x := range xs {
		sum += x
	}
	return sum / float64(max(len(xs), 1))
}

// forkSettings start Postgres on a fork as compute should: a mount has
// synced the store when it came up, so the fsync of every file of PGDATA
// that crash recovery starts with (recovery_init_sync_method=fsync) is
// redundant; syncfs skips it (370 ms of 600 ms for a fresh cluster).
var forkSettings = map[string]string{
	"shared_buffers":            "128MB",
	"max_wal_size":              "1GB",
	"max_connections":           "30",
	"recovery_init_sync_method": "syncfs",
}

// BenchmarkFork: fork a running branch holding a pgbench database and
// answer a first query on the fork (fork, mount with compute's options,
// start Postgres with crash recovery, waiting for it as compute does,
// connect, query) vs CREATE
// DATABASE ... TEMPLATE of the same database on native disk and a first
// query on the copy (both strategies). Each iteration runs
// COWFS_BENCH_FORK_REPS (default 5) repetitions of the three, interleaved,
// and reports their medians; every copy starts after a CHECKPOINT (not
// timed) and is dropped after its query.
func BenchmarkFork(b *testing.B) {
	ctx := context.Background()
	scale := envInt("COWFS_BENCH_FORK_SCALE", 16)
	reps := envInt("COWFS_BENCH_FORK_REPS", 5)
	dir := pgtest.Dir(b)
	f := newFixture(b, nil)
	native := nativeCluster(b, dir)
	branch := branchCluster(b, f, "p", MountOptions{})
	for _, c := range []*benchCluster{native, branch} {
		c.s.exec(ctx, "CREATE DATABASE bench")
		if _, err := c.s.client(ctx, "pgbench", "-i", "-q", "-s", strconv.Itoa(scale), "bench"); err != nil {
			b.Fatal(err)
		}
		c.s.exec(ctx, "CHECKPOINT")
	}
	size := native.s.queryInt(ctx, "SELECT pg_database_size('bench')")
	b.Logf("database size %d MB", size>>20)

	firstQuery := func(s *server, db string) {
		conn, err := pgxConnect(ctx, s, db)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close(ctx)
		var n int64
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pgbench_branches").Scan(&n); err != nil || n != int64(scale) {
			b.Fatalf("first query: %d %v", n, err)
		}
	}

	var forkTimes, templateTimes, fileCopyTimes []float64
	for i := range b.N {
		for rep := range reps {
			name := fmt.Sprintf("fork%d-%d", i, rep)
			start := time.Now()
			if _, err := f.s.Fork("p", "main", name, storage.AtHead(), storage.BranchOptions{}); err != nil {
				b.Fatal(err)
			}
			forked := time.Since(start)
			m := f.mount(name, f.head("p", name), asCompute(f, name))
			mounted := time.Since(start)
			removePidFile(b, m.Dir())
			s := startPGAsCompute(b, m.Dir(), f.dir, "", forkSettings)
			ready := time.Since(start)
			firstQuery(s, "bench")
			forkTimes = append(forkTimes, time.Since(start).Seconds())
			b.Logf("fork %v, mounted %v, postgres ready %v, first query answered %v", forked, mounted, ready, time.Since(start))
			s.stop(pg.Immediate)

			for _, c := range []struct {
				strategy string
				times    *[]float64
			}{{"WAL_LOG", &templateTimes}, {"FILE_COPY", &fileCopyTimes}} {
				db := fmt.Sprintf("copy%d_%d_%s", i, rep, strings.ToLower(c.strategy))
				// Each copy starts from a clean cluster: FILE_COPY begins with a
				// checkpoint, which would otherwise write out the copy before it.
				native.s.exec(ctx, "CHECKPOINT")
				start = time.Now()
				native.s.exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE bench STRATEGY %s", db, c.strategy))
				firstQuery(native.s, db)
				*c.times = append(*c.times, time.Since(start).Seconds())
				native.s.exec(ctx, "DROP DATABASE "+db)
			}
		}
	}
	fork, template, fileCopy := median(forkTimes), median(templateTimes), median(fileCopyTimes)
	b.Logf("fork+query %.4f s, TEMPLATE %.3f s, FILE_COPY %.3f s (runs: %.4f; %.3f; %.3f)", fork, template, fileCopy, forkTimes, templateTimes, fileCopyTimes)
	b.ReportMetric(float64(size>>20), "db-MB")
	b.ReportMetric(fork, "fork+query-s")
	b.ReportMetric(template, "template-s")
	b.ReportMetric(fileCopy, "template-file-copy-s")
	b.ReportMetric(fork/min(template, fileCopy), "fork/template-ratio")
}

// startProfile starts a CPU profile of this process (the store and its
// FUSE servers) into $COWFS_BENCH_CPUPROFILE.<name> when that is set, and
// returns what stops it.
func startProfile(b *testing.B, name string) (stop func()) {
	path := os.Getenv("COWFS_BENCH_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	out, err := os.Create(path + "." + name)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = out.Close()
	}
}

var (
	pgbenchDoneRE = regexp.MustCompile(`done in .*`)
	txnsRE        = regexp.MustCompile(`number of transactions actually processed: ([0-9]+)`)
	latenciesRE   = regexp.MustCompile(`(?s)statement latencies in milliseconds.*`)
)

// logPerTransaction logs what one pgbench run cost per transaction: the
// statements' mean latencies (pgbench -r) and, on a branch, the FUSE
// requests, the engine's writes and the CPU of this process (the store
// and its FUSE servers).
func logPerTransaction(b *testing.B, out string, st statsSnap, e storage.EngineStats, cpu time.Duration) {
	if l := latenciesRE.FindString(out); l != "" {
		b.Logf("%s", strings.TrimSpace(l))
	}
	m := txnsRE.FindStringSubmatch(out)
	if m == nil || cpu == 0 {
		return
	}
	n, _ := strconv.ParseFloat(m[1], 64)
	if n == 0 {
		return
	}
	b.Logf("per transaction (%.0f): server CPU %.0f µs; FUSE %.3f reads, %.2f writes of %.0f B, %.3f setattrs, %.3f getattrs, %.2f fsyncs, %.2f store syncs; engine WAL %.0f B, flushes %.0f B",
		n, float64(cpu.Microseconds())/n, float64(st.reads)/n, float64(st.writes)/n, float64(st.writeBytes)/float64(max(st.writes, 1)),
		float64(st.setattrs)/n, float64(st.getattrs)/n, float64(st.fsyncs)/n, float64(st.storeSyncs)/n,
		float64(e.WALBytesWritten)/n, float64(e.FlushTableBytes+e.FlushBlobBytes)/n)
}

// BenchmarkMountLocalWAL: what the local WAL tier adds to an endpoint's
// wake and suspend: mount and unmount of a head whose cluster was shut
// down cleanly, with MountOptions.LocalWAL (the store's pg_wal copied out,
// then absorbed back and removed) and without, alternating.
//
//	go test ./storage/cowfs -run '^$' -bench '^BenchmarkMountLocalWAL$' -benchtime 20x
func BenchmarkMountLocalWAL(b *testing.B) {
	ctx := context.Background()
	f := newFixture(b, nil)
	pw := f.initProject("p")
	h := f.head("p", "main")
	m := f.mount("main", h, MountOptions{})
	s := startPG(b, m.Dir(), f.dir, pw, branchSettings)
	s.pgbench(ctx, "-i", "-q", "-s", "2")
	s.stop(pg.Fast)
	if err := m.Unmount(ctx); err != nil {
		b.Fatal(err)
	}
	local := filepath.Join(f.dir, "wal-main")
	cycle := func(o MountOptions) time.Duration {
		t0 := time.Now()
		m, err := Mount(f.mountDir("main"), h, o)
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Unmount(ctx); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	var with, without []time.Duration
	b.ResetTimer()
	for i := range b.N {
		if i%2 == 0 {
			with = append(with, cycle(MountOptions{LocalWAL: local}))
			without = append(without, cycle(MountOptions{}))
		} else {
			without = append(without, cycle(MountOptions{}))
			with = append(with, cycle(MountOptions{LocalWAL: local}))
		}
	}
	b.StopTimer()
	med := func(d []time.Duration) time.Duration {
		slices.Sort(d)
		return d[len(d)/2]
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(med(with).Microseconds())/1000, "localwal-ms")
	b.ReportMetric(float64(med(without).Microseconds())/1000, "plain-ms")
}
