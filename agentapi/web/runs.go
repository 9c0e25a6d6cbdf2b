package web

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/experiments"
)

type runRow struct {
	experiments.Run
	Headline        string
	HeadlineValue   float64
	HeadlineVariant string
	HasHeadline     bool
}

type runsPage struct {
	Project string
	Runs    []runRow
}

// headline is the run's first requested metric (trec_eval's
// "ndcg_cut.10" is recorded as "ndcg_cut_10") and the best variant on it.
func headline(r experiments.Run) runRow {
	row := runRow{Run: r}
	if len(r.Spec.Metrics) > 0 {
		first, _, _ := strings.Cut(r.Spec.Metrics[0], ",")
		row.Headline = strings.ReplaceAll(first, ".", "_")
	}
	for _, v := range r.Variants {
		if v.Status != experiments.StatusSucceeded || len(v.Measures) == 0 {
			continue
		}
		if _, ok := v.Metrics[row.Headline]; !ok {
			row.Headline = v.Measures[0]
		}
		if val, ok := v.Metrics[row.Headline]; ok && (!row.HasHeadline || val > row.HeadlineValue) {
			row.HeadlineValue, row.HeadlineVariant, row.HasHeadline = val, v.Name, true
		}
	}
	return row
}

func (u *UI) runs(ctx context.Context, r *http.Request) (string, *view, error) {
	p := r.URL.Query().Get("project")
	runs, err := u.cfg.Service.ListRuns(ctx, experiments.RunFilter{Project: p, Experiment: r.URL.Query().Get("experiment")})
	if err != nil {
		return "", nil, err
	}
	pg := runsPage{Project: p}
	for _, run := range runs {
		pg.Runs = append(pg.Runs, headline(run))
	}
	return "runs", &view{Title: "Experiment runs", Nav: "runs", Project: p, Data: pg}, nil
}

type runPage struct {
	Run      *experiments.Run
	Measures []string
	Sweep    []experiments.SweepPoint
	SweepSVG string
	EfSVG    string
	// Succeeded are the variants a comparison can pick.
	Succeeded []string
	// Provenance is experiments.WriteProvenance's text ("" without).
	Provenance string
}

func (u *UI) run(ctx context.Context, r *http.Request) (string, *view, error) {
	run, err := u.cfg.Service.GetRun(ctx, r.PathValue("id"))
	if err != nil {
		return "", nil, err
	}
	pg := runPage{Run: run}
	var prov strings.Builder
	if err := experiments.WriteProvenance(&prov, run); err != nil {
		return "", nil, err
	}
	pg.Provenance = prov.String()
	seen := map[string]bool{}
	for _, v := range run.Variants {
		for _, m := range v.Measures {
			if !seen[m] {
				seen[m] = true
				pg.Measures = append(pg.Measures, m)
			}
		}
		if v.Status == experiments.StatusSucceeded {
			pg.Succeeded = append(pg.Succeeded, v.Name)
		}
	}
	pg.Sweep = experiments.SweepPoints(run)
	if len(pg.Sweep) >= 2 {
		p, err := SweepChart(pg.Sweep)
		if err != nil {
			return "", nil, err
		}
		if pg.SweepSVG, err = inlineSVG(p, "sweep-chart", "Recall against queries per second for each variant, Pareto front highlighted"); err != nil {
			return "", nil, err
		}
	}
	if p, err := EfSearchChart(run); err == nil {
		if pg.EfSVG, err = inlineSVG(p, "ef-chart", "ANN recall against ef_search for each index configuration"); err != nil {
			return "", nil, err
		}
	}
	return "run", &view{Title: "Run " + run.ID, Nav: "runs", Project: run.Project, Data: pg}, nil
}

type comparePage struct {
	A, B, Metric string
	Cmp          *experiments.RunComparison
	ChartSVG     string
	Primary      *evals.MeasureComparison
	Regressed    []regressedQuery
}

// regressedQuery is a regressed query with both top-k lists side by side.
type regressedQuery struct {
	experiments.QueryChange
	Rows []topkRow
}

