package experiments

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/offshootdb/offshoot/compute/pg"
	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/evals/evalstest"
	"github.com/offshootdb/offshoot/storage"
	"github.com/offshootdb/offshoot/vectors"
)

// pgBranches implements RunBranches and Connector over one Postgres
// cluster: a branch is a database, a fork is CREATE DATABASE ... TEMPLATE
// of the base's database, discard is DROP DATABASE.
type pgBranches struct {
	c  *pgtest.Cluster
	mu sync.Mutex // CREATE DATABASE from a template one at a time
	// restarts counts Restart calls.
	restarts int
}

func dbName(branch string) string {
	if branch == "main" {
		return "main"
	}
	h := sha1.Sum([]byte(branch))
	return "b_" + hex.EncodeToString(h[:10])
}

func (b *pgBranches) admin(ctx context.Context) (*pgx.Conn, error) {
	return pgx.Connect(ctx, b.c.ConnString)
}

func (b *pgBranches) exists(ctx context.Context, branch string) error {
	conn, err := b.admin(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", dbName(branch)).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("branch %s: %w", branch, ErrNotFound)
	}
	return nil
}

func (b *pgBranches) Resolve(ctx context.Context, _ string, at BranchPoint) (BranchPoint, error) {
	if err := b.exists(ctx, at.Branch); err != nil {
		return BranchPoint{}, err
	}
	conn, err := b.admin(ctx)
	if err != nil {
		return BranchPoint{}, err
	}
	defer conn.Close(ctx)
	var lsn int64
	if err := conn.QueryRow(ctx, "SELECT (pg_current_wal_lsn() - '0/0')::bigint").Scan(&lsn); err != nil {
		return BranchPoint{}, err
	}
	return BranchPoint{Branch: at.Branch, Seq: uint64(lsn)}, nil
}

func (b *pgBranches) Fork(ctx context.Context, _ string, from BranchPoint, name string) (ForkInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	conn, err := b.admin(ctx)
	if err != nil {
		return ForkInfo{}, err
	}
	defer conn.Close(ctx)
	sql := fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", pgx.Identifier{dbName(name)}.Sanitize(), pgx.Identifier{dbName(from.Branch)}.Sanitize())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return ForkInfo{}, err
	}
	var lsn int64
	if err := conn.QueryRow(ctx, "SELECT (pg_current_wal_lsn() - '0/0')::bigint").Scan(&lsn); err != nil {
		return ForkInfo{}, err
	}
	return ForkInfo{Branch: name, Seq: uint64(lsn)}, nil
}

func (b *pgBranches) Discard(ctx context.Context, _ string, branch string) error {
	conn, err := b.admin(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{dbName(branch)}.Sanitize()+" WITH (FORCE)")
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "3D000" {
		return fmt.Errorf("branch %s: %w", branch, ErrNotFound)
	}
	return err
}

// Restart implements ForkRestarter: it restarts the whole cluster (fast
// shutdown), which empties the shared buffers of every fork.
func (b *pgBranches) Restart(ctx context.Context, _, _ string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.c.Postmaster
	if err := p.Stop(ctx, pg.Fast); err != nil {
		return err
	}
	np, err := pg.Start(ctx, p.Options())
	if err != nil {
		return err
	}
	b.c.Postmaster = np
	b.restarts++
	return np.WaitReady(ctx, b.c.ConnString)
}

