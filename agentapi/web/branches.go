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

// BranchSource lists the branches of a project, in any order. Implementations
// must be safe for concurrent use; errors should wrap the facade's
// sentinels (experiments.ErrNotFound for an unknown project).
type BranchSource interface {
	ProjectBranches(ctx context.Context, project string) ([]Branch, error)
}

// facadeBranches is the BranchSource over the facade: the branch catalog
// (ListBranches, every page, endpoint states filled in the same call),
// storage accounting (ProjectUsage); state is "none" without compute.
type facadeBranches struct{ svc *experiments.Service }

func (f facadeBranches) ProjectBranches(ctx context.Context, project string) ([]Branch, error) {
	var all []experiments.Branch
	req := experiments.ListBranchesRequest{Project: project, Limit: 1000, Endpoints: true}
	for {
		pg, err := f.svc.ListBranches(ctx, req)
		if err != nil {
			return nil, err
		}
		all = append(all, pg.Branches...)
		if pg.Next == "" {
			break
		}
		req.Cursor = pg.Next
	}
	usage := map[string]experiments.BranchUsage{}
	if u, err := f.svc.ProjectUsage(ctx, project); err == nil {
		for _, b := range u.Branches {
			usage[b.Branch] = b
		}
	}
	out := make([]Branch, 0, len(all))
	for _, b := range all {
		v := Branch{Name: b.Name, Parent: b.ParentID, ForkSeq: b.ParentLSN, Created: b.CreatedAt, Protected: b.Protected, Labels: b.Labels, State: "none"}
		if b.ParentTimestamp != nil {
			v.ForkTime = *b.ParentTimestamp
		}
		if b.ExpiresAt != nil {
			v.Expires = *b.ExpiresAt
		}
		if u, ok := usage[b.Name]; ok {
			v.LogicalBytes, v.DeltaBytes, v.SharedBytes = int64(u.LogicalBytes), int64(u.DeltaBytes), int64(u.SharedBytes)
			v.CurrentBytes, v.HistoryBytes = int64(u.CurrentBytes), int64(u.HistoryBytes)
		}
		if b.Endpoint != nil {
			v.State = b.Endpoint.State
		}
		out = append(out, v)
	}
	return out, nil
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

type branchesPage struct {
	Project   string
	Available bool
	Roots     []*treeNode
	Count     int
	// Logical, Physical are the sums of logical sizes and of deltas: what
	// full copies would take against what copy-on-write takes.
	Logical, Physical int64
}

func (u *UI) branches(ctx context.Context, r *http.Request) (string, *view, error) {
	p := r.PathValue("project")
	pg := branchesPage{Project: p, Available: true}
	bs, err := u.branchSource().ProjectBranches(ctx, p)
	switch {
	case errors.Is(err, experiments.ErrUnavailable):
		pg.Available = false
	case err != nil:
		return "", nil, err
	default:
		pg.Roots, pg.Count = buildTree(bs), len(bs)
		for _, b := range bs {
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

// states answers the endpoint state of every branch of a project as a
// JSON object {branch: state}, which the page script polls to keep the
// tree and the branch page live without reloading them.
func (u *UI) states(w http.ResponseWriter, r *http.Request) {
	ctx, err := u.cfg.Caller(r)
	var bs []Branch
	if err == nil {
		bs, err = u.branchSource().ProjectBranches(ctx, r.PathValue("project"))
	}
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
}

type diffLine struct{ Kind, Text string }

func (u *UI) branch(ctx context.Context, r *http.Request) (string, *view, error) {
	p, b := r.PathValue("project"), r.PathValue("branch")
	pg := branchPage{Project: p, Branch: b, Against: r.URL.Query().Get("against")}
	if bs, err := u.branchSource().ProjectBranches(ctx, p); err == nil {
		for _, x := range bs {
			if x.Name == b {
				x := x
				pg.Info = &x
				pg.Parent = x.Parent
			}
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
