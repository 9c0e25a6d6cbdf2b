package objstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/storage"
	"github.com/offshootdb/offshoot/storage/objstore/s3test"
)

// TestTwoDataDirsOnePrefix: a server stops; a data dir restored from an
// older generation of its prefix serves and uploads there; the first
// server, restarted on the same prefix, refuses to upload (at start, and
// in a round when the other one's upload comes while it runs), and every
// generation record of the restored dir stays as it wrote it.
func TestTwoDataDirsOnePrefix(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t, "bkt")
	cfg := Config{Endpoint: srv.Endpoint(), Bucket: "bkt", Prefix: "a", AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey, PathStyle: true}
	b, err := openBucket(ctx, cfg.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	open := func(dir string) (*storage.Store, *Uploader, error) {
		t.Helper()
		st, err := storage.Open(filepath.Join(dir, "store"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		u, err := New(ctx, cfg, []Source{{Name: "store", Checkpoint: st.Checkpoint, Version: st.Version}}, filepath.Join(dir, "objstore"), nil)
		return st, u, err
	}
	records := func() map[uint64]string {
		t.Helper()
		nums, err := b.generations(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[uint64]string{}
		for _, n := range nums {
			data, err := b.get(ctx, genKey(b, n))
			if err != nil {
				t.Fatal(err)
			}
			out[n] = string(data)
		}
		return out
	}

	a := t.TempDir()
	stA, uA, err := open(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"p1", "p2", "p3"} {
		if _, _, err := stA.CreateProject(p); err != nil {
			t.Fatal(err)
		}
		if err := uA.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	uA.Close()
	stA.Close()

	r := filepath.Join(t.TempDir(), "r")
	if _, err := Restore(ctx, cfg, r, RestoreOptions{Gen: 1, StateDir: filepath.Join(r, "objstore")}); err != nil {
		t.Fatal(err)
	}
	stR, uR, err := open(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := stR.CreateProject("q"); err != nil {
		t.Fatal(err)
	}
	if err := uR.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if uR.Generation() != 4 {
		t.Fatalf("the restored dir's first round is generation %d, want 4 (after the bucket's last)", uR.Generation())
	}
	before := records()

	// A restarted on the prefix: refused at start.
	if _, _, err := open(a); !errors.Is(err, ErrPrefixTaken) {
		t.Fatalf("restarted server on a prefix another data dir uploads to: %v, want ErrPrefixTaken", err)
	}
	if after := records(); after[4] != before[4] || len(after) != len(before) {
		t.Errorf("the refused restart changed the generation records")
	}

	// R is running when another data dir uploads again: R's next round
	// refuses, and so does every later one, although R changed nothing
	// (an idle round reads the bucket's latest too).
	if err := uR.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	r2 := filepath.Join(t.TempDir(), "r2")
	if _, err := Restore(ctx, cfg, r2, RestoreOptions{StateDir: filepath.Join(r2, "objstore")}); err != nil {
		t.Fatal(err)
	}
	st2, u2, err := open(r2)
	if err != nil {
		t.Fatal(err)
	}
	if err := u2.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	before = records()
	for range 2 {
		if err := uR.Sync(ctx); !errors.Is(err, ErrPrefixTaken) {
			t.Fatalf("round after another data dir uploaded: %v, want ErrPrefixTaken", err)
		}
	}
	if !errors.Is(uR.Err(), ErrPrefixTaken) {
		t.Errorf("Err() = %v, want ErrPrefixTaken", uR.Err())
	}

	// The race the latest check cannot see: a record under the number
	// u2 would take next is never overwritten.
	next := u2.Generation() + 1
	squat := []byte(fmt.Sprintf(`{"gen":%d,"writer":"someone-else"}`, next))
	if err := b.put(ctx, genKey(b, next), bytes.NewReader(squat), int64(len(squat))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st2.CreateProject("q2"); err != nil { // a round with something to upload
		t.Fatal(err)
	}
	if err := u2.Sync(ctx); !errors.Is(err, ErrPrefixTaken) {
		t.Fatalf("round whose generation number is taken: %v, want ErrPrefixTaken", err)
	}
	before[next] = string(squat)
	after := records()
	if len(after) != len(before) {
		t.Errorf("%d generation records, want %d", len(after), len(before))
	}
	for n, rec := range before {
		if after[n] != rec {
			t.Errorf("generation record %d was overwritten", n)
		}
	}
}

// TestPickGenerationByTime: --at picks the generation checkpointed last at
// or before the time, whatever the order of the numbers.
func TestPickGenerationByTime(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t, "bkt")
	cfg := Config{Endpoint: srv.Endpoint(), Bucket: "bkt", Prefix: "t", AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey, PathStyle: true}
	b, err := openBucket(ctx, cfg.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 4, 6, 0, 0, 0, time.UTC)
	for n, at := range map[uint64]time.Time{4: t0, 5: t0.Add(20 * time.Minute), 6: t0.Add(5 * time.Minute), 7: t0.Add(time.Hour)} {
		data, err := json.Marshal(generation{Gen: n, Time: at})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.put(ctx, genKey(b, n), bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		at   time.Duration
		want uint64
	}{{0, 4}, {10 * time.Minute, 6}, {30 * time.Minute, 5}, {2 * time.Hour, 7}} {
		g, err := pickGeneration(ctx, b, RestoreOptions{At: t0.Add(c.at)})
		if err != nil {
			t.Fatal(err)
		}
		if g.Gen != c.want {
			t.Errorf("at t0+%v: generation %d, want %d", c.at, g.Gen, c.want)
		}
	}
	if _, err := pickGeneration(ctx, b, RestoreOptions{At: t0.Add(-time.Minute)}); !errors.Is(err, ErrNoGeneration) {
		t.Errorf("before every generation: %v, want ErrNoGeneration", err)
	}
}
