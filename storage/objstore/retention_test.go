package objstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/storage"
	"github.com/offshootdb/offshoot/storage/objstore/s3test"
)

// TestKeepGenerations: the retention policy on its own, over two days
// of rounds every ten minutes.
func TestKeepGenerations(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	gens := map[uint64]time.Time{}
	for i := range 288 { // 48 h
		gens[uint64(i+1)] = now.Add(-time.Duration(287-i) * 10 * time.Minute)
	}
	kept := keepGenerations(gens, now, 24*time.Hour, time.Hour)
	var recent, hourly int
	for n := range kept {
		switch age := now.Sub(gens[n]); {
		case age <= time.Hour:
			recent++
		case age <= 24*time.Hour:
			hourly++
		default:
			t.Errorf("generation %d, %v old, kept past 24 h", n, age)
		}
	}
	// The last hour's 7 rounds (0 to 60 minutes old), then one per hour
	// for the 23 hours after: the newest of each hour older than that.
	if recent != 7 || hourly < 22 || hourly > 24 || !kept[288] {
		t.Errorf("kept %d recent and %d hourly (latest kept: %v)", recent, hourly, kept[288])
	}
	// Past the window only the latest stays.
	if k := keepGenerations(map[uint64]time.Time{1: now.Add(-48 * time.Hour), 2: now.Add(-47 * time.Hour)}, now, time.Hour, time.Hour); len(k) != 1 || !k[2] {
		t.Errorf("all past the window: kept %v, want the latest only", k)
	}
}