// size is the database's size on disk.
func (b *pgBranches) size(ctx context.Context, branch string) (int64, error) {
	conn, err := b.admin(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int64
	err = conn.QueryRow(ctx, "SELECT pg_database_size($1)", dbName(branch)).Scan(&n)
	return n, err
}

// ForkUsage is the database's size, as delta and as current bytes: a
// database copy holds all of itself.
func (b *pgBranches) ForkUsage(ctx context.Context, _ string, branch string) (ForkBytes, error) {
	n, err := b.size(ctx, branch)
	return ForkBytes{Delta: n, Current: n}, err
}

func (b *pgBranches) Conn(ctx context.Context, _ string, branch string, _ Access) (*pgx.Conn, func(), error) {
	conn, err := pgx.Connect(ctx, b.c.Postmaster.ConnString("postgres", "", dbName(branch)))
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "3D000" {
			return nil, nil, fmt.Errorf("branch %s: %w", branch, ErrNotFound)
		}
		return nil, nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return conn, func() { conn.Close(context.Background()) }, nil
}

// forks lists the databases that are forks (not main or the system ones).
func (b *pgBranches) forks(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	conn, err := b.admin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE datname LIKE 'b\\_%' ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// sqlDataset is the DatasetSpec of the tables loadSQLDataset fills.
var sqlDataset = DatasetSpec{CorpusSQL: "SELECT id, body FROM docs", QueriesSQL: "SELECT id, q FROM qs", QrelsSQL: "SELECT q, d, g FROM judged"}

// loadSQLDataset loads the BEIR collection in dir into tables docs (the
// text a BEIR run embeds), qs and judged of conn's database, as
// production-like data that a spec reads with sqlDataset.
func loadSQLDataset(t *testing.T, conn *pgx.Conn, dir string) {
	t.Helper()
	ctx := context.Background()
	ds, err := evals.LoadBEIR(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE docs(id text PRIMARY KEY, body text); CREATE TABLE qs(id text, q text); CREATE TABLE judged(q text, d text, g int)"); err != nil {
		t.Fatal(err)
	}
	var docs, qs, judged [][]any
	for _, d := range ds.Corpus {
		docs = append(docs, []any{d.ID, docText(d)})
	}
	for _, q := range ds.Queries {
		qs = append(qs, []any{q.ID, q.Text})
	}
	for q, m := range ds.Qrels {
		for d, g := range m {
			judged = append(judged, []any{q, d, g})
		}
	}
	for _, tb := range []struct {
		name string
		cols []string
		rows [][]any
	}{{"docs", []string{"id", "body"}, docs}, {"qs", []string{"id", "q"}, qs}, {"judged", []string{"q", "d", "g"}, judged}} {
		if _, err := conn.CopyFrom(ctx, pgx.Identifier{tb.name}, tb.cols, pgx.CopyFromRows(tb.rows)); err != nil {
			t.Fatal(err)
		}
	}
}

type runEnv struct {
	svc *Service
	br  *pgBranches
	ctx context.Context
	dir string
}

func newRunEnv(t *testing.T) *runEnv {
	t.Helper()
	e := newRunEnvConfig(t, Config{DatasetsDir: evalstest.DatasetsDir(t)}, true)
	e.dir = evalstest.Cranfield(t)
	return e
}

// newRunEnvConfig is newRunEnv with cfg's scale and datasets settings,
// and an embedding cache if cache.
func newRunEnvConfig(t testing.TB, cfg Config, cache bool) *runEnv {
	t.Helper()
	c := pgtest.New(t, nil)
	br := &pgBranches{c: c}
	first := c.Postmaster
	t.Cleanup(func() { // a Restart replaced the cluster pgtest stops
		if br.c.Postmaster != first {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = br.c.Postmaster.Stop(ctx, pg.Immediate)
		}
	})
	ctx := context.Background()
	admin := c.Connect(t)
	if _, err := admin.Exec(ctx, "CREATE DATABASE main"); err != nil {
		t.Fatal(err)
	}
	mc, release, err := br.Conn(ctx, "p", "main", ReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mc.Exec(ctx, "CREATE EXTENSION vector; CREATE TABLE app_data(id int PRIMARY KEY); INSERT INTO app_data VALUES (1),(2)"); err != nil {
		t.Fatal(err)
	}
	release()
	var ec *vectors.Cache
	if cache {
		c, err := vectors.OpenCache(filepath.Join(t.TempDir(), "cache"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		ec = c
	}
	// The schedule test's webhook is an httptest server on loopback, which
	// only an operator's allow-list opens.
	svc, err := New(Config{ControlDir: filepath.Join(t.TempDir(), "control"), Connector: br, Branches: br, EmbedCache: ec,
		DatasetsDir: cfg.DatasetsDir, WebhookAllow: []string{"127.0.0.0/8"},
		IngestBatch: cfg.IngestBatch, IndexMemoryBudget: cfg.IndexMemoryBudget})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	return &runEnv{svc: svc, br: br, ctx: WithCaller(ctx, LocalCaller)}
}

func (e *runEnv) spec(variants ...VariantSpec) ExperimentSpec {
	return ExperimentSpec{Name: "ab", Project: "p", Base: BranchPoint{Branch: "main"},
		Dataset: DatasetSpec{BEIR: e.dir}, Variants: variants, Metrics: []string{"ndcg_cut.10", "recall.10", "recip_rank"},
		Concurrency: 2}
}

func (e *runEnv) run(t *testing.T, sp ExperimentSpec) *Run {
	t.Helper()
	r, err := e.svc.StartRun(e.ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 2*time.Minute)
	defer cancel()
	done, err := e.svc.WaitRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	return done
}

// TestRuns runs experiments on Cranfield, each variant on its own
// database fork of one throwaway cluster.
func TestRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres")
	}
	e := newRunEnv(t)
	bow := VariantSpec{Name: "bow", Embedder: "hash-bow?dims=256"}
	char := VariantSpec{Name: "char", Embedder: "hash-char?dims=256"}

	t.Run("ab", func(t *testing.T) {
		r1 := e.run(t, e.spec(bow, char))
		if r1.Status != StatusSucceeded {
			t.Fatalf("status %s: %s %+v", r1.Status, r1.Error, r1.Variants)
		}
		if r1.Base.Branch != "main" || r1.Base.Seq == 0 {
			t.Errorf("resolved base %+v", r1.Base)
		}
		if r1.Docs != 1400 || r1.Queries != 225 {
			t.Errorf("dataset %d docs %d queries", r1.Docs, r1.Queries)
		}
		for _, v := range r1.Variants {
			if v.Status != StatusSucceeded || len(v.Results) != 225 || v.Rows != 1400 || v.Kept {
				t.Errorf("variant %s: %s %q, %d results, %d rows, kept %v", v.Name, v.Status, v.Error, len(v.Results), v.Rows, v.Kept)
			}
			if !strings.HasPrefix(v.Branch, "exp/ab/"+r1.ID+"/") || v.StorageDelta == nil || *v.StorageDelta <= 0 {
				t.Errorf("variant %s: branch %q storage delta %v", v.Name, v.Branch, v.StorageDelta)
			}
			if len(v.Results[0].Hits) != 10 || v.Metrics["ndcg_cut_10"] <= 0.1 {
				t.Errorf("variant %s: %d hits, metrics %v", v.Name, len(v.Results[0].Hits), v.Metrics)
			}
			t.Logf("%s: %v timings %+v latency %v", v.Name, v.Metrics, v.Timings, v.Latency)
		}
		if f := e.br.forks(t); len(f) != 0 {
			t.Errorf("forks left behind: %v", f)
		}
		// The base is unchanged: no chunk table, same data.
		mc, release, err := e.br.Conn(e.ctx, "p", "main", ReadOnly)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := mc.QueryRow(e.ctx, "SELECT count(*) FROM pg_tables WHERE tablename = $1", runTable).Scan(&n); err != nil || n != 0 {
			t.Errorf("base has %d chunk tables (%v)", n, err)
		}
		release()

		cmp, err := e.svc.CompareRuns(e.ctx, CompareRequest{A: r1.ID + ":bow", B: r1.ID + ":char", Metric: "ndcg_cut_10"})
		if err != nil {
			t.Fatal(err)
		}
		m, ok := cmp.Comparison.Measure("ndcg_cut_10")
		if !ok || m.P <= 0 || m.P > 1 || m.Wins+m.Ties+m.Losses != 225 || m.CILow > m.Delta || m.CIHigh < m.Delta {
			t.Errorf("comparison %+v", m)
		}
		wantVerdict := "no significant difference"
		if m.Significant {
			wantVerdict = map[bool]string{true: "better", false: "worse"}[m.Delta > 0]
		}
		if cmp.Verdict != wantVerdict {
			t.Errorf("verdict %q, want %q", cmp.Verdict, wantVerdict)
		}
		if m.Losses > 0 && len(cmp.Regressed) == 0 {
			t.Error("no regressed queries listed")
		}
		for _, q := range cmp.Regressed {
			if q.Delta >= 0 || q.Overlap < 0 || q.Overlap > 1 || len(q.Entered) != len(q.Left) {
				t.Errorf("regressed query %+v", q)
			}
		}
		var page strings.Builder
		if err := cmp.WriteHTML(&page); err != nil || !strings.Contains(page.String(), "<td>ndcg_cut_10</td>") || !strings.Contains(page.String(), cmp.Verdict) {
			t.Errorf("html report (%v):\n%s", err, page.String())
		}
		t.Logf("char vs bow: %s delta %.4f p %.4g [%.4f, %.4f] w/t/l %d/%d/%d", cmp.Verdict, m.Delta, m.P, m.CILow, m.CIHigh, m.Wins, m.Ties, m.Losses)

		// The same spec again gives identical numbers, from the cache.
		r2 := e.run(t, e.spec(bow, char))
		for i, v := range r2.Variants {
			a, _ := json.Marshal(r1.Variants[i].Metrics)
			b, _ := json.Marshal(v.Metrics)
			if string(a) != string(b) {
				t.Errorf("variant %s: rerun metrics %s, first %s", v.Name, b, a)
			}
			if v.CacheMisses != 0 || v.CacheHits == 0 {
				t.Errorf("variant %s rerun: %d cache hits, %d misses", v.Name, v.CacheHits, v.CacheMisses)
			}
		}
		same, err := e.svc.CompareRuns(e.ctx, CompareRequest{A: r1.ID + ":bow", B: r2.ID + ":bow"})
		if err != nil {
			t.Fatal(err)
		}
		if same.Verdict != "no significant difference" || len(same.Regressed) != 0 {
			t.Errorf("run vs its rerun: %s, %d regressed", same.Verdict, len(same.Regressed))
		}
		list, err := e.svc.ListRuns(e.ctx, RunFilter{Project: "p"})
		if err != nil || len(list) < 2 || list[0].ID != r2.ID || list[0].Variants[0].Results != nil {
			t.Errorf("list: %d runs, err %v", len(list), err)
		}
	})

	t.Run("failing variant and sweep", func(t *testing.T) {
		good := VariantSpec{Name: "hnsw", Embedder: "hash-bow?dims=128", Index: &IndexSpec{Type: "hnsw", M: 8, EfConstruction: 32},
			Sweep: &SweepSpec{EfSearch: []int{10, 80}}}
		// Valid, and bound to fail: 1000 lists of 1400 rows hold about
		// one row each, and a probe without iterative scans returns
		// fewer than k (an hnsw m of 200, say, is refused up front).
		bad := VariantSpec{Name: "bad", Embedder: "hash-bow?dims=128", Index: &IndexSpec{Type: "ivfflat", Lists: 1000},
			Search: SearchSpec{Probes: 1, IterativeScan: IterativeOff}}
		sp := e.spec(good, bad)
		sp.KeepBranches = true
		r := e.run(t, sp)
		if r.Status != StatusPartial {
			t.Fatalf("status %s, want partial", r.Status)
		}
		byName := map[string]VariantRun{}
		for _, v := range r.Variants {
			byName[v.Name] = v
		}
		if v := byName["bad"]; v.Status != StatusFailed || !strings.Contains(v.Error, "recall would be capped") || !strings.Contains(v.Error, "search.probes") {
			t.Errorf("bad variant: %s %q", v.Status, v.Error)
		}
		for _, n := range []string{"hnsw-ef10", "hnsw-ef80"} {
			v := byName[n]
			if v.Status != StatusSucceeded || v.ANNRecall == nil || v.IndexBytes <= 0 || !v.Kept {
				t.Fatalf("%s: %s %q recall %v index %d kept %v", n, v.Status, v.Error, v.ANNRecall, v.IndexBytes, v.Kept)
			}
			t.Logf("%s: ann recall %.3f qps %.0f ndcg@10 %.4f", n, *v.ANNRecall, v.Latency.QPS, v.Metrics["ndcg_cut_10"])
		}
		if *byName["hnsw-ef80"].ANNRecall < *byName["hnsw-ef10"].ANNRecall {
			t.Errorf("recall fell with ef_search: %v < %v", *byName["hnsw-ef80"].ANNRecall, *byName["hnsw-ef10"].ANNRecall)
		}
		pts := SweepPoints(r)
		if len(pts) != 2 || !pts[len(pts)-1].Pareto {
			t.Errorf("sweep points %+v", pts)
		}
		// The ef_search points share one fork; it and the failed one are kept.
		if byName["hnsw-ef10"].Branch != byName["hnsw-ef80"].Branch || byName["hnsw-ef10"].Branch == byName["bad"].Branch {
			t.Errorf("branches %q %q %q", byName["hnsw-ef10"].Branch, byName["hnsw-ef80"].Branch, byName["bad"].Branch)
		}
		if f := e.br.forks(t); len(f) != 2 {
			t.Errorf("%d forks kept, want 2: %v", len(f), f)
		}
		for _, n := range []string{"hnsw-ef10", "bad"} {
			if err := e.br.Discard(e.ctx, "p", byName[n].Branch); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("embedder that errors", func(t *testing.T) {
		// Port 1 on loopback is closed: the provider fails at embed time.
		down := VariantSpec{Name: "down", Embedder: "ollama:nomic-embed-text?dims=8&base_url=http://127.0.0.1:1"}
		r := e.run(t, e.spec(VariantSpec{Name: "ok", Embedder: "hash-bow?dims=32"}, down))
		if r.Status != StatusPartial {
			t.Fatalf("status %s %q, want partial", r.Status, r.Error)
		}
		for _, v := range r.Variants {
			switch v.Name {
			case "down":
				if v.Status != StatusFailed || !strings.Contains(v.Error, "embed") || !strings.Contains(v.Error, "127.0.0.1:1") {
					t.Errorf("down: %s %q", v.Status, v.Error)
				}
			case "ok":
				if v.Status != StatusSucceeded {
					t.Errorf("ok: %s %q", v.Status, v.Error)
				}
			}
		}
		if f := e.br.forks(t); len(f) != 0 {
			t.Errorf("forks left behind: %v", f)
		}
	})

	t.Run("base deleted mid-run", func(t *testing.T) {
		// A database fork cannot outlive its template: the variant that
		// forks after the base is dropped fails in its fork phase, naming
		// the base, and the one before it is unaffected. (On the real
		// store the pinned base survives: TestRunOnStoreBaseDeleted.)
		admin, err := e.br.admin(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = admin.Exec(e.ctx, "CREATE DATABASE "+pgx.Identifier{dbName("victim")}.Sanitize()+" TEMPLATE "+pgx.Identifier{dbName("main")}.Sanitize())
		admin.Close(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The hook stays for the later subtests (set before any run of
		// theirs starts); it acts once.
		var once sync.Once
		e.svc.cfg.Branches = forkHook{RunBranches: e.br, before: func(ctx context.Context, name string) {
			if strings.HasSuffix(name, "/second") {
				once.Do(func() {
					if err := e.br.Discard(ctx, "p", "victim"); err != nil {
						t.Error(err)
					}
				})
			}
		}}
		sp := e.spec(VariantSpec{Name: "first", Embedder: "hash-bow?dims=32"}, VariantSpec{Name: "second", Embedder: "hash-bow?dims=24"})
		sp.Base.Branch, sp.Concurrency = "victim", 1
		done := e.run(t, sp)
		first, second := done.Variants[0], done.Variants[1]
		if first.Status != StatusSucceeded || first.Rows != 1400 {
			t.Errorf("first variant (forked before the drop): %s %q rows %d", first.Status, first.Error, first.Rows)
		}
		if second.Status != StatusFailed || !strings.HasPrefix(second.Error, "fork: ") || !strings.Contains(second.Error, "from base victim@") {
			t.Errorf("second variant (forked after the drop): %s %q", second.Status, second.Error)
		}
		if done.Status != StatusPartial {
			t.Errorf("run status %s, want partial", done.Status)
		}
		if f := e.br.forks(t); len(f) != 0 {
			t.Errorf("forks left behind: %v", f)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		vs := []VariantSpec{bow, char, {Name: "rp", Embedder: "hash-rp?dims=256"}}
		sp := e.spec(vs...)
		sp.Concurrency = 1
		r, err := e.svc.StartRun(e.ctx, sp)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.svc.CancelRun(e.ctx, r.ID); err != nil {
			t.Fatal(err)
		}
		done, err := e.svc.WaitRun(e.ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if done.Status != StatusCancelled {
			t.Errorf("status %s", done.Status)
		}
		for _, v := range done.Variants {
			if v.Status != StatusCancelled {
				t.Errorf("variant %s: %s %q", v.Name, v.Status, v.Error)
			}
		}
		if f := e.br.forks(t); len(f) != 0 {
			t.Errorf("forks left behind: %v", f)
		}
		if err := e.svc.CancelRun(e.ctx, r.ID); !errors.Is(err, ErrConflict) {
			t.Errorf("cancel a finished run: %v", err)
		}
	})

	t.Run("schedule regression", func(t *testing.T) {
		hooks := make(chan []byte, 4)
		hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			hooks <- b
		}))
		defer hook.Close()
		sp := e.spec(bow)
		sp.Name = "nightly"
		if _, err := e.svc.CreateSchedule(e.ctx, Schedule{Name: "nightly", Cron: "@every 1s", Spec: sp,
			Metric: "ndcg_cut_10", Correction: "sidak"}); !errors.Is(err, ErrInvalid) {
			t.Errorf("unknown correction: %v", err)
		}
		sc, err := e.svc.CreateSchedule(e.ctx, Schedule{Name: "nightly", Cron: "@every 1s", Spec: sp,
			Metric: "ndcg_cut_10", AutoAccept: true, Webhook: hook.URL})
		if err != nil {
			t.Fatal(err)
		}
		waitFor := func(what string, ok func(*Schedule, []HistoryPoint) bool) {
			t.Helper()
			deadline := time.Now().Add(90 * time.Second)
			for time.Now().Before(deadline) {
				cur, err := e.svc.GetSchedule(e.ctx, sc.ID)
				if err != nil {
					t.Fatal(err)
				}
				h, err := e.svc.ScheduleHistory(e.ctx, sc.ID)
				if err != nil {
					t.Fatal(err)
				}
				if ok(cur, h) {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Fatalf("timed out waiting for %s", what)
		}
		waitFor("a baseline", func(s *Schedule, _ []HistoryPoint) bool { return s.BaselineRun != "" })
		cur, _ := e.svc.GetSchedule(e.ctx, sc.ID)
		baseline := cur.BaselineRun
		// Inject a regression: the same variant with a much worse embedder.
		worse := *cur
		worse.Spec.Variants = []VariantSpec{{Name: "bow", Embedder: "hash-bow?dims=8"}}
		if _, err := e.svc.UpdateSchedule(e.ctx, sc.ID, worse); err != nil {
			t.Fatal(err)
		}
		var regressed string
		waitFor("a regression", func(_ *Schedule, h []HistoryPoint) bool {
			for _, p := range h {
				if p.Regression {
					regressed = p.Run
					return true
				}
			}
			return false
		})
		r, err := e.svc.GetRun(e.ctx, regressed)
		if err != nil {
			t.Fatal(err)
		}
		if r.Verdict == nil || r.Verdict.Baseline == "" || r.Verdict.Accepted || len(r.Verdict.Variants) != 1 || r.Verdict.Variants[0].Delta >= 0 {
			t.Fatalf("verdict %+v", r.Verdict)
		}
		if vv := r.Verdict.Variants[0]; vv.Correction != evals.AdjustHolm || vv.PAdjusted < vv.P {
			t.Errorf("the gate judges the Holm-adjusted p: %+v", vv)
		}
		t.Logf("regression: %+v", r.Verdict.Variants[0])
		// The baseline is a run of the good embedder (runs fired before the
		// update may have replaced the first baseline), the regressed run
		// used the worse one, and it did not become the baseline.
		br, err := e.svc.GetRun(e.ctx, r.Verdict.Baseline)
		if err != nil {
			t.Fatal(err)
		}
		if br.Spec.Variants[0].Embedder != bow.Embedder || r.Spec.Variants[0].Embedder != "hash-bow?dims=8" || r.ID <= baseline {
			t.Errorf("baseline %s used %s, regressed %s used %s", br.ID, br.Spec.Variants[0].Embedder, r.ID, r.Spec.Variants[0].Embedder)
		}
		if s, _ := e.svc.GetSchedule(e.ctx, sc.ID); s.BaselineRun == regressed {
			t.Errorf("regressed run became the baseline")
		}
		select {
		case b := <-hooks:
			if !strings.Contains(string(b), `"regression":true`) {
				t.Errorf("webhook body %s", b)
			}
		case <-time.After(10 * time.Second):
			t.Error("no webhook")
		}
		page, err := e.svc.AuditLog(e.ctx, AuditQuery{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, en := range page.Entries {
			found = found || (en.Action == "schedule.regression" && en.Detail == regressed)
		}
		if !found {
			t.Error("no schedule.regression audit entry")
		}
		// Accepting the worse run explicitly makes it the baseline.
		if _, err := e.svc.AcceptRun(e.ctx, sc.ID, regressed); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.DeleteSchedule(e.ctx, sc.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.GetSchedule(e.ctx, sc.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleted schedule: %v", err)
		}
	})

	t.Run("sql dataset", func(t *testing.T) {
		// Production-like data in the base branch: the corpus, queries and
		// judgments come from SQL on it.
		mc, release, err := e.br.Conn(e.ctx, "p", "main", ReadWrite)
		if err != nil {
			t.Fatal(err)
		}
		loadSQLDataset(t, mc, e.dir)
		release()
		sp := e.spec(VariantSpec{Name: "bow", Embedder: "hash-bow?dims=64"})
		sp.Dataset = sqlDataset
		r := e.run(t, sp)
		if r.Status != StatusSucceeded || r.Docs != 1400 || r.Queries != 225 || len(r.Variants[0].Results) != 225 || r.Variants[0].Metrics["ndcg_cut_10"] <= 0.1 {
			t.Errorf("sql dataset run: %s %q docs %d queries %d metrics %v", r.Status, r.Error, r.Docs, r.Queries, r.Variants[0].Metrics)
		}
		sp.Dataset.QrelsSQL = "SELECT q, d FROM judged"
		if r := e.run(t, sp); r.Status != StatusFailed || !strings.Contains(r.Error, "qrels_sql") {
			t.Errorf("bad qrels sql: %s %q", r.Status, r.Error)
		}
	})
}

func TestSpecValidation(t *testing.T) {
	good := `
name: ab
project: p
base: {branch: main}
dataset: {beir: /data/cranfield}
variants:
  - {name: a, embedder: "hash-bow?dims=128"}
  - name: b
    embedder: hash-char?dims=128
    index: {type: hnsw, m: 16}
    sweep: {ef_search: [10, 20]}
`
	sp, err := ParseSpec([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if at, err := ParseSpec([]byte(patchYAML(good, `base: {branch: main, at: 2026-12-01T10:00:00Z}`))); err != nil || at.Base.At == nil ||
		!at.Base.At.Equal(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("base at a time: %+v, %v", at, err)
	}
	if got := len(sp.Concrete()); got != 3 || sp.K != 100 || sp.Concurrency != 1 || sp.Dataset.Split != "test" {
		t.Errorf("concrete %d k %d concurrency %d split %q", got, sp.K, sp.Concurrency, sp.Dataset.Split)
	}
	if ts := sp.Timing; ts.Warmup != 1 || ts.Repeats != 3 || ts.Clients != 0 || ts.Cache != CacheWarm {
		t.Errorf("timing defaults %+v", ts)
	}
	// Iterative scans off are fine when ef_search covers k.
	if _, err := ParseSpec([]byte(patchYAML(good, `variants: [{name: a, embedder: hash-bow, index: {type: hnsw}, search: {iterative_scan: "off"}, sweep: {ef_search: [100, 200]}}]`))); err != nil {
		t.Errorf("ef_search >= k with iterative scans off: %v", err)
	}
	for _, tc := range []struct{ edit, field string }{
		{`name: "Bad Name"`, "name"},
		{`project: ""`, "project"},
		{`base: {branch: ""}`, "base.branch"},
		{`base: {branch: main, seq: 5, at: "2026-12-01T10:00:00Z"}`, "base"},
		{`base: {branch: main, snapshot: s1, at: "2026-12-01T10:00:00Z"}`, "base"},
		{`base: {branch: main, at: yesterday}`, "base.at"},
		{`dataset: {}`, "dataset"},
		{`dataset: {corpus_sql: "select 1"}`, "dataset.queries_sql"},
		{`dataset: {beir: tiny, split: "../../../ee/outside"}`, "dataset.split"},
		{`dataset: {beir: tiny, split: ".."}`, "dataset.split"},
		{`dataset: {beir: tiny, split: "dev/x"}`, "dataset.split"},
		{`dataset: {beir: tiny, split: 'dev\x'}`, "dataset.split"},
		{`metrics: [nope]`, "metrics"},
		{`k: 5000`, "k"},
		{`concurrency: 99`, "concurrency"},
		{`variants: []`, "variants"},
		{`variants: [{name: a, embedder: ""}]`, "variants[0].embedder"},
		{`variants: [{name: a, embedder: hash-bow, distance: manhattan}]`, "variants[0].distance"},
		{`variants: [{name: a, embedder: hash-bow, index: {type: btree}}]`, "variants[0].index.type"},
		{`variants: [{name: a, embedder: hash-bow, search: {ef_search: 5000}}]`, "variants[0].search.ef_search"},
		{`variants: [{name: a, embedder: hash-bow}, {name: a, embedder: hash-char}]`, "variants[1].name"},
		{`variants: [{name: a, embedder: hash-bow, index: {type: hnsw}, sweep: {m: [0]}}]`, "variants[0].sweep.m[0]"},
		{`colour: blue`, "colour"},
		{`k: ten`, "k"},
		{`variants: [{name: a, embedder: hash-bow, index: {type: hnsw}, search: {iterative_scan: sometimes}}]`, "variants[0].search.iterative_scan"},
		{`variants: [{name: a, embedder: hash-bow, index: {type: ivfflat}, search: {iterative_scan: strict_order}}]`, "variants[0].search.iterative_scan"},
		{`variants: [{name: a, embedder: hash-bow}, {name: b, embedder: hash-bow, index: {type: hnsw}, search: {iterative_scan: "off"}, sweep: {ef_search: [200, 40]}}]`, "variants[1].sweep.ef_search[1]"},
		{`variants: [{name: a, embedder: hash-bow, index: {type: hnsw}, search: {ef_search: 99, iterative_scan: "off"}}]`, "variants[0].search.ef_search"},
		{`timing: {repeats: 50}`, "timing.repeats"},
		{`timing: {clients: 65}`, "timing.clients"},
		{`timing: {cache: lukewarm}`, "timing.cache"},
	} {
		doc := patchYAML(good, tc.edit)
		_, err := ParseSpec([]byte(doc))
		var fe *FieldError
		if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) || fe.Field != tc.field {
			t.Errorf("%s: error %v, want field %s", tc.edit, err, tc.field)
		}
	}
}

// TestSpecIndexParams: index and search parameters, fixed or swept, are
// checked against pgvector 0.8's ranges when the spec is validated (not
// by CREATE INDEX or SET after the corpus is embedded and loaded); an
// index takes only its own method's parameters. Errors name the field
// and the range.
func TestSpecIndexParams(t *testing.T) {
	spec := func(variant string) string {
		return `{name: x, project: p, base: {branch: main}, dataset: {beir: d}, variants: [{name: a, embedder: hash-bow}, ` + variant + `]}`
	}
	for _, tc := range []struct{ variant, field, says string }{
		{`{name: b, embedder: hash-bow, index: {type: hnsw}, sweep: {ef_search: [40, 5000]}}`, "variants[1].sweep.ef_search[1]", "5000 is out of range: hnsw.ef_search must be in 1..1000"},
		{`{name: b, embedder: hash-bow, index: {type: hnsw}, search: {ef_search: 5000}}`, "variants[1].search.ef_search", "1..1000"},
		{`{name: b, embedder: hash-bow, index: {type: hnsw, m: 500}}`, "variants[1].index.m", "hnsw m must be in 2..100"},
		{`{name: b, embedder: hash-bow, index: {type: hnsw, m: 1}}`, "variants[1].index.m", "2..100"},
		{`{name: b, embedder: hash-bow, index: {type: hnsw, m: -3}}`, "variants[1].index.m", "2..100"},
		{`{name: b, embedder: hash-bow, index: {type: hnsw}, sweep: {m: [16, 101]}}`, "variants[1].sweep.m[1]", "2..100"},
		{`{name: b, embedder: hash-bow, index: {type: hnsw, ef_construction: 2000}}`, "variants[1].index.ef_construction", "4..1000"},
		{`{name: b, embedder: hash-bow, index: {type: hnsw, m: 16, ef_construction: 4}}`, "variants[1].index.ef_construction", "below 2·m = 32"},
		{`{name: b, embedder: hash-bow, index: {type: hnsw, m: 40}}`, "variants[1].index.m", "needs ef_construction ≥ 80 (2·m); index.ef_construction is 64 (the default)"},
		{`{name: b, embedder: hash-bow, index: {type: hnsw, ef_construction: 40}, sweep: {m: [8, 24]}}`, "variants[1].sweep.m[1]", "m 24 needs ef_construction ≥ 48"},
		{`{name: b, embedder: hash-bow, index: {type: hnsw, lists: 10}}`, "variants[1].index.lists", "IVFFlat parameter"},
		{`{name: b, embedder: hash-bow, index: {type: hnsw}, sweep: {lists: [10]}}`, "variants[1].sweep.lists[0]", "IVFFlat parameter"},
		{`{name: b, embedder: hash-bow, index: {type: ivfflat, lists: 100000}}`, "variants[1].index.lists", "ivfflat lists must be in 1..32768"},
		{`{name: b, embedder: hash-bow, index: {type: ivfflat}, sweep: {lists: [0]}}`, "variants[1].sweep.lists[0]", "1..32768"},
		{`{name: b, embedder: hash-bow, index: {type: ivfflat, m: 16}}`, "variants[1].index.m", "HNSW parameter"},
		{`{name: b, embedder: hash-bow, index: {type: ivfflat, ef_construction: 64}}`, "variants[1].index.ef_construction", "HNSW parameter"},
		{`{name: b, embedder: hash-bow, index: {type: ivfflat}, sweep: {m: [16]}}`, "variants[1].sweep.m[0]", "HNSW parameter"},
		{`{name: b, embedder: hash-bow, index: {type: none, lists: 10}}`, "variants[1].index", "type none"},
		{`{name: b, embedder: hash-bow, index: {type: none}, sweep: {lists: [10]}}`, "variants[1].sweep.lists", "give index.type ivfflat"},
		{`{name: b, embedder: hash-bow, sweep: {m: [16]}}`, "variants[1].sweep.m", "give index.type hnsw"},
		{`{name: b, embedder: hash-bow, index: {type: ivfflat, lists: 50}, search: {probes: 60}}`, "variants[1].search.probes", "in 1..50"},
		{`{name: b, embedder: hash-bow, index: {type: ivfflat}, sweep: {probes: [10, 200]}}`, "variants[1].sweep.probes[1]", "at most the default 100 lists"},
		{`{name: b, embedder: hash-bow, index: {type: ivfflat}, sweep: {lists: [200, 20], probes: [10, 50]}}`, "variants[1].sweep.probes[1]", "lists of variants[1].sweep.lists[1]) must be in 1..20"},
		{`{name: b, embedder: hash-bow, index: {type: ivfflat}, sweep: {probes: [0]}}`, "variants[1].sweep.probes[0]", "1..100"},
		{`{name: b, embedder: hash-bow, search: {probes: -1}}`, "variants[1].search.probes", "1..32768"},
		{`{name: b, embedder: hash-bow, search: {probes: 40000}}`, "variants[1].search.probes", "1..32768"},
	} {
		_, err := ParseSpec([]byte(spec(tc.variant)))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Reason, tc.says) {
			t.Errorf("%s: error %v, want field %s saying %q", tc.variant, err, tc.field, tc.says)
		}
	}
	for _, variant := range []string{
		`{name: b, embedder: hash-bow, index: {type: hnsw, m: 32}}`, // ef_construction 64 = 2·32
		`{name: b, embedder: hash-bow, index: {type: hnsw, m: 100, ef_construction: 1000}, sweep: {ef_search: [1, 1000]}}`,
		`{name: b, embedder: hash-bow, index: {type: hnsw, ef_construction: 48}, sweep: {m: [2, 24]}}`,
		`{name: b, embedder: hash-bow, index: {type: ivfflat, lists: 32768}, sweep: {probes: [1, 32768]}}`,
		`{name: b, embedder: hash-bow, index: {type: ivfflat}, sweep: {lists: [200, 20], probes: [10, 20]}}`,
		`{name: b, embedder: hash-bow, index: {type: ivfflat}, search: {probes: 100}}`,
		`{name: b, embedder: hash-bow, index: {type: none}}`,
	} {
		if _, err := ParseSpec([]byte(spec(variant))); err != nil {
			t.Errorf("%s: %v", variant, err)
		}
	}
}

// TestSweepGridBound: a spec whose sweeps name more than 64 points is
// refused from the sweeps' lengths, before a point is built: a 1.4 KB
// grid of a million points costs no more than parsing it, and a grid
// whose size overflows an int is refused as too large.
func TestSweepGridBound(t *testing.T) {
	axis := func(from, n int) string {
		xs := make([]string, n)
		for i := range xs {
			xs[i] = strconv.Itoa(from + i)
		}
		return "[" + strings.Join(xs, ", ") + "]"
	}
	doc := fmt.Sprintf(`{name: x, project: p, base: {branch: main}, dataset: {beir: d}, variants: [
  {name: a, embedder: hash-bow, index: {type: ivfflat}, sweep: {ef_search: %s, probes: %s, lists: %s}}]}`,
		axis(1, 100), axis(1, 100), axis(101, 100))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := ParseSpec([]byte(doc))
	runtime.ReadMemStats(&after)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "variants" || !strings.Contains(fe.Reason, "1000000 variants after sweeps; at most 64") {
		t.Errorf("a million points: %v", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 16<<20 {
		t.Errorf("refusing %d bytes of spec allocated %d MB", len(doc), n>>20)
	}

	// 2^64 points, from four sweeps of 65536 (valid) values each.
	same := func(x int) []int {
		xs := make([]int, 1<<16)
		for i := range xs {
			xs[i] = x
		}
		return xs
	}
	sp := ExperimentSpec{Name: "x", Project: "p", Base: BranchPoint{Branch: "main"}, Dataset: DatasetSpec{BEIR: "d"},
		Variants: []VariantSpec{{Name: "a", Embedder: "hash-bow", Quantization: QuantizationBinary, Index: &IndexSpec{Type: "ivfflat"},
			Sweep: &SweepSpec{Lists: same(100), Probes: same(10), EfSearch: same(40), Rerank: same(400)}}}}
	if err := sp.Validate(); !errors.As(err, &fe) || fe.Field != "variants" || !strings.Contains(fe.Reason, "more than") {
		t.Errorf("2^64 points: %v", err)
	}
}

// patchYAML replaces the top-level key of edit in doc (or appends it).
func patchYAML(doc, edit string) string {
	key, _, _ := strings.Cut(edit, ":")
	var out []string
	skipping, replaced := false, false
	for _, line := range strings.Split(doc, "\n") {
		if skipping && (strings.HasPrefix(line, " ") || line == "") {
			continue
		}
		skipping = false
		if strings.HasPrefix(line, key+":") {
			out = append(out, edit)
			skipping, replaced = true, true
			continue
		}
		out = append(out, line)
	}
	if !replaced {
		out = append(out, edit)
	}
	return strings.Join(out, "\n")
}

func TestRunAndScheduleScopes(t *testing.T) {
	datasets := t.TempDir()
	if err := os.Mkdir(filepath.Join(datasets, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	svc, err := New(Config{ControlDir: t.TempDir(), DatasetsDir: datasets})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	sp := ExperimentSpec{Name: "x", Project: "p", Base: BranchPoint{Branch: "main"}, Dataset: DatasetSpec{BEIR: "d"},
		Variants: []VariantSpec{{Name: "a", Embedder: "hash-bow"}}}
	reader := WithCaller(context.Background(), Caller{KeyID: "r", Scopes: []Scope{{Role: RoleRead, Project: "p"}}})
	other := WithCaller(context.Background(), Caller{KeyID: "o", Scopes: []Scope{{Role: RoleWrite, Project: "q"}}})
	admin := WithCaller(context.Background(), LocalCaller)
	if _, err := svc.StartRun(reader, sp); !errors.Is(err, ErrForbidden) {
		t.Errorf("reader starts a run: %v", err)
	}
	// The scope is checked before the spec: a caller who may not start
	// runs learns nothing from, and costs nothing with, a bad spec.
	bad := sp
	bad.Variants = []VariantSpec{{Name: "a", Embedder: "hash-bow", Index: &IndexSpec{Type: "ivfflat"},
		Sweep: &SweepSpec{EfSearch: []int{1, 2, 3, 4, 5, 6, 7, 8, 9}, Probes: []int{1, 2, 3, 4, 5, 6, 7, 8, 9}}}}
	if _, err := svc.StartRun(reader, bad); !errors.Is(err, ErrForbidden) {
		t.Errorf("reader starts a run with an invalid spec: %v", err)
	}
	if _, err := svc.CreateSchedule(reader, Schedule{Name: "n", Cron: "@daily", Spec: bad, Metric: "ndcg_cut_10"}); !errors.Is(err, ErrForbidden) {
		t.Errorf("reader creates a schedule with an invalid spec: %v", err)
	}
	if _, err := svc.StartRun(admin, sp); !errors.Is(err, ErrUnavailable) {
		t.Errorf("run without branches: %v", err)
	}
	if _, err := svc.StartRun(context.Background(), sp); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("run without caller: %v", err)
	}
	sc, err := svc.CreateSchedule(admin, Schedule{Name: "n", Cron: "@daily", Spec: sp, Metric: "ndcg_cut_10"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.GetSchedule(other, sc.ID); !errors.Is(err, ErrForbidden) {
		t.Errorf("other project reads schedule: %v", err)
	}
	moved := *sc
	moved.Spec.Project = "q"
	if _, err := svc.UpdateSchedule(other, sc.ID, moved); !errors.Is(err, ErrForbidden) {
		t.Errorf("other project takes over schedule: %v", err)
	}
	invalidSc := *sc
	invalidSc.Spec = bad
	if _, err := svc.UpdateSchedule(reader, sc.ID, invalidSc); !errors.Is(err, ErrForbidden) {
		t.Errorf("reader updates a schedule with an invalid spec: %v", err)
	}
	if list, err := svc.ListSchedules(other); err != nil || len(list) != 0 {
		t.Errorf("other project lists %d schedules (%v)", len(list), err)
	}
	if err := svc.DeleteSchedule(reader, sc.ID); !errors.Is(err, ErrForbidden) {
		t.Errorf("reader deletes schedule: %v", err)
	}
}

// TestRevokedKeyStopsSchedules: a schedule made with a key fires only
// while the key is live; once it is revoked the scheduler pauses the
// schedule with the reason and audits the refusal, while schedules of the
// local operator (the admin socket) keep firing.
func TestRevokedKeyStopsSchedules(t *testing.T) {
	svc, err := New(Config{ControlDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	admin := WithCaller(context.Background(), LocalCaller)
	if _, err := svc.CreateKey(admin, KeyRequest{Name: "admin", Scopes: []Scope{{Role: RoleAdmin}}}); err != nil {
		t.Fatal(err)
	}
	k, err := svc.CreateKey(admin, KeyRequest{Name: "agent", Scopes: []Scope{mustScope(t, "write:p")}})
	if err != nil {
		t.Fatal(err)
	}
	sp := ExperimentSpec{Name: "x", Project: "p", Base: BranchPoint{Branch: "main"}, Dataset: DatasetSpec{CorpusSQL: "SELECT 1", QueriesSQL: "SELECT 1", QrelsSQL: "SELECT 1"},
		Variants: []VariantSpec{{Name: "a", Embedder: "hash-bow"}}}
	byKey, err := svc.CreateSchedule(WithCaller(context.Background(), Caller{KeyID: k.ID, Scopes: k.Scopes}),
		Schedule{Name: "k", Cron: "@daily", Spec: sp, Metric: "ndcg_cut_10"})
	if err != nil {
		t.Fatal(err)
	}
	byLocal, err := svc.CreateSchedule(admin, Schedule{Name: "l", Cron: "@daily", Spec: sp, Metric: "ndcg_cut_10"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RevokeKey(admin, k.ID); err != nil {
		t.Fatal(err)
	}
	// Fire both as the scheduler does. The service has no branches, so a
	// run that starts fails with ErrUnavailable ("error"); a refused one
	// is "denied".
	now := time.Now()
	for _, sc := range []*Schedule{byKey, byLocal} {
		svc.fire(*sc, now)
	}
	page, err := svc.AuditLog(admin, AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	results := map[string]string{}
	for _, e := range page.Entries {
		if e.Action == "schedule.fire" {
			results[e.Target] = e.Result + " " + e.Error
		}
	}
	if got := results["schedule/"+byKey.ID]; !strings.HasPrefix(got, "denied ") || !strings.Contains(got, "revoked") {
		t.Errorf("fire of the revoked key's schedule audited %q, want denied: revoked", got)
	}
	if got := results["schedule/"+byLocal.ID]; !strings.HasPrefix(got, "error ") || strings.Contains(got, "revoked") {
		t.Errorf("fire of the local operator's schedule audited %q, want it to start a run", got)
	}
	sc, err := svc.GetSchedule(admin, byKey.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !sc.Paused || !strings.Contains(sc.Error, "revoked") {
		t.Errorf("the revoked key's schedule: paused %t, error %q; want paused with the reason", sc.Paused, sc.Error)
	}
	if runs, err := svc.ListRuns(admin, RunFilter{ScheduleID: byKey.ID}); err != nil || len(runs) != 0 {
		t.Errorf("the revoked key's schedule ran: %v %v", runs, err)
	}
}

// TestInterruptedRuns: a run the server stopped in the middle of is
// marked interrupted with the cause on the next Open, and the forks it
// left (a variant's and the dataset's) are discarded.
func TestInterruptedRuns(t *testing.T) {
	e := newRunEnv(t)
	dir := e.svc.cfg.ControlDir
	e.svc.Close()
	ctx := context.Background()
	run := &Run{ID: "r1", Experiment: "x", Project: "p", Status: StatusRunning, Spec: ExperimentSpec{Name: "x"},
		Variants: []VariantRun{{Name: "a", Status: StatusRunning, Phase: "index"}, {Name: "b", Status: StatusSucceeded},
			{Name: "c", Status: StatusQueued, Spec: VariantSpec{Embedder: "other"}}}}
	left := []string{forkName("x", "r1", "a"), forkName("x", "r1", ".dataset")}
	for _, name := range left {
		if _, err := e.br.Fork(ctx, "p", BranchPoint{Branch: "main"}, name); err != nil {
			t.Fatal(err)
		}
	}
	if len(e.br.forks(t)) != 2 {
		t.Fatalf("forks before: %v", e.br.forks(t))
	}
	svc, err := New(Config{ControlDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := svc.putRun(run); err != nil {
		t.Fatal(err)
	}
	svc.Close()
	svc, err = New(Config{ControlDir: dir, Branches: e.br, Connector: e.br})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	deadline := time.Now().Add(30 * time.Second)
	for len(e.br.forks(t)) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if f := e.br.forks(t); len(f) != 0 {
		t.Fatalf("forks left after restart: %v", f)
	}
	r, err := svc.GetRun(WithCaller(ctx, LocalCaller), "r1")
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != StatusInterrupted || !strings.Contains(r.Error, "the server stopped") || !strings.Contains(r.Error, "a in index") ||
		r.Variants[0].Status != StatusInterrupted || r.Variants[1].Status != StatusSucceeded || r.Variants[2].Status != StatusInterrupted {
		t.Errorf("after restart: %s %q %+v", r.Status, r.Error, r.Variants)
	}
}

// TestStopInterruptsRuns: a run in flight when the service stops is
// marked interrupted with the cause, as the next Open marks one a crash
// left, not cancelled as CancelRun marks it; its forks are discarded.
func TestStopInterruptsRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres")
	}
	e := newRunEnv(t)
	// b's fork waits until the run is stopped; c waits for b's slot.
	forking := make(chan struct{})
	e.svc.cfg.Branches = forkHook{RunBranches: e.br, before: func(ctx context.Context, name string) {
		if strings.HasSuffix(name, "/b") {
			close(forking)
			<-ctx.Done()
		}
	}}
	sp := e.spec(VariantSpec{Name: "a", Embedder: "hash-bow?dims=32"}, VariantSpec{Name: "b", Embedder: "hash-bow?dims=24"},
		VariantSpec{Name: "c", Embedder: "hash-bow?dims=16"})
	sp.Concurrency = 1
	r, err := e.svc.StartRun(e.ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-forking:
	case <-time.After(2 * time.Minute):
		t.Fatal("variant b never forked")
	}
	e.svc.Stop() // the control database stays open
	got, err := e.svc.GetRun(e.ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != StatusInterrupted || !strings.Contains(got.Error, "the server stopped") || !strings.Contains(got.Error, "b in fork") {
		t.Errorf("run: %s %q", got.Status, got.Error)
	}
	for i, want := range []RunStatus{StatusSucceeded, StatusInterrupted, StatusInterrupted} {
		if v := got.Variants[i]; v.Status != want {
			t.Errorf("variant %s: %s %q, want %s", v.Name, v.Status, v.Error, want)
		}
	}
	if f := e.br.forks(t); len(f) != 0 {
		t.Errorf("forks left behind: %v", f)
	}
}

// TestForkName: fork names follow exp/<experiment>/<run>/<variant>; those
// too long for a branch are cut to fit, stay valid and stay distinct.
func TestForkName(t *testing.T) {
	run := newRunID(time.Now())
	if got := forkName("ab", run, "bow"); got != "exp/ab/"+run+"/bow" {
		t.Errorf("short name: %s", got)
	}
	long := strings.Repeat("e", 40)
	seen := map[string]bool{}
	for _, c := range []struct{ exp, variant string }{
		{long, "hnsw-m16-ef160"}, {long, "hnsw-m16-ef10"}, {long, strings.Repeat("v", 40)}, {long, ".dataset"},
		{"nightly-regression-suite", "bow-m16-ef160"}, {"x", strings.Repeat("v", 40)}, {strings.Repeat("v", 40), "x"},
	} {
		got := forkName(c.exp, run, c.variant)
		if !storage.ValidName(got) || !strings.HasPrefix(got, "exp/"+c.exp[:min(len(c.exp), 5)]) || !strings.Contains(got, "/"+run+"/") || seen[got] {
			t.Errorf("forkName(%q, %q) = %q (%d bytes)", c.exp, c.variant, got, len(got))
		}
		seen[got] = true
	}
}

// TestCompareDifferentMeasures: variants that measured different sets
// compare on what both measured; nothing in common is bad input.
func TestCompareDifferentMeasures(t *testing.T) {
	variant := func(measures []string, perQuery func(q int) []float64) *VariantRun {
		v := &VariantRun{Name: "v", Status: StatusSucceeded, Measures: measures, Metrics: map[string]float64{}}
		for q := range 30 {
			v.Results = append(v.Results, QueryRanking{Query: fmt.Sprintf("q%02d", q), Values: perQuery(q)})
		}
		for i, m := range measures {
			sum := 0.0
			for _, r := range v.Results {
				sum += r.Values[i]
			}
			v.Metrics[m] = sum / float64(len(v.Results))
		}
		return v
	}
	a := variant([]string{"ndcg_cut_10", "recall_100", "recip_rank"}, func(q int) []float64 { return []float64{0.5, 0.6, 0.7} })
	b := variant([]string{"ndcg_cut_10"}, func(q int) []float64 { return []float64{0.2 + float64(q%3)*0.01} })
	rc, err := compareVariants(CompareRequest{A: "a", B: "b", Metric: "ndcg_cut_10"}, a, b, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := rc.Comparison.Measure("ndcg_cut_10"); !ok || len(rc.Comparison.Measures) != 1 || m.MeanA != 0.5 || m.Delta >= 0 || rc.Verdict != "worse" {
		t.Errorf("comparison on the common measure: %+v, verdict %s", rc.Comparison.Measures, rc.Verdict)
	}
	c := variant([]string{"P_5"}, func(q int) []float64 { return []float64{0.4} })
	if _, err := compareVariants(CompareRequest{A: "a", B: "c"}, a, c, nil, nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "measures nothing") {
		t.Errorf("nothing in common: %v", err)
	}
}

// TestCompareErrorFields: a comparison's bad input names its own field;
// every error of evals.Compare used to be labelled "metric".
func TestCompareErrorFields(t *testing.T) {
	variant := func(queries int) *VariantRun {
		v := &VariantRun{Name: "v", Status: StatusSucceeded, Measures: []string{"ndcg_cut_10", "num_rel_ret"},
			Metrics: map[string]float64{"ndcg_cut_10": 0.5, "num_rel_ret": 3}}
		for q := range queries {
			v.Results = append(v.Results, QueryRanking{Query: fmt.Sprintf("q%02d", q), Values: []float64{0.5, 3}})
		}
		return v
	}
	a := variant(10)
	none := &VariantRun{Name: "none", Status: StatusSucceeded, Measures: a.Measures, Metrics: a.Metrics}
	for _, tc := range []struct {
		req   CompareRequest
		b     *VariantRun
		field string
	}{
		{CompareRequest{Alpha: 2}, a, "alpha"},
		{CompareRequest{Alpha: -0.5}, a, "alpha"},
		{CompareRequest{Metric: "P_10"}, a, "metric"},
		{CompareRequest{Metric: "num_rel_ret"}, a, "metric"},
		{CompareRequest{}, none, "b"}, // no query in common
	} {
		var fe *FieldError
		if _, err := compareVariants(tc.req, a, tc.b, nil, nil); !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%+v: %v, want a field error of %s", tc.req, err, tc.field)
		}
	}
}

// TestPartialRunError: a partial run's error names the variants that
// failed (each says why in its own error); it used to be empty, so the
// CLI ended "run X partial: " with nothing after it.
func TestPartialRunError(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres")
	}
	e := newRunEnv(t)
	// Port 1 on loopback is closed: the provider fails at embed time.
	down := VariantSpec{Name: "down", Embedder: "ollama:nomic-embed-text?dims=8&base_url=http://127.0.0.1:1"}
	r := e.run(t, e.spec(VariantSpec{Name: "ok", Embedder: "hash-bow?dims=8"}, down))
	if r.Status != StatusPartial || r.Error != "1 of 2 variants failed: down" {
		t.Errorf("run %s %q, want partial naming down", r.Status, r.Error)
	}
}
