package web

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/offshootdb/offshoot/experiments"
	"github.com/offshootdb/offshoot/experiments/merge"
)

type mergesPage struct {
	Project string
	Merges  []experiments.Merge
}

func (u *UI) merges(ctx context.Context, r *http.Request) (string, *view, error) {
	p := r.PathValue("project")
	ms, err := u.cfg.Service.ListMerges(ctx, p)
	if err != nil {
		return "", nil, err
	}
	return "merges", &view{Title: "Merges · " + p, Nav: "merges", Project: p, Data: mergesPage{Project: p, Merges: ms}}, nil
}

// mergeConflict is a conflict with its three sides as indented JSON.
type mergeConflict struct {
	merge.Conflict
	BaseText, SourceText, TargetText string
}

type mergePage struct {
	*experiments.Merge
	Rows []mergeConflict
}

func (u *UI) merge(ctx context.Context, r *http.Request) (string, *view, error) {
	p, id := r.PathValue("project"), r.PathValue("id")
	m, err := u.cfg.Service.GetMerge(ctx, p, id)
	if err != nil {
		return "", nil, err
	}
	pg := mergePage{Merge: m}
	for _, c := range m.Conflicts {
		pg.Rows = append(pg.Rows, mergeConflict{Conflict: c, BaseText: indent(c.Base), SourceText: indent(c.Source), TargetText: indent(c.Target)})
	}
	return "merge", &view{Title: "Merge " + m.Source + " into " + m.Target, Nav: "merges", Project: p, Data: pg}, nil
}

// indent renders a JSON value for reading: a string as its text, an
// object one field per line.
func indent(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return string(raw)
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}
