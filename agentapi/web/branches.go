package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/offshootdb/offshoot/experiments"
)

// Branch is one branch as the tree shows it.
type Branch struct {
	Name string
	// Parent is empty for the root branch.
	Parent string
	// ForkSeq and ForkTime are the parent's point the branch was forked at.
	ForkSeq  uint64
	ForkTime time.Time
	Created  time.Time
	// State is the endpoint's state: running, idle, suspended, stopped,
	// starting.
	State string
	// LogicalBytes is the branch's size; DeltaBytes what it owns alone,
	// CurrentBytes of it held now and HistoryBytes older versions;
	// SharedBytes what it shares with its ancestors.
	LogicalBytes, DeltaBytes, CurrentBytes, HistoryBytes, SharedBytes int64
	// Expires is when the TTL sweeper deletes the branch; zero: never.
	Expires   time.Time
	Protected bool
	Labels    map[string]string
}

// BranchSource lists the branches of a project a page at a time, in tree
// order (a branch's descendants after it). Implementations must be safe
// for concurrent use; errors should wrap the facade's sentinels
// (experiments.ErrNotFound for an unknown project, experiments.ErrInvalid
// for a bad cursor).
type BranchSource interface {
	ProjectBranches(ctx context.Context, project, cursor string, limit int) (BranchesPage, error)
	// Branch describes one branch (experiments.ErrNotFound if none).
	Branch(ctx context.Context, project, name string) (Branch, error)
}

// BranchesPage is a page of a project's branches: Next continues it (""
// at the end); Total counts all of them, -1 when unknown.
type BranchesPage struct {
	Branches []Branch
	Next     string
	Total    int
}

// facadeBranches is the BranchSource over the facade: one ListBranches
// call per page with endpoint states and usage filled in, so a page costs
// its branches, not the project's; state is "none" without compute.
type facadeBranches struct{ svc *experiments.Service }

func (f facadeBranches) ProjectBranches(ctx context.Context, project, cursor string, limit int) (BranchesPage, error) {
	pg, err := f.svc.ListBranches(ctx, experiments.ListBranchesRequest{Project: project, Limit: limit, Cursor: cursor, Endpoints: true, Usage: true})
	if err != nil {
		return BranchesPage{}, err
	}
	out := BranchesPage{Branches: make([]Branch, 0, len(pg.Branches)), Next: pg.Next, Total: -1}
	if pg.Total != nil {
		out.Total = *pg.Total
	}
	for _, b := range pg.Branches {
		out.Branches = append(out.Branches, treeBranch(b))
	}
	return out, nil
}

func (f facadeBranches) Branch(ctx context.Context, project, name string) (Branch, error) {
	b, err := f.svc.GetBranch(ctx, project, name)
	if err != nil {
		return Branch{}, err
	}
	return treeBranch(*b), nil
}

// treeBranch is the tree's view of a facade branch.
func treeBranch(b experiments.Branch) Branch {
	v := Branch{Name: b.Name, Parent: b.ParentID, ForkSeq: b.ParentLSN, Created: b.CreatedAt, Protected: b.Protected, Labels: b.Labels, State: "none"}
	if b.ParentTimestamp != nil {
		v.ForkTime = *b.ParentTimestamp
	}
	if b.ExpiresAt != nil {
		v.Expires = *b.ExpiresAt
	}
	if u := b.Usage; u != nil {
		v.LogicalBytes, v.DeltaBytes, v.SharedBytes = int64(u.LogicalBytes), int64(u.DeltaBytes), int64(u.SharedBytes)
		v.CurrentBytes, v.HistoryBytes = int64(u.CurrentBytes), int64(u.HistoryBytes)
	}
	if b.Endpoint != nil {
		v.State = b.Endpoint.State
	}
	return v
}

// treeNode is a branch with its children, for the nested list.
type treeNode struct {
	Branch
	Children []*treeNode
}

