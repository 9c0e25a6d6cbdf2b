package mcp

import (
	"context"
	"fmt"
	"strings"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/offshootdb/offshoot/experiments"
)

// renderReplica is one line of a replica: project, state, lag, source.
func renderReplica(b *strings.Builder, r experiments.Replica) {
	lag := "unknown (not running)"
	if r.Lag != nil {
		lag = fmt.Sprintf("%d bytes, %.1f s", r.Lag.Bytes, r.Lag.Seconds)
	}
	fmt.Fprintf(b, "%s: %s, lag %s, source %s, slot %s\n", r.Project, r.State, lag, r.Source, r.Slot)
	for _, w := range r.Warnings {
		fmt.Fprintf(b, "  warning: %s\n", w)
	}
}

// replicaTools adapt CreateReplica and ListReplicas.
func (s *Server) replicaTools() []*tool {
	return []*tool{
		newTool(mcpgo.NewTool("create_replica",
			mcpgo.WithDescription("Create a read-only replica of a branch of ANOTHER offshoot server on this server, in a new project: the source is copied with pg_basebackup and then followed with PostgreSQL streaming replication, so reads here see the source's commits within a lag of typically well under a second. "+
				"source is the source branch's connection URI as role offshoot_replication with its password, which an admin gets ON THE SOURCE SERVER (`offshoot branch connect BRANCH --role replication --password`, or its connection route with role=replication). "+
				"Cost: copies the whole source cluster once (seconds to minutes by size) and keeps one compute running here and on the source while it follows. Admin only. "+
				"Returns the replica with its state (streaming once it follows) and lag; query it like any branch (project = the new project, branch main); list_replicas shows the lag later."),
			annotations(false, false, false),
			mcpgo.WithString("project", mcpgo.Required(), mcpgo.Description("The new project on this server that holds the replica.")),
			mcpgo.WithString("source", mcpgo.Required(), mcpgo.Description("postgresql://offshoot_replication:PASSWORD@host:port/postgres?sslmode=require&options=endpoint%3DBRANCH (add %20project%3DPROJECT unless the source's default project).")),
			mcpgo.WithString("max_rate", mcpgo.Description("Optional cap on the initial copy's rate so that it does not saturate the source: kB/s or with a k or M suffix (\"20M\"), as pg_basebackup --max-rate.")),
		), writeTool, "", func(ctx context.Context, _ call, a experiments.CreateReplicaRequest) (any, string, error) {
			r, err := s.svc.CreateReplica(ctx, a)
			if err != nil {
				return nil, "", err
			}
			var b strings.Builder
			renderReplica(&b, *r)
			return r, b.String(), nil
		}),
		newTool(mcpgo.NewTool("list_replicas",
			mcpgo.WithDescription("List the replicas on this server (read-only copies of branches of other servers that follow them), with their state (streaming, connecting, disconnected, promoted) and lag in bytes and seconds. Read-only; reads each running replica's position, wakes nothing."),
			annotations(true, false, true),
		), readTool, "", func(ctx context.Context, _ call, _ struct{}) (any, string, error) {
			rs, err := s.svc.ListReplicas(ctx)
			if err != nil {
				return nil, "", err
			}
			var b strings.Builder
			fmt.Fprintf(&b, "%d replica(s)\n", len(rs))
			for _, r := range rs {
				renderReplica(&b, r)
			}
			return map[string]any{"replicas": rs}, b.String(), nil
		}),
	}
}
