package vectors

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/offshootdb/offshoot/compute/pg/pgtest"
)

// TestPostgres runs the Postgres-facing parts against one real throwaway
// PostgreSQL 15 cluster with pgvector.
func TestPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	c := pgtest.New(t, nil)
	t.Run("Cranfield", func(t *testing.T) { testCranfield(t, c.Connect(t)) })
	t.Run("Settings", func(t *testing.T) { testSettings(t, c.Connect(t)) })
	t.Run("LoadErrors", func(t *testing.T) { testLoadErrors(t, c.Connect(t)) })
	t.Run("Ingest", func(t *testing.T) { testIngest(t, c.Connect(t)) })
	t.Run("Stream", func(t *testing.T) { testStream(t, c.Connect(t), c.Connect(t)) })
}

type corpusRun struct {
	e     Embedder
	docs  [][]float32
	qs    [][]float32
	table Table
}

// loadCorpus embeds the Cranfield corpus with a freshly built embedder and
// loads it, one row per document, into a new table.
func loadCorpus(t *testing.T, conn *pgx.Conn, c *cranfield, spec Spec, table Table) *corpusRun {
	t.Helper()
	st := time.Now()
	defer func() { t.Logf("loadCorpus: %v", time.Since(st)) }()
	ctx := context.Background()
	fit, err := FitIDF(spec, c.docs)
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewRegistry().New(spec, fit)
	if err != nil {
		t.Fatal(err)
	}
	r := &corpusRun{e: e, table: table}
	if r.docs, err = e.EmbedDocuments(ctx, c.docs); err != nil {
		t.Fatal(err)
	}
	if r.qs, err = e.EmbedDocuments(ctx, c.qs); err != nil {
		t.Fatal(err)
	}
	if err := CreateTable(ctx, conn, table); err != nil {
		t.Fatal(err)
	}
	rows := make([]Row, len(c.docs))
	for i, d := range c.docs {
		rows[i] = Row{ID: c.docIDs[i], DocID: c.docIDs[i], End: len(d), CharEnd: len([]rune(d)), Content: d,
			Metadata: map[string]any{"parity": []string{"even", "odd"}[i%2], "n": i}, Embedding: r.docs[i]}
	}
	var calls []int
	n, err := Load(ctx, conn, table, rows, LoadOptions{BatchSize: 500, Progress: func(done, total int) {
		if total != len(rows) {
			t.Errorf("progress total %d", total)
		}
		calls = append(calls, done)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(rows)) || !reflect.DeepEqual(calls, []int{500, 1000, 1400}) {
		t.Fatalf("loaded %d, progress %v", n, calls)
	}
	return r
}

// searchAll runs the first n queries (all if n is 0).
func searchAll(t *testing.T, conn *pgx.Conn, r *corpusRun, n int, q Query) []Result {
	t.Helper()
	if n == 0 {
		n = len(r.qs)
	}
	st := time.Now()
	var lat time.Duration
	defer func() { t.Logf("%d searches (exact %v): %v, latency %v", n, q.Exact, time.Since(st), lat) }()
	out := make([]Result, n)
	for i, v := range r.qs[:n] {
		q.Vector = v
		res, err := Search(context.Background(), conn, r.table, q)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = res
		lat += res.Latency
	}
	return out
}

func ids(r Result) []string {
	out := make([]string, len(r.Hits))
	for i, h := range r.Hits {
		out[i] = h.ID
	}
	return out
}

func meanRecall(ann, exact []Result, k int) float64 {
	var s float64
	for i := range ann {
		s += overlapAt(ids(ann[i]), ids(exact[i]), k)
	}
	return s / float64(len(ann))
}

func sameHits(a, b []Result) bool {
	for i := range a {
		if !reflect.DeepEqual(a[i].Hits, b[i].Hits) {
			return false
		}
	}
	return len(a) == len(b)
}

func testCranfield(t *testing.T, conn *pgx.Conn) {
	ctx := context.Background()
	c := loadCranfield(t)
	spec := Spec{Model: ModelHashBOW, Dims: 384}
	r := loadCorpus(t, conn, c, spec, Table{Name: "cran_a", Dims: 384})

	// Exact search in Postgres agrees with brute force in memory.
	exact := searchAll(t, conn, r, 0, Query{K: 10, Exact: true})
	for i, q := range r.qs[:20] {
		if got, want := ids(exact[i]), bruteForce(q, r.docs, c.docIDs, 10); !reflect.DeepEqual(got, want) {
			t.Fatalf("query %s: exact %v, brute force %v", c.qIDs[i], got, want)
		}
	}

	// Empty documents embed to zero vectors: cosine distance NaN, last.
	full, err := Search(ctx, conn, r.table, Query{Vector: r.qs[0], K: len(c.docs), Exact: true})
	if err != nil {
		t.Fatal(err)
	}
	var nan []string
	for i, h := range full.Hits {
		if math.IsNaN(h.Distance) {
			nan = append(nan, h.ID)
			if i < len(full.Hits)-2 {
				t.Errorf("NaN distance at rank %d of %d", i, len(full.Hits))
			}
		}
	}
	t.Logf("documents with NaN cosine distance (empty text): %v", nan)

	// An exact search among ids (the full top 20 and every 7th document)
	// is the full exact search's top 10, in its order; among none it is
	// empty.
	among := ids(Result{Hits: full.Hits[:20]})
	for i := 0; i < len(c.docIDs); i += 7 {
		among = append(among, c.docIDs[i])
	}
	sub, err := Search(ctx, conn, r.table, Query{Vector: r.qs[0], K: 10, Exact: true, IDs: among})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(sub), ids(Result{Hits: full.Hits[:10]}); !reflect.DeepEqual(got, want) {
		t.Errorf("exact among ids %v, want %v", got, want)
	}
	if none, err := Search(ctx, conn, r.table, Query{Vector: r.qs[0], K: 10, Exact: true, IDs: []string{}}); err != nil || len(none.Hits) != 0 {
		t.Errorf("exact among no ids: %v %v", none.Hits, err)
	}
	// A few ids are found through the primary key, not a table scan.
	if plan, err := Explain(ctx, conn, r.table, Query{Vector: r.qs[0], K: 10, Exact: true, IDs: among[:10]}); err != nil ||
		!strings.Contains(string(plan), "Bitmap Heap Scan") || strings.Contains(string(plan), "Seq Scan") {
		t.Errorf("exact among 10 ids: plan %s (%v), want a bitmap scan of the primary key", plan, err)
	}
	if len(full.Hits) != len(c.docs) || len(nan) != 2 {
		t.Errorf("%d hits, NaN for %v", len(full.Hits), nan)
	}
	if n, err := ZeroRows(ctx, conn, r.table); err != nil || n != int64(len(nan)) {
		t.Errorf("ZeroRows %d (%v), want the %d with NaN distances", n, err, len(nan))
	}

	info, err := CreateIndex(ctx, conn, r.table, Index{Method: HNSW, Metric: Cosine})
	if err != nil {
		t.Fatal(err)
	}
	if info.SizeBytes <= 0 || info.Name != "cran_a_hnsw_cosine_idx" {
		t.Fatalf("index info %+v", info)
	}
	t.Logf("hnsw build %v, size %d bytes", info.BuildTime, info.SizeBytes)

	ann := searchAll(t, conn, r, 0, Query{K: 10})
	recall := meanRecall(ann, exact, 10)
	t.Logf("%s: HNSW recall@10 vs exact at default settings: %.4f over %d queries", r.e.ModelID(), recall, len(ann))
	if recall < 0.95 {
		t.Errorf("recall@10 %.4f < 0.95", recall)
	}
	for i := range ann {
		if ann[i].Latency <= 0 || len(ann[i].Hits) != 10 {
			t.Fatalf("query %d: %d hits, latency %v", i, len(ann[i].Hits), ann[i].Latency)
		}
	}
	// Deterministic: the same queries again give identical ids and distances.
	if !sameHits(ann, searchAll(t, conn, r, 0, Query{K: 10})) {
		t.Error("HNSW results differ between two runs")
	}
	// A second, independent run (new embedder, new table) gives identical
	// exact results; its HNSW graph is built by pgvector with the backend's
	// random level assignment, so ANN agreement is reported, not required.
	r2 := loadCorpus(t, conn, c, spec, Table{Name: "cran_b", Dims: 384})
	if r2.e.ModelID() != r.e.ModelID() || !reflect.DeepEqual(r2.docs, r.docs) {
		t.Fatal("second run embedded differently")
	}
	if !sameHits(exact, searchAll(t, conn, r2, 0, Query{K: 10, Exact: true})) {
		t.Error("exact results differ between two runs")
	}
	if _, err := CreateIndex(ctx, conn, r2.table, Index{Method: HNSW, Metric: Cosine}); err != nil {
		t.Fatal(err)
	}
	ann2 := searchAll(t, conn, r2, 0, Query{K: 10})
	t.Logf("HNSW rebuilt on an identical table: recall@10 %.4f, result lists identical: %v", meanRecall(ann2, exact, 10), sameHits(ann, ann2))
	if rec := meanRecall(ann2, exact, 10); rec < 0.95 {
		t.Errorf("rebuilt HNSW recall@10 %.4f < 0.95", rec)
	}

	// IVFFlat probing every list is exact.
	ivf := Index{Method: IVFFlat, Metric: Cosine, Lists: 20}
	if err := DropIndex(ctx, conn, r.table, Index{Method: HNSW, Metric: Cosine}); err != nil {
		t.Fatal(err)
	}
	info, err = CreateIndex(ctx, conn, r.table, ivf)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ivfflat(lists=20) build %v, size %d bytes", info.BuildTime, info.SizeBytes)
	one := searchAll(t, conn, r, 50, Query{K: 10, Probes: 1})
	all := searchAll(t, conn, r, 50, Query{K: 10, Probes: 20})
	t.Logf("ivfflat recall@10 (50 queries): probes=1 %.4f, probes=20 %.4f", meanRecall(one, exact, 10), meanRecall(all, exact, 10))
	if got := meanRecall(all, exact, 10); got != 1 {
		t.Errorf("ivfflat with all lists probed: recall %.4f, want 1", got)
	}
	if meanRecall(one, exact, 10) >= 1 {
		t.Error("ivfflat with one probe is exact: probes not applied or index unused")
	}
	if err := DropIndex(ctx, conn, r.table, ivf); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_indexes WHERE tablename = 'cran_a' AND indexname LIKE '%ivfflat%'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("index not dropped: %d %v", n, err)
	}
}

func testSettings(t *testing.T, conn *pgx.Conn) {
	ctx := context.Background()
	c := loadCranfield(t)
	r := loadCorpus(t, conn, c, Spec{Model: ModelHashChar, Dims: 128}, Table{Name: "cran_char", Dims: 128})
	exact := searchAll(t, conn, r, 50, Query{K: 10, Exact: true})
	// For unit vectors, L2 and inner product rank like cosine. Cranfield
	// has empty documents whose vectors are zero: cosine distance is NaN for
	// them (sorted last), L2 and inner product rank them normally, so they
	// are skipped here.
	zero := map[string]bool{}
	for i, d := range r.docs {
		if vecDigest(d) == vecDigest(make([]float32, len(d))) {
			zero[c.docIDs[i]] = true
		}
	}
	t.Logf("%d zero vectors (empty documents)", len(zero))
	for _, m := range []Metric{L2, InnerProduct} {
		got := searchAll(t, conn, r, 50, Query{K: 10 + len(zero), Exact: true, Metric: m})
		for i := range got {
			var keep []Hit
			for _, h := range got[i].Hits {
				if !zero[h.ID] {
					keep = append(keep, h)
				}
			}
			got[i].Hits = keep[:10]
		}
		if rec := meanRecall(got, exact, 10); rec < 0.99 {
			t.Errorf("%s exact ranking differs from cosine: overlap %.4f", m, rec)
		}
	}
	// halfvec: the same data at half precision ranks nearly the same, and
	// its HNSW index finds what its exact scan finds.
	h := loadCorpus(t, conn, c, Spec{Model: ModelHashChar, Dims: 128}, Table{Name: "cran_half", Dims: 128, Type: HalfVec})
	hExact := searchAll(t, conn, h, 50, Query{K: 10, Exact: true})
	if _, err := CreateIndex(ctx, conn, h.table, Index{Method: HNSW, Metric: Cosine}); err != nil {
		t.Fatal(err)
	}
	hANN := searchAll(t, conn, h, 50, Query{K: 10})
	t.Logf("halfvec vs vector exact overlap@10 %.4f; halfvec HNSW recall@10 %.4f", meanRecall(hExact, exact, 10), meanRecall(hANN, hExact, 10))
	if meanRecall(hExact, exact, 10) < 0.8 || meanRecall(hANN, hExact, 10) < 0.95 {
		t.Error("halfvec search quality too low")
	}
	for _, m := range []Metric{Cosine, L2, InnerProduct} {
		if _, err := CreateIndex(ctx, conn, r.table, Index{Method: HNSW, Metric: m, M: 8, EfConstruction: 32}); err != nil {
			t.Fatal(err)
		}
	}
	// ef_search 1 without iterative scan yields one hit: the setting
	// reached the index scan. With strict iterative scan the index keeps
	// going until k hits.
	for _, m := range []Metric{Cosine, L2, InnerProduct} {
		res, err := Search(ctx, conn, r.table, Query{Vector: r.qs[0], K: 10, Metric: m, EfSearch: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Hits) >= 10 {
			t.Errorf("%s ef_search=1: %d hits, want fewer than 10 (setting or index unused?)", m, len(res.Hits))
		}
		res, err = Search(ctx, conn, r.table, Query{Vector: r.qs[0], K: 10, Metric: m, EfSearch: 1, IterativeScan: ScanStrict})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Hits) != 10 {
			t.Errorf("%s ef_search=1 strict iterative: %d hits, want 10", m, len(res.Hits))
		}
	}
	// Explain plans the statement Search runs under the same settings:
	// an exact search sorts a sequential scan; ForceIndex scans the index
	// (which the planner may skip on a small table), and Search then
	// returns the index's ef_search-capped hits.
	plan := func(q Query) string {
		t.Helper()
		b, err := Explain(ctx, conn, r.table, q)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if p := plan(Query{Vector: r.qs[0], K: 200, Exact: true}); !strings.Contains(p, `"Seq Scan"`) || strings.Contains(p, `"Index Scan"`) {
		t.Errorf("exact: plan %.300s..., want a sequential scan", p)
	}
	wide := Query{Vector: r.qs[0], K: 200, EfSearch: 10}
	wide.ForceIndex = true
	if p := plan(wide); !strings.Contains(p, `"Index Scan"`) || strings.Contains(p, `"Seq Scan"`) || !strings.Contains(p, r.table.IndexName(Index{Method: HNSW, Metric: Cosine})) {
		t.Errorf("forced: plan %.300s..., want the cosine HNSW index", p)
	}
	if res, err := Search(ctx, conn, r.table, wide); err != nil || len(res.Hits) > 10 {
		t.Errorf("forced index search at ef_search 10: %d hits (%v), want at most 10", len(res.Hits), err)
	}
	if _, err := Explain(ctx, conn, r.table, Query{Vector: r.qs[0], K: 10, Exact: true, ForceIndex: true}); !errors.Is(err, ErrBadQuery) {
		t.Errorf("exact with ForceIndex: %v, want ErrBadQuery", err)
	}
	// SET LOCAL does not leak into the session.
	var ef string
	if err := conn.QueryRow(ctx, "SHOW hnsw.ef_search").Scan(&ef); err != nil || ef != "40" {
		t.Errorf("session ef_search %q %v, want 40", ef, err)
	}
	// Metadata filter: exact returns only matching rows; ANN with relaxed
	// iterative scan fills k with matches.
	for _, q := range []Query{
		{K: 10, Exact: true, Filter: map[string]any{"parity": "odd"}},
		{K: 10, Filter: map[string]any{"parity": "odd"}, IterativeScan: ScanRelaxed},
	} {
		q.Vector = r.qs[1]
		res, err := Search(ctx, conn, r.table, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Hits) != 10 {
			t.Fatalf("filter %+v: %d hits", q.Filter, len(res.Hits))
		}
		for i, h := range res.Hits {
			pos := indexOf(c.docIDs, h.ID)
			if pos%2 != 1 {
				t.Errorf("filtered hit %s is not odd", h.ID)
			}
			if i > 0 && h.Distance < res.Hits[i-1].Distance {
				t.Errorf("hits not sorted by distance")
			}
		}
	}
	res, err := Search(ctx, conn, r.table, Query{Vector: r.qs[1], K: 5, Exact: true, Filter: map[string]any{"n": 7}})
	if err != nil || len(res.Hits) != 1 || res.Hits[0].ID != c.docIDs[7] {
		t.Errorf("equality filter: %+v %v", res.Hits, err)
	}
	// Bad queries.
	for _, q := range []Query{
		{Vector: r.qs[0], K: 0},
		{Vector: r.qs[0], K: 10, Metric: "hamming"},
		{Vector: r.qs[0], K: 10, EfSearch: 5000},
		{Vector: r.qs[0], K: 10, IterativeScan: "sideways"},
		{Vector: r.qs[0], K: 10, Exact: true, EfSearch: 10},
	} {
		if _, err := Search(ctx, conn, r.table, q); !errors.Is(err, ErrBadQuery) {
			t.Errorf("%+v: %v, want ErrBadQuery", q, err)
		}
	}
	if _, err := Search(ctx, conn, r.table, Query{Vector: []float32{1}, K: 1}); !errors.Is(err, ErrDimsMismatch) {
		t.Errorf("short vector: %v", err)
	}
	for _, ix := range []Index{
		{Method: "annoy", Metric: Cosine},
		{Method: HNSW, Metric: "x"},
		{Method: HNSW, Metric: Cosine, M: 1},
		{Method: HNSW, Metric: Cosine, M: 32, EfConstruction: 40},
		{Method: HNSW, Metric: Cosine, Lists: 3},
		{Method: IVFFlat, Metric: Cosine, M: 3},
		{Method: IVFFlat, Metric: Cosine, Lists: -1},
	} {
		if _, err := CreateIndex(ctx, conn, r.table, ix); !errors.Is(err, ErrBadIndex) {
			t.Errorf("%+v: %v, want ErrBadIndex", ix, err)
		}
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func testLoadErrors(t *testing.T, conn *pgx.Conn) {
	ctx := context.Background()
	tbl := Table{Name: "public.small", Dims: 3}
	if err := CreateTable(ctx, conn, tbl); err != nil {
		t.Fatal(err)
	}
	rows := make([]Row, 10)
	for i := range rows {
		rows[i] = Row{ID: fmt.Sprint(i), DocID: "d", Content: "x", Embedding: []float32{1, float32(i), 0}}
	}
	// Cancel from the progress callback after the first batch.
	cctx, cancel := context.WithCancel(ctx)
	n, err := Load(cctx, conn, tbl, rows, LoadOptions{BatchSize: 4, Progress: func(int, int) { cancel() }})
	if !errors.Is(err, context.Canceled) || n != 4 {
		t.Fatalf("cancelled load: %d, %v", n, err)
	}
	var count int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM small").Scan(&count); err != nil || count != 4 {
		t.Fatalf("rows after cancel: %d %v", count, err)
	}
	// All-or-nothing inside a transaction; a bad row stops the load.
	bad := append(append([]Row{}, rows[4:]...), Row{ID: "bad", DocID: "d", Embedding: []float32{1}})
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		_, err := Load(ctx, tx, tbl, bad, LoadOptions{BatchSize: 2})
		return err
	})
	if !errors.Is(err, ErrDimsMismatch) {
		t.Fatalf("bad row: %v", err)
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM small").Scan(&count); err != nil || count != 4 {
		t.Fatalf("rows after rolled back load: %d %v", count, err)
	}
	// Offsets, metadata and the vector round-trip.
	if _, err := Load(ctx, conn, tbl, []Row{{ID: "z", DocID: "doc", Start: 3, End: 9, CharStart: 2, CharEnd: 7, Content: "héllo",
		Metadata: map[string]any{"k": "v"}, Embedding: []float32{0.5, -1, 2}}}, LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	var got struct {
		doc, content, meta, emb string
		s, e, cs, ce            int
	}
	if err := conn.QueryRow(ctx, "SELECT doc_id, content, metadata::text, embedding::text, chunk_start, chunk_end, char_start, char_end FROM small WHERE id = 'z'").
		Scan(&got.doc, &got.content, &got.meta, &got.emb, &got.s, &got.e, &got.cs, &got.ce); err != nil {
		t.Fatal(err)
	}
	if got.doc != "doc" || got.content != "héllo" || got.meta != `{"k": "v"}` || got.emb != "[0.5,-1,2]" || got.s != 3 || got.e != 9 || got.cs != 2 || got.ce != 7 {
		t.Fatalf("row z = %+v", got)
	}
	if err := CreateTable(ctx, conn, tbl); err == nil {
		t.Error("creating an existing table succeeded")
	}
	for _, bt := range []Table{{Name: "", Dims: 3}, {Name: "x", Dims: 0}, {Name: "x", Dims: 3, Type: "bitvec"}, {Name: "x.", Dims: 3}} {
		if err := CreateTable(ctx, conn, bt); !errors.Is(err, ErrBadTable) {
			t.Errorf("%+v: %v", bt, err)
		}
	}
	if err := DropTable(ctx, conn, tbl); err != nil {
		t.Fatal(err)
	}
}

// testIngest chunks Cranfield, embeds through a cache and loads; a second
// ingest into another table embeds nothing and stores identical rows.
func testIngest(t *testing.T, conn *pgx.Conn) {
	ctx := context.Background()
	c := loadCranfield(t)
	docs := make([]Document, 300)
	for i := range docs {
		docs[i] = Document{ID: c.docIDs[i], Text: c.docs[i], Metadata: map[string]any{"src": "cranfield"}}
	}
	cache := must(OpenCache(t.TempDir()))
	defer cache.Close()
	ch := &Chunker{Size: 300, Overlap: 50}
	var chunks int
	for _, d := range docs {
		chunks += len(must(ch.Split(d.ID, d.Text)))
	}
	var embedded []int
	run := func(name string) (int64, int64) {
		inner := &counting{Embedder: must(NewOffline(ModelHashRP, 64, 1, nil))}
		tbl := Table{Name: name, Dims: 64}
		if err := CreateTable(ctx, conn, tbl); err != nil {
			t.Fatal(err)
		}
		n, err := Ingest(ctx, conn, tbl, cache.Wrap("p", inner), docs, IngestOptions{Chunker: ch, EmbedBatch: 500,
			Embedded: func(done, total int) { embedded = append(embedded, done) }})
		if err != nil {
			t.Fatal(err)
		}
		return n, inner.texts.Load()
	}
	n1, e1 := run("ingest_a")
	if n1 != int64(chunks) || e1 == 0 || e1 > n1 || embedded[len(embedded)-1] != chunks {
		t.Fatalf("first ingest: %d rows of %d chunks, %d embedded, progress %v", n1, chunks, e1, embedded)
	}
	n2, e2 := run("ingest_b")
	if n2 != n1 || e2 != 0 {
		t.Fatalf("second ingest: %d rows, %d embedded, want %d and 0", n2, e2, n1)
	}
	var diff int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM ingest_a a FULL JOIN ingest_b b USING (id)
		WHERE a.embedding IS DISTINCT FROM b.embedding OR a.content IS DISTINCT FROM b.content
		OR a.chunk_start IS DISTINCT FROM b.chunk_start OR a.metadata IS DISTINCT FROM b.metadata`).Scan(&diff); err != nil || diff != 0 {
		t.Fatalf("tables differ in %d rows (%v)", diff, err)
	}
	// Stored offsets point at the stored content.
	rows, err := conn.Query(ctx, "SELECT doc_id, chunk_start, chunk_end, char_start, char_end, content FROM ingest_a")
	if err != nil {
		t.Fatal(err)
	}
	text := map[string]string{}
	for _, d := range docs {
		text[d.ID] = d.Text
	}
	for rows.Next() {
		var doc, content string
		var s, e, cs, ce int
		if err := rows.Scan(&doc, &s, &e, &cs, &ce, &content); err != nil {
			t.Fatal(err)
		}
		if text[doc][s:e] != content || string([]rune(text[doc])[cs:ce]) != content {
			t.Fatalf("doc %s [%d:%d] does not match stored content", doc, s, e)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := Ingest(ctx, conn, Table{Name: "ingest_a", Dims: 32}, must(NewOffline(ModelHashRP, 64, 1, nil)), docs, IngestOptions{}); !errors.Is(err, ErrDimsMismatch) {
		t.Errorf("dims mismatch: %v", err)
	}
}
