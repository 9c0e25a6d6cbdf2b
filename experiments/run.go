package experiments

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/experiments/internal/controldb"
	"github.com/offshootdb/offshoot/storage"
	"github.com/offshootdb/offshoot/vectors"
)

// RunBranches is what experiment runs need from branch management: pin a
// branch point, fork it under a new name, discard a fork. The facade's
// branch store implements it; tests implement it over Postgres databases
// created from a template. Implementations must be safe for concurrent
// use; errors should wrap ErrNotFound for an unknown project or branch.
type RunBranches interface {
	// Resolve pins at to an exact point (Branch and Seq set) so that the
	// data can be forked again later at that point.
	Resolve(ctx context.Context, project string, at BranchPoint) (BranchPoint, error)
	// Fork creates branch name from the pinned point from.
	Fork(ctx context.Context, project string, from BranchPoint, name string) (ForkInfo, error)
	// Discard deletes a fork created by Fork.
	Discard(ctx context.Context, project, branch string) error
}

// ForkUsage is optionally implemented by a RunBranches to report a
// branch's storage, from which runs record the storage delta of a fork
// and a kept materialization what it holds.
type ForkUsage interface {
	// ForkUsage reports the branch's own storage. One call is one walk
	// of the branch's blocks, whose cost grows with the branch's size.
	ForkUsage(ctx context.Context, project, branch string) (ForkBytes, error)
}

// ForkBytes is a branch's own storage as one walk of it finds it.
type ForkBytes struct {
	// Delta is what the branch stores on its own: its copy-on-write
	// delta, the history of its writes included.
	Delta int64
	// Current is the part of Delta its head reads: what it holds once
	// the history of its writes ages out.
	Current int64
}

// ForkInfo describes a fork.
type ForkInfo struct {
	Branch string `json:"branch"`
	// Seq is the fork's sequence number at creation.
	Seq uint64 `json:"seq"`
}

// RunStatus is the state of a run or of one of its variants.
type RunStatus string

// Run and variant states. A run is "partial" when some variants failed
// and others succeeded.
const (
	StatusQueued    RunStatus = "queued"
	StatusRunning   RunStatus = "running"
	StatusSucceeded RunStatus = "succeeded"
	StatusPartial   RunStatus = "partial"
	StatusFailed    RunStatus = "failed"
	StatusCancelled RunStatus = "cancelled"
)

func (st RunStatus) done() bool {
	return st != StatusQueued && st != StatusRunning
}

// Run is the durable record of an experiment run.
type Run struct {
	ID         string         `json:"id"`
	Experiment string         `json:"experiment"`
	Project    string         `json:"project"`
	Spec       ExperimentSpec `json:"spec"`
	// Base is the resolved branch point every variant forked from.
	Base       BranchPoint `json:"base"`
	Status     RunStatus   `json:"status"`
	Error      string      `json:"error,omitempty"`
	ScheduleID string      `json:"schedule_id,omitempty"`
	CreatedBy  string      `json:"created_by"`
	CreatedAt  time.Time   `json:"created_at"`
	FinishedAt *time.Time  `json:"finished_at,omitempty"`
	// Dataset counts.
	Docs     int          `json:"docs"`
	Queries  int          `json:"queries"`
	Judged   int          `json:"judged_queries"`
	Variants []VariantRun `json:"variants"`
	// Verdict is set for scheduled runs compared with their baseline.
	Verdict *Verdict `json:"verdict,omitempty"`
	// Provenance fingerprints the data read and names the measure
	// definitions and machine; set once the dataset is read.
	Provenance *Provenance `json:"provenance,omitempty"`
}

