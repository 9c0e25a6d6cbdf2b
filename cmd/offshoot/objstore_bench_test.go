package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/compute/pg"
	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/offshootdb/offshoot/storage/objstore/s3test"
)

var tpsRe = regexp.MustCompile(`tps = ([0-9.]+)`)

// pgbenchTPS runs pgbench TPC-B (2 clients) for d on uri and returns its TPS.
func pgbenchTPS(b *testing.B, uri string, d time.Duration) float64 {
	b.Helper()
	out, err := exec.Command(filepath.Join(pg.BinDir(), "pgbench"), "-n", "-c", "2", "-T", strconv.Itoa(int(d.Seconds())), uri).CombinedOutput()
	if err != nil {
		b.Fatalf("pgbench: %v\n%s", err, out)
	}
	m := tpsRe.FindSubmatch(out)
	if m == nil {
		b.Fatalf("no tps in pgbench output:\n%s", out)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

func medianOf(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// BenchmarkObjectStore measures the object storage tier against running
// without it, in one run:
//
//   - upload overhead: pgbench TPC-B TPS on a branch of a server that
//     uploads to a local S3 server (versitygw) every 10 s (the default)
//     vs a server without the tier; 3 interleaved runs of 20 s each;
//   - restore: `offshoot restore` of a data dir holding a pgbench database
//     of OBJSTORE_BENCH_SCALE (default 68, about 1 GiB) from the bucket
//     into a new dir vs a plain copy (cp -a) of the same data dir; 3
//     interleaved repetitions; and the time from starting `serve` on the
//     restored dir to the answer of the first query through the proxy.
func BenchmarkObjectStore(b *testing.B) {
	scale := 68
	if v, err := strconv.Atoi(os.Getenv("OBJSTORE_BENCH_SCALE")); err == nil && v > 0 {
		scale = v
	}
	ctx := context.Background()
	srv := s3test.Start(b, "bkt")
	b.Setenv("OFFSHOOT_S3_ACCESS_KEY", s3test.AccessKey)
	b.Setenv("OFFSHOOT_S3_SECRET_KEY", s3test.SecretKey)
	s3 := []string{"--s3-endpoint", srv.Endpoint(), "--s3-path-style"}
	on := newE2EServerArgs(b, append([]string{"--s3", "s3://bkt/bench"}, s3...)...)
	off := newE2EServer(b)
	uri := func(s *e2eServer) string {
		var c struct{ URI string }
		s.must(200, "GET", branchPath("main")+"/connection?password=true", nil, &c)
		return c.URI
	}
	onURI, offURI := uri(on), uri(off)
	for _, u := range []string{onURI, offURI} {
		if out, err := exec.Command(filepath.Join(pg.BinDir(), "pgbench"), "-i", "-s", "10", "-q", u).CombinedOutput(); err != nil {
			b.Fatalf("pgbench -i: %v\n%s", err, out)
		}
	}
	b.ResetTimer()
	var tpsOn, tpsOff []float64
	for i := 0; i < 3; i++ {
		tpsOn = append(tpsOn, pgbenchTPS(b, onURI, 20*time.Second))
		tpsOff = append(tpsOff, pgbenchTPS(b, offURI, 20*time.Second))
	}
	b.StopTimer()
	b.Logf("TPC-B TPS with the object tier: %v; without: %v", tpsOn, tpsOff)
	b.ReportMetric(medianOf(tpsOn), "tier-on-tps")
	b.ReportMetric(medianOf(tpsOff), "tier-off-tps")
	b.ReportMetric(medianOf(tpsOn)/medianOf(tpsOff), "on/off")
	off.stop()

	// A ~1 GiB project uploaded; the server stopped so that its data dir
	// is the state the bucket holds.
	if out, err := exec.Command(filepath.Join(pg.BinDir(), "pgbench"), "-i", "-s", strconv.Itoa(scale), "-q", onURI).CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i -s %d: %v\n%s", scale, err, out)
	}
	on.stop() // a clean stop finishes with an upload round
	var rest, copies, first []float64
	var restoredBytes int64
	for i := 0; i < 3; i++ {
		dst := pgtest.Dir(b)
		start := time.Now()
		out, errOut, code := run(b, ctx, append([]string{"restore", "--from", "s3://bkt/bench", "--data-dir", dst}, s3...)...)
		if code != 0 {
			b.Fatalf("restore: exit %d\n%s%s", code, out, errOut)
		}
		rest = append(rest, time.Since(start).Seconds())
		if m := regexp.MustCompile(`(\d+) bytes`).FindStringSubmatch(out); m != nil {
			restoredBytes, _ = strconv.ParseInt(m[1], 10, 64)
		}
		// Time to first query on the restored dir.
		r := &e2eServer{t: b, dataDir: dst}
		start = time.Now()
		r.start()
		c := r.conn("main")
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM pgbench_branches").Scan(&n); err != nil || n != scale {
			b.Fatalf("first query on the restored dir: %d %v", n, err)
		}
		first = append(first, time.Since(start).Seconds())
		c.Close(ctx)
		r.stop()
		os.RemoveAll(dst)

		cp := pgtest.Dir(b)
		start = time.Now()
		if out, err := exec.Command("cp", "-a", on.dataDir+"/.", cp).CombinedOutput(); err != nil {
			b.Fatalf("cp -a: %v\n%s", err, out)
		}
		copies = append(copies, time.Since(start).Seconds())
		os.RemoveAll(cp)
	}
	b.Logf("restore of %d bytes: %v s; cp -a of the data dir: %v s; serve start to first query: %v s", restoredBytes, rest, copies, first)
	b.ReportMetric(medianOf(rest), "restore-s")
	b.ReportMetric(medianOf(copies), "copy-s")
	b.ReportMetric(medianOf(rest)/medianOf(copies), "restore/copy")
	b.ReportMetric(medianOf(first), "first-query-s")
	b.ReportMetric(float64(restoredBytes)/(1<<20), "restored-MiB")
}