// buildTree arranges branches under their parents, children by creation
// time then name. Branches whose parent is missing become roots.
func buildTree(bs []Branch) []*treeNode {
	nodes := make(map[string]*treeNode, len(bs))
	for _, b := range bs {
		nodes[b.Name] = &treeNode{Branch: b}
	}
	var roots []*treeNode
	for _, b := range bs {
		n := nodes[b.Name]
		if p, ok := nodes[b.Parent]; ok && b.Parent != "" && b.Parent != b.Name {
			p.Children = append(p.Children, n)
		} else {
			roots = append(roots, n)
		}
	}
	var sortNodes func([]*treeNode)
	sortNodes = func(ns []*treeNode) {
		sort.Slice(ns, func(i, j int) bool {
			if !ns[i].Created.Equal(ns[j].Created) {
				return ns[i].Created.Before(ns[j].Created)
			}
			return ns[i].Name < ns[j].Name
		})
		for _, n := range ns {
			sortNodes(n.Children)
		}
	}
	sortNodes(roots)
	return roots
}

// treePage is how many branches a page of the tree shows.
const treePage = 200

type branchesPage struct {
	Project   string
	Available bool
	Roots     []*treeNode
	// Count is the project's branch count (-1: unknown), Shown how many
	// this page shows; Cursor is the page's own, Next the following one's.
	Count, Shown int
	Cursor, Next string
	// Logical, Physical are the sums of the page's logical sizes and of
	// its deltas: what full copies would take against what copy-on-write
	// takes.
	Logical, Physical int64
}

func (u *UI) branches(ctx context.Context, r *http.Request) (string, *view, error) {
	p := r.PathValue("project")
	pg := branchesPage{Project: p, Available: true, Cursor: r.URL.Query().Get("cursor")}
	bp, err := u.branchSource().ProjectBranches(ctx, p, pg.Cursor, treePage)
	switch {
	case errors.Is(err, experiments.ErrUnavailable):
		pg.Available = false
	case err != nil:
		return "", nil, err
	default:
		pg.Roots, pg.Count, pg.Shown, pg.Next = buildTree(bp.Branches), bp.Total, len(bp.Branches), bp.Next
		for _, b := range bp.Branches {
			pg.Logical += b.LogicalBytes
			pg.Physical += b.DeltaBytes
		}
	}
	return "branches", &view{Title: "Branches of " + p, Nav: "branches", Project: p, Data: pg}, nil
}

func (u *UI) branchSource() BranchSource {
	if u.cfg.Branches != nil {
		return u.cfg.Branches
	}
	return facadeBranches{u.cfg.Service}
}

// states answers the endpoint state of every branch of a page of a
// project's tree (its cursor, the first page by default) as a JSON object
// {branch: state}, which the page script polls to keep the tree and the
// branch page live without reloading them.
func (u *UI) states(w http.ResponseWriter, r *http.Request) {
	ctx, err := u.cfg.Caller(r)
	var bp BranchesPage
	if err == nil {
		bp, err = u.branchSource().ProjectBranches(ctx, r.PathValue("project"), r.URL.Query().Get("cursor"), treePage)
	}
	bs := bp.Branches
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if err != nil {
		status, msg := statusOf(err)
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
		return
	}
	out := make(map[string]string, len(bs))
	for _, b := range bs {
		out[b.Name] = b.State
	}
	_ = json.NewEncoder(w).Encode(out)
}

// schema is the branch's tables with their columns and indexes.
type schemaTable struct {
	Schema, Name string
	Columns      []schemaColumn
	Indexes      []schemaIndex
}

type schemaColumn struct{ Name, Type, Nullable, Default string }

type schemaIndex struct{ Name, Def string }

const (
	columnsSQL = `SELECT c.table_schema, c.table_name, c.column_name, c.data_type, c.is_nullable, coalesce(c.column_default, '')
FROM information_schema.columns c JOIN information_schema.tables t USING (table_catalog, table_schema, table_name)
WHERE c.table_schema NOT IN ('pg_catalog', 'information_schema') AND t.table_type = 'BASE TABLE'
ORDER BY 1, 2, c.ordinal_position`
	indexesSQL = `SELECT schemaname, tablename, indexname, indexdef FROM pg_catalog.pg_indexes
WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2, 3`
)

type branchPage struct {
	Project, Branch string
	Parent          string
	// Info is the branch's catalog entry, sizes and state, when known.
	Info      *Branch
	Snapshots []experiments.Snapshot
	Schema    []schemaTable
	SchemaErr string
	Against   string
	Diff      *experiments.Diff
	DiffErr   string
	DiffLines []diffLine
	// Log is the tail of the endpoint's Postgres log; LogErr why it is missing.
	Log    []string
	LogErr string
	// Replica describes the branch when it is a replica of a branch of
	// another server.
	Replica *experiments.Replica
}

type diffLine struct{ Kind, Text string }

