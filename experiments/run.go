package experiments

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/experiments/internal/controldb"
	"github.com/offshootdb/offshoot/vectors"
)

// Experiment runs: what they need from branch management, their durable
// records, and the calls that start, read, list, cancel and wait for them;
// runs a stopped server left unfinished are marked interrupted.

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

// BaseChecker is optionally implemented by a RunBranches to check a
// run's base without pinning it, so that a run or schedule naming an
// unknown project, branch or snapshot, or a point its branch does not
// hold, is refused before it is recorded.
type BaseChecker interface {
	// CheckBase returns an error wrapping ErrNotFound, naming what is
	// missing, for an unknown project, branch or snapshot, and a
	// *FieldError naming base.seq or base.at for a point outside the
	// branch's history (later than its head, or older than it keeps).
	CheckBase(ctx context.Context, project string, at BranchPoint) error
}

// ForkUsage is optionally implemented by a RunBranches to report a
// branch's storage, from which runs record the storage delta of a fork
// and a kept materialization what it holds.
type ForkUsage interface {
	// ForkUsage reports the branch's own storage. The store keeps it as
	// counters, so a call does not depend on the branch's size.
	ForkUsage(ctx context.Context, project, branch string) (ForkBytes, error)
}

// ForkBytes is a branch's own storage as the store accounts it.
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

// RankedDoc is a retrieved document and its distance, always a number:
// a document with no distance to the query (under cosine, the zero
// vector of a text without tokens) is not ranked.
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
	ctx    context.Context               // cancelled by Close, with errStopped
	stop   context.CancelCauseFunc
	wg     sync.WaitGroup
	wake   chan struct{} // schedule changes
}

// errStopped is the cause with which the runner's context, and so every
// run's, is cancelled when the service stops: runs in flight are then
// interrupted (statusOf), not cancelled.
var errStopped = errors.New("the server stopped during the run")

func newRunner() *runner {
	ctx, stop := context.WithCancelCause(context.Background())
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
// the whole project (runs create branches), checked before the spec is
// looked at. An unknown project, base branch or snapshot (ErrNotFound), a
// base seq or time outside the branch's history or an unknown embedding
// model (a *FieldError naming base.seq, base.at or the variant's
// embedder) is then refused before anything is recorded. Runs stop when
// cancelled (CancelRun) or when the service closes. A BEIR dataset must
// lie in Config.DatasetsDir (see DatasetSpec.BEIR); the run records its
// resolved path.
func (s *Service) StartRun(ctx context.Context, spec ExperimentSpec) (*Run, error) {
	var run *Run
	err := func() error {
		// Authorized first: validation is work, and its errors describe
		// the server, for callers who may not start runs.
		if err := s.authorize(ctx, RoleWrite, spec.Project, ""); err != nil {
			return err
		}
		if err := spec.Validate(); err != nil {
			return err
		}
		if err := s.resolveDataset(&spec.Dataset); err != nil {
			return err
		}
		if err := s.checkRunFiles(&spec); err != nil {
			return err
		}
		if err := s.checkRunRefs(ctx, &spec); err != nil {
			return err
		}
		r, err := s.startRun(ctx, spec, "")
		run = r
		return err
	}()
	s.record(ctx, "run.start", spec.Project+"/"+spec.Name, idOf(run), err)
	return run, err
}

// checkRunRefs checks what a valid spec names outside itself: its
// project and base (when the branch manager can check them, BaseChecker)
// and every dense variant's embedding model, built unfitted as the run
// builds it, so that a run is not recorded only to fail on them later.
func (s *Service) checkRunRefs(ctx context.Context, spec *ExperimentSpec) error {
	for i, v := range spec.Variants {
		if v.Type != "" {
			continue
		}
		f := fmt.Sprintf("variants[%d].embedder", i)
		es, err := vectors.ParseSpec(v.Embedder)
		if err != nil {
			return invalid(f, "%v", err)
		}
		if _, err := s.embedders().New(es, nil); errors.Is(err, vectors.ErrUnknownModel) {
			return invalid(f, "%v; the models are %s", err, strings.Join(s.embedders().Models(), ", "))
		} else if err != nil {
			return invalid(f, "%v", err)
		}
	}
	if bc, ok := s.cfg.Branches.(BaseChecker); ok {
		return bc.CheckBase(ctx, spec.Project, spec.Base)
	}
	return nil
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

// modifyRun is updateRun for a change fn may refuse: on fn's error the
// record is left as it was and the error returned. fn runs under the lock
// that serializes record updates, so it sees the record no other update
// changes until it returns; it must not update run records itself.
func (s *Service) modifyRun(id string, fn func(r *Run) error) error {
	s.rn.recMu.Lock()
	defer s.rn.recMu.Unlock()
	r, err := s.getRunRecord(id)
	if err != nil {
		return err
	}
	if err := fn(r); err != nil {
		return err
	}
	return s.withDB(func(db *controldb.DB) error { return db.Put(runKey(id), r) })
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

func decodeJSON(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode record: %w", err)
	}
	return nil
}

// shutdown cancels every run and the scheduler and waits for them.
func (rn *runner) shutdown() {
	rn.mu.Lock()
	rn.stop(errStopped)
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
		for j := range r.Variants {
			v := &r.Variants[j]
			if !v.Status.done() {
				v.Status, v.Progress = StatusInterrupted, nil
			}
		}
		r.Status, r.Error, r.FinishedAt = StatusInterrupted, interruptedCause(r), &now
		if err := db.Put(runKey(r.ID), r); err != nil {
			return nil, err
		}
	}
	return stale, nil
}

// interruptedCause is the Error of a run the server stopped in the
// middle of: errStopped and the phase each interrupted variant stopped in.
func interruptedCause(r *Run) string {
	var where []string
	for _, v := range r.Variants {
		if v.Status == StatusInterrupted && v.Phase != "" {
			where = append(where, v.Name+" in "+v.Phase)
		}
	}
	cause := "interrupted: " + errStopped.Error()
	if len(where) > 0 {
		cause += " (" + strings.Join(where, ", ") + ")"
	}
	return cause
}