// VariantRun is the record of one variant of a run.
type VariantRun struct {
	Name   string      `json:"name"`
	Spec   VariantSpec `json:"spec"`
	Status RunStatus   `json:"status"`
	// Phase is the phase in progress while running: fork, embed, load,
	// index or eval; for a variant that failed or was cancelled, the
	// phase it stopped in.
	Phase  string `json:"phase,omitempty"`
	Error  string `json:"error,omitempty"`
	Branch string `json:"branch,omitempty"`
	// ForkSeq is the fork's sequence number.
	ForkSeq uint64 `json:"fork_seq,omitempty"`
	// Kept is true when the branch was kept after the run.
	Kept    bool    `json:"kept"`
	ModelID string  `json:"model_id,omitempty"`
	Timings Timings `json:"timings_ms"`
	Rows    int64   `json:"rows"`
	// CacheHits and CacheMisses count embedding cache lookups.
	CacheHits   int64  `json:"cache_hits"`
	CacheMisses int64  `json:"cache_misses"`
	IndexName   string `json:"index_name,omitempty"`
	IndexBytes  int64  `json:"index_bytes"`
	// StorageDelta is the fork's growth in bytes, when the branch
	// manager reports usage: measured after the build, or for a build
	// kept as a materialization after the checkpoint that keeps it.
	StorageDelta *int64             `json:"storage_delta_bytes,omitempty"`
	Latency      evals.LatencyStats `json:"latency"`
	// ANNRecall is the mean recall@K of the index against exact search
	// (absent without an index).
	ANNRecall *float64 `json:"ann_recall,omitempty"`
	// Metrics are the aggregate measures by trec_eval name.
	Metrics map[string]float64 `json:"metrics,omitempty"`
	// Measures names the per-query Values, in order.
	Measures []string       `json:"measures,omitempty"`
	Results  []QueryRanking `json:"results,omitempty"`
	// Provenance is what the variant ran with (embedder, chunking,
	// server versions, index DDL, settings); set once its data is loaded.
	Provenance *VariantProvenance `json:"provenance,omitempty"`
	// Plan is the plan every query of the point ran with; for a point
	// with an index, one that scans it (forced if need be).
	Plan *PlanSummary `json:"plan,omitempty"`
	// Timing says how Latency was measured: cache state, warm-up,
	// passes and their spread, and QPS at concurrent clients.
	Timing *TimingReport `json:"timing,omitempty"`
	// Progress is how far the phase in progress has got, while running.
	Progress *PhaseProgress `json:"progress,omitempty"`
	// IndexBuild is how the index was built: the memory and workers
	// chosen for it.
	IndexBuild *IndexBuild `json:"index_build,omitempty"`
	// Materialization is the materialization the variant forked
	// (Reused; it skipped embed, load and index) or built and kept.
	Materialization *MaterializationUse `json:"materialization,omitempty"`
}

// Timings are phase durations in milliseconds.
type Timings struct {
	Fork  float64 `json:"fork"`
	Embed float64 `json:"embed"`
	Load  float64 `json:"load"`
	Index float64 `json:"index"`
	Eval  float64 `json:"eval"`
	// Materialize is the checkpoint and snapshot that kept the
	// variant's fork as a materialization.
	Materialize float64 `json:"materialize,omitempty"`
}

// QueryRanking is one query's ranking, latency and measures.
type QueryRanking struct {
	Query     string      `json:"query"`
	Hits      []RankedDoc `json:"hits"`
	LatencyUS int64       `json:"latency_us"`
	// Values are the query's measures (VariantRun.Measures order);
	// absent for queries without judgments.
	Values []float64 `json:"values,omitempty"`
}

// RankedDoc is a retrieved document and its distance.
type RankedDoc struct {
	Doc      string  `json:"doc"`
	Distance float64 `json:"distance"`
}

// runTable is the table each fork's chunks are loaded into.
const runTable = "offshoot_exp_chunks"

// runner holds the in-memory state of runs and schedules.
type runner struct {
	mu     sync.Mutex
	active map[string]context.CancelFunc // run id → cancel
	recMu  sync.Mutex                    // serializes read-modify-write of run records
	ctx    context.Context               // cancelled by Close
	stop   context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{} // schedule changes
}

func newRunner() *runner {
	ctx, stop := context.WithCancel(context.Background())
	return &runner{active: map[string]context.CancelFunc{}, ctx: ctx, stop: stop, wake: make(chan struct{}, 1)}
}

func runKey(id string) []byte { return []byte("run/" + id) }

func newRunID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

// StartRun validates spec, records a queued run and starts it in the
// background; it returns the run at once. The caller needs write scope on
// the whole project (runs create branches). Runs stop when cancelled
// (CancelRun) or when the service closes. A BEIR dataset must lie in
// Config.DatasetsDir (see DatasetSpec.BEIR); the run records its resolved
// path.
func (s *Service) StartRun(ctx context.Context, spec ExperimentSpec) (*Run, error) {
	var run *Run
	err := func() error {
		if err := spec.Validate(); err != nil {
			return err
		}
		if err := s.authorize(ctx, RoleWrite, spec.Project, ""); err != nil {
			return err
		}
		if err := s.resolveDataset(&spec.Dataset); err != nil {
			return err
		}
		if err := s.checkRunFiles(&spec); err != nil {
			return err
		}
		r, err := s.startRun(ctx, spec, "")
		run = r
		return err
	}()
	s.record(ctx, "run.start", spec.Project+"/"+spec.Name, idOf(run), err)
	return run, err
}

func idOf(r *Run) string {
	if r == nil {
		return ""
	}
	return r.ID
}

