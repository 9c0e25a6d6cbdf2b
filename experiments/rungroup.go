package experiments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/vectors"
)

// loadedFork is a variant's fork with its corpus loaded (and indexed),
// ready to evaluate.
type loadedFork struct {
	tbl     vectors.Table
	emb     vectors.Embedder
	cached  *vectors.Cached
	metric  vectors.Metric
	indexed bool
	chunked bool
	// lexical is set for a lexical variant's fork (lexical.go): no
	// embedder, table or vector index.
	lexical bool
	// fresh is what an incremental build inserted (nil otherwise).
	fresh *freshRows
}

// errBuildCold marks a materialization that was forked but could not be
// used (reused or maintained incrementally); the group is then built
// cold.
var errBuildCold = errors.New("materialization not used")

// runGroup runs the variants vs, which differ at most in search
// parameters, on one fork named after the first, and evaluates each of
// them there. The fork is a materialization of the same key when there is
// one (and the spec allows reuse); otherwise it forks base and builds:
// the corpus is streamed, a pass to fit the embedder's IDF (for models
// that have one), then a pass that chunks, embeds and copies it
// IngestBatch rows at a time, then the index is built, and the loaded
// fork is kept as a materialization. Between the two, a variant whose
// embedder is not fitted on the corpus forks the nearest materialization
// that differs only in the corpus and applies the delta (incremental.go).
func (s *Service) runGroup(ctx context.Context, run *Run, base BranchPoint, vs []VariantSpec, ds *evals.Dataset, docs corpus, progress progressFunc) []VariantRun {
	v := vs[0]
	if v.Type == VariantRunFile {
		return s.runFileGroup(run, vs, ds)
	}
	key := s.materializationKey(run, v)
	reuse := key != nil && run.Spec.Reuse != ReuseNever
	out, err := s.runGroupOn(ctx, run, base, vs, ds, docs, progress, key, reuse, "")
	if errors.Is(err, errBuildCold) {
		out, _ = s.runGroupOn(ctx, run, base, vs, ds, docs, progress, key, false, err.Error())
	}
	return out
}

