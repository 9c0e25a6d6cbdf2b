package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/compute/pg"
	"github.com/offshootdb/offshoot/compute/pg/pgtest"
)

// lagPair is a primary and a replica to measure: libpq connection strings.
type lagPair struct {
	name             string
	primary, replica string
}

// measureLag runs pgbench TPC-B (2 clients) on the primary for d and, every
// 100 ms meanwhile, commits a probe row there and times how long until the
// replica sees it: the visibility lag of one commit under load.
func measureLag(b *testing.B, p lagPair, d time.Duration) []time.Duration {
	b.Helper()
	ctx := context.Background()
	prim, err := pgx.Connect(ctx, p.primary)
	if err != nil {
		b.Fatalf("%s primary: %v", p.name, err)
	}
	defer prim.Close(ctx)
	rep, err := pgx.Connect(ctx, p.replica)
	if err != nil {
		b.Fatalf("%s replica: %v", p.name, err)
	}
	defer rep.Close(ctx)
	bench := exec.Command(filepath.Join(pg.BinDir(), "pgbench"), "-n", "-c", "2", "-T", fmt.Sprint(int(d.Seconds())), p.primary)
	out := &strings.Builder{} // read after Wait only
	bench.Stdout, bench.Stderr = out, out
	if err := bench.Start(); err != nil {
		b.Fatal(err)
	}
	var lags []time.Duration
	time.Sleep(time.Second) // pgbench is connected and running
	for id := int64(time.Now().UnixNano()); ; id++ {
		if bench.ProcessState != nil {
			break
		}
		if _, err := prim.Exec(ctx, "INSERT INTO lag_probe VALUES ($1)", id); err != nil {
			b.Fatalf("%s probe: %v", p.name, err)
		}
		acked := time.Now()
		for {
			var n int
			if err := rep.QueryRow(ctx, "SELECT count(*) FROM lag_probe WHERE id = $1", id).Scan(&n); err != nil {
				b.Fatalf("%s replica probe: %v", p.name, err)
			}
			if n == 1 {
				break
			}
			if time.Since(acked) > time.Minute {
				b.Fatalf("%s: probe %d not on the replica after 1 min", p.name, id)
			}
			time.Sleep(time.Millisecond)
		}
		lags = append(lags, time.Since(acked))
		if time.Since(acked) < 100*time.Millisecond {
			time.Sleep(100*time.Millisecond - time.Since(acked))
		}
		if len(lags) > 0 && time.Duration(len(lags))*100*time.Millisecond >= d-time.Second {
			break
		}
	}
	if err := bench.Wait(); err != nil {
		b.Fatalf("%s pgbench: %v\n%s", p.name, err, out.String())
	}
	return lags
}

// nativeStandby starts a plain streaming replica of primary (a pgtest
// cluster) on local disk: pg_basebackup -R, then postgres on it.
func nativeStandby(b *testing.B, primary *pgtest.Cluster) string {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := pgtest.Dir(b)
	u, err := pg.PostgresUser()
	if err != nil {
		b.Fatal(err)
	}
	if err := u.Chown(dir); err != nil {
		b.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	popts := primary.Postmaster.Options()
	cmd := u.Command(ctx, "pg_basebackup", "-D", data, "-R", "-X", "stream", "-c", "fast", "-h", popts.SocketDir,
		"-p", fmt.Sprint(popts.SocketPort()), "-U", "postgres")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	opts := pg.Options{DataDir: data, SocketDir: filepath.Join(dir, "sock"), LogFile: filepath.Join(dir, "log"), Settings: map[string]string{"hot_standby": "on"}}
	p, err := pg.Start(ctx, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer scancel()
		_ = p.Stop(sctx, pg.Immediate)
	})
	cs := p.ConnString("postgres", "", "postgres")
	if err := p.WaitReady(ctx, cs); err != nil {
		b.Fatalf("%v\n%s", err, pg.LastLines(opts.LogFile, 20))
	}
	return cs
}

// BenchmarkReplicaLag measures how long a commit on a branch takes to be
// visible on its replica on a second server, while pgbench TPC-B writes
// to the branch, against the same on a plain PostgreSQL primary and
// streaming standby on local disk; three interleaved repetitions of 15 s
// each. Reported: p50 and p95 of each side (the median over the
// repetitions) and offshoot's p95 against the 1 s goal.
func BenchmarkReplicaLag(b *testing.B) {
	const d = 15 * time.Second
	ctx := context.Background()
	// offshoot: server a's main branch, replicated to server r.
	a := newE2EServer(b)
	r := newE2EServer(b)
	var src, conn struct{ URI string }
	a.must(200, "GET", branchPath("main")+"/connection?password=true&role=replication", nil, &src)
	a.must(200, "GET", branchPath("main")+"/connection?password=true", nil, &conn)
	pgbench := filepath.Join(pg.BinDir(), "pgbench")
	if out, err := exec.Command(pgbench, "-i", "-s", "5", "-q", conn.URI).CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	a.exec("main", "CREATE TABLE lag_probe (id bigint PRIMARY KEY)")
	r.must(201, "POST", "/v1/replicas", map[string]any{"project": "rep", "source": src.URI}, nil)
	var rconn struct{ URI string }
	r.must(200, "GET", "/v1/projects/rep/branches/main/connection?password=true&role=read", nil, &rconn)
	off := lagPair{name: "offshoot", primary: conn.URI, replica: rconn.URI}
	// native: a local primary and its standby.
	prim := pgtest.New(b, nil)
	if out, err := exec.Command(pgbench, "-i", "-s", "5", "-q", prim.ConnString).CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i native: %v\n%s", err, out)
	}
	if _, err := prim.Connect(b).Exec(ctx, "CREATE TABLE lag_probe (id bigint PRIMARY KEY)"); err != nil {
		b.Fatal(err)
	}
	nat := lagPair{name: "native", primary: prim.ConnString, replica: nativeStandby(b, prim)}

	pct := func(ls []time.Duration, p int) float64 {
		s := append([]time.Duration(nil), ls...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return float64(s[min(len(s)-1, len(s)*p/100)].Microseconds()) / 1000
	}
	median := func(v []float64) float64 {
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		return s[len(s)/2]
	}
	var o50, o95, n50, n95 []float64
	b.ResetTimer()
	for rep := 0; rep < 3; rep++ {
		ol := measureLag(b, off, d)
		nl := measureLag(b, nat, d)
		o50, o95 = append(o50, pct(ol, 50)), append(o95, pct(ol, 95))
		n50, n95 = append(n50, pct(nl, 50)), append(n95, pct(nl, 95))
		b.Logf("repetition %d: offshoot p50 %.1f ms p95 %.1f ms (%d probes); native p50 %.1f ms p95 %.1f ms (%d probes)",
			rep+1, pct(ol, 50), pct(ol, 95), len(ol), pct(nl, 50), pct(nl, 95), len(nl))
	}
	b.StopTimer()
	b.ReportMetric(median(o50), "offshoot-p50-ms")
	b.ReportMetric(median(o95), "offshoot-p95-ms")
	b.ReportMetric(median(n50), "native-p50-ms")
	b.ReportMetric(median(n95), "native-p95-ms")
	b.ReportMetric(median(o95)/1000, "p95/goal")
	b.ReportMetric(median(o95)/median(n95), "p95/native")
}