func (s *Service) startRun(ctx context.Context, spec ExperimentSpec, scheduleID string) (*Run, error) {
	if s.cfg.Branches == nil || s.cfg.Connector == nil {
		return nil, fmt.Errorf("experiment runs need branches and compute: %w", ErrUnavailable)
	}
	caller, _ := CallerFrom(ctx)
	now := s.cfg.Now()
	run := &Run{ID: newRunID(now), Experiment: spec.Name, Project: spec.Project, Spec: spec, Base: spec.Base,
		Status: StatusQueued, ScheduleID: scheduleID, CreatedBy: caller.KeyID, CreatedAt: now}
	for _, v := range spec.Concrete() {
		run.Variants = append(run.Variants, VariantRun{Name: v.Name, Spec: v, Status: StatusQueued})
	}
	rn := s.rn
	rn.mu.Lock()
	if rn.ctx.Err() != nil {
		rn.mu.Unlock()
		return nil, fmt.Errorf("service closing: %w", ErrUnavailable)
	}
	rctx, cancel := context.WithCancel(WithCaller(rn.ctx, caller))
	rn.active[run.ID] = cancel
	rn.wg.Add(1)
	rn.mu.Unlock()
	if err := s.putRun(run); err != nil {
		rn.mu.Lock()
		delete(rn.active, run.ID)
		rn.mu.Unlock()
		cancel()
		rn.wg.Done()
		return nil, err
	}
	cp := *run
	go func() {
		defer rn.wg.Done()
		defer cancel()
		s.execute(rctx, run)
		rn.mu.Lock()
		delete(rn.active, run.ID)
		rn.mu.Unlock()
		if run.ScheduleID != "" {
			s.afterScheduledRun(run.ScheduleID, run.ID)
		}
	}()
	return &cp, nil
}

func (s *Service) putRun(r *Run) error {
	s.rn.recMu.Lock()
	defer s.rn.recMu.Unlock()
	return s.withDB(func(db *controldb.DB) error { return db.Put(runKey(r.ID), r) })
}

// updateRun applies fn to the stored record of run id and stores it.
func (s *Service) updateRun(id string, fn func(r *Run)) error {
	s.rn.recMu.Lock()
	defer s.rn.recMu.Unlock()
	return s.withDB(func(db *controldb.DB) error {
		var r Run
		if err := db.Get(runKey(id), &r); err != nil {
			return err
		}
		fn(&r)
		return db.Put(runKey(id), &r)
	})
}

// getRun returns a run's record with its per-query rankings.
func (s *Service) getRun(id string) (*Run, error) {
	r, err := s.getRunRecord(id)
	if err != nil {
		return nil, err
	}
	if err := s.withResults(r); err != nil {
		return nil, err
	}
	return r, nil
}