// runGroupOn is runGroup on a fork of the materialization of key (when
// reuse and there is one), of the nearest one of its family (when reuse,
// there is one and v's embedder allows it), or of base. It returns
// errBuildCold (and no result) when the materialization it forked cannot
// be used; note is recorded on the variants built instead.
func (s *Service) runGroupOn(ctx context.Context, run *Run, base BranchPoint, vs []VariantSpec, ds *evals.Dataset, docs corpus,
	progress progressFunc, key *MaterializationKey, reuse bool, note string) (out []VariantRun, _ error) {
	v := vs[0]
	var vr VariantRun
	vr.Status = StatusRunning
	fail := func(phase string, err error) []VariantRun {
		vr.Status = statusOf(ctx, StatusFailed)
		vr.Error = phase + ": " + err.Error()
		out = make([]VariantRun, len(vs))
		for i := range out {
			out[i] = vr
		}
		return out
	}
	name := forkName(run.Spec.Name, run.ID, v.Name)
	progress("fork", nil)
	t := time.Now()
	var mat *Materialization
	var fi ForkInfo
	var err error
	incr := false // mat is the nearest materialization, to bring up to date
	if reuse {
		mat, fi, err = s.forkMaterialization(ctx, run.Project, *key, name)
		if err == nil && mat == nil && incremental(v) {
			mat, fi, err = s.forkNearestMaterialization(ctx, run.Project, *key, name)
			incr = mat != nil
		}
		if err != nil {
			note = err.Error()
		}
		if err != nil || mat == nil {
			mat, incr = nil, false
			fi, err = s.cfg.Branches.Fork(ctx, run.Project, base, name)
		}
	} else {
		fi, err = s.cfg.Branches.Fork(ctx, run.Project, base, name)
	}
	vr.Timings.Fork = ms(time.Since(t))
	if err != nil {
		return fail("fork", fmt.Errorf("%s from base %s: %w", name, base, err)), nil
	}
	vr.Branch, vr.ForkSeq = name, fi.Seq
	var stale error
	defer func() {
		kept, derr := run.Spec.KeepBranches && stale == nil, error(nil)
		if !kept {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if derr = s.cfg.Branches.Discard(dctx, run.Project, name); derr != nil {
				kept = true
			}
		}
		for i := range out {
			out[i].Kept = kept
			if derr != nil && out[i].Error == "" {
				out[i].Error = "discard: " + derr.Error()
			}
		}
	}()
	// A reused fork grows by nothing worth the walk over its blocks that
	// the store's accounting takes (about a second at 100k x 384): its
	// materialization records what it holds.
	built := mat == nil || incr
	var growth *forkGrowth
	if usage, ok := s.cfg.Branches.(ForkUsage); ok && built {
		if b, err := usage.ForkUsage(ctx, run.Project, name); err == nil {
			growth = &forkGrowth{usage: usage, project: run.Project, branch: name, before: b.Delta}
		}
	}
	sized := mat != nil && s.sizeForkBuffers(run.Project, name, mat.IndexBytes)
	conn, release, err := s.connectFork(ctx, run.Project, name, sized)
	if err != nil {
		return fail("connect", err), nil
	}
	defer func() { release() }()

	var lf *loadedFork
	var delta *IncrementalDelta
	switch {
	case mat != nil:
		if lf, err = s.adoptMaterialization(ctx, conn, v, mat, &vr); err != nil {
			stale = fmt.Errorf("%w: %s: %w", errBuildCold, mat.ID, err)
			s.forgetMaterialization(ctx, mat, err)
			return nil, stale
		}
		if !incr {
			vr.Materialization = &MaterializationUse{ID: mat.ID, Reused: true, CreatedByRun: mat.CreatedByRun,
				CreatedByVariant: mat.CreatedByVariant}
			break
		}
		// The delta's time is the build's: embed and load, no index build.
		if delta, err = s.applyDelta(ctx, conn, run.Project, name, lf, v, docs, mat, &vr, progress); err != nil {
			if ctx.Err() != nil {
				return fail("load", err), nil
			}
			stale = fmt.Errorf("%w: incremental from %s: %w", errBuildCold, mat.ID, err)
			return nil, stale
		}
	default:
		var phase string
		if lf, phase, err = s.buildFork(ctx, run, conn, name, v, docs, key != nil, &vr, progress); err != nil {
			return fail(phase, err), nil
		}
	}
	// A build to keep is measured once, after keepMaterialization's
	// checkpoint.
	keep := built && key != nil
	if !keep {
		growth.measure(ctx, &vr)
	}
	if lf.lexical {
		vr.Provenance, err = lexicalProvenance(ctx, conn, v)
	} else {
		vr.Provenance, err = variantProvenance(ctx, conn, lf.tbl, v, lf.emb, lf.metric, vr.IndexName)
	}
	if err != nil {
		return fail("provenance", err), nil
	}
	if keep {
		// Part of the build phase as progress displays count them.
		progress("index", &PhaseProgress{Detail: "keeping the loaded fork as materialization " + key.ID()})
		t := time.Now()
		vr.Name = v.Name
		vr.Materialization = s.keepMaterialization(ctx, run, *key, name, &vr, delta, growth)
		vr.Materialization.fresh = lf.fresh
		vr.Timings.Materialize = ms(time.Since(t))
		if note != "" && vr.Materialization.Note == "" {
			vr.Materialization.Note = "rebuilt: " + note
		}
	}

	progress("eval", nil)
	// The evaluation owns the connection from here: a cold timing pass
	// replaces it.
	fk := &evalFork{s: s, project: run.Project, branch: name, conn: conn, release: release}
	release = fk.close
	if mat == nil {
		// Built with the default; evaluated with the index in memory
		// (buffers.go). The restart's checkpoint is keepMaterialization's.
		if err := s.resizeForkBuffers(ctx, fk, vr.IndexBytes); err != nil {
			return fail("eval", err), nil
		}
	}
	buffers, err := recordBuffers(ctx, fk.conn, vr.Provenance)
	if err != nil {
		return fail("provenance", err), nil
	}
	// An index that fits goes into memory in one sequential pass (a
	// delta's did already), not page by page under the first queries; the
	// first point's evaluation counts it.
	var warm time.Duration
	if !incr && vr.IndexName != "" && vr.IndexBytes <= buffers {
		t := time.Now()
		if err := s.prewarmIndex(ctx, run.Project, name, vr.IndexName); err != nil {
			s.log.Warn("prewarm the index", slog.String("index", vr.IndexName), slog.String("err", err.Error()))
		}
		warm = time.Since(t)
	}
	out = make([]VariantRun, len(vs))
	for i, p := range vs {
		if lf.lexical {
			out[i] = s.evalLexical(ctx, run, fk, lf.chunked, p, ds, vr)
			continue
		}
		out[i] = s.evalPoint(ctx, run, fk, lf.tbl, lf.emb, lf.cached, lf.metric, lf.indexed, lf.chunked, p, ds, vr)
	}
	out[0].Timings.Eval += ms(warm)
	return out, nil
}

