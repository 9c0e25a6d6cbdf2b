package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/experiments"
)

// runsNotFound is the next step after an unknown run or variant.
const runsNotFound = "list_runs shows the runs, get_run a run's variants"

// defaultToolRuns is list_runs' limit when the agent gives none.
const defaultToolRuns = 20

func runIDArg(desc string) mcpgo.ToolOption {
	return mcpgo.WithString("id", mcpgo.Required(), mcpgo.Description(desc))
}

// runTools are the experiment-run tools: thin adapters over StartRun,
// GetRun, ListRuns, CancelRun and CompareRuns.
func (s *Server) runTools() []*tool {
	return []*tool{s.startRunTool(), s.getRunTool(), s.listRunsTool(), s.cancelRunTool(), s.compareRunsTool(), s.listDatasetsTool(),
		s.exportRunTool(), s.importRunTool(), s.listMaterializationsTool()}
}

func (s *Server) startRunTool() *tool {
	def := mcpgo.NewTool("run_experiment",
		mcpgo.WithDescription("Start an experiment run that compares retrieval variants (embedder, chunking, distance, ANN index, search parameters; or lexical Postgres full-text search, and hybrid fusions of a dense and a lexical variant) on a test collection with relevance judgments. "+
			"The run pins the base branch, then forks ONE BRANCH PER VARIANT (copy-on-write, instant) and on each fork embeds the corpus, loads it into a table, builds the index and runs every query, scoring with trec_eval measures; the forks are discarded afterwards unless keep_branches is set, so the base branch is never changed. "+
			"Cost: runs in the background for seconds to many minutes (embedding and index builds dominate; a sweep multiplies the variants) and uses each fork's compute and storage while it runs. "+
			"Returns at once with the run id and status queued; follow it with get_run (wait_seconds waits for the end and reports progress notifications) until the status is succeeded, partial, failed or cancelled, then compare_runs. Needs write scope on the project."),
		annotations(false, false, false),
		mcpgo.WithObject("spec", mcpgo.Required(), mcpgo.Description(
			"The experiment spec as a JSON object: {\"name\": \"ab\" (lowercase, digits, - _), \"project\" (default the server's default project), "+
				"\"base\": {\"branch\": \"main\"} (its head; or add one of \"snapshot\", \"seq\", or \"at\": an RFC 3339 time within the history window), \"dataset\": {\"beir\": \"/path/to/beir/dir\", \"split\": \"test\"} (or corpus_sql, queries_sql, qrels_sql run on the pinned base), "+
				"\"variants\": [{\"name\": \"bow\", \"embedder\": \"hash-bow?dims=256\", \"distance\": \"cosine\", \"index\": {\"type\": \"hnsw\", \"m\": 16}, \"search\": {\"ef_search\": 40, \"iterative_scan\": \"auto\"}, \"chunking\": {\"size\": 800}, \"sweep\": {\"ef_search\": [20, 40]}}, "+
				"{\"name\": \"bq\", \"embedder\": \"hash-rp?dims=256\", \"vector_type\": \"vector\" or \"halfvec\", \"quantization\": \"binary\", \"index\": {\"type\": \"hnsw\"}, \"search\": {\"rerank\": 40}, \"sweep\": {\"rerank\": [20, 40, 80]}}], "+
				"\"metrics\": [\"ndcg_cut.10\", \"recall.100\"], \"k\": 10, \"keep_branches\": false, \"concurrency\": 1, \"reuse\": \"auto\" (fork a kept materialization of the same corpus, embedder, chunking and index instead of rebuilding; \"never\" rebuilds, see list_materializations), "+
				"\"timing\": {\"warmup\": 1, \"repeats\": 3, \"clients\": 0 (0: the server's cores), \"cache\": \"warm\" or \"cold\"}}. "+
				"Lexical baseline, no embedding service: {\"name\": \"bm\", \"type\": \"lexical\", \"lexical\": {\"text_search_config\": \"english\", \"rank\": \"ts_rank\" or \"ts_rank_cd\", \"normalization\": 0 (Postgres' bitmask, 0..63; 1 divides by 1+log(length)), \"query\": \"or\" (default: any of the query's lexemes; \"and\" is plainto_tsquery, \"websearch\" websearch_to_tsquery, both match few documents for natural-language queries)}, \"chunking\" optional} (no embedder, index or search). "+
				"Hybrid: {\"name\": \"rrf\", \"type\": \"hybrid\", \"hybrid\": {\"dense\": \"bow\", \"lexical\": \"bm\", \"fusion\": \"rrf\" (k, default 60) or \"weighted\" (alpha in [0,1], the dense weight on min-max normalized scores, default 0.5)}, \"sweep\": {\"rrf_k\": [10, 60]} or {\"alpha\": [0.3, 0.7]}}: fuses the two variants' recorded rankings (each k deep) once they finish; it names variants of the same spec, a swept one by its point's name (\"bow-ef40\"). "+
				"iterative_scan: auto (default: pgvector's iterative scan when ef_search is below the rows fetched, so recall@k is not capped), off (such a spec is refused, naming the field), relaxed_order or strict_order. "+
				"vector_type halfvec stores 2-byte floats (about half the table and index; indexable up to 4,000 dims instead of 2,000). quantization binary keeps the full vectors, indexes their sign bits (binary_quantize, Hamming distance, needs an hnsw or ivfflat index) and re-ranks the search.rerank nearest candidates (default 4 x k, at least k) by the variant's distance on the full vectors; its ANN recall is against full-precision exact search. Unknown fields are refused.")),
	)
	return newTool(def, writeTool, "list_branches and list_snapshots show what the spec's base can name", func(ctx context.Context, c call, a struct {
		Spec json.RawMessage `json:"spec"`
	}) (any, string, error) {
		spec, err := decodeRunSpec(a.Spec, c.project)
		if err != nil {
			return nil, "", err
		}
		run, err := s.svc.StartRun(ctx, *spec)
		if err != nil {
			return nil, "", err
		}
		var b strings.Builder
		fmt.Fprintf(&b, "run %s of experiment %s started (%s): %d variant(s) on copy-on-write forks of %s (variants that differ only in search parameters share one)\n", run.ID, run.Experiment, run.Status, len(run.Variants), run.Spec.Base)
		fmt.Fprintf(&b, "next: get_run with id %q and wait_seconds %d until it is done, then compare_runs\n", run.ID, maxRunWait)
		return map[string]any{"id": run.ID, "experiment": run.Experiment, "project": run.Project, "status": run.Status, "variants": variantNames(run)}, b.String(), nil
	})
}