// TestRetention: rounds of a store that gains a project each time; every
// generation is restorable by number and by time while the bucket keeps
// them all; with a retention that only the latest fits, a round prunes the
// older generation records and every object only they named, and the
// latest still restores whole.
func TestRetention(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t, "bkt")
	data := t.TempDir()
	st, err := storage.Open(filepath.Join(data, "store"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	src := []Source{{Name: "store", Checkpoint: st.Checkpoint}}
	cfg := Config{Endpoint: srv.Endpoint(), Bucket: "bkt", Prefix: "keep", AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey, PathStyle: true}
	u, err := New(ctx, cfg, src, filepath.Join(data, "objstore"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var times []time.Time
	for i := 1; i <= 3; i++ {
		if _, _, err := st.CreateProject(fmt.Sprintf("p%d", i)); err != nil {
			t.Fatal(err)
		}
		if err := u.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		gens, err := Generations(ctx, cfg)
		if err != nil || len(gens) != i {
			t.Fatalf("after round %d: %v %v", i, gens, err)
		}
		times = append(times, gens[i-1].Time)
		time.Sleep(10 * time.Millisecond)
	}
	projects := func(opt RestoreOptions) []string {
		t.Helper()
		dst := filepath.Join(t.TempDir(), "r")
		if _, err := Restore(ctx, cfg, dst, opt); err != nil {
			t.Fatalf("restore %+v: %v", opt, err)
		}
		s, err := storage.Open(filepath.Join(dst, "store"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Check(); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range s.Projects() {
			out = append(out, p.Name)
		}
		sort.Strings(out)
		return out
	}
	if got := fmt.Sprint(projects(RestoreOptions{Gen: 1})); got != "[p1]" {
		t.Errorf("generation 1 restored %s", got)
	}
	if got := fmt.Sprint(projects(RestoreOptions{At: times[1].Add(time.Millisecond)})); got != "[p1 p2]" {
		t.Errorf("as of generation 2's time restored %s", got)
	}
	if _, err := Restore(ctx, cfg, t.TempDir(), RestoreOptions{At: times[0].Add(-time.Hour)}); !errors.Is(err, ErrNoGeneration) {
		t.Errorf("restore before the first generation: %v", err)
	}
	if _, err := Restore(ctx, cfg, t.TempDir(), RestoreOptions{Gen: 99}); !errors.Is(err, ErrNoGeneration) {
		t.Errorf("restore of a missing generation: %v", err)
	}
	_ = u.Close()

	// A retention only the latest round fits: the next round prunes.
	b, err := openBucket(ctx, cfg.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	before, err := b.list(ctx, b.key("store")+"/")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Keep, cfg.Interval = time.Nanosecond, time.Millisecond
	u, err = New(ctx, cfg, src, filepath.Join(data, "objstore"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if _, _, err := st.CreateProject("p4"); err != nil {
		t.Fatal(err)
	}
	if err := u.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	gens, err := Generations(ctx, cfg)
	if err != nil || len(gens) != 1 || gens[0].Gen != 4 {
		t.Fatalf("after pruning: %+v %v, want generation 4 alone", gens, err)
	}
	after, err := b.list(ctx, b.key("store")+"/")
	if err != nil {
		t.Fatal(err)
	}
	latest, err := b.generation(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(latest.Sources["store"]) || len(after) >= len(before)+len(latest.Sources["store"]) {
		t.Errorf("%d objects under store/ after pruning (%d before the round), the latest generation names %d",
			len(after), len(before), len(latest.Sources["store"]))
	}
	if p := u.Pruned(); p.Generations != 3 || p.Objects == 0 {
		t.Errorf("pruned %+v, want 3 generations and some objects", p)
	}
	if got := fmt.Sprint(projects(RestoreOptions{})); got != "[p1 p2 p3 p4]" {
		t.Errorf("latest after pruning restored %s", got)
	}
	if _, err := Restore(ctx, cfg, t.TempDir(), RestoreOptions{Gen: 1}); !errors.Is(err, ErrNoGeneration) {
		t.Errorf("restore of a pruned generation: %v", err)
	}
}

// TestRestoreOlderThenUpload: a data dir restored from an older generation
// writes sstables under the file numbers the original server used after
// that generation; uploading from it to the same prefix leaves every
// object of the newer generations as it was (its files take keys of a
// lineage of their own), and both the newer generations and its own
// restore whole.
func TestRestoreOlderThenUpload(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t, "bkt")
	cfg := Config{Endpoint: srv.Endpoint(), Bucket: "bkt", Prefix: "lineage", AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey, PathStyle: true}
	// round opens the store in dir (reopening flushes the WAL into
	// sstables), lets change alter it, and uploads one round from it.
	round := func(dir string, change func(*storage.Store)) {
		t.Helper()
		st, err := storage.Open(filepath.Join(dir, "store"), nil)
		if err != nil {
			t.Fatal(err)
		}
		change(st)
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		if st, err = storage.Open(filepath.Join(dir, "store"), nil); err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		u, err := New(ctx, cfg, []Source{{Name: "store", Checkpoint: st.Checkpoint}}, filepath.Join(dir, "objstore"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		if err := u.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	project := func(name string) func(*storage.Store) {
		return func(st *storage.Store) {
			if _, _, err := st.CreateProject(name); err != nil {
				t.Fatal(err)
			}
		}
	}
	orig := t.TempDir()
	for _, p := range []string{"p1", "p2", "p3"} {
		round(orig, project(p))
	}
	b, err := openBucket(ctx, cfg.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	snapshot := func() map[string]int64 {
		objs, err := b.list(ctx, b.key("store")+"/")
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int64{}
		for _, o := range objs {
			out[o.key] = o.size
		}
		return out
	}
	before := snapshot()

	restored := filepath.Join(t.TempDir(), "r")
	if _, err := Restore(ctx, cfg, restored, RestoreOptions{Gen: 1, StateDir: filepath.Join(restored, "objstore")}); err != nil {
		t.Fatal(err)
	}
	round(restored, project("q"))
	after := snapshot()
	for k, size := range before {
		if after[k] != size {
			t.Errorf("object %s: %d bytes before the restored dir uploaded, %d after", k, size, after[k])
		}
	}
	news := 0
	for k := range after {
		if _, ok := before[k]; !ok {
			news++
			if !strings.Contains(k, "/l-") && !strings.Contains(k, "/m/") {
				t.Errorf("the restored dir's new immutable file %s is not under a lineage of its own", k)
			}
		}
	}
	if news == 0 {
		t.Error("the restored dir uploaded no new file")
	}
	projects := func(opt RestoreOptions) string {
		t.Helper()
		dst := filepath.Join(t.TempDir(), "x")
		if _, err := Restore(ctx, cfg, dst, opt); err != nil {
			t.Fatal(err)
		}
		s, err := storage.Open(filepath.Join(dst, "store"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Check(); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range s.Projects() {
			out = append(out, p.Name)
		}
		sort.Strings(out)
		return fmt.Sprint(out)
	}
	if got := projects(RestoreOptions{Gen: 3}); got != "[p1 p2 p3]" {
		t.Errorf("generation 3 after the restored dir uploaded: %s", got)
	}
	if got := projects(RestoreOptions{}); got != "[p1 q]" {
		t.Errorf("the restored dir's own generation: %s", got)
	}
}