// forkGrowth measures a fork's growth against the walk of its usage
// taken when it was forked. A nil *forkGrowth (the branches report no
// usage, or that walk failed) measures nothing.
type forkGrowth struct {
	usage           ForkUsage
	project, branch string
	before          int64 // the fork's delta when it was forked
}

// measure walks the fork's usage once: it records the fork's growth in
// vr.StorageDelta and returns the fork's current bytes, nil when there
// is no measure.
func (g *forkGrowth) measure(ctx context.Context, vr *VariantRun) *int64 {
	if g == nil {
		return nil
	}
	b, err := g.usage.ForkUsage(ctx, g.project, g.branch)
	if err != nil {
		return nil
	}
	d := b.Delta - g.before
	vr.StorageDelta = &d
	return &b.Current
}

// buildFork fits the embedder, then embeds, loads and indexes the corpus
// on branch over conn, recording phases and counts in vr. With fit it
// also stores the fitted IDF in fitTable, for reuses of the fork. On
// error it returns the phase that failed.
func (s *Service) buildFork(ctx context.Context, run *Run, conn *pgx.Conn, branch string, v VariantSpec, docs corpus, fit bool,
	vr *VariantRun, progress progressFunc) (*loadedFork, string, error) {
	if v.Type == VariantLexical {
		return s.buildLexical(ctx, conn, v, docs, fit, vr, progress)
	}
	spec, err := vectors.ParseSpec(v.Embedder)
	if err != nil {
		return nil, "embedder", err
	}
	progress("embed", nil)
	t := time.Now()
	var idf *vectors.IDF
	if fit, err := vectors.NewIDFFitter(spec); err == nil {
		n := int64(0)
		if err := docs.each(ctx, func(d evals.Doc) error {
			fit.Add(docText(d))
			if n++; n%1024 == 0 {
				progress("embed", &PhaseProgress{Unit: "docs", Done: n, Total: int64(docs.docs), Detail: "fitting IDF"})
			}
			return nil
		}); err != nil {
			return nil, "embedder", err
		}
		idf = fit.IDF()
	} else if !errors.Is(err, vectors.ErrNotFittable) {
		return nil, "embedder", err
	}
	emb, err := s.embedders().New(spec, idf)
	if err != nil {
		return nil, "embedder", err
	}
	fitTime := time.Since(t)
	vr.ModelID = emb.ModelID()
	lf := &loadedFork{emb: emb, metric: metricOf(v)}
	if s.cfg.EmbedCache != nil {
		lf.cached = s.cfg.EmbedCache.Wrap(run.Project, emb)
		lf.emb = lf.cached
	}
	lf.tbl = vectors.Table{Name: runTable, Dims: emb.Dims(), Type: v.vectorType()}
	if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS vector"); err != nil {
		return nil, "load", err
	}
	if err := vectors.RegisterTypes(ctx, conn); err != nil {
		return nil, "load", err
	}
	if err := vectors.CreateTable(ctx, conn, lf.tbl); err != nil {
		return nil, "load", err
	}
	if fit && idf != nil {
		if err := storeFit(ctx, conn, idf); err != nil {
			return nil, "load", err
		}
	}
	// Text by text embedders get the document hashes the next corpus's
	// delta is computed against (an extra pass over the corpus).
	var hashing time.Duration
	if fit && idf == nil && incremental(v) {
		t := time.Now()
		if err := storeDocHashes(ctx, conn, docs); err != nil {
			return nil, "load", err
		}
		hashing = time.Since(t)
	}
	opt := vectors.StreamOptions{Batch: s.cfg.IngestBatch}
	if v.Chunking != nil {
		opt.Chunker = &vectors.Chunker{Size: v.Chunking.Size, Overlap: v.Chunking.Overlap}
		lf.chunked = true
	}
	// Embedding and copying alternate batch by batch; the phase is
	// "load" throughout and the timings split the time between them.
	progress("load", &PhaseProgress{Unit: "docs", Total: int64(docs.docs)})
	opt.Progress = func(st vectors.StreamStats) {
		progress("load", &PhaseProgress{Unit: "docs", Done: st.Docs, Total: int64(docs.docs),
			Detail: fmt.Sprintf("%d rows embedded and copied", st.Rows)})
	}
	st, err := vectors.IngestStream(ctx, conn, lf.tbl, lf.emb, func(yield func(vectors.Document) error) error {
		return docs.each(ctx, func(d evals.Doc) error {
			return yield(vectors.Document{ID: d.ID, Text: docText(d)})
		})
	}, opt)
	vr.Rows = st.Rows
	vr.Timings.Embed = ms(fitTime + st.Embed)
	vr.Timings.Load = ms(st.Load + hashing)
	if err != nil {
		return nil, "ingest", err
	}
	lf.indexed = v.Index != nil && v.Index.Type != "none"
	if lf.indexed {
		ix := vectors.Index{Method: vectors.Method(v.Index.Type), Metric: lf.metric, M: v.Index.M,
			EfConstruction: v.Index.EfConstruction, Lists: v.Index.Lists, Binary: v.binary()}
		plan := vectors.SizeBuild(lf.tbl, ix, vr.Rows, s.cfg.IndexMemoryBudget, runtime.NumCPU())
		ix.MaintenanceWorkMem, ix.ParallelWorkers = plan.Setting(), plan.ParallelWorkers
		vr.IndexBuild = &IndexBuild{BuildPlan: plan, MaintenanceWorkMemSetting: plan.Setting(), BudgetBytes: s.cfg.IndexMemoryBudget}
		t = time.Now()
		progress("index", nil)
		stop := s.watchBuild(ctx, run.Project, branch, lf.tbl, vr.Rows, progress)
		info, err := vectors.CreateIndex(ctx, conn, lf.tbl, ix)
		stop()
		vr.Timings.Index = ms(time.Since(t))
		if err != nil {
			return nil, "index", err
		}
		vr.IndexName, vr.IndexBytes = info.Name, info.SizeBytes
	}
	return lf, "", nil
}

