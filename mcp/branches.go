package mcp

import (
	"context"
	"fmt"
	"strings"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/offshootdb/offshoot/experiments"
)

// defaultAgentTTL is how long a branch made with fork_branch lives unless
// the agent says otherwise: agents forget to clean up.
const defaultAgentTTL = "24h"

// newTool builds a tool whose arguments decode into A.
func newTool[A any](def mcpgo.Tool, acc access, notFound string, fn func(ctx context.Context, c call, a A) (any, string, error)) *tool {
	return &tool{def: def, access: acc, notFound: notFound, run: func(ctx context.Context, c call) (any, string, error) {
		var a A
		if err := c.bind(&a); err != nil {
			return nil, "", err
		}
		return fn(ctx, c, a)
	}}
}

type projectOnly struct {
	Project string `json:"project"`
}

type branchRef struct {
	Project string `json:"project"`
	Branch  string `json:"branch"`
}

func (s *Server) branchTools() []*tool {
	return []*tool{
		newTool(mcpgo.NewTool("list_projects",
			mcpgo.WithDescription("List the projects (each one Postgres cluster with its own tree of branches) this key can see, with their branch counts. "+
				"Use it first when you do not know which project to work in. Cheap: reads the catalog only. Returns name, created_at, branches and default (the project used when you give none)."),
			annotations(true, false, true),
		), readTool, "", func(ctx context.Context, _ call, _ struct{}) (any, string, error) {
			ps, err := s.svc.ListProjects(ctx)
			if err != nil {
				return nil, "", err
			}
			var b strings.Builder
			fmt.Fprintf(&b, "%d project(s)\n", len(ps))
			for _, p := range ps {
				def := ""
				if p.Default {
					def = " (default)"
				}
				fmt.Fprintf(&b, "%s%s: %d branch(es), created %s\n", p.Name, def, p.Branches, p.CreatedAt.Format(time.RFC3339))
			}
			return map[string]any{"projects": ps}, b.String(), nil
		}),

		newTool(mcpgo.NewTool("list_branches",
			mcpgo.WithDescription("List the branches of a project in tree order (main first, each fork under its parent), with parent, fork point, expiry, labels and protection. "+
				"Use it to find a branch to work on or to check what exists before forking or discarding. Cheap: reads the catalog only. "+
				"Returns up to limit branches and next (pass it as cursor for more)."),
			annotations(true, false, true),
			projectArg(),
			mcpgo.WithString("prefix", mcpgo.Description("Only branches whose name starts with this, e.g. \"agent/\".")),
			mcpgo.WithNumber("limit", mcpgo.Description("Most branches returned. Default 100, at most 1000."), mcpgo.Min(1), mcpgo.Max(1000)),
			mcpgo.WithString("cursor", mcpgo.Description("The next value of a previous call, to continue the list.")),
		), readTool, "list_projects shows the existing projects", func(ctx context.Context, c call, a struct {
			Project string `json:"project"`
			Prefix  string `json:"prefix"`
			Limit   int    `json:"limit"`
			Cursor  string `json:"cursor"`
		}) (any, string, error) {
			page, err := s.svc.ListBranches(ctx, experiments.ListBranchesRequest{Project: c.projectOr(a.Project), Prefix: a.Prefix, Limit: a.Limit, Cursor: a.Cursor})
			if err != nil {
				return nil, "", err
			}
			return page, renderBranches(page), nil
		}),

		newTool(mcpgo.NewTool("describe_branch",
			mcpgo.WithDescription("Describe one branch: parent and fork point, creation and expiry, labels, protection, its compute endpoint's state (running, suspended, stopped) and storage use (logical size and the bytes only this branch stores). "+
				"Use it to check a branch before writing to or discarding it. Cheap. Returns the branch as JSON."),
			annotations(true, false, true),
			projectArg(),
			branchArg("Branch name, e.g. \"main\"."),
		), readTool, "", func(ctx context.Context, c call, a branchRef) (any, string, error) {
			b, err := s.svc.GetBranch(ctx, c.projectOr(a.Project), a.Branch)
			if err != nil {
				return nil, "", err
			}
			return b, renderBranch(b), nil
		}),

		newTool(mcpgo.NewTool("fork_branch",
			mcpgo.WithDescription("Create a new branch as a copy-on-write fork of a parent branch: a full, writable copy of its database that costs nothing up front (O(1), independent of size) and never affects the parent. "+
				"Use it before anything risky (migrations, bulk updates, experiments): fork, work on the fork with run_sql, check with diff_branches, then discard_branch. "+
				"Fork the parent's current state, or a past point (at_time, inside the history window) or a snapshot. "+
				"Branches you create expire after ttl (default 24h) and are then deleted automatically. The first query on the fork starts its compute (a second or two). "+
				"Returns the new branch."),
			annotations(false, false, false),
			projectArg(),
			mcpgo.WithString("name", mcpgo.Required(), mcpgo.Description("Name of the new branch: [a-z0-9][a-z0-9._/-]{0,62}, e.g. \"agent/try-index\".")),
			mcpgo.WithString("parent", mcpgo.Description("Branch to fork. Default the project's main branch (with snapshot: the snapshot's branch).")),
			mcpgo.WithString("parent_id", mcpgo.Description("The same as parent, by the name the HTTP API and describe_branch use; give one of the two.")),
			mcpgo.WithString("at_time", mcpgo.Description("Fork the parent as it was at this RFC 3339 time, e.g. \"2026-01-02T15:04:05Z\" (point-in-time branch; must be inside the retained history, 24 h by default).")),
			mcpgo.WithString("snapshot", mcpgo.Description("Fork from this snapshot instead of a branch head; list_snapshots shows them.")),
			mcpgo.WithString("ttl", mcpgo.Description("How long the branch lives before it is deleted automatically, as a Go duration (\"30m\", \"2h\", \"168h\"). Default 24h; \"0s\" keeps it until discarded.")),
			mcpgo.WithObject("labels", mcpgo.Description("String labels to attach, e.g. {\"task\": \"index-test\"}; list_branches can filter on them.")),
			mcpgo.WithBoolean("masked", mcpgo.Description("Apply the project's masking policy to the fork before anyone can connect (sensitive columns replaced by deterministic fakes, hashes or NULL; joins still work). Takes longer: the fork starts and its masked tables are rewritten. A key limited to masked branches must set it, unless it forks the head of a masked branch.")),
		), writeTool, "list_branches shows the branches you can fork and list_snapshots the snapshots", func(ctx context.Context, c call, a struct {
			Project  string            `json:"project"`
			Name     string            `json:"name"`
			Parent   string            `json:"parent"`
			ParentID string            `json:"parent_id"`
			AtTime   string            `json:"at_time"`
			Snapshot string            `json:"snapshot"`
			TTL      string            `json:"ttl"`
			Labels   map[string]string `json:"labels"`
			Masked   bool              `json:"masked"`
		}) (any, string, error) {
			if a.Parent != "" && a.ParentID != "" && a.Parent != a.ParentID {
				return nil, "", &experiments.FieldError{Field: "parent_id", Reason: "differs from parent; give one of the two"}
			}
			if a.Parent == "" {
				a.Parent = a.ParentID
			}
			req := experiments.CreateBranchRequest{Project: c.projectOr(a.Project), Name: a.Name, ParentID: a.Parent, Snapshot: a.Snapshot, TTL: a.TTL, Labels: a.Labels, Masked: a.Masked}
			if req.TTL == "" {
				req.TTL = defaultAgentTTL
			}
			if a.AtTime != "" {
				t, err := time.Parse(time.RFC3339Nano, a.AtTime)
				if err != nil {
					return nil, "", &experiments.FieldError{Field: "at_time", Reason: "want an RFC 3339 time such as 2026-01-02T15:04:05Z"}
				}
				req.Timestamp = &t
			}
			b, err := s.svc.CreateBranch(ctx, req)
			if err != nil {
				return nil, "", err
			}
			return b, "created " + renderBranch(b) + "next: run_sql on branch " + b.Name + ", diff_branches against " + b.ParentID + ", then discard_branch when done\n", nil
		}),

		newTool(mcpgo.NewTool("discard_branch",
			mcpgo.WithDescription("DELETES a branch and all its data, and stops its compute. The parent and other branches are not affected. "+
				"Use it when you are done with a fork. Refused for the main branch and protected branches; a branch with child branches needs cascade. Cannot be undone unless a snapshot of it exists. "+
				"Cheap. Returns the name of the discarded branch."),
			annotations(false, true, false),
			projectArg(),
			branchArg("Branch to delete."),
			mcpgo.WithBoolean("cascade", mcpgo.Description("Also delete the branch's child branches (recursively). Default false: a branch with children is refused.")),
		), writeTool, "", func(ctx context.Context, c call, a struct {
			Project string `json:"project"`
			Branch  string `json:"branch"`
			Cascade bool   `json:"cascade"`
		}) (any, string, error) {
			p := c.projectOr(a.Project)
			if err := s.svc.DeleteBranch(ctx, p, a.Branch, a.Cascade); err != nil {
				return nil, "", err
			}
			return map[string]any{"project": p, "discarded": a.Branch}, "discarded branch " + a.Branch + " of project " + p + "\n", nil
		}),

		newTool(mcpgo.NewTool("reset_branch",
			mcpgo.WithDescription("Reset a branch to its parent's current state, throwing away (or keeping as a snapshot) everything written on it since the fork. This CHANGES DATA: the branch's own changes are gone from it. "+
				"Use it to start over on a fork without creating a new one. The old state is kept as a snapshot (named by you or automatically) unless discard is true. "+
				"Refused for the main branch and protected branches. Cheap (catalog only; the branch's compute restarts). Returns the reset branch."),
			annotations(false, true, false),
			projectArg(),
			branchArg("Branch to reset (not main)."),
			mcpgo.WithString("snapshot", mcpgo.Description("Name of the snapshot that keeps the old state. Default: an automatic name.")),
			mcpgo.WithBoolean("discard", mcpgo.Description("Drop the old state instead of keeping it as a snapshot. Default false.")),
		), writeTool, "", func(ctx context.Context, c call, a struct {
			Project  string `json:"project"`
			Branch   string `json:"branch"`
			Snapshot string `json:"snapshot"`
			Discard  bool   `json:"discard"`
		}) (any, string, error) {
			b, err := s.svc.ResetBranch(ctx, c.projectOr(a.Project), a.Branch, a.Snapshot, a.Discard)
			if err != nil {
				return nil, "", err
			}
			return b, "reset " + renderBranch(b), nil
		}),

		newTool(mcpgo.NewTool("get_connection_string",
			mcpgo.WithDescription("Get a postgresql:// connection URI for a branch through offshoot's pgwire proxy, for psql, drivers or other tools outside MCP. "+
				"The branch's compute wakes on the first connection. Cheap. Returns uri, host, port, user, database and options (endpoint=<branch>). "+
				"The user is the database role your key's scope allows: offshoot_read (read scope), offshoot_write (write scope: owns your tables, no superuser), postgres (admin keys only). "+
				"The password is left out unless include_password is true; it is this branch's own and opens no other branch."),
			annotations(true, false, true),
			projectArg(),
			branchArg("Branch to connect to."),
			mcpgo.WithBoolean("include_password", mcpgo.Description("Put the role's password for this branch in the URI. Default false. Audited.")),
			mcpgo.WithString("role", mcpgo.Description("Database role: read, write or superuser (admin keys only). Default the strongest your scope allows."), mcpgo.Enum("read", "write", "superuser")),
		), readTool, "", func(ctx context.Context, c call, a struct {
			Project         string `json:"project"`
			Branch          string `json:"branch"`
			IncludePassword bool   `json:"include_password"`
			Role            string `json:"role"`
		}) (any, string, error) {
			conn, err := s.svc.Connection(ctx, experiments.ConnectionRequest{Project: c.projectOr(a.Project), Branch: a.Branch, Password: a.IncludePassword, Role: a.Role})
			if err != nil {
				return nil, "", err
			}
			return conn, conn.URI + "\n", nil
		}),

		newTool(mcpgo.NewTool("rotate_credentials",
			mcpgo.WithDescription("Give a branch new passwords for its database roles (offshoot_write and offshoot_read; the superuser too for admin keys), or only for role. "+
				"The old passwords stop working at once for new connections; open sessions stay. Use it when a connection string may have leaked. "+
				"Cheap (no restart). Returns the roles rotated; get_connection_string with include_password gives the new URI."),
			annotations(false, false, false),
			projectArg(),
			branchArg("Branch whose passwords change."),
			mcpgo.WithString("role", mcpgo.Description("Only this role: read, write or superuser (admin keys only). Default all you may rotate."), mcpgo.Enum("read", "write", "superuser")),
		), writeTool, "", func(ctx context.Context, c call, a struct {
			Project string `json:"project"`
			Branch  string `json:"branch"`
			Role    string `json:"role"`
		}) (any, string, error) {
			roles, err := s.svc.RotateCredentials(ctx, experiments.RotateRequest{Project: c.projectOr(a.Project), Branch: a.Branch, Role: a.Role})
			if err != nil {
				return nil, "", err
			}
			var b strings.Builder
			for _, r := range roles {
				fmt.Fprintf(&b, "rotated the password of %s\n", r.Role)
			}
			return map[string]any{"rotated": roles}, b.String(), nil
		}),

		newTool(mcpgo.NewTool("create_snapshot",
			mcpgo.WithDescription("Record a named snapshot of a branch: a fixed, read-only point you can later fork from (fork_branch snapshot) or restore (restore_snapshot). "+
				"Use it before changing a long-lived branch, as a cheap undo point. O(1), no data is copied. Optionally of a past time inside the history window. Returns the snapshot."),
			annotations(false, false, false),
			projectArg(),
			branchArg("Branch to snapshot."),
			mcpgo.WithString("name", mcpgo.Required(), mcpgo.Description("Snapshot name: [a-z0-9][a-z0-9._/-]{0,62}, unique in the project.")),
			mcpgo.WithString("at_time", mcpgo.Description("Snapshot the branch as it was at this RFC 3339 time (inside the retained history). Default now.")),
		), writeTool, "", func(ctx context.Context, c call, a struct {
			Project string `json:"project"`
			Branch  string `json:"branch"`
			Name    string `json:"name"`
			AtTime  string `json:"at_time"`
		}) (any, string, error) {
			req := experiments.CreateSnapshotRequest{Project: c.projectOr(a.Project), Branch: a.Branch, Name: a.Name}
			if a.AtTime != "" {
				t, err := time.Parse(time.RFC3339Nano, a.AtTime)
				if err != nil {
					return nil, "", &experiments.FieldError{Field: "at_time", Reason: "want an RFC 3339 time such as 2026-01-02T15:04:05Z"}
				}
				req.Timestamp = &t
			}
			sn, err := s.svc.CreateSnapshot(ctx, req)
			if err != nil {
				return nil, "", err
			}
			return sn, fmt.Sprintf("snapshot %s of branch %s at store seq %d\n", sn.Name, sn.Branch, sn.LSN), nil
		}),

		newTool(mcpgo.NewTool("list_snapshots",
			mcpgo.WithDescription("List the snapshots of a project, oldest first, with the branch each was taken of and its point. "+
				"Use it to find an undo point to restore or fork from. Cheap. Returns name, branch, lsn, created_at and expires_at."),
			annotations(true, false, true),
			projectArg(),
		), readTool, "list_projects shows the existing projects", func(ctx context.Context, c call, a projectOnly) (any, string, error) {
			sns, err := s.svc.ListSnapshots(ctx, c.projectOr(a.Project))
			if err != nil {
				return nil, "", err
			}
			var b strings.Builder
			fmt.Fprintf(&b, "%d snapshot(s)\n", len(sns))
			for _, sn := range sns {
				fmt.Fprintf(&b, "%s: branch %s, store seq %d, created %s\n", sn.Name, sn.Branch, sn.LSN, sn.CreatedAt.Format(time.RFC3339))
			}
			return map[string]any{"snapshots": sns}, b.String(), nil
		}),

		newTool(mcpgo.NewTool("restore_snapshot",
			mcpgo.WithDescription("Restore a snapshot, either into a NEW branch (new_branch: safe, nothing existing changes) or onto an EXISTING branch (branch: this CHANGES DATA, the branch's current state is replaced; its old head is kept as a snapshot). "+
				"Prefer new_branch and compare with diff_branches. Restoring onto a branch is refused for main and protected branches; the branch keeps its children and its fork point, so merging it back into its parent applies what the snapshot holds. Cheap (catalog only). Returns the branch and the snapshot keeping its old head."),
			annotations(false, true, false),
			projectArg(),
			mcpgo.WithString("snapshot", mcpgo.Required(), mcpgo.Description("Snapshot to restore; list_snapshots shows them.")),
			mcpgo.WithString("new_branch", mcpgo.Description("Create this new branch from the snapshot. Give this or branch.")),
			mcpgo.WithString("branch", mcpgo.Description("Put this existing branch back onto the snapshot (replaces its state). Give this or new_branch.")),
		), writeTool, "list_snapshots shows the snapshots and list_branches the branches", func(ctx context.Context, c call, a struct {
			Project   string `json:"project"`
			Snapshot  string `json:"snapshot"`
			NewBranch string `json:"new_branch"`
			Branch    string `json:"branch"`
		}) (any, string, error) {
			b, err := s.svc.RestoreSnapshot(ctx, experiments.RestoreRequest{Project: c.projectOr(a.Project), Snapshot: a.Snapshot, NewBranch: a.NewBranch, Branch: a.Branch})
			if err != nil {
				return nil, "", err
			}
			return b, "restored snapshot " + a.Snapshot + " into " + renderBranch(b), nil
		}),
	}
}