// decodeRunSpec decodes the spec argument strictly (DecodeSpec), taking
// the default project when the spec names none, and names fields as
// "spec.<path>".
func decodeRunSpec(raw json.RawMessage, defaultProject string) (*experiments.ExperimentSpec, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, &experiments.FieldError{Field: "spec", Reason: "want a JSON object with name, base, dataset and variants"}
	}
	if _, ok := m["project"]; !ok {
		p, _ := json.Marshal(defaultProject)
		m["project"] = p
	}
	j, err := json.Marshal(m)
	if err != nil {
		return nil, &experiments.FieldError{Field: "spec", Reason: err.Error()}
	}
	spec, err := experiments.DecodeSpec(j)
	var fe *experiments.FieldError
	if errors.As(err, &fe) {
		return nil, &experiments.FieldError{Field: "spec." + fe.Field, Reason: fe.Reason}
	}
	return spec, err
}

func variantNames(r *experiments.Run) []string {
	out := make([]string, len(r.Variants))
	for i, v := range r.Variants {
		out[i] = v.Name
	}
	return out
}

// runSummary is a run without per-query results: what a model needs to
// follow a run and pick variants to compare.
type runSummary struct {
	ID         string                  `json:"id"`
	Experiment string                  `json:"experiment"`
	Project    string                  `json:"project"`
	Status     experiments.RunStatus   `json:"status"`
	Error      string                  `json:"error,omitempty"`
	Base       experiments.BranchPoint `json:"base"`
	ScheduleID string                  `json:"schedule_id,omitempty"`
	CreatedAt  string                  `json:"created_at"`
	FinishedAt string                  `json:"finished_at,omitempty"`
	Docs       int                     `json:"docs"`
	Queries    int                     `json:"queries"`
	Judged     int                     `json:"judged_queries"`
	Variants   []variantSummary        `json:"variants"`
	Verdict    *experiments.Verdict    `json:"verdict,omitempty"`
	// Provenance fingerprints the data read; each variant's says what
	// it ran with.
	Provenance *experiments.Provenance `json:"provenance,omitempty"`
	// provenanceText is the provenance for people (not in JSON).
	provenanceText string
}