// adoptMaterialization readies a fork of m for evaluating v: the embedder
// refitted from the IDF stored on the fork (no pass over the corpus), and
// the counts and index of the build. It fails when the fork's fitted
// embedder is not the one m recorded.
func (s *Service) adoptMaterialization(ctx context.Context, conn *pgx.Conn, v VariantSpec, m *Materialization, vr *VariantRun) (*loadedFork, error) {
	if v.Type == VariantLexical {
		return adoptLexical(v, m, vr)
	}
	spec, err := vectors.ParseSpec(v.Embedder)
	if err != nil {
		return nil, err
	}
	if err := vectors.RegisterTypes(ctx, conn); err != nil {
		return nil, err
	}
	var idf *vectors.IDF
	if _, err := vectors.NewIDFFitter(spec); err == nil {
		if idf, err = loadFit(ctx, conn); err != nil {
			return nil, err
		}
	}
	emb, err := s.embedders().New(spec, idf)
	if err != nil {
		return nil, err
	}
	if emb.ModelID() != m.ModelID {
		return nil, fmt.Errorf("the fork's embedder is %s, the materialization recorded %s", emb.ModelID(), m.ModelID)
	}
	lf := &loadedFork{emb: emb, metric: metricOf(v), tbl: vectors.Table{Name: runTable, Dims: emb.Dims(), Type: v.vectorType()},
		indexed: m.IndexName != "", chunked: v.Chunking != nil}
	if s.cfg.EmbedCache != nil {
		lf.cached = s.cfg.EmbedCache.Wrap(m.Project, emb)
		lf.emb = lf.cached
	}
	vr.ModelID, vr.Rows, vr.IndexName, vr.IndexBytes = m.ModelID, m.Rows, m.IndexName, m.IndexBytes
	return lf, nil
}

func metricOf(v VariantSpec) vectors.Metric {
	if v.Distance == "" {
		return vectors.Cosine
	}
	return vectors.Metric(v.Distance)
}

// storeFit stores idf in fitTable on conn's database.
func storeFit(ctx context.Context, conn *pgx.Conn, idf *vectors.IDF) error {
	b, err := json.Marshal(idf)
	if err != nil {
		return err
	}
	tbl := pgx.Identifier{fitTable}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE TABLE "+tbl+" (idf bytea NOT NULL)"); err != nil {
		return fmt.Errorf("store the fitted IDF: %w", err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO "+tbl+" VALUES ($1)", b); err != nil {
		return fmt.Errorf("store the fitted IDF: %w", err)
	}
	return nil
}

// loadFit reads the IDF storeFit stored.
func loadFit(ctx context.Context, conn *pgx.Conn) (*vectors.IDF, error) {
	var b []byte
	if err := conn.QueryRow(ctx, "SELECT idf FROM "+pgx.Identifier{fitTable}.Sanitize()).Scan(&b); err != nil {
		return nil, fmt.Errorf("read the fitted IDF: %w", err)
	}
	return vectors.ReadIDF(b)
}