func (u *UI) branch(ctx context.Context, r *http.Request) (string, *view, error) {
	p, b := r.PathValue("project"), r.PathValue("branch")
	pg := branchPage{Project: p, Branch: b, Against: r.URL.Query().Get("against")}
	if x, err := u.branchSource().Branch(ctx, p, b); err == nil {
		pg.Info = &x
		pg.Parent = x.Parent
	}
	if pg.Info != nil && pg.Info.Labels[experiments.LabelReplica] != "" {
		if rep, err := u.cfg.Service.GetReplica(ctx, p); err == nil && rep.Branch == b {
			pg.Replica = rep
		}
	}
	if sn, err := u.cfg.Service.ListSnapshots(ctx, p); err == nil {
		for _, s := range sn {
			if s.Branch == b {
				pg.Snapshots = append(pg.Snapshots, s)
			}
		}
	}
	if lines, err := u.cfg.Service.EndpointLog(ctx, p, b, 50); err != nil {
		pg.LogErr = err.Error()
	} else {
		pg.Log = lines
	}
	res, err := u.cfg.Service.Query(ctx, experiments.QueryRequest{Project: p, Branch: b, ReadOnly: true,
		Statements: []experiments.Statement{{SQL: columnsSQL}, {SQL: indexesSQL}}, MaxRows: 20000})
	switch {
	case err == nil:
		pg.Schema = schemaOf(res)
	case isPageError(err):
		return "", nil, err
	default:
		pg.SchemaErr = err.Error()
	}
	if pg.Against != "" {
		n := 10
		if v, err := strconv.Atoi(r.URL.Query().Get("sample_rows")); err == nil {
			n = v
		}
		d, err := u.cfg.Service.Diff(ctx, experiments.DiffRequest{Project: p, Branch: b, Against: pg.Against, SampleRows: n})
		if err != nil {
			if isPageError(err) {
				return "", nil, err
			}
			pg.DiffErr = err.Error()
		} else {
			pg.Diff = d
			pg.DiffLines = diffLines(d.Schema.Unified)
		}
	}
	return "branch", &view{Title: b + " · " + p, Nav: "branches", Project: p, Data: pg}, nil
}

// isPageError reports errors that fail the whole page (the caller may not
// see the branch, or it does not exist) rather than one section.
func isPageError(err error) bool {
	s, _ := statusOf(err)
	return s == http.StatusUnauthorized || s == http.StatusForbidden || s == http.StatusNotFound
}

func schemaOf(res *experiments.QueryResult) []schemaTable {
	var out []schemaTable
	idx := map[string]int{}
	str := func(v any) string {
		if v == nil {
			return ""
		}
		return fmt.Sprint(v)
	}
	for _, row := range res.Results[0].Rows {
		key := str(row[0]) + "." + str(row[1])
		i, ok := idx[key]
		if !ok {
			i = len(out)
			idx[key] = i
			out = append(out, schemaTable{Schema: str(row[0]), Name: str(row[1])})
		}
		out[i].Columns = append(out[i].Columns, schemaColumn{Name: str(row[2]), Type: str(row[3]), Nullable: str(row[4]), Default: str(row[5])})
	}
	if len(res.Results) > 1 {
		for _, row := range res.Results[1].Rows {
			if i, ok := idx[str(row[0])+"."+str(row[1])]; ok {
				out[i].Indexes = append(out[i].Indexes, schemaIndex{Name: str(row[2]), Def: str(row[3])})
			}
		}
	}
	return out
}

// diffLines classifies the lines of a unified diff for highlighting.
func diffLines(unified string) []diffLine {
	if unified == "" {
		return nil
	}
	var out []diffLine
	for _, l := range splitLines(unified) {
		k := "ctx"
		switch {
		case len(l) >= 3 && (l[:3] == "+++" || l[:3] == "---"):
			k = "file"
		case len(l) >= 2 && l[:2] == "@@":
			k = "hunk"
		case len(l) > 0 && l[0] == '+':
			k = "add"
		case len(l) > 0 && l[0] == '-':
			k = "del"
		}
		out = append(out, diffLine{Kind: k, Text: l})
	}
	return out
}

func splitLines(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		out = append(out, s[:i])
		if i < len(s) {
			i++
		}
		s = s[i:]
	}
	return out
}

func jsonString(v any) string {
	switch x := v.(type) {
	case json.RawMessage:
		return string(x)
	case nil:
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
