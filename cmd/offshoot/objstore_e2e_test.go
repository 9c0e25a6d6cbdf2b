package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/evals/evalstest"
	"github.com/offshootdb/offshoot/storage/objstore/s3test"
)

// metric reads one sample of the server's /metrics.
func (s *e2eServer) metric(token, name string) float64 {
	s.t.Helper()
	code, b := s.apiAs(token, "GET", "/metrics", nil)
	if code != 200 {
		s.t.Fatalf("/metrics: %d", code)
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				s.t.Fatal(err)
			}
			return v
		}
	}
	s.t.Fatalf("no metric %s", name)
	return 0
}

// waitRounds waits until n more upload rounds completed than now, so that
// one round started after everything written so far.
func (s *e2eServer) waitRounds(token string, n float64) {
	s.t.Helper()
	want := s.metric(token, "offshoot_objstore_rounds_total") + n
	deadline := time.Now().Add(2 * time.Minute)
	for s.metric(token, "offshoot_objstore_rounds_total") < want {
		if time.Now().After(deadline) {
			s.t.Fatalf("no upload round completed in 2 min\n%s", s.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// restoredServer restores the bucket's prefix from (an s3:// URL) into a
// new data dir and returns a server on it, not started (removed when the
// test ends).
func restoredServer(t testing.TB, from string, s3 []string) *e2eServer {
	t.Helper()
	dir, err := os.MkdirTemp("", "offshoot-restored-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &e2eServer{t: t, dataDir: dir}
	t.Cleanup(func() {
		if r.cmd != nil && r.cmd.ProcessState == nil {
			r.stop()
		}
		os.RemoveAll(dir)
	})
	if out, errOut, code := run(t, context.Background(), append([]string{"restore", "--from", from, "--data-dir", dir}, s3...)...); code != 0 || !strings.Contains(out, "restored generation") {
		t.Fatalf("restore: exit %d\n%s%s", code, out, errOut)
	}
	return r
}

// TestE2EObjectStoreRestore runs serve with the object storage tier on a
// real S3 server (versitygw), fills a project with branches, a snapshot,
// an experiment run, a key and audit entries, takes the object store away
// and back, then restores the bucket into a new data dir and serves it:
// everything is there and the branches' Postgres data reads back.
func TestE2EObjectStoreRestore(t *testing.T) {
	srv := s3test.Start(t, "bkt")
	t.Setenv("OFFSHOOT_S3_ACCESS_KEY", s3test.AccessKey)
	t.Setenv("OFFSHOOT_S3_SECRET_KEY", s3test.SecretKey)
	s3 := []string{"--s3-endpoint", srv.Endpoint(), "--s3-path-style"}
	s := newE2EServerArgs(t, append([]string{"--s3", "s3://bkt/e2e", "--s3-interval", "300ms"}, s3...)...)

	s.exec("main", "CREATE TABLE items (id int PRIMARY KEY)", "INSERT INTO items VALUES (1), (2)")
	s.must(201, "POST", "/v1/projects/main/branches", map[string]any{"name": "feature/x"}, nil)
	s.exec("feature/x", "INSERT INTO items VALUES (3)")
	s.must(201, "POST", branchPath("feature/x")+"/snapshots", map[string]any{"name": "snap1"}, nil)
	spec := fmt.Sprintf(`{"name": "tiny", "project": "main", "base": {"branch": "main"},
		"dataset": {"beir": %q}, "metrics": ["ndcg_cut.10"],
		"variants": [{"name": "bow8", "embedder": "hash-bow?dims=8"}]}`, evalstest.Cranfield(t))
	var started struct{ ID string }
	s.must(202, "POST", "/v1/runs", json.RawMessage(spec), &started)
	var rs struct{ Status string }
	for deadline := time.Now().Add(4 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		s.must(200, "GET", "/v1/runs/"+started.ID, nil, &rs)
		if rs.Status != "queued" && rs.Status != "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run still %s after 4 min", rs.Status)
		}
	}
	// Once a key exists the API wants it; this connection stays open.
	feat := s.conn("feature/x")
	var admin struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	s.must(201, "POST", "/v1/keys", map[string]any{"name": "admin", "scopes": []string{"admin"}}, &admin)
	tok := admin.Token

	// The object store goes away: writes keep working, rounds fail, the
	// lag grows past the last successful round.
	s.waitRounds(tok, 1)
	srv.Stop()
	failures := s.metric(tok, "offshoot_objstore_failures_total")
	for deadline := time.Now().Add(2 * time.Minute); s.metric(tok, "offshoot_objstore_failures_total") <= failures; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no failed round with the object store down\n%s", s.log())
		}
	}
	lagDown := s.metric(tok, "offshoot_objstore_upload_lag_seconds")
	if _, err := feat.Exec(context.Background(), "INSERT INTO items VALUES (4)"); err != nil {
		t.Fatalf("write with the object store down: %v", err)
	}
	time.Sleep(time.Second) // lets the lag grow; the assertion below compares lags, not times
	if lag := s.metric(tok, "offshoot_objstore_upload_lag_seconds"); lag <= lagDown {
		t.Errorf("lag %v did not grow from %v while the object store was down", lag, lagDown)
	}
	srv.Resume()
	s.waitRounds(tok, 2)
	s.stop()

	// Restore into a fresh data dir and serve it.
	ctx := context.Background()
	r := restoredServer(t, "s3://bkt/e2e", s3)
	args := append([]string{"restore", "--from", "s3://bkt/e2e", "--data-dir", r.dataDir}, s3...)
	if _, errOut, code := run(t, ctx, args...); code == 0 || !strings.Contains(errOut, "not empty") {
		t.Errorf("restore into a non-empty dir: exit %d %s", code, errOut)
	}
	list := append([]string{"restore", "--list", "--from", "s3://bkt/e2e"}, s3...)
	if out, errOut, code := run(t, ctx, list...); code != 0 || !strings.Contains(out, "GENERATION") || strings.Count(out, "\n") < 3 {
		t.Errorf("restore --list: exit %d\n%s%s", code, out, errOut)
	}
	r.start()
	var branches struct{ Branches []struct{ Name string } }
	r.mustAs(tok, 200, "GET", "/v1/projects/main/branches", nil, &branches)
	names := fmt.Sprint(branches.Branches)
	if !strings.Contains(names, "feature/x") {
		t.Errorf("branches after restore: %s", names)
	}
	var snaps struct{ Snapshots []struct{ Name string } }
	r.mustAs(tok, 200, "GET", "/v1/projects/main/snapshots", nil, &snaps)
	if !strings.Contains(fmt.Sprint(snaps.Snapshots), "snap1") {
		t.Errorf("snapshots after restore: %+v", snaps)
	}
	r.mustAs(tok, 200, "GET", "/v1/runs/"+started.ID, nil, &rs)
	if rs.Status != "succeeded" {
		t.Errorf("run %s after restore: %s", started.ID, rs.Status)
	}
	var audit struct{ Entries []map[string]any }
	r.mustAs(tok, 200, "GET", "/v1/audit?limit=1000", nil, &audit)
	if len(audit.Entries) == 0 {
		t.Error("no audit entries after restore")
	}
	var c struct{ URI string }
	r.mustAs(tok, 200, "GET", branchPath("feature/x")+"/connection?password=true", nil, &c)
	conn, err := pgx.Connect(ctx, c.URI)
	if err != nil {
		t.Fatalf("connect to the restored feature/x: %v\n%s", err, r.log())
	}
	defer conn.Close(ctx)
	var ids string
	if err := conn.QueryRow(ctx, "SELECT string_agg(id::text, ',' ORDER BY id) FROM items").Scan(&ids); err != nil {
		t.Fatal(err)
	}
	if ids != "1,2,3,4" {
		t.Errorf("restored feature/x has ids %q, want 1,2,3,4", ids)
	}
	r.stop()
}

// TestObjectStoreBadInput: serve refuses a missing bucket and an
// unreachable endpoint before it serves, and restore a bad URL.
func TestObjectStoreBadInput(t *testing.T) {
	srv := s3test.Start(t, "bkt")
	t.Setenv("OFFSHOOT_S3_ACCESS_KEY", s3test.AccessKey)
	t.Setenv("OFFSHOOT_S3_SECRET_KEY", s3test.SecretKey)
	ctx := context.Background()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"restore", "--from", "s3://nope/x", "--s3-endpoint", srv.Endpoint(), "--s3-path-style"}, "bucket does not exist"},
		{[]string{"restore", "--from", "s3://bkt/x", "--s3-endpoint", "http://127.0.0.1:1", "--s3-path-style"}, "unreachable"},
		{[]string{"restore", "--from", "s3://bkt/empty", "--s3-endpoint", srv.Endpoint(), "--s3-path-style"}, "no upload found"},
		{[]string{"restore", "--from", "bkt/x", "--s3-endpoint", srv.Endpoint()}, "s3://bucket"},
		{[]string{"restore", "--from", "s3://bkt/x", "--s3-endpoint", srv.Endpoint(), "--at", "yesterday"}, "RFC 3339"},
		{[]string{"restore", "--from", "s3://bkt/x", "--s3-endpoint", srv.Endpoint(), "--at", "2026-12-04T00:00:00Z", "--generation", "3"}, "not both"},
	} {
		args := append(c.args, "--data-dir", filepath.Join(t.TempDir(), "d"))
		if _, errOut, code := run(t, ctx, args...); code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d %q, want an error with %q", c.args, code, errOut, c.want)
		}
	}
}

