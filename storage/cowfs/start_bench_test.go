package cowfs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/offshootdb/offshoot/compute/pg"
)

// BenchmarkStart: what a wake from suspended costs below the proxy. A
// cluster on a mount that stays mounted (with the local WAL tier, as
// compute runs it) is started, connected to, queried with SELECT 1 and
// shut down, alternating with the same cluster copied to local disk. It
// reports each side's median start (to the first query's answer) and the
// FUSE requests one start and one stop send.
//
//	go test ./storage/cowfs -run '^$' -bench '^BenchmarkStart$' -benchtime 20x -v
func BenchmarkStart(b *testing.B) {
	ctx := context.Background()
	f := newFixture(b, nil)
	pw := f.initProject("p")
	h := f.head("p", "main")
	// As compute mounts a branch (StoreVolumes.Mount).
	o := MountOptions{LocalWAL: filepath.Join(f.dir, "wal-main"), Volatile: []string{"postmaster.pid"}}
	o.Debug = os.Getenv("START_DEBUG") != ""
	if os.Getenv("START_NO_VOLATILE") != "" {
		o.Volatile = nil
	}
	m := f.mount("main", h, o)
	s := startPG(b, m.Dir(), f.dir, pw, branchSettings)
	s.pgbench(ctx, "-i", "-q", "-s", "2")
	s.stop(pg.Fast)
	native := filepath.Join(f.dir, "native")
	for _, args := range [][]string{{"cp", "-a", m.Dir(), native}, {"rm", native + "/pg_wal"},
		{"cp", "-a", filepath.Join(f.dir, "wal-main"), native + "/pg_wal"}, {"chown", "-R", "postgres:postgres", native}} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			b.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	sock := filepath.Join(f.dir, "start-sock")
	if err := os.MkdirAll(sock, 0o777); err != nil {
		b.Fatal(err)
	}
	// phases of every start: to postmaster.pid's "ready", to the connection,
	// to the first answer; per side.
	phases := map[string]*[3][]time.Duration{m.Dir(): {}, native: {}}
	start := func(data string) (time.Duration, func()) {
		t0 := time.Now()
		p, err := pg.Start(ctx, pg.Options{DataDir: data, SocketDir: sock, LogFile: sock + ".log", Settings: branchSettings})
		if err != nil {
			b.Fatal(err)
		}
		if err := p.WaitPidReady(ctx); err != nil { // as compute waits
			b.Fatalf("%v\n%s", err, pg.LastLines(sock+".log", 10))
		}
		ready := time.Since(t0)
		conn, err := pgx.Connect(ctx, p.ConnString("postgres", pw, "postgres"))
		if err != nil {
			b.Fatal(err)
		}
		connected := time.Since(t0)
		if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
			b.Fatal(err)
		}
		d := time.Since(t0)
		ph := phases[data]
		ph[0], ph[1], ph[2] = append(ph[0], ready), append(ph[1], connected-ready), append(ph[2], d-connected)
		conn.Close(ctx)
		return d, func() {
			if err := p.Stop(ctx, pg.Fast); err != nil {
				b.Fatal(err)
			}
		}
	}
	var onMount, onDisk []time.Duration
	var startOps, stopOps []statsSnap
	var startCPU, diskCPU []time.Duration // of this process: the FUSE server, and the client on both sides
	mountOnce := func() {
		st0, cpu0 := snapStats(m.Stats()), processCPU()
		d, stop := start(m.Dir())
		st1 := snapStats(m.Stats())
		startCPU = append(startCPU, processCPU()-cpu0)
		stop()
		onMount = append(onMount, d)
		startOps = append(startOps, st1.sub(st0))
		stopOps = append(stopOps, snapStats(m.Stats()).sub(st1))
	}
	diskOnce := func() {
		cpu0 := processCPU()
		d, stop := start(native)
		diskCPU = append(diskCPU, processCPU()-cpu0)
		stop()
		onDisk = append(onDisk, d)
	}
	mountOnce() // warm up
	diskOnce()
	onMount, onDisk, startOps, stopOps, startCPU, diskCPU = nil, nil, nil, nil, nil, nil
	phases = map[string]*[3][]time.Duration{m.Dir(): {}, native: {}}
	stopProfile := startProfile(b, "start") // the loop's CPU alone, without the setup
	b.ResetTimer()
	for i := range b.N {
		if i%2 == 0 {
			mountOnce()
			diskOnce()
		} else {
			diskOnce()
			mountOnce()
		}
	}
	b.StopTimer()
	stopProfile()
	pctl := func(d []time.Duration, p float64) time.Duration {
		d = slices.Clone(d)
		slices.Sort(d)
		return d[min(len(d)-1, int(float64(len(d))*p))]
	}
	for _, side := range []struct{ name, dir string }{{"mount", m.Dir()}, {"disk", native}} {
		ph := phases[side.dir]
		b.Logf("%s: median to ready %.2f ms, then connect %.2f ms, then SELECT 1 %.2f ms", side.name,
			ms(pctl(ph[0], .5)), ms(pctl(ph[1], .5)), ms(pctl(ph[2], .5)))
	}
	b.Logf("CPU of this process per start, median: %.2f ms on the mount, %.2f ms on disk", ms(pctl(startCPU, .5)), ms(pctl(diskCPU, .5)))
	b.Logf("FUSE requests per start (to the first answer), first and last: %s; %s", startOps[0], startOps[len(startOps)-1])
	b.Logf("FUSE requests per fast shutdown, first and last: %s; %s", stopOps[0], stopOps[len(stopOps)-1])
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ms(pctl(onMount, .5)), "mount-p50-ms")
	b.ReportMetric(ms(pctl(onDisk, .5)), "disk-p50-ms")
	b.ReportMetric(float64(pctl(onMount, .5))/float64(pctl(onDisk, .5)), "ratio-p50")
	b.ReportMetric(float64(pctl(onMount, .95))/float64(pctl(onDisk, .95)), "ratio-p95")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
