package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/compute/pg"
	"github.com/offshootdb/offshoot/storage/objstore/s3test"
)

// TestE2EObjectStoreKill loses a machine: under pgbench load on a branch,
// with a writer recording when each of its commits was acknowledged, the
// whole server is killed with SIGKILL and its data dir deleted; a restore
// from the bucket into a new data dir then serves every commit
// acknowledged before the state the bucket held at the kill (the upload
// lag read just before it), with the pgbench invariant, a clean
// pg_amcheck, and the snapshot listed.
func TestE2EObjectStoreKill(t *testing.T) {
	const interval = time.Second
	srv := s3test.Start(t, "bkt")
	t.Setenv("OFFSHOOT_S3_ACCESS_KEY", s3test.AccessKey)
	t.Setenv("OFFSHOOT_S3_SECRET_KEY", s3test.SecretKey)
	s3 := []string{"--s3-endpoint", srv.Endpoint(), "--s3-path-style"}
	s := newE2EServerArgs(t, append([]string{"--s3", "s3://bkt/kill", "--s3-interval", interval.String()}, s3...)...)
	ctx := context.Background()

	var c struct{ URI string }
	s.must(200, "GET", branchPath("main")+"/connection?password=true", nil, &c)
	pgbench := filepath.Join(pg.BinDir(), "pgbench")
	if out, err := exec.Command(pgbench, "-i", "-s", "2", "-q", c.URI).CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	s.exec("main", "CREATE TABLE acked (id bigint PRIMARY KEY)")
	s.must(201, "POST", branchPath("main")+"/snapshots", map[string]any{"name": "before-load"}, nil)

	// pgbench writes; a writer commits one row at a time and notes when
	// each commit was acknowledged.
	bench := exec.Command(pgbench, "-n", "-c", "2", "-T", "600", c.URI)
	if err := bench.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = bench.Process.Kill()
		_ = bench.Wait()
	}()
	w, err := pgx.Connect(ctx, c.URI)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	acks := map[int64]time.Time{}
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for id := int64(1); ; id++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := w.Exec(ctx, "INSERT INTO acked VALUES ($1)", id); err != nil {
				return // the server is gone
			}
			at := time.Now()
			mu.Lock()
			acks[id] = at
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	time.Sleep(8 * time.Second)
	lag := time.Duration(s.metric("", "offshoot_objstore_upload_lag_seconds") * float64(time.Second))
	sampled := time.Now()
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-s.done
	close(stop)
	<-writerDone
	w.Close(ctx)
	// The bucket's latest state is at least as new as the one the lag
	// described; a round may have finished between the sample and the kill.
	cutoff := sampled.Add(-lag)
	if lag > 3*interval+5*time.Second {
		t.Errorf("upload lag %v under load with a %v interval", lag, interval)
	}

	// The machine is gone: its data dir with it. (The killed server's
	// postmasters and mounts are cleaned up by a start without the object
	// store first, as on a machine that comes back; then the dir goes.)
	s.args = nil
	s.start()
	s.stop()
	if err := os.RemoveAll(s.dataDir); err != nil {
		t.Fatal(err)
	}

	r := restoredServer(t, "s3://bkt/kill", s3)
	r.start()
	var snaps struct{ Snapshots []struct{ Name string } }
	r.must(200, "GET", "/v1/projects/main/snapshots", nil, &snaps)
	if len(snaps.Snapshots) != 1 || snaps.Snapshots[0].Name != "before-load" {
		t.Errorf("snapshots after restore: %+v", snaps)
	}
	conn := r.conn("main")
	present := map[int64]bool{}
	rows, err := conn.Query(ctx, "SELECT id FROM acked")
	if err != nil {
		t.Fatalf("read the restored branch: %v\n%s", err, r.log())
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		present[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var before, lost, after, afterKept int
	for id, at := range acks {
		switch {
		case at.Before(cutoff):
			before++
			if !present[id] {
				lost++
			}
		default:
			after++
			if present[id] {
				afterKept++
			}
		}
	}
	t.Logf("%d commits acknowledged; %d before the bucket's state at the kill (upload lag %v), %d of them lost; %d after it, %d of those restored too",
		len(acks), before, lag.Round(time.Millisecond), lost, after, afterKept)
	if before == 0 || lost != 0 {
		t.Fatalf("%d of %d commits acknowledged more than %v before the kill are missing after the restore", lost, before, lag)
	}
	checkPgbenchInvariant(t, conn, "after the restore")
	var su struct{ URI string }
	r.must(200, "GET", branchPath("main")+"/connection?password=true&role=superuser", nil, &su)
	out, err := exec.Command(filepath.Join(pg.BinDir(), "pg_amcheck"), "--install-missing", "--heapallindexed", su.URI).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_amcheck on the restored branch: %v\n%s", err, out)
	}
}

// TestE2EObjectStoreFinalRound: a clean stop ends with an upload round.
// With rounds an hour apart only the first (at start, before the table
// existed) and the final one run, so the restored rows prove the latter.
func TestE2EObjectStoreFinalRound(t *testing.T) {
	srv := s3test.Start(t, "bkt")
	t.Setenv("OFFSHOOT_S3_ACCESS_KEY", s3test.AccessKey)
	t.Setenv("OFFSHOOT_S3_SECRET_KEY", s3test.SecretKey)
	s3 := []string{"--s3-endpoint", srv.Endpoint(), "--s3-path-style"}
	s := newE2EServerArgs(t, append([]string{"--s3", "s3://bkt/final", "--s3-interval", "1h"}, s3...)...)
	s.exec("main", "CREATE TABLE items (id int PRIMARY KEY)", "INSERT INTO items VALUES (1), (2)")
	s.stop()
	if !strings.Contains(s.log(), "final upload round done") {
		t.Fatalf("no final round in the log:\n%s", s.log())
	}
	r := restoredServer(t, "s3://bkt/final", s3)
	r.start()
	if got := r.ids("main"); got != "1,2" {
		t.Fatalf("restored main has ids %q, want 1,2", got)
	}
	r.stop()
}