// variantSummary is one variant's state and headline numbers.
type variantSummary struct {
	Name         string                `json:"name"`
	Status       experiments.RunStatus `json:"status"`
	Phase        string                `json:"phase,omitempty"`
	Error        string                `json:"error,omitempty"`
	Branch       string                `json:"branch,omitempty"`
	Kept         bool                  `json:"kept"`
	Metrics      map[string]float64    `json:"metrics,omitempty"`
	ANNRecall    *float64              `json:"ann_recall,omitempty"`
	LatencyP50MS float64               `json:"latency_p50_ms"`
	IndexBytes   int64                 `json:"index_bytes"`
	TimingsMS    experiments.Timings   `json:"timings_ms"`
	// Provenance is what the variant ran with.
	Provenance *experiments.VariantProvenance `json:"provenance,omitempty"`
	// Plan is the plan the variant's queries ran with.
	Plan *experiments.PlanSummary `json:"plan,omitempty"`
	// Latency at one client (p95, p99, QPS) and at N clients.
	LatencyP95MS float64 `json:"latency_p95_ms,omitempty"`
	LatencyP99MS float64 `json:"latency_p99_ms,omitempty"`
	QPS          float64 `json:"qps,omitempty"`
	Clients      int     `json:"clients,omitempty"`
	QPSClients   float64 `json:"qps_clients,omitempty"`
	Cache        string  `json:"cache,omitempty"`
}

func summarize(r *experiments.Run) runSummary {
	out := runSummary{ID: r.ID, Experiment: r.Experiment, Project: r.Project, Status: r.Status, Error: r.Error, Base: r.Base,
		ScheduleID: r.ScheduleID, CreatedAt: r.CreatedAt.UTC().Format("2006-01-02T15:04:05Z"), Docs: r.Docs, Queries: r.Queries, Judged: r.Judged,
		Verdict: r.Verdict, Variants: make([]variantSummary, len(r.Variants)), Provenance: r.Provenance}
	var pt strings.Builder
	if err := experiments.WriteProvenance(&pt, r); err == nil {
		out.provenanceText = pt.String()
	}
	if r.FinishedAt != nil {
		out.FinishedAt = r.FinishedAt.UTC().Format("2006-01-02T15:04:05Z")
	}
	for i, v := range r.Variants {
		out.Variants[i] = variantSummary{Name: v.Name, Status: v.Status, Phase: v.Phase, Error: v.Error, Branch: v.Branch, Kept: v.Kept,
			Metrics: v.Metrics, ANNRecall: v.ANNRecall, LatencyP50MS: float64(v.Latency.P50.Microseconds()) / 1000, IndexBytes: v.IndexBytes, TimingsMS: v.Timings,
			Provenance: v.Provenance}
		vs := &out.Variants[i]
		vs.Plan = v.Plan
		if t := v.Timing; t != nil {
			vs.LatencyP95MS, vs.LatencyP99MS = float64(v.Latency.P95.Microseconds())/1000, float64(v.Latency.P99.Microseconds())/1000
			vs.QPS, vs.Clients, vs.QPSClients, vs.Cache = v.Latency.QPS, t.Concurrent.Clients, t.Concurrent.QPS, t.Cache
		}
	}
	return out
}

