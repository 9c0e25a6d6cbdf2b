package experiments

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/vectors"
)

// runGroup forks, embeds, loads and indexes the variants vs, which
// differ at most in search parameters, on one fork named after the first,
// and evaluates each of them there. The corpus is streamed: a pass to fit
// the embedder's IDF (for models that have one), then a pass that chunks,
// embeds and copies it IngestBatch rows at a time.
func (s *Service) runGroup(ctx context.Context, run *Run, base BranchPoint, vs []VariantSpec, ds *evals.Dataset, docs corpus, progress progressFunc) (out []VariantRun) {
	v := vs[0]
	if v.Type == VariantRunFile {
		return s.runFileGroup(run, vs, ds)
	}
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
	fi, err := s.cfg.Branches.Fork(ctx, run.Project, base, name)
	vr.Timings.Fork = ms(time.Since(t))
	if err != nil {
		return fail("fork", fmt.Errorf("%s from base %s: %w", name, base, err))
	}
	vr.Branch, vr.ForkSeq = name, fi.Seq
	defer func() {
		kept, derr := run.Spec.KeepBranches, error(nil)
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
	usage, _ := s.cfg.Branches.(ForkUsage)
	var before int64
	if usage != nil {
		before, err = usage.UsageBytes(ctx, run.Project, name)
		if err != nil {
			usage = nil
		}
	}
	conn, release, err := s.connect(ctx, run.Project, name, ReadWrite)
	if err != nil {
		return fail("connect", err)
	}
	defer func() { release() }()

	spec, err := vectors.ParseSpec(v.Embedder)
	if err != nil {
		return fail("embedder", err)
	}
	progress("embed", nil)
	t = time.Now()
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
			return fail("embedder", err)
		}
		idf = fit.IDF()
	} else if !errors.Is(err, vectors.ErrNotFittable) {
		return fail("embedder", err)
	}
	emb, err := s.embedders().New(spec, idf)
	if err != nil {
		return fail("embedder", err)
	}
	fitTime := time.Since(t)
	vr.ModelID = emb.ModelID()
	var cached *vectors.Cached
	if s.cfg.EmbedCache != nil {
		cached = s.cfg.EmbedCache.Wrap(emb)
		emb = cached
	}
	metric := vectors.Metric(v.Distance)
	if metric == "" {
		metric = vectors.Cosine
	}
	tbl := vectors.Table{Name: runTable, Dims: emb.Dims()}
	if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS vector"); err != nil {
		return fail("load", err)
	}
	if err := vectors.RegisterTypes(ctx, conn); err != nil {
		return fail("load", err)
	}
	if err := vectors.CreateTable(ctx, conn, tbl); err != nil {
		return fail("load", err)
	}
	opt := vectors.StreamOptions{Batch: s.cfg.IngestBatch}
	if v.Chunking != nil {
		opt.Chunker = &vectors.Chunker{Size: v.Chunking.Size, Overlap: v.Chunking.Overlap}
	}
	// Embedding and copying alternate batch by batch; the phase is
	// "load" throughout and the timings split the time between them.
	progress("load", &PhaseProgress{Unit: "docs", Total: int64(docs.docs)})
	opt.Progress = func(st vectors.StreamStats) {
		progress("load", &PhaseProgress{Unit: "docs", Done: st.Docs, Total: int64(docs.docs),
			Detail: fmt.Sprintf("%d rows embedded and copied", st.Rows)})
	}
	st, err := vectors.IngestStream(ctx, conn, tbl, emb, func(yield func(vectors.Document) error) error {
		return docs.each(ctx, func(d evals.Doc) error {
			return yield(vectors.Document{ID: d.ID, Text: docText(d)})
		})
	}, opt)
	vr.Rows = st.Rows
	vr.Timings.Embed = ms(fitTime + st.Embed)
	vr.Timings.Load = ms(st.Load)
	if err != nil {
		return fail("ingest", err)
	}
	indexed := v.Index != nil && v.Index.Type != "none"
	if indexed {
		ix := vectors.Index{Method: vectors.Method(v.Index.Type), Metric: metric, M: v.Index.M,
			EfConstruction: v.Index.EfConstruction, Lists: v.Index.Lists}
		plan := vectors.SizeBuild(tbl, ix, vr.Rows, s.cfg.IndexMemoryBudget, runtime.NumCPU())
		ix.MaintenanceWorkMem, ix.ParallelWorkers = plan.Setting(), plan.ParallelWorkers
		vr.IndexBuild = &IndexBuild{BuildPlan: plan, MaintenanceWorkMemSetting: plan.Setting(), BudgetBytes: s.cfg.IndexMemoryBudget}
		t = time.Now()
		progress("index", nil)
		stop := s.watchBuild(ctx, run.Project, name, tbl, vr.Rows, progress)
		info, err := vectors.CreateIndex(ctx, conn, tbl, ix)
		stop()
		vr.Timings.Index = ms(time.Since(t))
		if err != nil {
			return fail("index", err)
		}
		vr.IndexName, vr.IndexBytes = info.Name, info.SizeBytes
	}
	if usage != nil {
		if after, err := usage.UsageBytes(ctx, run.Project, name); err == nil {
			d := after - before
			vr.StorageDelta = &d
		}
	}
	if vr.Provenance, err = variantProvenance(ctx, conn, tbl, v, emb, metric, vr.IndexName); err != nil {
		return fail("provenance", err)
	}

	progress("eval", nil)
	// The evaluation owns the connection from here: a cold timing pass
	// replaces it.
	fk := &evalFork{s: s, project: run.Project, branch: name, conn: conn, release: release}
	release = fk.close
	out = make([]VariantRun, len(vs))
	for i, p := range vs {
		out[i] = s.evalPoint(ctx, run, fk, tbl, emb, cached, metric, indexed, opt.Chunker != nil, p, ds, vr)
	}
	return out
}
