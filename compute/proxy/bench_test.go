package proxy_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/offshootdb/offshoot/compute"
	"github.com/offshootdb/offshoot/compute/pg"
	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/offshootdb/offshoot/compute/proxy"
	"github.com/offshootdb/offshoot/storage"
)

func pct(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkWake measures a wake through the proxy (connect with
// endpoint=main, SELECT 1) from suspended and from stopped against the
// baseline a user would otherwise have: starting postgres natively on a
// data directory on local disk, waiting like pg_ctl -w (postmaster.pid
// status "ready", polled every 2 ms), connecting and running SELECT 1.
// Both run alternately in one loop; it reports p50/p95 of each and their
// ratios. Run with -benchtime=20x or more.
//
// volumes=store is what `offshoot serve` runs: the branch on the store,
// mounted through cowfs with the local WAL tier, its cluster made by
// InitProject, and the native baseline on a copy of that cluster.
// volumes=dirs has the endpoint's PGDATA on a plain directory, which the
// native baseline starts on too: the wake path without the mount.
func BenchmarkWake(b *testing.B) {
	for _, vols := range []string{"store", "dirs"} {
		for _, from := range []compute.State{compute.Suspended, compute.Stopped} {
			b.Run("volumes="+vols+"/from="+string(from), func(b *testing.B) { benchWake(b, vols, from) })
		}
	}
}

func benchWake(b *testing.B, vols string, from compute.State) {
	ctx := context.Background()
	var (
		e        *env
		dataDir  string // the native baseline's PGDATA
		password string
	)
	if vols == "store" {
		e, password = newStoreEnv(b)
	} else {
		e = newEnv(b, compute.Config{}, proxy.Config{}, "main")
		dataDir, _ = e.vols.Path("p", "main")
	}
	dsn := e.dsn("endpoint=main") + " password=" + password
	park := func() {
		var err error
		if from == compute.Stopped {
			err = e.m.Stop(ctx, "p", "main")
		} else {
			err = e.m.Suspend(ctx, "p", "main")
		}
		if err != nil {
			b.Fatal(err)
		}
		if s := e.m.Status("p", "main").State; s != from {
			b.Fatalf("endpoint is %s, want %s", s, from)
		}
	}
	wakeOnce := func() time.Duration { return firstAnswer(b, dsn, time.Now()) }
	wakeOnce() // warm up: first start, page cache
	if vols == "store" {
		// Copy the suspended cluster (shut down cleanly, still mounted) to
		// local disk for the native baseline, its WAL from the local tier.
		if err := e.m.Suspend(ctx, "p", "main"); err != nil {
			b.Fatal(err)
		}
		dataDir = filepath.Join(pgtest.Dir(b), "native")
		if err := copyCluster(e.mountPoint, dataDir); err != nil {
			b.Fatal(err)
		}
	}
	park()
	sockDir := filepath.Join(filepath.Dir(dataDir), "native-sock")
	nativeOnce := func() time.Duration {
		t0 := time.Now()
		pm, err := pg.Start(ctx, pg.Options{DataDir: dataDir, SocketDir: sockDir, LogFile: sockDir + ".log",
			Settings: map[string]string{"shared_buffers": "128MB", "max_connections": "100"}})
		if err != nil {
			b.Fatal(err)
		}
		// What pg_ctl -w does (watch postmaster.pid's status line), but
		// every 2 ms instead of pg_ctl's 100 ms, as compute waits.
		if err := pm.WaitPidReady(ctx); err != nil {
			b.Fatalf("%v\n%s", err, pg.LastLines(sockDir+".log", 10))
		}
		d := firstAnswer(b, pm.ConnString("postgres", password, "postgres"), t0)
		if err := pm.Stop(ctx, pg.Fast); err != nil {
			b.Fatal(err)
		}
		return d
	}
	nativeOnce()
	var wake, native []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Alternate the order; the endpoint is parked at the top.
		if i%2 == 0 {
			native = append(native, nativeOnce())
			wake = append(wake, wakeOnce())
			park()
		} else {
			wake = append(wake, wakeOnce())
			park()
			native = append(native, nativeOnce())
		}
	}
	b.StopTimer()
	b.Logf("wakes (ms, in order): %s", msList(wake))
	b.Logf("native starts (ms, in order): %s", msList(native))
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ms(pct(wake, .5)), "wake-p50-ms")
	b.ReportMetric(ms(pct(wake, .95)), "wake-p95-ms")
	b.ReportMetric(ms(pct(native, .5)), "native-p50-ms")
	b.ReportMetric(ms(pct(native, .95)), "native-p95-ms")
	b.ReportMetric(float64(pct(wake, .5))/float64(pct(native, .5)), "ratio-p50")
	b.ReportMetric(float64(pct(wake, .95))/float64(pct(native, .95)), "ratio-p95")
}

