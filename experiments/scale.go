package experiments

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/vectors"
)

// StatusInterrupted is the state of a run (and of its unfinished
// variants) that the server stopped in the middle of, with the cause in
// Run.Error: Stop marks the runs in flight as they stop (discarding their
// forks), and Open marks those a process that did not stop left
// unfinished, and discards their forks. A run cancelled by CancelRun is
// StatusCancelled.
const StatusInterrupted RunStatus = "interrupted"

// PhaseProgress is how far the phase in progress has got, for progress
// bars: Done out of Total Units, and the estimated time left.
type PhaseProgress struct {
	// Unit names what is counted: "docs" while loading, "tuples" or
	// "blocks" while building an index.
	Unit  string `json:"unit"`
	Done  int64  `json:"done"`
	Total int64  `json:"total"`
	// ETASeconds is the time left at the rate so far; absent until
	// there is a rate.
	ETASeconds *float64 `json:"eta_seconds,omitempty"`
	// Detail is what the phase is doing, e.g. Postgres' index build
	// phase ("building index: loading tuples").
	Detail string `json:"detail,omitempty"`
}

// Fraction is Done/Total in [0, 1], 0 without a total.
func (p *PhaseProgress) Fraction() float64 {
	if p == nil || p.Total <= 0 {
		return 0
	}
	return min(float64(p.Done)/float64(p.Total), 1)
}

// IndexBuild records how a variant's index was built.
type IndexBuild struct {
	vectors.BuildPlan
	// MaintenanceWorkMem is the setting used, as Postgres reads it.
	MaintenanceWorkMemSetting string `json:"maintenance_work_mem"`
	// BudgetBytes is the memory budget the build was sized within
	// (Config.IndexMemoryBudget).
	BudgetBytes int64 `json:"budget_bytes"`
}

// Defaults of the scale settings in Config.
const (
	defaultIngestBatch = 1024
	maxIndexBudget     = 16 << 30
)

// defaultIndexBudget is a quarter of the machine's memory, at most 16 GiB
// (1 GiB when the memory cannot be read).
func defaultIndexBudget() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 1 << 30
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) >= 2 && fs[0] == "MemTotal:" {
			if kb, err := strconv.ParseInt(fs[1], 10, 64); err == nil {
				return min(kb*1024/4, maxIndexBudget)
			}
		}
	}
	return 1 << 30
}

// progressFunc records a variant group's phase and how far it has got.
type progressFunc func(phase string, p *PhaseProgress)

// throttle passes phase changes on at once and counters at most every
// interval, with an ETA from the rate since the phase started.
type throttle struct {
	every time.Duration
	fn    progressFunc
	mu    sync.Mutex
	phase string
	start time.Time
	last  time.Time
}

func (t *throttle) report(phase string, p *PhaseProgress) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if phase != t.phase {
		t.phase, t.start, t.last = phase, now, now
		t.fn(phase, p)
		return
	}
	if now.Sub(t.last) < t.every {
		return
	}
	t.last = now
	if p != nil && p.Done > 0 && p.Total > p.Done {
		el := now.Sub(t.start).Seconds()
		eta := el / float64(p.Done) * float64(p.Total-p.Done)
		p.ETASeconds = &eta
	}
	t.fn(phase, p)
}

// corpus streams a run's documents: each call of each reads them all
// from the start. It is safe for concurrent use.
type corpus struct {
	docs int
	each func(ctx context.Context, fn func(evals.Doc) error) error
	// fingerprint is the corpus' fingerprint when the pass that opened it
	// computed it (nil: fingerprintDataset makes a pass of its own).
	fingerprint *SetFingerprint
	// hashes are its documents' hashes in corpus order when the pass
	// that opened it recorded them (nil: docHashes makes a pass of its
	// own), and at, when set, reads documents back by their places
	// there without a pass over the others (incremental.go).
	hashes []docHash
	at     func(ctx context.Context, places []int, fn func(evals.Doc) error) error
}

// beirCorpus streams c's corpus; fp is its fingerprint and hashes its
// documents' hashes (placed by line), when known.
func beirCorpus(c *evals.Collection, fp *SetFingerprint, hashes []docHash) corpus {
	out := corpus{docs: c.Docs, fingerprint: fp, each: func(ctx context.Context, fn func(evals.Doc) error) error {
		return c.EachDoc(func(d evals.Doc) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return fn(d)
		})
	}}
	if hashes != nil {
		out.hashes = hashes
		out.at = func(ctx context.Context, lines []int, fn func(evals.Doc) error) error {
			return c.DocsAt(lines, func(_ int, d evals.Doc) error {
				if err := ctx.Err(); err != nil {
					return err
				}
				return fn(d)
			})
		}
	}
	return out
}