// TestE2EObjectStoreIdle: once writes stop and the endpoint is suspended,
// upload rounds go on completing and upload nothing (before the fix, every
// round sent the WAL again: 172 MB in ten rounds).
func TestE2EObjectStoreIdle(t *testing.T) {
	srv := s3test.Start(t, "bkt")
	t.Setenv("OFFSHOOT_S3_ACCESS_KEY", s3test.AccessKey)
	t.Setenv("OFFSHOOT_S3_SECRET_KEY", s3test.SecretKey)
	s := newE2EServerArgs(t, "--s3", "s3://bkt/idle", "--s3-interval", "200ms", "--s3-endpoint", srv.Endpoint(), "--s3-path-style")
	s.exec("main", "CREATE TABLE items (id int PRIMARY KEY, v text)", "INSERT INTO items SELECT g, repeat('x', 500) FROM generate_series(1, 5000) g")
	s.must(200, "POST", branchPath("main")+"/endpoint", map[string]any{"action": "suspend"}, nil)
	// The store records a history tick up to a second after the last
	// write (and the suspend wrote Postgres' shutdown checkpoint): a
	// round or two still upload. Then ten rounds in a row upload nothing.
	var delta float64
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		sent := s.metric("", "offshoot_objstore_bytes_uploaded_total")
		s.waitRounds("", 10)
		if delta = s.metric("", "offshoot_objstore_bytes_uploaded_total") - sent; delta == 0 {
			return
		}
	}
	t.Fatalf("an idle server still uploads after a minute: %.0f bytes in its last 10 rounds", delta)
}