// renderRun is the compact text form of a run: one line for the run, one
// per variant with its status or phase and its metrics.
func renderRun(r runSummary) string {
	var b strings.Builder
	fmt.Fprintf(&b, "run %s (experiment %s, project %s): %s", r.ID, r.Experiment, r.Project, r.Status)
	if r.Error != "" {
		fmt.Fprintf(&b, ": %s", clipText(oneLine(r.Error), textCell))
	}
	if r.Queries > 0 {
		fmt.Fprintf(&b, "; %d docs, %d queries (%d judged)", r.Docs, r.Queries, r.Judged)
	}
	b.WriteString("\n")
	for _, v := range r.Variants {
		fmt.Fprintf(&b, "  %s: %s", v.Name, v.Status)
		if v.Phase != "" {
			fmt.Fprintf(&b, " (phase %s)", v.Phase)
		}
		if v.Error != "" {
			fmt.Fprintf(&b, ": %s", clipText(oneLine(v.Error), textCell))
		}
		if len(v.Metrics) > 0 {
			names := make([]string, 0, len(v.Metrics))
			for m := range v.Metrics {
				names = append(names, m)
			}
			sort.Strings(names)
			for _, m := range names {
				fmt.Fprintf(&b, " %s=%.4f", m, v.Metrics[m])
			}
			fmt.Fprintf(&b, " p50=%.2fms", v.LatencyP50MS)
		}
		if v.ANNRecall != nil {
			fmt.Fprintf(&b, " ann_recall=%.3f", *v.ANNRecall)
		}
		if v.Clients > 0 {
			fmt.Fprintf(&b, " p95=%.2fms p99=%.2fms qps=%.1f qps@%d=%.1f (%s cache)", v.LatencyP95MS, v.LatencyP99MS, v.QPS, v.Clients, v.QPSClients, v.Cache)
		}
		if v.Plan != nil {
			fmt.Fprintf(&b, "\n    plan: %s", v.Plan)
		}
		b.WriteString("\n")
	}
	if r.Verdict != nil {
		fmt.Fprintf(&b, "verdict against baseline %s on %s: regression=%t\n", r.Verdict.Baseline, r.Verdict.Metric, r.Verdict.Regression)
		if r.Verdict.Reason != "" {
			fmt.Fprintf(&b, "  %s\n", r.Verdict.Reason)
		}
	}
	b.WriteString(r.provenanceText)
	return b.String()
}

// maxRunWait bounds get_run's wait_seconds.
const maxRunWait = 60

