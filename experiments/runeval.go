package experiments

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/vectors"
)

// Evaluating a dense variant on its loaded fork: one ranking pass over the
// queries (with the exact search that measures an index's recall), the
// timed passes, and the run's measures over the judgments.

// evalPoint evaluates every query of ds with the search parameters of v
// on the loaded fork; vr carries the build's record. It plans the query
// under the point's settings first (forcing the index of an ANN point if
// the planner would skip it), records the rankings of one untimed pass,
// then times the queries (timeQueries).
func (s *Service) evalPoint(ctx context.Context, run *Run, fk *evalFork, tbl vectors.Table, emb vectors.Embedder, cached *vectors.Cached,
	metric vectors.Metric, indexed, chunked bool, v VariantSpec, ds *evals.Dataset, vr VariantRun) VariantRun {
	fail := func(phase string, err error) VariantRun {
		vr.Status = statusOf(ctx, StatusFailed)
		vr.Error = phase + ": " + err.Error()
		vr.Results = nil
		return vr
	}
	t := time.Now()
	queries := append([]evals.Query(nil), ds.Queries...)
	sort.Slice(queries, func(i, j int) bool { return queries[i].ID < queries[j].ID })
	qvecs := make([][]float32, len(queries))
	for i, q := range queries {
		qv, err := emb.EmbedQuery(ctx, q.Text)
		if err != nil {
			return fail("eval", fmt.Errorf("embed query %s: %w", q.ID, err))
		}
		qvecs[i] = qv
	}
	k := run.Spec.K
	fetch := fetchRows(k, chunked)
	sq := vectors.Query{K: fetch, Metric: metric, Rerank: rerankFor(v, fetch)}
	if indexed {
		// The index scan fetches the rerank candidates of a binary point.
		scan := scanRows(v, fetch)
		sq.Probes = v.Search.Probes
		if v.Index.Type == "hnsw" {
			// hnsw.ef_search also caps how many rows an HNSW scan returns
			// unless iterative scans are on (iterativeFor).
			sq.EfSearch = efSearchFor(v, scan)
		}
		it, err := iterativeFor(v, scan)
		if err != nil {
			return fail("eval", fmt.Errorf("search.iterative_scan: %w", err))
		}
		sq.IterativeScan = it
	}
	vr.Provenance = vr.Provenance.withSearch(sq.EfSearch, sq.Probes, string(sq.IterativeScan), sq.Rerank)
	if len(qvecs) == 0 {
		return fail("eval", errors.New("no queries"))
	}
	sq.Vector = qvecs[0]
	index := ""
	if indexed {
		index = vr.IndexName
	}
	plan, err := explainPoint(ctx, fk.conn, tbl, &sq, index)
	vr.Plan = &plan
	if err != nil {
		return fail("plan", err)
	}
	// Every query runs with the planned settings, index forced included;
	// each ranking is recorded as it is produced (rankings.go) and only
	// the document ids stay in memory, for the evaluation.
	results := s.newResultWriter(run.ID, v.Name)
	rankings := map[string][]string{}
	exactIDs, annIDs := map[string][]string{}, map[string][]string{}
	// rankable is the rows an index scan can return; under cosine not
	// the zero vectors (noDistance), counted the first time a scan
	// returns fewer rows than the table holds.
	rankable, zeroCounted := vr.Rows, metric != vectors.Cosine
	for i, q := range queries {
		if noDistance(metric, qvecs[i]) {
			// Ranks nothing, as a lexical query without lexemes matches
			// nothing; it has no exact order to measure recall against.
			rankings[q.ID] = []string{}
			if err := results.add(QueryRanking{Query: q.ID, Hits: []RankedDoc{}}); err != nil {
				return fail("eval", err)
			}
			continue
		}
		qq := sq
		qq.Vector = qvecs[i]
		res, err := vectors.Search(ctx, fk.conn, tbl, qq)
		if err != nil {
			return fail("eval", fmt.Errorf("query %s: %w", q.ID, err))
		}
		if indexed && int64(len(res.Hits)) < min(int64(fetch), rankable) && !zeroCounted {
			n, err := vectors.ZeroRows(ctx, fk.conn, tbl)
			if err != nil {
				return fail("eval", err)
			}
			rankable, zeroCounted = vr.Rows-n, true
		}
		if indexed && int64(len(res.Hits)) < min(int64(fetch), rankable) {
			field, what := "search.probes", "the index scan returned"
			if v.Index.Type == "hnsw" {
				field = "search.ef_search"
			}
			if v.binary() {
				// Candidates without a distance (cosine of a zero vector)
				// are dropped.
				field, what = "search.rerank (or "+field+")", fmt.Sprintf("the %d re-ranked candidates gave", sq.Rerank)
			}
			return fail("eval", fmt.Errorf("query %s: %s %d of the %d rows fetched (%s): recall would be capped; raise %s or set search.iterative_scan to auto",
				q.ID, what, len(res.Hits), min(int64(fetch), rankable), plan, field))
		}
		qr := QueryRanking{Query: q.ID, LatencyUS: res.Latency.Microseconds()}
		seen := map[string]bool{}
		var ids []string
		for _, h := range res.Hits {
			if seen[h.DocID] || len(qr.Hits) == k || math.IsNaN(h.Distance) {
				continue // NaN: a zero vector's chunk, unranked (noDistance)
			}
			seen[h.DocID] = true
			qr.Hits = append(qr.Hits, RankedDoc{Doc: h.DocID, Distance: h.Distance})
			ids = append(ids, h.DocID)
		}
		rankings[q.ID] = ids
		if err := results.add(qr); err != nil {
			return fail("eval", err)
		}
		if indexed {
			ex, err := s.exactIDs(ctx, run.Project, vr.Materialization, fk.conn, tbl, qvecs[i], k, metric)
			if err != nil {
				return fail("eval", fmt.Errorf("exact query %s: %w", q.ID, err))
			}
			for i, h := range res.Hits {
				if i < k {
					annIDs[q.ID] = append(annIDs[q.ID], h.ID)
				}
			}
			exactIDs[q.ID] = ex
		}
	}
	if err := results.flush(); err != nil {
		return fail("eval", err)
	}
	lat, tr, medians, err := s.timeQueries(ctx, fk, tbl, sq, qvecs, run.Spec.Timing)
	if err != nil {
		return fail("timing", err)
	}
	vr.Latency, vr.Timing = lat, &tr
	timed := timedByQuery(queries, medians)
	vr.Timings.Eval = ms(time.Since(t))
	if indexed {
		rec, _, err := evals.MeanANNRecall(exactIDs, annIDs, k)
		if err != nil {
			return fail("eval", err)
		}
		vr.ANNRecall = &rec
	}
	if err := s.recordMeasures(run, v.Name, ds, rankings, timed, &vr); err != nil {
		return fail("eval", err)
	}
	if cached != nil {
		vr.CacheHits, vr.CacheMisses = cached.Stats()
	}
	if ctx.Err() != nil {
		return fail("eval", ctx.Err())
	}
	vr.Status = StatusSucceeded
	return vr
}

