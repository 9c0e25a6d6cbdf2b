package experiments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/evals/evalstest"
	"github.com/offshootdb/offshoot/experiments/internal/controldb"
)

// TestMaterializations runs Cranfield on the real stack (copy-on-write
// forks, one endpoint per fork). The first run builds each variant and
// keeps it as a materialization; the same spec again forks them: no
// embedding, load or index build recorded, each variant names the
// materialization and the run that built it, and its metrics and
// per-query rankings equal the first run's exactly (exact search and the
// very same HNSW index). reuse: never rebuilds and replaces the kept one;
// a changed index parameter or embedder misses; a base branch deleted
// after its run does not break the materialization.
func TestMaterializations(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres and FUSE")
	}
	// Endpoints get 16MB of shared buffers, less than an HNSW fork's
	// evaluation is sized to (buffers.go): the cold build's fork restarts
	// with them, a reuse's starts with them.
	svc := storeService(t, "p", map[string]string{"shared_buffers": "16MB"})
	ctx, cancel := context.WithTimeout(WithCaller(context.Background(), LocalCaller), 10*time.Minute)
	defer cancel()
	buffers := func(r *Run) {
		t.Helper()
		for _, v := range r.Variants {
			want := "16MB"
			if v.Name == "hnsw" {
				want = fmt.Sprintf("%dMB", svc.evalBuffers(v.IndexBytes)>>20)
			}
			if v.Provenance == nil || v.Provenance.Settings["shared_buffers"] != want {
				t.Errorf("run %s variant %s: provenance %+v, want shared_buffers %s", r.ID, v.Name, v.Provenance, want)
			}
		}
	}
	if _, err := svc.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "gone"}); err != nil {
		t.Fatal(err)
	}
	exact := VariantSpec{Name: "exact", Embedder: "hash-bow?dims=32"}
	hnsw := VariantSpec{Name: "hnsw", Embedder: "hash-bow?dims=32", Index: &IndexSpec{Type: "hnsw", M: 8, EfConstruction: 32},
		Search: SearchSpec{EfSearch: 20}}
	spec := func(base string, vs ...VariantSpec) ExperimentSpec {
		return ExperimentSpec{Name: "mat", Project: "p", Base: BranchPoint{Branch: base},
			Dataset: DatasetSpec{BEIR: evalstest.Cranfield(t)}, Metrics: []string{"ndcg_cut.10", "recall.10"}, Variants: vs}
	}
	run := func(sp ExperimentSpec) *Run {
		t.Helper()
		r, err := svc.StartRun(ctx, sp)
		if err != nil {
			t.Fatal(err)
		}
		done, err := svc.WaitRun(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if done.Status != StatusSucceeded {
			t.Fatalf("run %s: %s %q %+v", done.ID, done.Status, done.Error, done.Variants)
		}
		return done
	}
	built := func(r *Run) {
		t.Helper()
		for _, v := range r.Variants {
			if u := v.Materialization; u == nil || u.Reused || u.CreatedByRun != r.ID || u.Note != "" || len(u.ID) != 16 ||
				v.Timings.Embed == 0 || v.Rows != 1400 {
				t.Errorf("run %s variant %s: materialization %+v, timings %+v, rows %d", r.ID, v.Name, u, v.Timings, v.Rows)
			}
		}
	}
	reused := func(r, from *Run) {
		t.Helper()
		for i, v := range r.Variants {
			w := from.Variants[i]
			u := v.Materialization
			if u == nil || !u.Reused || u.ID != w.Materialization.ID || u.CreatedByRun != from.ID || u.CreatedByVariant != w.Name {
				t.Errorf("variant %s: materialization %+v, want %s built by %s/%s", v.Name, u, w.Materialization.ID, from.ID, w.Name)
			}
			if v.Timings.Embed != 0 || v.Timings.Load != 0 || v.Timings.Index != 0 || v.Timings.Materialize != 0 || v.IndexBuild != nil {
				t.Errorf("variant %s rebuilt: timings %+v, index build %+v", v.Name, v.Timings, v.IndexBuild)
			}
			if v.Rows != w.Rows || v.IndexName != w.IndexName || v.IndexBytes != w.IndexBytes || v.ModelID != w.ModelID ||
				v.Provenance == nil || v.Provenance.IndexDDL != w.Provenance.IndexDDL || v.Provenance.Normalization != w.Provenance.Normalization {
				t.Errorf("variant %s: rows %d index %s %d model %s provenance %+v; built: %d %s %d %s %+v", v.Name, v.Rows, v.IndexName,
					v.IndexBytes, v.ModelID, v.Provenance, w.Rows, w.IndexName, w.IndexBytes, w.ModelID, w.Provenance)
			}
			same(t, v, w)
		}
	}

	r1 := run(spec("gone", exact, hnsw))
	built(r1)
	buffers(r1)
	ms, err := svc.ListMaterializations(ctx, "p")
	if err != nil || len(ms) != 2 {
		t.Fatalf("materializations after the first run: %+v (%v)", ms, err)
	}
	for _, m := range ms {
		if m.CreatedByRun != r1.ID || m.Hits != 0 || m.Rows != 1400 || m.DeltaBytes == nil || *m.DeltaBytes <= 0 || m.CurrentBytes == nil || *m.CurrentBytes <= 0 || m.ExpiresAt == nil ||
			m.Point.Snapshot == "" || m.Key.Corpus != r1.Provenance.Data.Corpus || m.Normalization != "l2" || m.Build.Embed == 0 {
			t.Errorf("materialization %+v", m)
		}
		if (m.CreatedByVariant == "hnsw") != (m.IndexName != "" && m.Key.Index.Type == "hnsw" && m.IndexBytes > 0) {
			t.Errorf("materialization of %s: index %q %d bytes, key %+v", m.CreatedByVariant, m.IndexName, m.IndexBytes, m.Key.Index)
		}
		// One walk of the fork after the checkpoint that keeps it gives
		// both numbers, and its variant the same delta.
		if m.DeltaBytes == nil || m.CurrentBytes == nil {
			continue
		}
		if *m.CurrentBytes > *m.DeltaBytes {
			t.Errorf("materialization of %s: current bytes %d over its delta %d", m.CreatedByVariant, *m.CurrentBytes, *m.DeltaBytes)
		}
		for _, v := range r1.Variants {
			if v.Name == m.CreatedByVariant && (v.StorageDelta == nil || *v.StorageDelta != *m.DeltaBytes) {
				t.Errorf("variant %s: storage delta %v, its materialization's %d", v.Name, v.StorageDelta, *m.DeltaBytes)
			}
		}
	}
	// The base the materializations were built on goes; they fork from
	// their own snapshots.
	if err := svc.DeleteBranch(ctx, "p", "gone", false); err != nil {
		t.Fatal(err)
	}
	// Kept after the run, so that the HNSW fork's table statistics show
	// how it was read.
	again := spec("main", exact, hnsw)
	again.KeepBranches = true
	r2 := run(again)
	reused(r2, r1)
	buffers(r2)
	// The kept reuse runs with them (not only records them).
	if res, err := svc.Query(ctx, QueryRequest{Project: "p", Branch: r2.Variants[1].Branch, SQL: "SHOW shared_buffers"}); err != nil ||
		len(res.Results[0].Rows) != 1 || res.Results[0].Rows[0][0] != r2.Variants[1].Provenance.Settings["shared_buffers"] {
		t.Errorf("the reused HNSW fork's shared_buffers: %+v (%v)", res, err)
	}
	// The reuse read the exact top-k (ANN recall's ground truth) recorded
	// with the materialization: less than one pass over the table (the
	// provenance samples 1000 rows' norms), not one per query.
	var seqRead, idxScans int64
	res, err := svc.Query(ctx, QueryRequest{Project: "p", Branch: r2.Variants[1].Branch,
		SQL: "SELECT seq_tup_read, idx_scan FROM pg_stat_user_tables WHERE relname = '" + runTable + "'"})
	if err != nil || len(res.Results[0].Rows) != 1 {
		t.Fatalf("table statistics of the reused HNSW fork: %+v (%v)", res, err)
	}
	row := res.Results[0].Rows[0]
	seqRead, idxScans = asInt(t, row[0]), asInt(t, row[1])
	if seqRead >= 1400 || idxScans < 225 {
		t.Errorf("the reused HNSW fork read %d rows sequentially and scanned its index %d times", seqRead, idxScans)
	}
	for _, v := range r2.Variants {
		if err := svc.DeleteBranch(ctx, "p", v.Branch, false); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range r2.Variants {
		m, err := svc.GetMaterialization(ctx, "p", v.Materialization.ID)
		if err != nil || m.Hits != 1 || !m.LastUsedAt.After(m.CreatedAt) {
			t.Errorf("materialization of %s after one reuse: %+v (%v)", v.Name, m, err)
		}
	}
	if page, err := svc.ListBranches(ctx, ListBranchesRequest{Project: "p", Prefix: "exp/"}); err != nil || len(page.Branches) != 0 {
		t.Errorf("run forks left behind: %+v (%v)", page, err)
	}

	// reuse: never builds from the base and replaces what is kept; exact
	// search gives the same numbers.
	cold := spec("main", exact, hnsw)
	cold.Reuse = ReuseNever
	r3 := run(cold)
	built(r3)
	same(t, r3.Variants[0], r1.Variants[0])
	ms, err = svc.ListMaterializations(ctx, "p")
	if err != nil || len(ms) != 2 || ms[0].CreatedByRun != r3.ID || ms[1].CreatedByRun != r3.ID || ms[0].Hits != 0 {
		t.Fatalf("materializations after the cold run: %+v (%v)", ms, err)
	}
	snaps, err := svc.ListSnapshots(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	var matSnaps []string
	for _, sn := range snaps {
		if strings.HasPrefix(sn.Name, "mat.") {
			matSnaps = append(matSnaps, sn.Name)
		}
	}
	if len(matSnaps) != 2 || (matSnaps[0] != ms[0].Point.Snapshot && matSnaps[0] != ms[1].Point.Snapshot) {
		t.Errorf("materialization snapshots %v, want those of %+v and %+v (the replaced ones dropped)", matSnaps, ms[0].Point, ms[1].Point)
	}

	// Another index parameter, another embedder: both miss.
	m12 := hnsw
	m12.Name, m12.Index = "m12", &IndexSpec{Type: "hnsw", M: 12, EfConstruction: 32}
	dims := exact
	dims.Name, dims.Embedder = "dims24", "hash-bow?dims=24"
	r4 := run(spec("main", m12, dims, exact))
	built(&Run{ID: r4.ID, Variants: r4.Variants[:2]})
	reused(&Run{Variants: r4.Variants[2:]}, &Run{ID: r3.ID, Variants: r3.Variants[:1]})
	if ms, err := svc.ListMaterializations(ctx, "p"); err != nil || len(ms) != 4 {
		t.Errorf("materializations: %d (%v), want 4", len(ms), err)
	}
}

// same fails t unless a and b have the same metrics, ANN recall and
// per-query rankings.
func same(t *testing.T, a, b VariantRun) {
	t.Helper()
	if !reflect.DeepEqual(a.Metrics, b.Metrics) || !reflect.DeepEqual(a.ANNRecall, b.ANNRecall) {
		t.Errorf("variant %s: metrics %v recall %v, want %v %v", a.Name, a.Metrics, fmtp(a.ANNRecall), b.Metrics, fmtp(b.ANNRecall))
	}
	if len(a.Results) != len(b.Results) || len(a.Results) == 0 {
		t.Fatalf("variant %s: %d rankings, want %d", a.Name, len(a.Results), len(b.Results))
	}
	for i := range a.Results {
		if !reflect.DeepEqual(a.Results[i].Hits, b.Results[i].Hits) || !reflect.DeepEqual(a.Results[i].Values, b.Results[i].Values) {
			t.Errorf("variant %s query %s: ranking %v, want %v", a.Name, a.Results[i].Query, a.Results[i].Hits, b.Results[i].Hits)
			return
		}
	}
}

func asInt(t *testing.T, v any) int64 {
	t.Helper()
	switch x := v.(type) {
	case int64:
		return x
	case float64:
		return int64(x)
	case json.Number:
		n, err := x.Int64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	t.Fatalf("%v (%T) is not a number", v, v)
	return 0
}

func fmtp(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestMaterializationLifecycle: a pinned materialization survives the
// storage budget's eviction and the TTL, an evicted one is rebuilt on
// demand, one whose snapshot vanished is rebuilt (and says so), and
// delete releases the snapshot.
func TestMaterializationLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres and FUSE")
	}
	svc := storeService(t, "p", nil)
	ctx, cancel := context.WithTimeout(WithCaller(context.Background(), LocalCaller), 10*time.Minute)
	defer cancel()
	sp := ExperimentSpec{Name: "life", Project: "p", Base: BranchPoint{Branch: "main"},
		Dataset: DatasetSpec{BEIR: evalstest.Cranfield(t)}, Metrics: []string{"ndcg_cut.10"},
		Variants: []VariantSpec{{Name: "a", Embedder: "hash-bow?dims=16"}, {Name: "b", Embedder: "hash-char?dims=16"}}}
	run := func() (a, b *MaterializationUse) {
		t.Helper()
		r, err := svc.StartRun(ctx, sp)
		if err != nil {
			t.Fatal(err)
		}
		if r, err = svc.WaitRun(ctx, r.ID); err != nil || r.Status != StatusSucceeded {
			t.Fatalf("run: %v %+v", err, r)
		}
		return r.Variants[0].Materialization, r.Variants[1].Materialization
	}
	ids := func() []string {
		t.Helper()
		ms, err := svc.ListMaterializations(ctx, "p")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range ms {
			out = append(out, m.ID)
		}
		return out
	}
	snapshotOf := func(id string) bool {
		t.Helper()
		snaps, err := svc.ListSnapshots(ctx, "p")
		if err != nil {
			t.Fatal(err)
		}
		for _, sn := range snaps {
			if strings.HasPrefix(sn.Name, "mat."+id+".") {
				return true
			}
		}
		return false
	}
	a, b := run()
	if a.Reused || b.Reused || len(ids()) != 2 {
		t.Fatalf("first run: %+v %+v, kept %v", a, b, ids())
	}
	if u, err := svc.ProjectUsage(ctx, "p"); err != nil || u.Materializations.Count != 2 || u.Materializations.DeltaBytes <= 0 {
		t.Errorf("usage %+v (%v)", u, err)
	}
	if m, err := svc.PinMaterialization(ctx, "p", a.ID, true); err != nil || !m.Pinned || m.ExpiresAt != nil {
		t.Fatalf("pin: %+v (%v)", m, err)
	}
	if u, err := svc.ProjectUsage(ctx, "p"); err != nil || u.Materializations.Pinned != 1 {
		t.Errorf("usage after pin %+v (%v)", u, err)
	}
	// A budget of one byte: everything unpinned goes.
	svc.cfg.MaterializationBudget = 1
	if n := svc.expireMaterializations(ctx); n != 1 || !reflect.DeepEqual(ids(), []string{a.ID}) || snapshotOf(b.ID) || !snapshotOf(a.ID) {
		t.Fatalf("budget eviction dropped %d, kept %v (snapshots: a %v, b %v)", n, ids(), snapshotOf(a.ID), snapshotOf(b.ID))
	}
	svc.cfg.MaterializationBudget = 0
	// The evicted one is rebuilt on demand, the pinned one reused.
	a2, b2 := run()
	if !a2.Reused || a2.ID != a.ID || b2.Reused || b2.ID != b.ID || b2.Note != "" {
		t.Fatalf("after eviction: %+v %+v", a2, b2)
	}
	// A TTL of 1ns: the unpinned one expires at once, the pinned one
	// stays until unpinned.
	svc.cfg.MaterializationTTL = time.Nanosecond
	if n := svc.expireMaterializations(ctx); n != 1 || !reflect.DeepEqual(ids(), []string{a.ID}) {
		t.Fatalf("ttl dropped %d, kept %v", n, ids())
	}
	if m, err := svc.PinMaterialization(ctx, "p", a.ID, false); err != nil || m.Pinned || m.ExpiresAt == nil {
		t.Fatalf("unpin: %+v (%v)", m, err)
	}
	time.Sleep(time.Millisecond)
	if n := svc.expireMaterializations(ctx); n != 1 || len(ids()) != 0 || snapshotOf(a.ID) {
		t.Fatalf("ttl after unpin dropped %d, kept %v", n, ids())
	}
	svc.cfg.MaterializationTTL = time.Hour

	// A materialization whose snapshot went behind its back: the variant
	// is built cold, says why, and keeps a new one.
	run()
	m, err := svc.GetMaterialization(ctx, "p", a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.DeleteSnapshot(ctx, "p", m.Point.Snapshot); err != nil {
		t.Fatal(err)
	}
	a3, b3 := run()
	if a3.Reused || !strings.Contains(a3.Note, "rebuilt: ") || !b3.Reused {
		t.Errorf("after its snapshot vanished: %+v %+v", a3, b3)
	}
	if m2, err := svc.GetMaterialization(ctx, "p", a.ID); err != nil || m2.Point == m.Point || !snapshotOf(a.ID) {
		t.Errorf("rebuilt: %+v (%v)", m2, err)
	}
	// Delete releases the snapshot; a second delete is not found.
	if err := svc.DeleteMaterialization(ctx, "p", b.ID); err != nil || snapshotOf(b.ID) {
		t.Errorf("delete: %v, snapshot left %v", err, snapshotOf(b.ID))
	}
	if err := svc.DeleteMaterialization(ctx, "p", b.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete again: %v", err)
	}
	// A deleted project's materializations (and their recorded exact
	// top-k) are forgotten with it.
	if err := svc.DeleteProject(ctx, "p", true); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := svc.withDB(func(db *controldb.DB) error {
		return db.Scan([]byte("mat"), []byte("mau"), func(k, _ []byte) (bool, error) {
			n++
			return true, nil
		})
	}); err != nil || n != 0 {
		t.Errorf("%d materialization records left after the project's deletion (%v)", n, err)
	}
}