// getRunRecord returns a run's record without the rankings stored beside
// it (rankings.go).
func (s *Service) getRunRecord(id string) (*Run, error) {
	var r Run
	err := s.withDB(func(db *controldb.DB) error { return db.Get(runKey(id), &r) })
	if errors.Is(err, controldb.ErrNotFound) {
		return nil, fmt.Errorf("run %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// GetRun returns a run's full record with every variant's per-query
// rankings (read scope on its project).
func (s *Service) GetRun(ctx context.Context, id string) (*Run, error) {
	r, err := s.GetRunStatus(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := s.withResults(r); err != nil {
		return nil, err
	}
	return r, nil
}

// GetRunStatus returns a run's record without per-query rankings (read
// scope on its project): what progress displays poll.
func (s *Service) GetRunStatus(ctx context.Context, id string) (*Run, error) {
	r, err := s.getRunRecord(id)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, RoleRead, r.Project, ""); err != nil {
		return nil, err
	}
	for i := range r.Variants {
		r.Variants[i].Results = nil
	}
	return r, nil
}

// RunFilter selects runs for ListRuns; empty fields match everything.
type RunFilter struct {
	Project    string
	Experiment string
	ScheduleID string
	// Limit caps the runs returned, newest first. Default 100.
	Limit int
}

// ListRuns lists runs newest first, without per-query results, that the
// caller may read.
func (s *Service) ListRuns(ctx context.Context, f RunFilter) ([]Run, error) {
	caller, ok := CallerFrom(ctx)
	if !ok {
		return nil, fmt.Errorf("no caller: %w", ErrUnauthenticated)
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	var out []Run
	err := s.withDB(func(db *controldb.DB) error {
		return db.Scan([]byte("run/"), []byte("run0"), func(_, v []byte) (bool, error) {
			var r Run
			if err := decodeJSON(v, &r); err != nil {
				return false, err
			}
			if (f.Project != "" && r.Project != f.Project) || (f.Experiment != "" && r.Experiment != f.Experiment) ||
				(f.ScheduleID != "" && r.ScheduleID != f.ScheduleID) || !caller.Allows(RoleRead, r.Project, "") {
				return true, nil
			}
			for i := range r.Variants {
				r.Variants[i].Results = nil
			}
			out = append(out, r)
			return true, nil
		})
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	if len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// CancelRun cancels a queued or running run; variants in flight stop and
// their forks are discarded. Cancelling a finished run is ErrConflict.
func (s *Service) CancelRun(ctx context.Context, id string) error {
	return s.audited(ctx, "run.cancel", "run/"+id, "", func() error {
		r, err := s.getRun(id)
		if err != nil {
			return err
		}
		if err := s.authorize(ctx, RoleWrite, r.Project, ""); err != nil {
			return err
		}
		s.rn.mu.Lock()
		cancel, ok := s.rn.active[id]
		s.rn.mu.Unlock()
		if !ok {
			return fmt.Errorf("run %s is %s: %w", id, r.Status, ErrConflict)
		}
		cancel()
		return nil
	})
}

// WaitRun waits until run id has finished or ctx is done, and returns its
// record.
func (s *Service) WaitRun(ctx context.Context, id string) (*Run, error) {
	for {
		r, err := s.GetRunStatus(ctx, id)
		if err != nil {
			return nil, err
		}
		if r.Status.done() {
			return s.GetRun(ctx, id)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

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
		// The scan that validates the corpus also fingerprints it.
		var fp fingerprint
		col, err := evals.OpenBEIRFunc(d.BEIR, d.Split, func(d evals.Doc) { fp.add(d.ID, d.Title, d.Text) })
		if err != nil {
			fail(statusOf(ctx, StatusFailed), fmt.Errorf("dataset: %w", err))
			return
		}
		ds = &evals.Dataset{Name: col.Name, Queries: col.Queries, Qrels: col.Qrels}
		cfp := fp.result()
		docs = beirCorpus(col, &cfp)
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
			for _, i := range group {
				s.finishVariant(run, i, VariantRun{Status: StatusCancelled, Error: "cancelled before start"})
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
		ok, bad := 0, 0
		for _, v := range r.Variants {
			if v.Status == StatusSucceeded {
				ok++
			} else {
				bad++
			}
		}
		switch {
		case ctx.Err() != nil:
			r.Status, r.Error = StatusCancelled, "cancelled"
		case bad == 0:
			r.Status = StatusSucceeded
		case ok == 0:
			r.Status, r.Error = StatusFailed, "every variant failed"
		default:
			r.Status = StatusPartial
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

func statusOf(ctx context.Context, otherwise RunStatus) RunStatus {
	if ctx.Err() != nil {
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
	for i, q := range queries {
		qq := sq
		qq.Vector = qvecs[i]
		res, err := vectors.Search(ctx, fk.conn, tbl, qq)
		if err != nil {
			return fail("eval", fmt.Errorf("query %s: %w", q.ID, err))
		}
		if indexed && int64(len(res.Hits)) < min(int64(fetch), vr.Rows) {
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
				q.ID, what, len(res.Hits), min(int64(fetch), vr.Rows), plan, field))
		}
		qr := QueryRanking{Query: q.ID, LatencyUS: res.Latency.Microseconds()}
		seen := map[string]bool{}
		var ids []string
		for _, h := range res.Hits {
			if seen[h.DocID] || len(qr.Hits) == k {
				continue
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
	if err := eachPair(ctx, conn, "corpus_sql", d.CorpusSQL, func(_, _ string) error {
		docs++
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

func decodeJSON(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode record: %w", err)
	}
	return nil
}

// shutdown cancels every run and the scheduler and waits for them.
func (rn *runner) shutdown() {
	rn.mu.Lock()
	rn.stop()
	rn.mu.Unlock()
	rn.wg.Wait()
}

// markInterrupted marks the runs a previous process left unfinished as
// interrupted, with the cause, and returns them so that their forks can
// be discarded (Service.discardInterrupted).
func markInterrupted(db *controldb.DB, now time.Time) ([]Run, error) {
	var stale []Run
	err := db.Scan([]byte("run/"), []byte("run0"), func(_, v []byte) (bool, error) {
		var r Run
		if err := decodeJSON(v, &r); err != nil {
			return false, err
		}
		if !r.Status.done() {
			stale = append(stale, r)
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	for i := range stale {
		r := &stale[i]
		var where []string
		for j := range r.Variants {
			v := &r.Variants[j]
			if !v.Status.done() {
				if v.Phase != "" {
					where = append(where, v.Name+" in "+v.Phase)
				}
				v.Status, v.Progress = StatusInterrupted, nil
			}
		}
		cause := "interrupted: the server stopped during the run"
		if len(where) > 0 {
			cause += " (" + strings.Join(where, ", ") + ")"
		}
		r.Status, r.Error, r.FinishedAt = StatusInterrupted, cause, &now
		if err := db.Put(runKey(r.ID), r); err != nil {
			return nil, err
		}
	}
	return stale, nil
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
