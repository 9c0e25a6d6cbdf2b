package mcp

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/offshootdb/offshoot/experiments"
)

// TestToolContract guards what a model relies on: every tool (and every
// read-only variant) has a description that says when to use it and
// what it returns, an object input schema whose properties are all
// described, all four annotations set explicitly, and destructive tools
// say in their description that they change data.
func TestToolContract(t *testing.T) {
	svc, err := experiments.New(experiments.Config{ControlDir: filepath.Join(t.TempDir(), "control")})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.tools) == 0 {
		t.Fatal("no tools")
	}
	for name, tl := range s.tools {
		defs := []mcpgo.Tool{tl.def}
		if tl.readOnlyDef != nil {
			defs = append(defs, *tl.readOnlyDef)
		}
		if tl.access == mixedTool && tl.readOnlyDef == nil {
			t.Errorf("%s: mixed tool without a read-only variant", name)
		}
		for _, d := range defs {
			checkTool(t, d)
		}
		a := tl.def.Annotations
		if tl.access == readTool && (a.ReadOnlyHint == nil || !*a.ReadOnlyHint) {
			t.Errorf("%s: read tool without readOnlyHint", name)
		}
		if tl.access != readTool && a.ReadOnlyHint != nil && *a.ReadOnlyHint {
			t.Errorf("%s: write tool marked read-only", name)
		}
	}
}

// TestReadOnlyListing guards what a read-only key sees: no tool that
// changes data (experiment runs included), every read tool, and the
// read-only variant of run_sql; a write key sees every tool.
func TestReadOnlyListing(t *testing.T) {
	svc, err := experiments.New(experiments.Config{ControlDir: filepath.Join(t.TempDir(), "control")})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	all := func() *mcpgo.ListToolsResult {
		res := &mcpgo.ListToolsResult{}
		for _, tl := range s.tools {
			res.Tools = append(res.Tools, tl.def)
		}
		return res
	}
	listed := func(c experiments.Caller) map[string]mcpgo.Tool {
		res := all()
		s.filterListed(experiments.WithCaller(context.Background(), c), nil, nil, res)
		m := map[string]mcpgo.Tool{}
		for _, d := range res.Tools {
			m[d.Name] = d
		}
		return m
	}
	ro := listed(experiments.Caller{KeyID: "ro", Scopes: []experiments.Scope{{Role: experiments.RoleRead, Project: "*"}}})
	for _, name := range []string{"run_experiment", "cancel_run", "fork_branch", "discard_branch", "run_sql_transaction", "prepare_migration"} {
		if _, ok := ro[name]; ok {
			t.Errorf("read-only key sees %s", name)
		}
	}
	for _, name := range []string{"get_run", "list_runs", "compare_runs", "list_datasets", "list_branches", "run_sql"} {
		if _, ok := ro[name]; !ok {
			t.Errorf("read-only key does not see %s", name)
		}
	}
	if d := ro["run_sql"]; d.Annotations.ReadOnlyHint == nil || !*d.Annotations.ReadOnlyHint {
		t.Errorf("read-only key sees the writing run_sql: %+v", d.Annotations)
	}
	for name, tl := range s.tools {
		if _, ok := ro[name]; ok != (tl.access != writeTool) {
			t.Errorf("%s (access %d): listed for a read-only key: %t", name, tl.access, ok)
		}
	}
	rw := listed(experiments.Caller{KeyID: "rw", Scopes: []experiments.Scope{{Role: experiments.RoleWrite, Project: "*"}}})
	if len(rw) != len(s.tools) {
		t.Errorf("write key sees %d of %d tools", len(rw), len(s.tools))
	}
	for _, name := range []string{"run_experiment", "get_run", "list_runs", "cancel_run", "compare_runs"} {
		if _, ok := rw[name]; !ok {
			t.Errorf("write key does not see %s", name)
		}
	}
}

func checkTool(t *testing.T, d mcpgo.Tool) {
	t.Helper()
	if len(d.Description) < 80 {
		t.Errorf("%s: description too short to tell a model when to use it: %q", d.Name, d.Description)
	}
	if d.InputSchema.Type != "object" {
		t.Errorf("%s: input schema type %q", d.Name, d.InputSchema.Type)
	}
	for p, v := range d.InputSchema.Properties {
		m, ok := v.(map[string]any)
		desc, _ := m["description"].(string)
		if !ok || len(desc) < 10 {
			t.Errorf("%s: property %s has no description", d.Name, p)
		}
	}
	for _, r := range d.InputSchema.Required {
		if _, ok := d.InputSchema.Properties[r]; !ok {
			t.Errorf("%s: required %s is not a property", d.Name, r)
		}
	}
	a := d.Annotations
	if a.ReadOnlyHint == nil || a.DestructiveHint == nil || a.IdempotentHint == nil || a.OpenWorldHint == nil {
		t.Errorf("%s: annotations not all set: %+v", d.Name, a)
		return
	}
	if *a.ReadOnlyHint && *a.DestructiveHint {
		t.Errorf("%s: read-only and destructive", d.Name)
	}
	if *a.DestructiveHint && !strings.Contains(d.Description, "CHANGES DATA") && !strings.Contains(d.Description, "DELETES") {
		t.Errorf("%s: destructive, but the description does not say CHANGES DATA or DELETES", d.Name)
	}
}
