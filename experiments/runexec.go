package experiments

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/storage"
	"github.com/offshootdb/offshoot/vectors"
)

// Executing a run: its dataset (read from a fork of the base for a SQL
// dataset), its variants in build groups, each group on a fork of its own
// (runGroup), their phases and progress, and the outcome of each variant
// and of the run.

// execute runs every variant and records the outcome.
func (s *Service) execute(ctx context.Context, run *Run) {
	fail := func(status RunStatus, err error) {
		now := s.cfg.Now()
		if uerr := s.updateRun(run.ID, func(r *Run) {
			r.Status, r.Error, r.FinishedAt = status, err.Error(), &now
			for i := range r.Variants {
				if !r.Variants[i].Status.done() {
					r.Variants[i].Status = status
				}
			}
			if status == StatusInterrupted {
				r.Error = interruptedCause(r)
			}
		}); uerr != nil {
			s.log.Error("run: record failure", slog.String("run", run.ID), slog.String("err", uerr.Error()))
		}
	}
	_ = s.updateRun(run.ID, func(r *Run) { r.Status = StatusRunning })
	// Queries and judgments are read into memory (they are small); the
	// corpus is streamed from its file or cursor by each pass over it.
	var ds *evals.Dataset
	var docs corpus
	if run.Spec.Dataset.BEIR != "" { // checked before anything is pinned
		// Checked again: a schedule's spec may predate the datasets
		// directory, and links may have changed since.
		d := run.Spec.Dataset
		if err := s.resolveDataset(&d); err != nil {
			fail(StatusFailed, fmt.Errorf("dataset: %w", err))
			return
		}
		// The scan that validates the corpus also fingerprints it and,
		// for variants that may be maintained incrementally, hashes each
		// document and notes its line: what their delta and the read of
		// its new and changed documents need, without passes of their own
		// (held for the run: some 70 bytes a document).
		var fp fingerprint
		var hashes []docHash
		keep := slices.ContainsFunc(run.Variants, func(v VariantRun) bool { return incremental(v.Spec) })
		col, err := evals.OpenBEIRFunc(d.BEIR, d.Split, func(line int, d evals.Doc) {
			fp.add(d.ID, d.Title, d.Text)
			if keep {
				hashes = append(hashes, docHash{id: d.ID, sum: textHash(d), place: line})
			}
		})
		if err != nil {
			fail(statusOf(ctx, StatusFailed), fmt.Errorf("dataset: %w", err))
			return
		}
		ds = &evals.Dataset{Name: col.Name, Queries: col.Queries, Qrels: col.Qrels}
		cfp := fp.result()
		docs = beirCorpus(col, &cfp, hashes)
	}
	base, err := s.cfg.Branches.Resolve(ctx, run.Project, run.Spec.Base)
	if err != nil {
		fail(statusOf(ctx, StatusFailed), fmt.Errorf("resolve base %s: %w", run.Spec.Base, err))
		return
	}
	// The SQL dataset's fork lives until every variant has read it, and
	// goes before the run's final status is written (once = here or on
	// an early return).
	var discardDataset func()
	defer func() {
		if discardDataset != nil {
			discardDataset()
		}
	}()
	if ds == nil {
		ds, docs, discardDataset, err = s.sqlDataset(ctx, run, base)
		if err != nil {
			fail(statusOf(ctx, StatusFailed), fmt.Errorf("dataset: %w", err))
			return
		}
	}
	prov, err := newProvenance(ctx, run.Spec, base, ds, docs)
	if err != nil {
		fail(statusOf(ctx, StatusFailed), fmt.Errorf("dataset: %w", err))
		return
	}
	run.Provenance = prov // the variants' materialization keys name the corpus by it
	_ = s.updateRun(run.ID, func(r *Run) {
		r.Base, r.Docs, r.Queries, r.Judged = base, docs.docs, len(ds.Queries), len(ds.Qrels)
		r.Provenance = prov
	})
	// Groups start in spec order (the slot is taken before the goroutine
	// starts), at most Concurrency at a time.
	sem := make(chan struct{}, run.Spec.Concurrency)
	var wg sync.WaitGroup
	var hybrids []int // run once the variants they fuse are done
	for _, group := range buildGroups(run.Variants) {
		if run.Variants[group[0]].Spec.Type == VariantHybrid {
			hybrids = append(hybrids, group...)
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			st := statusOf(ctx, StatusCancelled)
			for _, i := range group {
				s.finishVariant(run, i, VariantRun{Status: st, Error: string(st) + " before start"})
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			vs := make([]VariantSpec, len(group))
			for j, i := range group {
				vs[j] = run.Variants[i].Spec
			}
			progress := &throttle{every: progressEvery, fn: func(phase string, p *PhaseProgress) {
				_ = s.updateRun(run.ID, func(r *Run) {
					for _, i := range group {
						r.Variants[i].Status, r.Variants[i].Phase, r.Variants[i].Progress = StatusRunning, phase, p
					}
				})
			}}
			for j, vr := range s.runGroup(ctx, run, base, vs, ds, docs, progress.report) {
				s.finishVariant(run, group[j], vr)
			}
		}()
	}
	wg.Wait()
	if discardDataset != nil {
		discardDataset()
		discardDataset = nil
	}
	for _, i := range hybrids {
		_ = s.updateRun(run.ID, func(r *Run) { r.Variants[i].Status, r.Variants[i].Phase = StatusRunning, "eval" })
		s.finishVariant(run, i, s.runHybrid(ctx, run, run.Variants[i].Spec, ds))
	}
	now := s.cfg.Now()
	_ = s.updateRun(run.ID, func(r *Run) {
		ok, bad := 0, []string{}
		for _, v := range r.Variants {
			if v.Status == StatusSucceeded {
				ok++
			} else {
				bad = append(bad, v.Name)
			}
		}
		switch {
		case statusOf(ctx, "") == StatusInterrupted:
			r.Status, r.Error = StatusInterrupted, interruptedCause(r)
		case ctx.Err() != nil:
			r.Status, r.Error = StatusCancelled, "cancelled"
		case len(bad) == 0:
			r.Status = StatusSucceeded
		case ok == 0:
			r.Status, r.Error = StatusFailed, "every variant failed"
		default: // each variant's own error says why
			r.Status, r.Error = StatusPartial, fmt.Sprintf("%d of %d variants failed: %s", len(bad), len(r.Variants), DocList(bad, 10))
		}
		r.FinishedAt = &now
	})
}

// buildGroups groups variants that need the same data and index (they
// differ at most in search parameters), in order of first appearance.
func buildGroups(vs []VariantRun) [][]int {
	var groups [][]int
	byKey := map[string]int{}
	for i, v := range vs {
		sp := v.Spec
		sp.Name, sp.Search = "", SearchSpec{}
		if sp.Type == VariantLexical { // its ranking function and query mode are search settings
			sp.Lexical = sp.Lexical.build()
		}
		b, _ := json.Marshal(sp)
		g, ok := byKey[string(b)]
		if !ok {
			g = len(groups)
			byKey[string(b)] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	return groups
}

// statusOf is the status of a run or variant that stopped on an error
// under ctx: interrupted when the service stopped (errStopped), cancelled
// when the run was (CancelRun), otherwise otherwise.
func statusOf(ctx context.Context, otherwise RunStatus) RunStatus {
	switch {
	case errors.Is(context.Cause(ctx), errStopped):
		return StatusInterrupted
	case ctx.Err() != nil:
		return StatusCancelled
	}
	return otherwise
}

// finishVariant records the outcome of variant i of run; rankings that
// were not streamed as produced (a run_file variant's) are stored beside
// the record.
func (s *Service) finishVariant(run *Run, i int, vr VariantRun) {
	runID := run.ID
	if len(vr.Results) > 0 {
		if err := s.storeResults(runID, run.Variants[i].Name, vr.Results); err != nil {
			vr.Status, vr.Error = StatusFailed, err.Error()
		}
		vr.Results = nil
	}
	err := s.updateRun(runID, func(r *Run) {
		vr.Name, vr.Spec = r.Variants[i].Name, r.Variants[i].Spec
		vr.Phase, vr.Progress = "", nil
		if vr.Status != StatusSucceeded {
			vr.Phase = r.Variants[i].Phase // where it stopped
		}
		r.Variants[i] = vr
	})
	if err != nil {
		s.log.Error("run: record variant", slog.String("run", runID), slog.String("err", err.Error()))
	}
}

// progressEvery is how often a run records progress counters.
const progressEvery = 500 * time.Millisecond

// Phases are the phases of a variant, in the order a run goes through
// them (VariantRun.Phase); a variant without an index skips "index".
var Phases = []string{"fork", "embed", "load", "index", "eval"}

// PhaseIndex is the position of v.Phase in Phases, -1 when it has none.
func (v VariantRun) PhaseIndex() int {
	for i, ph := range Phases {
		if ph == v.Phase {
			return i
		}
	}
	return -1
}

// forkName is the branch of one variant's fork,
// exp/<experiment>/<run>/<variant>. One longer than a branch name may be
// (storage.MaxNameLen) keeps that shape with the experiment and variant
// names cut short and a hash of the full name appended, so every spec's
// forks can be named, and uniquely.
func forkName(experiment, run, variant string) string {
	full := "exp/" + experiment + "/" + run + "/" + variant
	if len(full) <= storage.MaxNameLen {
		return full
	}
	h := sha256.Sum256([]byte(full))
	tag := hex.EncodeToString(h[:3])
	// What is left for the two names: "exp/", two '/', the run id, '-'
	// and the tag are fixed.
	room := storage.MaxNameLen - len("exp///-") - len(run) - len(tag)
	e := min(len(experiment), max(room/2, room-len(variant)))
	v := min(len(variant), room-e)
	return "exp/" + experiment[:e] + "/" + run + "/" + variant[:v] + "-" + tag
}

func docText(d evals.Doc) string {
	if d.Title == "" {
		return d.Text
	}
	return strings.TrimSpace(d.Title + "\n\n" + d.Text)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (s *Service) embedders() *vectors.Registry {
	if s.cfg.Embedders != nil {
		return s.cfg.Embedders
	}
	return defaultRegistry
}

var defaultRegistry = vectors.NewRegistry()

// sqlDataset runs the spec's dataset SQL on the pinned base, so that the
// corpus, queries and judgments are those of the data the variants fork,
// also when the base is a snapshot or a past point: on a fork of base
// named exp/<experiment>/<run>/.dataset, which discard (nil when no fork
// was made) deletes. Queries and judgments are read now; the corpus is
// counted now and streamed from the fork by each pass over it, so the
// fork must stay until the variants are done.
func (s *Service) sqlDataset(ctx context.Context, run *Run, base BranchPoint) (_ *evals.Dataset, _ corpus, discard func(), _ error) {
	name := forkName(run.Spec.Name, run.ID, ".dataset")
	if _, err := s.cfg.Branches.Fork(ctx, run.Project, base, name); err != nil {
		return nil, corpus{}, nil, fmt.Errorf("fork %s from base %s: %w", name, base, err)
	}
	discard = func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := s.cfg.Branches.Discard(dctx, run.Project, name); err != nil {
			s.log.Error("run: discard the dataset fork", slog.String("run", run.ID), slog.String("branch", name), slog.String("err", err.Error()))
		}
	}
	conn, release, err := s.connect(ctx, run.Project, name, ReadOnly)
	if err != nil {
		return nil, corpus{}, discard, err
	}
	defer release()
	d := run.Spec.Dataset
	ds := &evals.Dataset{Name: run.Spec.Name, Qrels: evals.Qrels{}}
	docs := 0
	ids := evals.NewIDSet() // the chunks' table keys on the id: refuse a repeat before embedding
	if err := eachPair(ctx, conn, "corpus_sql", d.CorpusSQL, func(id, _ string) error {
		docs++
		if first, seen := ids.Add(id, docs); seen {
			return fmt.Errorf("corpus_sql: document %q on rows %d and %d: %w", id, first, docs, evals.ErrDuplicate)
		}
		return nil
	}); err != nil {
		return nil, corpus{}, discard, err
	}
	if err := eachPair(ctx, conn, "queries_sql", d.QueriesSQL, func(id, text string) error {
		ds.Queries = append(ds.Queries, evals.Query{ID: id, Text: text})
		return nil
	}); err != nil {
		return nil, corpus{}, discard, err
	}
	rows, err := conn.Query(ctx, d.QrelsSQL, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return nil, corpus{}, discard, fmt.Errorf("qrels_sql: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var q, doc string
		var g int
		if err := rows.Scan(&q, &doc, &g); err != nil {
			return nil, corpus{}, discard, fmt.Errorf("qrels_sql: want (text, text, int): %w", err)
		}
		if ds.Qrels[q] == nil {
			ds.Qrels[q] = map[string]int{}
		}
		ds.Qrels[q][doc] = g
	}
	if err := rows.Err(); err != nil {
		return nil, corpus{}, discard, fmt.Errorf("qrels_sql: %w", err)
	}
	if docs == 0 || len(ds.Queries) == 0 || len(ds.Qrels) == 0 {
		return nil, corpus{}, discard, fmt.Errorf("dataset from sql: %d docs, %d queries, %d judged queries: need some of each", docs, len(ds.Queries), len(ds.Qrels))
	}
	return ds, s.sqlCorpus(run.Project, name, d.CorpusSQL, docs), discard, nil
}