type topkRow struct {
	Rank           int
	DocA, DocB     string
	InB, InA       bool // DocA is also in B's list; DocB also in A's
	HasA, HasB     bool
	DistA, DistB   float64
	MovedA, MovedB int
}

func (u *UI) compare(ctx context.Context, r *http.Request) (string, *view, error) {
	q := r.URL.Query()
	pg := comparePage{A: q.Get("a"), B: q.Get("b"), Metric: q.Get("metric")}
	cmp, err := u.cfg.Service.CompareRuns(ctx, experiments.CompareRequest{A: pg.A, B: pg.B, Metric: pg.Metric,
		AllowDifferentQueries: q.Get("allow_different_queries") == "true"})
	if err != nil {
		return "", nil, err
	}
	pg.Cmp = cmp
	for i := range cmp.Comparison.Measures {
		if cmp.Comparison.Measures[i].Measure == cmp.Comparison.Primary {
			pg.Primary = &cmp.Comparison.Measures[i]
		}
	}
	p, err := ComparisonChart(cmp)
	if err != nil {
		return "", nil, err
	}
	if pg.ChartSVG, err = inlineSVG(p, "comparison-chart", "Difference of every measure, B minus A, with confidence intervals; a star marks a significant difference"); err != nil {
		return "", nil, err
	}
	hitsA, err := u.variantHits(ctx, pg.A)
	if err != nil {
		return "", nil, err
	}
	hitsB, err := u.variantHits(ctx, pg.B)
	if err != nil {
		return "", nil, err
	}
	for _, ch := range cmp.Regressed {
		pg.Regressed = append(pg.Regressed, sideBySide(ch, hitsA[ch.Query], hitsB[ch.Query]))
	}
	return "compare", &view{Title: "Compare " + pg.A + " and " + pg.B, Nav: "runs", Data: pg}, nil
}

// variantHits returns the rankings of "RUN" or "RUN:VARIANT", already
// resolved by CompareRuns (so a bare run has one succeeded variant).
func (u *UI) variantHits(ctx context.Context, ref string) (map[string][]experiments.RankedDoc, error) {
	id, name, _ := strings.Cut(ref, ":")
	run, err := u.cfg.Service.GetRun(ctx, id)
	if err != nil {
		return nil, err
	}
	out := map[string][]experiments.RankedDoc{}
	for _, v := range run.Variants {
		if (name == "" && v.Status == experiments.StatusSucceeded) || v.Name == name {
			for _, q := range v.Results {
				out[q.Query] = q.Hits
			}
			break
		}
	}
	return out, nil
}

func sideBySide(ch experiments.QueryChange, a, b []experiments.RankedDoc) regressedQuery {
	inA, inB := map[string]int{}, map[string]int{}
	for i, d := range a {
		inA[d.Doc] = i + 1
	}
	for i, d := range b {
		inB[d.Doc] = i + 1
	}
	rq := regressedQuery{QueryChange: ch}
	for i := 0; i < max(len(a), len(b)); i++ {
		row := topkRow{Rank: i + 1}
		if i < len(a) {
			row.HasA, row.DocA, row.DistA = true, a[i].Doc, a[i].Distance
			row.MovedA = inB[a[i].Doc]
			row.InB = row.MovedA > 0
		}
		if i < len(b) {
			row.HasB, row.DocB, row.DistB = true, b[i].Doc, b[i].Distance
			row.MovedB = inA[b[i].Doc]
			row.InA = row.MovedB > 0
		}
		rq.Rows = append(rq.Rows, row)
	}
	return rq
}

type schedulesPage struct {
	Schedules []experiments.Schedule
}

func (u *UI) schedules(ctx context.Context, _ *http.Request) (string, *view, error) {
	scs, err := u.cfg.Service.ListSchedules(ctx)
	if err != nil {
		return "", nil, err
	}
	return "schedules", &view{Title: "Schedules", Nav: "schedules", Data: schedulesPage{Schedules: scs}}, nil
}

type trend struct {
	Metric string
	SVG    string
}