func (s *Server) getRunTool() *tool {
	def := mcpgo.NewTool("get_run",
		mcpgo.WithDescription("Show an experiment run: its status (queued, running, succeeded, partial, failed, cancelled), and per variant its status, the phase in progress (fork, embed, load, index, eval), its headline metrics, query latency (p50/p95/p99 at one client after warm-up, QPS at one and at N clients, cache state), index size, and the query plan its numbers were measured with (whether the ANN index was used, forced, and with which ef_search, probes, iterative scan and rerank); and its provenance (data fingerprints, k, measure definitions, machine; per variant embedder, chunking, Postgres and pgvector versions, index DDL and settings). "+
			"Use it to follow a run started with run_experiment: with wait_seconds it waits (up to that long) for the run to finish and reports each variant's progress as MCP progress notifications when the call carries a progressToken; without, poll every few seconds until the status is no longer queued or running. Then pick variants for compare_runs. "+
			"Cheap: reads the run's record. Per-query rankings are left out; compare_runs shows the queries that changed."),
		annotations(true, false, true),
		runIDArg("Run id, as run_experiment or list_runs returned it."),
		mcpgo.WithNumber("wait_seconds", mcpgo.Description(fmt.Sprintf("Wait up to this many seconds for the run to finish before answering (0 to %d, default 0: answer at once). The answer is the run as it is then, finished or not.", maxRunWait)),
			mcpgo.Min(0), mcpgo.Max(maxRunWait)),
	)
	return newTool(def, readTool, runsNotFound, func(ctx context.Context, c call, a struct {
		ID          string  `json:"id"`
		WaitSeconds float64 `json:"wait_seconds"`
	}) (any, string, error) {
		if a.ID == "" {
			return nil, "", &experiments.FieldError{Field: "id", Reason: "is required: a run id"}
		}
		if a.WaitSeconds < 0 || a.WaitSeconds > maxRunWait {
			return nil, "", &experiments.FieldError{Field: "wait_seconds", Reason: fmt.Sprintf("want 0 to %d", maxRunWait)}
		}
		deadline := time.Now().Add(time.Duration(a.WaitSeconds * float64(time.Second)))
		// MCP wants progress to increase with every notification; the
		// handler's "started" was 0.
		last := 0.0
		for {
			r, err := s.svc.GetRunStatus(ctx, a.ID)
			if err != nil {
				return nil, "", err
			}
			finished := r.Status != experiments.StatusQueued && r.Status != experiments.StatusRunning
			if a.WaitSeconds > 0 {
				if done, total, msg := runProgress(r); done > last {
					c.notify(done, total, msg)
					last = done
				}
			}
			if finished || !time.Now().Before(deadline) {
				sum := summarize(r)
				return sum, renderRun(sum), nil
			}
			select {
			case <-ctx.Done():
				return nil, "", ctx.Err()
			case <-time.After(250 * time.Millisecond):
			}
		}
	})
}

// runProgress measures a run for a progress notification: variants
// finished (a running one counts the phases it has done and the done
// fraction of the one in progress), out of all
// variants, and a message with each variant's state.
func runProgress(r *experiments.Run) (done, total float64, msg string) {
	parts := make([]string, len(r.Variants))
	for i, v := range r.Variants {
		switch v.Status {
		case experiments.StatusQueued:
		case experiments.StatusRunning:
			if j := v.PhaseIndex(); j >= 0 {
				done += (float64(j) + v.Progress.Fraction()) / float64(len(experiments.Phases))
			}
		default:
			done++
		}
		parts[i] = v.Name + " " + string(v.Status)
		if v.Status == experiments.StatusRunning && v.Phase != "" {
			parts[i] += " (" + v.Phase
			if p := v.Progress; p != nil && p.Total > 0 {
				parts[i] += fmt.Sprintf(" %.0f%% of %d %s", 100*p.Fraction(), p.Total, p.Unit)
				if p.ETASeconds != nil {
					parts[i] += fmt.Sprintf(", ETA %.0fs", *p.ETASeconds)
				}
			}
			parts[i] += ")"
		}
	}
	return done, float64(len(r.Variants)), fmt.Sprintf("run %s %s: %s", r.ID, r.Status, strings.Join(parts, ", "))
}

func (s *Server) listRunsTool() *tool {
	def := mcpgo.NewTool("list_runs",
		mcpgo.WithDescription("List experiment runs newest first, with status and per-variant headline metrics, optionally only one project's, one experiment's or one schedule's. "+
			"Use it to find a run id (for get_run or compare_runs) or the previous run of an experiment to compare against. Cheap: reads run records only."),
		annotations(true, false, true),
		mcpgo.WithString("project", mcpgo.Description("Only runs of this project. Default: every project this key can read.")),
		mcpgo.WithString("experiment", mcpgo.Description("Only runs of the experiment with this name (the spec's name).")),
		mcpgo.WithString("schedule_id", mcpgo.Description("Only runs started by this schedule.")),
		mcpgo.WithNumber("limit", mcpgo.Description(fmt.Sprintf("Most runs returned. Default %d, at most 1000.", defaultToolRuns)), mcpgo.Min(1), mcpgo.Max(1000)),
	)
	return newTool(def, readTool, "", func(ctx context.Context, _ call, a struct {
		Project    string `json:"project"`
		Experiment string `json:"experiment"`
		ScheduleID string `json:"schedule_id"`
		Limit      int    `json:"limit"`
	}) (any, string, error) {
		if a.Limit < 0 || a.Limit > 1000 {
			return nil, "", &experiments.FieldError{Field: "limit", Reason: "want 1 to 1000"}
		}
		if a.Limit == 0 {
			a.Limit = defaultToolRuns
		}
		runs, err := s.svc.ListRuns(ctx, experiments.RunFilter{Project: a.Project, Experiment: a.Experiment, ScheduleID: a.ScheduleID, Limit: a.Limit})
		if err != nil {
			return nil, "", err
		}
		out := make([]runSummary, len(runs))
		var b strings.Builder
		fmt.Fprintf(&b, "%d run(s)\n", len(runs))
		for i := range runs {
			out[i] = summarize(&runs[i])
			b.WriteString(renderRun(out[i]))
		}
		return map[string]any{"runs": out}, b.String(), nil
	})
}

