package experiments

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/offshootdb/offshoot/evals"
)

// VariantRunFile is the VariantSpec.Type of a variant whose rankings come
// from a TREC run file (an external system's output) instead of a search
// on a fork: no fork, embedder or index; its hits' Distance is the
// negated file score, so ascending distance is trec_eval's order.
const VariantRunFile = "run_file"

// Export formats for ExportRun.
const (
	// ExportTREC is a TREC run file: "qid Q0 docno rank score tag".
	ExportTREC = "trec"
	// ExportJSONL is one JSON object per query: query, hits (doc and
	// distance), latency_us and measures (name → value; absent for
	// queries without judgments).
	ExportJSONL = "jsonl"
)

// MaxRunFileBytes bounds an imported run file.
const MaxRunFileBytes = 256 << 20

// ExportRun writes the recorded per-query rankings of one variant to w
// (read scope on the run's project). ref is "RUN" (a run with one
// succeeded variant) or "RUN:VARIANT", as for CompareRuns; format is
// ExportTREC (the default when empty) or ExportJSONL.
//
// The TREC file is written by evals.WriteRun with the variant's name as
// tag, queries in byte order, and for each query's i-th of n hits the
// score n-i: the scores the run was evaluated with (evals.RunFromRankings),
// so `offshoot eval score -c` of the file against the run's qrels, with
// the run's metrics, reproduces the recorded metrics exactly. Queries
// without hits have no lines.
func (s *Service) ExportRun(ctx context.Context, ref, format string, w io.Writer) error {
	if format == "" {
		format = ExportTREC
	}
	if format != ExportTREC && format != ExportJSONL {
		return invalid("format", "must be %s or %s", ExportTREC, ExportJSONL)
	}
	_, v, err := s.resolveVariant(ctx, "run", ref)
	if err != nil {
		return err
	}
	if v.Status != StatusSucceeded {
		return invalid("run", "variant %s is %s; only a succeeded variant has rankings", v.Name, v.Status)
	}
	if format == ExportJSONL {
		return writeJSONL(w, v)
	}
	rankings := make(map[string][]string, len(v.Results))
	for _, q := range v.Results {
		if len(q.Hits) == 0 {
			continue
		}
		ids := make([]string, len(q.Hits))
		for i, h := range q.Hits {
			ids[i] = h.Doc
		}
		rankings[q.Query] = ids
	}
	run, err := evals.RunFromRankings(v.Name, rankings)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return evals.WriteRun(w, run)
}

