package mcp

import (
	"context"
	"encoding/json"
	"strings"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/offshootdb/offshoot/experiments"
	"github.com/offshootdb/offshoot/experiments/merge"
)

// mergeRef names a merge of a project.
type mergeRef struct {
	Project string `json:"project"`
	Merge   string `json:"merge"`
}

func mergeArg() mcpgo.ToolOption {
	return mcpgo.WithString("merge", mcpgo.Required(), mcpgo.Description("The merge ID that merge_branch returned."))
}

// renderMerge is the text form of a merge (the CLI prints the same).
func renderMerge(m *experiments.Merge) string {
	var b strings.Builder
	_ = m.WriteText(&b)
	return clipText(b.String(), 16000)
}

// mergeTools are the tools of three-way branch merges.
func (s *Server) mergeTools() []*tool {
	done := func(m *experiments.Merge, err error) (any, string, error) {
		if err != nil {
			return nil, "", err
		}
		return m, renderMerge(m), nil
	}
	return []*tool{
		newTool(mcpgo.NewTool("merge_branch",
			mcpgo.WithDescription("Merge the changes of a source branch (usually your fork) into a target branch (usually its parent), three-way like git: "+
				"the base is the state the two branches share (for a fork, its parent as of the fork point), so only what the source changed since then is applied, and what the target changed meanwhile is kept. "+
				"Schema changes only the source made (new tables, columns, indexes, defaults) are replayed first, then inserted, updated and deleted rows of every table with a primary key, in one transaction; sequences are advanced to cover both sides. "+
				"ALWAYS call it with dry_run true first: it shows the DDL, the row counts per table and every conflict, and changes nothing. "+
				"Conflicts: the same row changed differently on both sides, a row the target's constraints refuse (unique, foreign key, check, not null), a schema change both sides made, a table without a primary key changed on both sides (fix: add a key). "+
				"strategy fail (default) applies nothing while any conflict is open; ours keeps the target's side; theirs takes the source's; manual opens a merge session: then call resolve_conflict for each conflict and complete_merge (or abort_merge). "+
				"A merge CHANGES DATA on the target; it keeps the target's prior state as snapshot pre-merge.<id>, and undo_merge puts it back. "+
				"Needs write scope on the target. Cost: one ordered scan of each changed table on the base and the source, plus lookups of the changed keys on the target. "+
				"Returns status (preview, merged, conflicts, open), schema, tables, conflicts with base/source/target values and their ids, and next."),
			annotations(false, true, false),
			projectArg(),
			mcpgo.WithString("source", mcpgo.Required(), mcpgo.Description("The branch whose changes are merged, e.g. your fork.")),
			mcpgo.WithString("target", mcpgo.Required(), mcpgo.Description("The branch that receives them, e.g. \"main\".")),
			mcpgo.WithString("strategy", mcpgo.Enum("fail", "ours", "theirs", "manual"), mcpgo.Description("How conflicts are treated. Default fail.")),
			mcpgo.WithBoolean("dry_run", mcpgo.Description("Preview: compute the merge and its conflicts, change nothing. Use it first.")),
		), writeTool, "list_branches shows the branches", func(ctx context.Context, c call, a struct {
			Project  string `json:"project"`
			Source   string `json:"source"`
			Target   string `json:"target"`
			Strategy string `json:"strategy"`
			DryRun   bool   `json:"dry_run"`
		}) (any, string, error) {
			return done(s.svc.MergeBranch(ctx, experiments.MergeRequest{Project: c.projectOr(a.Project), Source: a.Source, Target: a.Target,
				Strategy: merge.Strategy(a.Strategy), DryRun: a.DryRun}))
		}),

		newTool(mcpgo.NewTool("get_merge",
			mcpgo.WithDescription("Show a merge or merge session with its conflicts (base, source and target values, resolutions) and what to do next. Read-only, cheap."),
			annotations(true, false, true),
			projectArg(), mergeArg(),
		), readTool, "", func(ctx context.Context, c call, a mergeRef) (any, string, error) {
			return done(s.svc.GetMerge(ctx, c.projectOr(a.Project), a.Merge))
		}),

		newTool(mcpgo.NewTool("resolve_conflict",
			mcpgo.WithDescription("Resolve one conflict of an open merge session (merge_branch with strategy manual). "+
				"choice ours keeps the target's side, theirs takes the source's, custom writes the column values you give over the target's row (row and constraint conflicts only; values null deletes the row). "+
				"Resolving again replaces the earlier choice. Nothing changes on the branches until complete_merge. "+
				"Returns the session; when open_conflicts is 0, call complete_merge."),
			annotations(false, false, true),
			projectArg(), mergeArg(),
			mcpgo.WithString("conflict", mcpgo.Required(), mcpgo.Description("The conflict's id, from the merge's conflicts.")),
			mcpgo.WithString("choice", mcpgo.Required(), mcpgo.Enum("ours", "theirs", "custom"), mcpgo.Description("ours: the target's side; theirs: the source's; custom: the values you give.")),
			mcpgo.WithObject("values", mcpgo.Description("For custom: the row's column values, e.g. {\"name\": \"both\"}; columns you leave out keep the target's value.")),
		), writeTool, "get_merge lists the conflicts and their ids", func(ctx context.Context, c call, a struct {
			Project  string          `json:"project"`
			Merge    string          `json:"merge"`
			Conflict string          `json:"conflict"`
			Choice   string          `json:"choice"`
			Values   json.RawMessage `json:"values"`
		}) (any, string, error) {
			return done(s.svc.ResolveConflict(ctx, experiments.ResolveRequest{Project: c.projectOr(a.Project), Merge: a.Merge,
				Conflict: a.Conflict, Choice: a.Choice, Values: a.Values}))
		}),

		newTool(mcpgo.NewTool("complete_merge",
			mcpgo.WithDescription("Apply an open merge session atomically once every conflict is resolved. It merges again from the same base with your resolutions, so changes made on either branch meanwhile are included; "+
				"if conflicts are still open (new ones included), nothing changes and they are listed. CHANGES DATA on the target (its prior state is kept as snapshot pre-merge.<id>; undo_merge puts it back). Returns the merge."),
			annotations(false, true, false),
			projectArg(), mergeArg(),
		), writeTool, "", func(ctx context.Context, c call, a mergeRef) (any, string, error) {
			return done(s.svc.CompleteMerge(ctx, c.projectOr(a.Project), a.Merge))
		}),

		newTool(mcpgo.NewTool("abort_merge",
			mcpgo.WithDescription("Discard an open merge session. The branches are untouched. Returns the merge, now aborted."),
			annotations(false, false, true),
			projectArg(), mergeArg(),
		), writeTool, "", func(ctx context.Context, c call, a mergeRef) (any, string, error) {
			return done(s.svc.AbortMerge(ctx, c.projectOr(a.Project), a.Merge))
		}),

		newTool(mcpgo.NewTool("undo_merge",
			mcpgo.WithDescription("Undo a merge: put its target back exactly as it was before the merge (its pre-merge snapshot), in place. "+
				"This CHANGES DATA: everything written on the target since the merge, the merge included, leaves the branch; it is kept as snapshot post-merge.<id>. Refused for a protected target. Returns the merge, now undone."),
			annotations(false, true, false),
			projectArg(), mergeArg(),
		), writeTool, "", func(ctx context.Context, c call, a mergeRef) (any, string, error) {
			return done(s.svc.UndoMerge(ctx, c.projectOr(a.Project), a.Merge))
		}),
	}
}