// noDistance reports whether the query vector vec has no distance to
// any row by metric: the cosine distance of the zero vector (the
// embedding of a text without tokens) is NaN. Such a query ranks
// nothing, and a row holding the zero vector is never ranked (its NaN
// distance sorts last, and is dropped from a ranking): a zero vector is
// unranked, as a lexical variant's text without lexemes is unmatched.
func noDistance(metric vectors.Metric, vec []float32) bool {
	if metric != vectors.Cosine {
		return false
	}
	for _, x := range vec {
		if x != 0 {
			return false
		}
	}
	return true
}

// recordMeasures scores the rankings of variant name of run (document
// ids by query, best first; evals.RunFromRankings) with the run's metrics
// over ds's judgments, trec_eval -c, into vr, and rewrites the variant's
// recorded rankings with their measures and timed latency.
func (s *Service) recordMeasures(run *Run, name string, ds *evals.Dataset, rankings map[string][]string, timed map[string]int64, vr *VariantRun) error {
	erun, err := evals.RunFromRankings(run.ID+"/"+name, rankings)
	if err != nil {
		return err
	}
	measures, err := evals.ParseMeasures(run.Spec.Metrics...)
	if err != nil {
		return err
	}
	er, err := evals.Evaluate(ds.Qrels, erun, measures, evals.Options{Complete: true})
	if err != nil {
		return err
	}
	vr.Metrics = map[string]float64{}
	vr.Measures = nil
	for i, m := range er.Measures {
		vr.Measures = append(vr.Measures, m.String())
		vr.Metrics[m.String()] = er.All[i]
	}
	// The recorded rankings get their measures and timed latency.
	return s.updateResults(run.ID, name, func(qr *QueryRanking) {
		qr.LatencyUS, qr.Values = timed[qr.Query], er.PerQuery[qr.Query]
	})
}

// timedByQuery maps each query's id to its median timed latency in µs
// (medians[i] is queries[i]'s).
func timedByQuery(queries []evals.Query, medians []time.Duration) map[string]int64 {
	timed := make(map[string]int64, len(queries))
	for i, q := range queries {
		timed[q.ID] = medians[i].Microseconds()
	}
	return timed
}