func writeJSONL(w io.Writer, v *VariantRun) error {
	type line struct {
		Query     string             `json:"query"`
		Hits      []RankedDoc        `json:"hits"`
		LatencyUS int64              `json:"latency_us"`
		Measures  map[string]float64 `json:"measures,omitempty"`
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for _, q := range v.Results {
		l := line{Query: q.Query, Hits: q.Hits, LatencyUS: q.LatencyUS}
		if l.Hits == nil {
			l.Hits = []RankedDoc{}
		}
		if len(q.Values) == len(v.Measures) && len(q.Values) > 0 {
			l.Measures = make(map[string]float64, len(q.Values))
			for i, m := range v.Measures {
				l.Measures[m] = q.Values[i]
			}
		}
		if err := enc.Encode(l); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// ImportRequest names where an external run goes.
type ImportRequest struct {
	// Run is the id of a finished run whose dataset and metrics the
	// import is scored with.
	Run string `json:"run"`
	// Name is the new variant's name: unique in the run, same rules as
	// variant names.
	Name string `json:"name"`
	// Source says where the file came from (e.g. the client's file
	// name); recorded as the variant's run_file, not opened.
	Source string `json:"source,omitempty"`
}

// ImportRun adds an external system's TREC run file, read from body (at
// most MaxRunFileBytes), to a finished run as a variant of type
// VariantRunFile, so that CompareRuns can test it against the run's own
// variants (write scope on the run's project). It is scored as the run's
// variants are: the run's metrics over its judged queries, queries missing
// from the file counting as empty rankings (trec_eval -c), each ranking
// cut to the run's k (trec_eval -M k) in trec_eval's order (score
// descending, ties by docno descending). Queries of the file that are not
// among the run's queries are ignored; a file that shares none is
// ErrInvalid. The dataset is read again (BEIR directory or SQL on the
// pinned base); if its queries or qrels differ from those the run read
// (their Provenance fingerprints; their counts for a run recorded without
// provenance), the import is ErrConflict. A name the run has is ErrConflict; of
// imports under one name at once, one is recorded and the others are
// ErrConflict. Returns the recorded variant.
func (s *Service) ImportRun(ctx context.Context, req ImportRequest, body io.Reader) (*VariantRun, error) {
	var out *VariantRun
	err := func() error {
		if !identRE.MatchString(req.Name) {
			return invalid("name", "must be 1-40 of a-z, 0-9, '-', '_'")
		}
		run, err := s.getRun(req.Run)
		if err != nil {
			return err
		}
		if err := s.authorize(ctx, RoleWrite, run.Project, ""); err != nil {
			return err
		}
		if !run.Status.done() {
			return fmt.Errorf("run %s is %s; import into a finished run: %w", run.ID, run.Status, ErrConflict)
		}
		for _, v := range run.Variants {
			if v.Name == req.Name {
				return fmt.Errorf("variant %q of run %s exists: %w", req.Name, run.ID, ErrConflict)
			}
		}
		ext, err := readRunFile(body, req.Source)
		if err != nil {
			return err
		}
		ds, err := s.runDataset(ctx, run)
		if err != nil {
			return err
		}
		if err := sameJudgments(run, ds); err != nil {
			return err
		}
		vr, err := scoreRunFile(run, ds, VariantSpec{Name: req.Name, Type: VariantRunFile, RunFile: req.Source}, ext)
		if err != nil {
			return err
		}
		rec := vr
		rec.Results = nil // stored beside the record
		// The name is checked again, and the rankings stored, under the
		// record's lock: of imports under one name at once, one is
		// recorded with its own rankings and the others conflict.
		err = s.modifyRun(run.ID, func(r *Run) error {
			for _, v := range r.Variants {
				if v.Name == vr.Name {
					return fmt.Errorf("variant %q of run %s exists: %w", vr.Name, r.ID, ErrConflict)
				}
			}
			if err := s.storeResults(r.ID, vr.Name, vr.Results); err != nil {
				return err
			}
			r.Variants = append(r.Variants, rec)
			return nil
		})
		if err != nil {
			return err
		}
		out = &vr
		return nil
	}()
	s.record(ctx, "run.import", req.Run+":"+req.Name, req.Source, err)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// readRunFile reads a TREC run of at most MaxRunFileBytes.
func readRunFile(body io.Reader, name string) (*evals.Run, error) {
	if name == "" {
		name = "run file"
	}
	lr := &io.LimitedReader{R: body, N: MaxRunFileBytes + 1}
	run, err := evals.ReadRun(lr, name)
	if lr.N == 0 {
		return nil, invalid("file", "larger than %d bytes", MaxRunFileBytes)
	}
	if err != nil {
		return nil, invalid("file", "%v", err)
	}
	return run, nil
}

// sameJudgments checks that ds, a finished run's dataset read again, has
// the queries and qrels the run read: their fingerprints when the run
// recorded them (Provenance), else their counts. A change is ErrConflict.
func sameJudgments(run *Run, ds *evals.Dataset) error {
	if run.Provenance == nil { // recorded before provenance
		if len(ds.Queries) != run.Queries || len(ds.Qrels) != run.Judged {
			return fmt.Errorf("the dataset changed since run %s (%d queries, %d judged; the run had %d, %d): %w",
				run.ID, len(ds.Queries), len(ds.Qrels), run.Queries, run.Judged, ErrConflict)
		}
		return nil
	}
	was := run.Provenance.Data
	queries, qrels := judgmentsFingerprint(ds)
	var diffs []string
	if queries != was.Queries {
		diffs = append(diffs, fmt.Sprintf("queries: %d, sha256 %.12s; the run read %d, sha256 %.12s",
			queries.Rows, queries.SHA256, was.Queries.Rows, was.Queries.SHA256))
	}
	if qrels != was.Qrels {
		diffs = append(diffs, fmt.Sprintf("relevance judgments: %d, sha256 %.12s; the run read %d, sha256 %.12s",
			qrels.Rows, qrels.SHA256, was.Qrels.Rows, was.Qrels.SHA256))
	}
	if len(diffs) > 0 {
		return fmt.Errorf("the dataset changed since run %s, whose scores an import would not be comparable with (%s): %w",
			run.ID, strings.Join(diffs, "; "), ErrConflict)
	}
	return nil
}

// runDataset reads a finished run's queries and qrels again, as execute
// did (the corpus is not read).
func (s *Service) runDataset(ctx context.Context, run *Run) (*evals.Dataset, error) {
	if run.Spec.Dataset.BEIR != "" {
		d := run.Spec.Dataset
		if err := s.resolveDataset(&d); err != nil {
			return nil, err
		}
		col, err := evals.OpenBEIR(d.BEIR, d.Split)
		if err != nil {
			return nil, fmt.Errorf("dataset: %w", err)
		}
		return &evals.Dataset{Name: col.Name, Queries: col.Queries, Qrels: col.Qrels}, nil
	}
	ds, _, discard, err := s.sqlDataset(ctx, run, run.Base)
	if discard != nil {
		defer discard()
	}
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	return ds, nil
}

// scoreRunFile records an external run as a succeeded variant of run:
// its rankings cut to run.Spec.K over the dataset's queries, scored with
// the run's metrics, -c.
func scoreRunFile(run *Run, ds *evals.Dataset, spec VariantSpec, ext *evals.Run) (VariantRun, error) {
	vr := VariantRun{Name: spec.Name, Spec: spec, Status: StatusSucceeded}
	queries := make([]string, 0, len(ds.Queries))
	for _, q := range ds.Queries {
		queries = append(queries, q.ID)
	}
	sort.Strings(queries)
	cut := &evals.Run{Name: spec.Name, Results: map[string][]evals.ScoredDoc{}}
	shared := 0
	for _, q := range queries {
		docs, ok := ext.Results[q]
		if !ok {
			continue
		}
		shared++
		ranked := evals.Rank(docs)
		if len(ranked) > run.Spec.K {
			ranked = ranked[:run.Spec.K]
		}
		cut.Results[q] = ranked
	}
	if shared == 0 {
		return vr, invalid("file", "no query of the file is a query of run %s", run.ID)
	}
	measures, err := evals.ParseMeasures(run.Spec.Metrics...)
	if err != nil {
		return vr, fmt.Errorf("metrics: %w", err)
	}
	er, err := evals.Evaluate(ds.Qrels, cut, measures, evals.Options{Complete: true})
	if err != nil {
		return vr, invalid("file", "%v", err)
	}
	vr.Metrics = map[string]float64{}
	for i, m := range er.Measures {
		vr.Measures = append(vr.Measures, m.String())
		vr.Metrics[m.String()] = er.All[i]
	}
	for _, q := range queries {
		qr := QueryRanking{Query: q, Values: er.PerQuery[q]}
		for _, d := range cut.Results[q] {
			qr.Hits = append(qr.Hits, RankedDoc{Doc: d.DocID, Distance: -d.Score})
		}
		vr.Results = append(vr.Results, qr)
	}
	return vr, nil
}

// runFileGroup evaluates variants of type VariantRunFile of a spec: each
// reads its run file from the datasets directory; no fork is made.
func (s *Service) runFileGroup(run *Run, vs []VariantSpec, ds *evals.Dataset) []VariantRun {
	out := make([]VariantRun, len(vs))
	for i, v := range vs {
		vr, err := func() (VariantRun, error) {
			path, err := s.resolveRunFile("run_file", v.RunFile)
			if err != nil {
				return VariantRun{}, err
			}
			f, err := os.Open(path)
			if err != nil {
				return VariantRun{}, err
			}
			defer f.Close()
			ext, err := readRunFile(f, v.RunFile)
			if err != nil {
				return VariantRun{}, err
			}
			return scoreRunFile(run, ds, v, ext)
		}()
		if err != nil {
			vr = VariantRun{Name: v.Name, Spec: v, Status: StatusFailed, Phase: "eval", Error: "eval: " + err.Error()}
		}
		out[i] = vr
	}
	return out
}

// checkRunFiles makes sure every run_file variant of spec names a file
// inside the datasets directory before the run starts.
func (s *Service) checkRunFiles(spec *ExperimentSpec) error {
	for i, v := range spec.Variants {
		if v.Type == VariantRunFile {
			if _, err := s.resolveRunFile(fmt.Sprintf("variants[%d].run_file", i), v.RunFile); err != nil {
				return err
			}
		}
	}
	return nil
}

// resolveRunFile confines a run_file variant's file to Config.DatasetsDir
// as resolveDataset does a BEIR directory: relative to it, links followed,
// a regular file strictly inside it.
// Errors are *FieldError for field.
func (s *Service) resolveRunFile(field, name string) (string, error) {
	if s.cfg.DatasetsDir == "" {
		return "", invalid(field, "this server has no datasets directory (offshoot serve --datasets-dir); import the file with offshoot run import instead")
	}
	root, err := filepath.Abs(s.cfg.DatasetsDir)
	if err != nil {
		return "", fmt.Errorf("datasets dir: %w", err)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", invalid(field, "the datasets directory %s is not readable: %v", root, err)
	}
	p := name
	if !filepath.IsAbs(p) {
		p = filepath.Join(root, p)
	}
	p = filepath.Clean(p)
	outside := invalid(field, "%q is not inside the datasets directory %s", name, root)
	if !within(root, p) && !within(realRoot, p) {
		return "", outside
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", invalid(field, "%q: no such file in the datasets directory %s", name, root)
	}
	if !within(realRoot, real) {
		return "", outside
	}
	if fi, err := os.Stat(real); err != nil || !fi.Mode().IsRegular() {
		return "", invalid(field, "%q is not a file in the datasets directory %s", name, root)
	}
	return real, nil
}