// sqlCorpus reads corpus_sql with a cursor on the dataset fork, a
// connection per pass.
func (s *Service) sqlCorpus(project, branch, sql string, docs int) corpus {
	return corpus{docs: docs, each: func(ctx context.Context, fn func(evals.Doc) error) error {
		conn, release, err := s.connect(ctx, project, branch, ReadOnly)
		if err != nil {
			return err
		}
		defer release()
		return eachPair(ctx, conn, "corpus_sql", sql, func(id, text string) error {
			return fn(evals.Doc{ID: id, Text: text})
		})
	}}
}

// eachPair streams the first two columns of sql's rows, an id and a
// text, as text; a NULL text is "", a NULL or empty id an error naming
// field and the row.
func eachPair(ctx context.Context, conn *pgx.Conn, field, sql string, fn func(id, text string) error) error {
	rows, err := conn.Query(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	defer rows.Close()
	row := 0
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
		if len(vals) < 2 {
			return fmt.Errorf("%s: want 2 columns, got %d", field, len(vals))
		}
		row++
		id, text := "", ""
		if vals[0] != nil {
			id = fmt.Sprint(vals[0])
		}
		if vals[1] != nil {
			text = fmt.Sprint(vals[1])
		}
		if id == "" {
			return fmt.Errorf("%s: row %d: the id (first column) is NULL or empty", field, row)
		}
		if err := fn(id, text); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	return nil
}

// interruptedForks names every fork run r may have left: one per variant
// group and the dataset fork.
func interruptedForks(r *Run) []string {
	var out []string
	for _, g := range buildGroups(r.Variants) {
		out = append(out, forkName(r.Spec.Name, r.ID, r.Variants[g[0]].Name))
	}
	return append(out, forkName(r.Spec.Name, r.ID, ".dataset"))
}

// discardInterrupted discards the forks of runs a previous process left
// unfinished (markInterrupted), in the background; a fork that is not
// there was never made or is gone already. Failures are logged and noted
// in the run's error.
func (s *Service) discardInterrupted(runs []Run) {
	br := s.cfg.Branches
	if br == nil || len(runs) == 0 {
		return
	}
	rn := s.rn
	rn.mu.Lock()
	if rn.ctx.Err() != nil {
		rn.mu.Unlock()
		return
	}
	rn.wg.Add(1)
	rn.mu.Unlock()
	go func() {
		defer rn.wg.Done()
		for _, r := range runs {
			var failed []string
			for _, name := range interruptedForks(&r) {
				ctx, cancel := context.WithTimeout(rn.ctx, time.Minute)
				err := br.Discard(ctx, r.Project, name)
				cancel()
				if err != nil && !errors.Is(err, ErrNotFound) {
					s.log.Error("run: discard fork of interrupted run", slog.String("run", r.ID), slog.String("branch", name), slog.String("err", err.Error()))
					failed = append(failed, name+": "+err.Error())
				}
			}
			_ = s.updateRun(r.ID, func(rec *Run) {
				for i := range rec.Variants {
					if rec.Variants[i].Status == StatusInterrupted {
						rec.Variants[i].Kept = false
					}
				}
				if len(failed) > 0 {
					rec.Error += "; forks not discarded: " + strings.Join(failed, "; ")
				}
			})
		}
	}()
}

// watchBuild reports the progress of the index build on branch's table
// t from a second connection until the returned stop is called. Without
// that connection the build runs unwatched.
func (s *Service) watchBuild(ctx context.Context, project, branch string, t vectors.Table, rows int64, progress progressFunc) (stop func()) {
	conn, release, err := s.connect(ctx, project, branch, ReadWrite)
	if err != nil {
		s.log.Warn("run: no connection to watch the index build", slog.String("branch", branch), slog.String("err", err.Error()))
		return func() {}
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer release()
		vectors.WatchBuild(wctx, conn, t, progressEvery/2, func(b vectors.BuildProgress) {
			p := &PhaseProgress{Unit: "blocks", Done: b.BlocksDone, Total: b.BlocksTotal, Detail: b.Phase}
			if b.TuplesDone > 0 {
				// pgvector counts tuples but leaves their total to the
				// table's row count.
				p.Unit, p.Done, p.Total = "tuples", b.TuplesDone, max(b.TuplesTotal, rows)
			}
			progress("index", p)
		})
	}()
	return func() { cancel(); <-done }
}