type schedulePage struct {
	Schedule *experiments.Schedule
	History  []experiments.HistoryPoint
	Trends   []trend
	Variants []string
}

func (u *UI) schedule(ctx context.Context, r *http.Request) (string, *view, error) {
	sc, err := u.cfg.Service.GetSchedule(ctx, r.PathValue("id"))
	if err != nil {
		return "", nil, err
	}
	hist, err := u.cfg.Service.ScheduleHistory(ctx, sc.ID)
	if err != nil {
		return "", nil, err
	}
	pg := schedulePage{Schedule: sc, History: hist}
	metrics, variants := map[string]bool{}, map[string]bool{}
	for _, h := range hist {
		for v, ms := range h.Metrics {
			variants[v] = true
			for m := range ms {
				metrics[m] = true
			}
		}
	}
	names := sortedKeys(metrics)
	// The schedule's own metric first.
	sort.SliceStable(names, func(i, j int) bool { return names[i] == sc.Metric && names[j] != sc.Metric })
	for i, m := range names {
		p, err := TrendChart(hist, m)
		if err != nil {
			return "", nil, err
		}
		svg, err := inlineSVG(p, "trend-"+strconv.Itoa(i), "Trend of "+m+" over the schedule's runs; triangles mark regressions")
		if err != nil {
			return "", nil, err
		}
		pg.Trends = append(pg.Trends, trend{Metric: m, SVG: svg})
	}
	pg.Variants = sortedKeys(variants)
	return "schedule", &view{Title: "Schedule " + sc.Name, Nav: "schedules", Project: sc.Spec.Project, Data: pg}, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// indexPage is the landing page: every project the caller may see with its
// branch tree, and the recent runs.
type indexPage struct {
	Projects []projectTree
	Runs     []runRow
	// Replicas are the replicas on this server with their lag.
	Replicas []experiments.Replica
}

// projectTree is one project on the landing page. Note says why its tree
// is missing (no branch catalog, or the caller's scope), if it is.
// indexBranches is how many branches of each project the landing page
// shows (the first of its tree); the project's page shows them all.
const indexBranches = 50

type projectTree struct {
	Name  string
	Count int
	Roots []*treeNode
	// More is set when the project has branches beyond those shown.
	More bool
	Note string
	// Runs counts the project's runs among the recent ones.
	Runs int
}

// index lists the projects with their branch trees, and the recent runs.
func (u *UI) index(ctx context.Context, _ *http.Request) (string, *view, error) {
	runs, err := u.cfg.Service.ListRuns(ctx, experiments.RunFilter{Limit: 10})
	if err != nil {
		return "", nil, err
	}
	pg := indexPage{}
	recent := map[string]int{}
	var names []string
	for _, r := range runs {
		pg.Runs = append(pg.Runs, headline(r))
		if recent[r.Project] == 0 {
			names = append(names, r.Project)
		}
		recent[r.Project]++
	}
	projects, err := u.cfg.Service.ListProjects(ctx)
	switch {
	case errors.Is(err, experiments.ErrUnavailable):
		// No project catalog (no store): the projects that have runs.
	case err != nil:
		return "", nil, err
	default:
		names = names[:0]
		for _, p := range projects {
			names = append(names, p.Name)
		}
	}
	for _, name := range names {
		pt := projectTree{Name: name, Runs: recent[name]}
		bp, err := u.branchSource().ProjectBranches(ctx, name, "", indexBranches)
		switch {
		case errors.Is(err, experiments.ErrUnavailable):
			pt.Note = "branch catalog unavailable"
		case err != nil:
			_, pt.Note = statusOf(err)
		default:
			pt.Roots, pt.Count, pt.More = buildTree(bp.Branches), bp.Total, bp.Next != ""
			if pt.Count < 0 {
				pt.Count = len(bp.Branches)
			}
		}
		pg.Projects = append(pg.Projects, pt)
	}
	if rs, err := u.cfg.Service.ListReplicas(ctx); err == nil {
		pg.Replicas = rs
	} else {
		u.log.Warn("web: list replicas", "err", err)
	}
	return "index", &view{Title: "offshoot", Data: pg}, nil
}