// renderBranch is one line about a branch.
func renderBranch(b *experiments.Branch) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "branch %s (project %s)", b.Name, b.Project)
	if b.ParentID != "" {
		fmt.Fprintf(&sb, ", forked from %s at store seq %d", b.ParentID, b.ParentLSN)
	}
	if b.ExpiresAt != nil {
		fmt.Fprintf(&sb, ", expires %s", b.ExpiresAt.Format(time.RFC3339))
		if b.ExpiryBlocked != "" {
			fmt.Fprintf(&sb, " (%s)", b.ExpiryBlocked)
		}
	}
	if b.Protected {
		sb.WriteString(", protected")
	}
	if b.Snapshot != "" {
		fmt.Fprintf(&sb, ", old head kept as snapshot %s", b.Snapshot)
	}
	if b.Endpoint != nil {
		fmt.Fprintf(&sb, ", compute %s", b.Endpoint.State)
	}
	if b.Usage != nil {
		fmt.Fprintf(&sb, ", %d bytes logical, %d bytes own (%d current, %d history)", b.Usage.LogicalBytes, b.Usage.DeltaBytes, b.Usage.CurrentBytes, b.Usage.HistoryBytes)
	}
	sb.WriteString("\n")
	return sb.String()
}

// renderBranches draws the branch tree with indentation.
func renderBranches(p *experiments.BranchPage) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d branch(es)\n", len(p.Branches))
	for i := range p.Branches {
		b := &p.Branches[i]
		sb.WriteString(strings.Repeat("  ", b.Depth))
		sb.WriteString(renderBranch(b))
	}
	if p.Next != "" {
		fmt.Fprintf(&sb, "… more branches: call list_branches again with cursor %q\n", p.Next)
	}
	return sb.String()
}