// msList formats durations as milliseconds, one decimal.
func msList(d []time.Duration) string {
	s := make([]string, len(d))
	for i, v := range d {
		s[i] = strconv.FormatFloat(ms(v), 'f', 1, 64)
	}
	return strings.Join(s, " ")
}

// firstAnswer connects to dsn, runs SELECT 1 and returns the time from t0
// to its answer; the connection is closed after.
func firstAnswer(b *testing.B, dsn string, t0 time.Time) time.Duration {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		b.Fatal(err)
	}
	return time.Since(t0)
}

// newStoreEnv is newEnv on the store, as `offshoot serve` runs it: branch
// main of project p made by InitProject, mounted through cowfs with the
// local WAL tier. It returns the superuser's password.
func newStoreEnv(b *testing.B) (*env, string) {
	ctx := context.Background()
	dir := pgtest.Dir(b)
	st, err := storage.Open(filepath.Join(dir, "store"), &storage.Options{GCInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	if _, _, err := st.CreateProject("p"); err != nil {
		b.Fatal(err)
	}
	h, err := st.OpenHead("p", "main")
	if err != nil {
		b.Fatal(err)
	}
	pw, err := compute.InitProject(ctx, h, filepath.Join(dir, "init"), compute.InitOptions{LogFile: filepath.Join(dir, "init.log")})
	if err != nil {
		b.Fatal(err)
	}
	if err := h.Close(); err != nil {
		b.Fatal(err)
	}
	run := filepath.Join(dir, "run")
	vols := compute.StoreVolumes{Store: st, MountDir: filepath.Join(run, "mnt"), LocalWALDir: filepath.Join(run, "wal")}
	m, err := compute.New(compute.Config{Volumes: vols, RunDir: filepath.Join(run, "compute"), Password: pw,
		Timers: &compute.Timers{}, Logger: quiet, Verifiers: verifiersHook()})
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Open(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	srv, err := proxy.New(proxy.Config{Addr: "127.0.0.1:0", SocketDir: dir, Manager: m, DefaultProject: "p", Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Open(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	return &env{m: m, srv: srv, port: srv.Addr().(*net.TCPAddr).Port, mountPoint: vols.MountPoint("p", "main")}, pw
}

// verifiersHook is what serve gives compute (a receiver of every
// endpoint's verifiers), unless PROXY_BENCH_VERIFIERS=off.
func verifiersHook() func(string, string, map[string]string) {
	if os.Getenv("PROXY_BENCH_VERIFIERS") == "off" {
		return nil
	}
	return func(string, string, map[string]string) {}
}

// copyCluster copies the cluster at src to dst (which must not exist)
// with cp -a, pg_wal's contents in place of the local WAL tier's symlink,
// owned by the user pg.Start runs Postgres as.
func copyCluster(src, dst string) error {
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("cp -a %s %s: %v: %s", src, dst, err, out)
	}
	wal := filepath.Join(dst, "pg_wal")
	target, err := os.Readlink(wal)
	if err != nil {
		return nil // a directory already
	}
	if err := os.Remove(wal); err != nil {
		return err
	}
	if out, err := exec.Command("cp", "-a", target, wal).CombinedOutput(); err != nil {
		return fmt.Errorf("cp -a %s %s: %v: %s", target, wal, err, out)
	}
	u, err := pg.PostgresUser()
	if err != nil {
		return err
	}
	owner := fmt.Sprintf("%d:%d", u.UID, u.GID)
	if out, err := exec.Command("chown", "-R", owner, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("chown -R %s %s: %v: %s", owner, dst, err, out)
	}
	return nil
}

// copyProxy starts a second proxy on e's Manager that relays every
// connection with the copy loop (Config.CopyOnly), and returns its port.
func copyProxy(b *testing.B, e *env) int {
	srv, err := proxy.New(proxy.Config{Addr: "127.0.0.1:0", Manager: e.m, DefaultProject: "p", Logger: quiet, CopyOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	return srv.Addr().(*net.TCPAddr).Port
}

// median returns the median of xs (the upper one of an even count).
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// benchReps is the number of repetitions a ratio benchmark takes the
// median of.
const benchReps = 3

// BenchmarkSelect1 measures SELECT 1 round trips through the proxy (its TCP
// port, on the kernel path, and its Unix socket), through a second proxy
// that relays with the copy loop (Config.CopyOnly), directly on the
// endpoint's Unix socket and on its loopback TCP port, alternately query by
// query in one loop. The loop is cut into benchReps repetitions; every
// reported value is the median over them (ratios are taken within each
// repetition).
func BenchmarkSelect1(b *testing.B) {
	e := newEnv(b, compute.Config{TCP: true, TCPAuth: "trust"}, proxy.Config{}, "main")
	copyPort := copyProxy(b, e)
	ctx := context.Background()
	l, err := e.m.Acquire(ctx, "p", "main")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Release()
	dsns := []string{
		e.dsn("endpoint=main"),                   // proxy, TCP, kernel path
		l.ConnString("postgres", "", "postgres"), // direct Unix socket
		fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", l.Port), // direct TCP
		fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres options=endpoint=main", filepath.Dir(e.srv.SocketPath()), e.port),
		fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable options=endpoint=main", copyPort),
	}
	const viaProxy, direct, directTCP, proxyUnix, proxyCopy = 0, 1, 2, 3, 4
	conns := make([]*pgx.Conn, len(dsns))
	for i, dsn := range dsns {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close(ctx)
		conns[i] = c
	}
	one := func(c *pgx.Conn) time.Duration {
		t0 := time.Now()
		var n int
		if err := c.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	for range 100 { // warm up
		for _, c := range conns {
			one(c)
		}
	}
	us := make([][]float64, len(conns)) // per target, per repetition: µs/query
	b.ResetTimer()
	for r := range benchReps {
		n := b.N / benchReps
		if r == 0 {
			n += b.N % benchReps
		}
		sum := make([]time.Duration, len(conns))
		for range n {
			for i, c := range conns {
				sum[i] += one(c)
			}
		}
		for i := range conns {
			us[i] = append(us[i], float64(sum[i].Nanoseconds())/1e3/float64(max(n, 1)))
		}
	}
	b.StopTimer()
	ratio := func(x, y int) float64 {
		var rs []float64
		for r := range us[x] {
			rs = append(rs, us[x][r]/us[y][r])
		}
		return median(rs)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(median(us[viaProxy]), "proxy-us/query")
	b.ReportMetric(median(us[direct]), "unix-us/query")
	b.ReportMetric(median(us[directTCP]), "tcp-us/query")
	b.ReportMetric(ratio(viaProxy, direct), "ratio-vs-unix")
	b.ReportMetric(ratio(viaProxy, directTCP), "ratio-vs-tcp")
	b.ReportMetric(median(us[proxyUnix]), "proxy-unix-us/query")
	b.ReportMetric(ratio(proxyUnix, direct), "unix-ratio-vs-unix")
	b.ReportMetric(median(us[proxyCopy]), "proxy-copy-us/query")
	b.ReportMetric(ratio(proxyCopy, directTCP), "copy-ratio-vs-tcp")
	for i, name := range []string{"proxy", "unix", "tcp", "proxy-unix", "proxy-copy"} {
		b.Logf("%s µs/query per repetition: %.1f", name, us[i])
	}
}

// BenchmarkSelect1Libpq is BenchmarkSelect1 with a C client: pgbench with
// one client running `SELECT 1` (simple protocol, no vacuum) for 4 s
// through the proxy on the kernel path, through a copy-loop proxy and
// directly on loopback TCP, each of max(b.N, benchReps) repetitions in an
// order rotated from one to the next; it reports pgbench's average
// latency, medians over the repetitions (ratios within each). Unlike
// BenchmarkSelect1 it sends one connection's queries back to back, from a
// process that does not share the proxy's Go runtime; docs/benchmarks.md
// ("Known gaps") says how much each of those changes the ratio.
func BenchmarkSelect1Libpq(b *testing.B) {
	bin := filepath.Join(pg.BinDir(), "pgbench")
	if _, err := os.Stat(bin); err != nil {
		b.Skip("pgbench not installed")
	}
	e := newEnv(b, compute.Config{TCP: true, TCPAuth: "trust"}, proxy.Config{}, "main")
	copyPort := copyProxy(b, e)
	l, err := e.m.Acquire(context.Background(), "p", "main")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Release()
	script := filepath.Join(b.TempDir(), "select1.sql")
	if err := os.WriteFile(script, []byte("SELECT 1;\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	targets := []struct {
		name    string
		proxied bool
		port    int
	}{{"proxy", true, e.port}, {"proxy-copy", true, copyPort}, {"tcp", false, l.Port}}
	const viaProxy, proxyCopy, directTCP = 0, 1, 2
	us := make([][]float64, len(targets))
	for r := range max(b.N, benchReps) {
		for k := range targets {
			i := (k + r) % len(targets)
			cmd := exec.Command(bin, "-h", "127.0.0.1", "-p", strconv.Itoa(targets[i].port), "-U", "postgres",
				"-n", "-f", script, "-c", "1", "-T", "4", "postgres")
			cmd.Env = append(os.Environ(), "PGSSLMODE=disable")
			if targets[i].proxied {
				cmd.Env = append(cmd.Env, "PGOPTIONS=endpoint=main")
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				b.Fatalf("pgbench: %v\n%s", err, out)
			}
			m := latRE.FindStringSubmatch(string(out))
			if m == nil {
				b.Fatalf("no latency in pgbench output:\n%s", out)
			}
			ms, _ := strconv.ParseFloat(m[1], 64)
			us[i] = append(us[i], ms*1000)
		}
	}
	ratio := func(x, y int) float64 {
		var rs []float64
		for r := range us[x] {
			rs = append(rs, us[x][r]/us[y][r])
		}
		return median(rs)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(median(us[viaProxy]), "proxy-us/query")
	b.ReportMetric(median(us[proxyCopy]), "proxy-copy-us/query")
	b.ReportMetric(median(us[directTCP]), "tcp-us/query")
	b.ReportMetric(ratio(viaProxy, directTCP), "ratio-vs-tcp")
	b.ReportMetric(ratio(proxyCopy, directTCP), "copy-ratio-vs-tcp")
	for i, t := range targets {
		b.Logf("%s µs/query per repetition: %.0f", t.name, us[i])
	}
}

var (
	tpsRE = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	txRE  = regexp.MustCompile(`number of transactions actually processed: ([0-9]+)`)
	latRE = regexp.MustCompile(`latency average = ([0-9.]+) ms`)
)

// cpuTime is the CPU time (user and system) this process has used: the
// proxies' (and the Manager's) share of a pgbench run, which runs in other
// processes, as does Postgres.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPgbenchSelectOnly runs pgbench -S (4 clients, a thread each, 5 s)
// through the proxy (TCP on the kernel path, and its Unix socket), through
// a second proxy that relays with the copy loop (Config.CopyOnly), directly
// on the endpoint's Unix socket (the baseline) and on its loopback TCP
// port. Each of max(b.N, benchReps) repetitions runs every target once, in
// an order rotated from one repetition to the next; every reported value
// is the median over the repetitions (ratios are taken within each). It
// also reports the CPU time of this process (the proxies) per transaction
// on the kernel and the copy path: what the kernel path saves, whatever
// the machine's load. With two connections a pgbench thread, a run on
// this 2-vCPU machine was one of two speeds at random (the direct Unix
// socket 66k or 105k TPS in one run of three repetitions), as the
// scheduler paired clients and backends on one CPU or across both.
func BenchmarkPgbenchSelectOnly(b *testing.B) {
	bin := filepath.Join(pg.BinDir(), "pgbench")
	if _, err := os.Stat(bin); err != nil {
		b.Skip("pgbench not installed")
	}
	e := newEnv(b, compute.Config{TCP: true, TCPAuth: "trust"}, proxy.Config{}, "main")
	copyPort := copyProxy(b, e)
	ctx := context.Background()
	l, err := e.m.Acquire(ctx, "p", "main")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Release()
	run := func(proxied bool, args ...string) string {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "PGSSLMODE=disable")
		if proxied {
			cmd.Env = append(cmd.Env, "PGOPTIONS=endpoint=main")
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("pgbench %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	targets := []struct {
		name    string
		proxied bool
		args    []string
	}{
		{"proxy", true, []string{"-h", "127.0.0.1", "-p", strconv.Itoa(e.port)}},
		{"unix", false, []string{"-h", l.SocketDir, "-p", strconv.Itoa(l.Port)}},
		{"tcp", false, []string{"-h", "127.0.0.1", "-p", strconv.Itoa(l.Port)}},
		{"proxy-unix", true, []string{"-h", filepath.Dir(e.srv.SocketPath()), "-p", strconv.Itoa(e.port)}},
		{"proxy-copy", true, []string{"-h", "127.0.0.1", "-p", strconv.Itoa(copyPort)}},
	}
	const viaProxy, direct, directTCP, proxyUnix, proxyCopy = 0, 1, 2, 3, 4
	run(false, append(targets[direct].args, "-U", "postgres", "-i", "-q", "-s", "2", "postgres")...)
	tps := make([][]float64, len(targets))      // per target, per repetition
	cpuPerTx := make([][]float64, len(targets)) // this process's (the proxies') CPU µs per transaction
	for r := range max(b.N, benchReps) {
		for k := range targets {
			i := (k + r) % len(targets)
			cpu0 := cpuTime()
			out := run(targets[i].proxied, append(targets[i].args, "-U", "postgres", "-S", "-c", "4", "-j", "4", "-T", "5", "postgres")...)
			cpu := cpuTime() - cpu0
			m, n := tpsRE.FindStringSubmatch(out), txRE.FindStringSubmatch(out)
			if m == nil || n == nil {
				b.Fatalf("no tps in pgbench output:\n%s", out)
			}
			v, _ := strconv.ParseFloat(m[1], 64)
			tx, _ := strconv.ParseFloat(n[1], 64)
			tps[i] = append(tps[i], v)
			cpuPerTx[i] = append(cpuPerTx[i], float64(cpu.Nanoseconds())/1e3/max(tx, 1))
		}
	}
	ratio := func(x, y int) float64 {
		var rs []float64
		for r := range tps[x] {
			rs = append(rs, tps[x][r]/tps[y][r])
		}
		return median(rs)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(median(tps[viaProxy]), "proxy-tps")
	b.ReportMetric(median(tps[direct]), "unix-tps")
	b.ReportMetric(median(tps[directTCP]), "tcp-tps")
	b.ReportMetric(ratio(viaProxy, direct), "ratio-vs-unix")
	b.ReportMetric(ratio(viaProxy, directTCP), "ratio-vs-tcp")
	b.ReportMetric(median(tps[proxyUnix]), "proxy-unix-tps")
	b.ReportMetric(ratio(proxyUnix, direct), "unix-ratio-vs-unix")
	b.ReportMetric(median(tps[proxyCopy]), "proxy-copy-tps")
	b.ReportMetric(ratio(proxyCopy, directTCP), "copy-ratio-vs-tcp")
	b.ReportMetric(median(cpuPerTx[viaProxy]), "proxy-cpu-us/tx")
	b.ReportMetric(median(cpuPerTx[proxyCopy]), "proxy-copy-cpu-us/tx")
	for i, t := range targets {
		b.Logf("%s tps per repetition: %.0f; proxy process CPU µs/transaction: %.1f", t.name, tps[i], cpuPerTx[i])
	}
}

// BenchmarkWakeMany wakes 20 suspended branches at once through the proxy
// (one connection + SELECT 1 each) and compares the time until all have
// answered with 20 native postgres starts (waiting like pg_ctl -w, then
// SELECT 1) on the same data directories in parallel. Run with -benchtime=3x.
func BenchmarkWakeMany(b *testing.B) {
	const n = 20
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("b%02d", i)
	}
	settings := map[string]string{"shared_buffers": "32MB", "max_connections": "20"}
	e := newEnv(b, compute.Config{MaxRunning: n, Settings: settings}, proxy.Config{}, names...)
	ctx := context.Background()
	all := func(f func(i int) error) time.Duration {
		t0 := time.Now()
		errs := make(chan error, n)
		for i := range n {
			go func() { errs <- f(i) }()
		}
		for range n {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(t0)
	}
	wake := func(i int) error {
		conn, err := pgx.Connect(ctx, e.dsn("endpoint="+names[i]))
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, "SELECT 1")
		return err
	}
	pms := make([]*pg.Postmaster, n)
	native := func(i int) error {
		dataDir, _ := e.vols.Path("p", names[i])
		pm, err := pg.Start(ctx, pg.Options{DataDir: dataDir, SocketDir: dataDir + "-native-sock", Settings: settings})
		if err != nil {
			return err
		}
		pms[i] = pm
		// What pg_ctl -w does (watch postmaster.pid's status line), but
		// every 2 ms instead of pg_ctl's 100 ms, as compute waits.
		if err := pm.WaitPidReady(ctx); err != nil {
			return err
		}
		conn, err := pgx.Connect(ctx, pm.ConnString("postgres", "", "postgres"))
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, "SELECT 1")
		return err
	}
	stopNative := func() {
		all(func(i int) error { return pms[i].Stop(ctx, pg.Fast) })
	}
	park := func() {
		all(func(i int) error { return e.m.Suspend(ctx, "p", names[i]) })
	}
	all(wake) // first start of each
	park()
	var tw, tn time.Duration
	b.ResetTimer()
	for range b.N {
		tn += all(native)
		b.StopTimer()
		stopNative()
		b.StartTimer()
		tw += all(wake)
		park()
	}
	b.StopTimer()
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ms(tw)/float64(b.N), "wake-all-ms")
	b.ReportMetric(ms(tn)/float64(b.N), "native-all-ms")
	b.ReportMetric(float64(tw)/float64(tn), "ratio")
}