func (s *Server) cancelRunTool() *tool {
	def := mcpgo.NewTool("cancel_run",
		mcpgo.WithDescription("Cancel a queued or running experiment run: variants in flight stop and their forks are discarded; variants already finished keep their results. "+
			"Use it when a run was started with a wrong spec or takes too long. Cancelling a finished run is refused (conflict). Needs write scope. "+
			"Returns at once; get_run shows the status cancelled once the variants have stopped."),
		annotations(false, false, true),
		runIDArg("Id of the run to cancel."),
	)
	return newTool(def, writeTool, runsNotFound, func(ctx context.Context, _ call, a struct {
		ID string `json:"id"`
	}) (any, string, error) {
		if a.ID == "" {
			return nil, "", &experiments.FieldError{Field: "id", Reason: "is required: a run id"}
		}
		if err := s.svc.CancelRun(ctx, a.ID); err != nil {
			return nil, "", err
		}
		return map[string]any{"id": a.ID, "cancelled": true}, fmt.Sprintf("run %s cancelling; get_run shows when it has stopped\n", a.ID), nil
	})
}

func (s *Server) compareRunsTool() *tool {
	def := mcpgo.NewTool("compare_runs",
		mcpgo.WithDescription("Compare two finished variants, B against A, over the queries both evaluated: per measure the means, delta, bootstrap confidence interval, randomization-test p-value with Holm and Benjamini-Hochberg adjusted p-values over the measures, effect size (Cohen's d_z) and significance; a verdict (better, worse or no significant difference) on the primary measure; "+
			"the queries that regressed most with the documents that entered and left their top-k; and cost deltas (latency, index build time and size, embedding time); warnings when the runs read different judgments or corpora (different queries are refused unless allow_different_queries). "+
			"Use it after get_run reports succeeded (or partial), to decide whether a change helps. Cheap: computed from stored results (a few thousand resamples). "+
			"The full per-query list is left out; the regressed queries are the worst ones."),
		annotations(true, false, true),
		mcpgo.WithString("a", mcpgo.Required(), mcpgo.Description("The baseline: \"RUN:VARIANT\" (e.g. \"20261127T151500-ab12cd:bow\"), or \"RUN\" when the run has exactly one succeeded variant.")),
		mcpgo.WithString("b", mcpgo.Required(), mcpgo.Description("The candidate compared against a, same form; it may be another variant of the same run or of another run on the same collection.")),
		mcpgo.WithString("metric", mcpgo.Description("Primary measure for the verdict and regressed queries, as stored (e.g. \"ndcg_cut_10\", \"recall_100\"). Default the first measure of the run.")),
		mcpgo.WithNumber("alpha", mcpgo.Description("Significance level. Default 0.05."), mcpgo.Min(0), mcpgo.Max(1)),
		mcpgo.WithNumber("regressed", mcpgo.Description("How many most-regressed queries to list. Default 10."), mcpgo.Min(0), mcpgo.Max(1000)),
		mcpgo.WithBoolean("allow_different_queries", mcpgo.Description("Compare runs that read different queries (their query fingerprints differ). Default false: refused, since the paired tests would pair different questions.")),
	)
	return newTool(def, readTool, runsNotFound, func(ctx context.Context, _ call, a struct {
		A         string  `json:"a"`
		B         string  `json:"b"`
		Metric    string  `json:"metric"`
		Alpha     float64 `json:"alpha"`
		Regressed int     `json:"regressed"`
		Allow     bool    `json:"allow_different_queries"`
	}) (any, string, error) {
		cmp, err := s.svc.CompareRuns(ctx, experiments.CompareRequest{A: a.A, B: a.B, Metric: a.Metric, Alpha: a.Alpha, Regressed: a.Regressed,
			AllowDifferentQueries: a.Allow})
		if err != nil {
			return nil, "", err
		}
		if cmp.Comparison != nil {
			c := *cmp.Comparison
			c.PerQuery = nil
			cmp.Comparison = &c
		}
		return cmp, renderComparison(cmp), nil
	})
}

// renderComparison is the compact text form of a comparison.
func renderComparison(c *experiments.RunComparison) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s vs %s: %s", c.B, c.A, c.Verdict)
	if cc := c.Comparison; cc != nil {
		fmt.Fprintf(&b, " on %s (%d paired queries, alpha %g)\n", cc.Primary, cc.Queries, cc.Alpha)
		for _, w := range c.Warnings {
			fmt.Fprintf(&b, "warning: %s\n", w)
		}
		for _, m := range cc.Measures {
			sig := ""
			if m.Significant {
				sig = " significant"
			}
			fmt.Fprintf(&b, "  %s: %.4f -> %.4f, delta %+.4f, CI [%+.4f, %+.4f], p=%.4f (Holm %.4f, BH %.4f)%s, effect d %s, wins/ties/losses %d/%d/%d\n",
				m.Measure, m.MeanA, m.MeanB, m.Delta, m.CILow, m.CIHigh, m.P, m.PHolm, m.PBH, sig, evals.FormatEffect(m.EffectSize), m.Wins, m.Ties, m.Losses)
		}
	} else {
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "cost (b - a): latency p50 %+d us, qps %+.1f, index build %+.1f ms, index %+d bytes, embed %+.1f ms\n",
		c.LatencyP50DeltaUS, c.QPSDelta, c.IndexBuildDeltaMS, c.IndexBytesDelta, c.EmbedDeltaMS)
	if len(c.Regressed) > 0 {
		b.WriteString("most regressed queries:\n")
	}
	for _, q := range c.Regressed {
		fmt.Fprintf(&b, "  query %s: %.4f -> %.4f (%+.4f), top-k overlap %.2f, entered %s, left %s\n",
			q.Query, q.A, q.B, q.Delta, q.Overlap, clipText(experiments.DocList(q.Entered, 0), textCell), clipText(experiments.DocList(q.Left, 0), textCell))
	}
	return b.String()
}

func (s *Server) listDatasetsTool() *tool {
	def := mcpgo.NewTool("list_datasets",
		mcpgo.WithDescription("List the BEIR datasets the server can use for experiment runs, with document, query and judgement counts and the path to put in a spec's dataset.beir. "+
			"Use it before run_experiment to pick a test collection. Cheap: counts lines of the dataset files."),
		annotations(true, false, true),
	)
	return newTool(def, readTool, "", func(ctx context.Context, _ call, _ struct{}) (any, string, error) {
		l, err := s.svc.ListDatasets(ctx)
		if err != nil {
			return nil, "", err
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%d dataset(s)", len(l.Datasets))
		if l.Dir != "" {
			fmt.Fprintf(&b, " in %q", l.Dir)
		}
		b.WriteString("\n")
		for _, d := range l.Datasets {
			fmt.Fprintf(&b, "%s: %d docs, %d queries, qrels %v, beir %q\n", d.Name, d.Docs, d.Queries, d.Qrels, d.Path)
		}
		if l.Hint != "" {
			b.WriteString("hint: " + l.Hint + "\n")
		}
		return l, b.String(), nil
	})
}
