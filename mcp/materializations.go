package mcp

import (
	"context"
	"fmt"
	"strings"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
)

// listMaterializationsTool adapts ListMaterializations.
func (s *Server) listMaterializationsTool() *tool {
	def := mcpgo.NewTool("list_materializations",
		mcpgo.WithDescription("List a project's materializations: variants' loaded and indexed forks (corpus embedded, table loaded, index built) that the server keeps so that a later run_experiment variant with the same key (corpus fingerprint, chunking, embedder, distance, index type and build parameters) forks one in O(1) and goes straight to evaluation, with no embedding, load or index build. "+
			"Use it to see what a rerun will reuse, what each holds on disk, and which run built it; a spec with \"reuse\": \"never\" rebuilds. Cheap: reads the control database. "+
			"Returns per materialization its id, key, rows, index size, own storage (delta_bytes), hits, last use, expiry, pinned, and the run and variant that built it, most recently used first."),
		annotations(true, false, true),
		projectArg(),
	)
	return newTool(def, readTool, "list_projects shows the projects", func(ctx context.Context, c call, a projectOnly) (any, string, error) {
		ms, err := s.svc.ListMaterializations(ctx, c.projectOr(a.Project))
		if err != nil {
			return nil, "", err
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%d materialization(s)\n", len(ms))
		for _, m := range ms {
			index := m.Key.Index.Type
			if index == "none" {
				index = "exact"
			}
			size := "unknown"
			if m.DeltaBytes != nil {
				size = fmt.Sprintf("%d bytes", *m.DeltaBytes)
			}
			expires := "never"
			if m.ExpiresAt != nil {
				expires = m.ExpiresAt.Format(time.RFC3339)
			}
			fmt.Fprintf(&b, "%s: %s, %s, %d rows, %s on disk, %d hits, last used %s, expires %s, pinned %t, built by %s/%s\n",
				m.ID, m.Key.Retriever(), index, m.Rows, size, m.Hits, m.LastUsedAt.Format(time.RFC3339), expires, m.Pinned,
				m.CreatedByRun, m.CreatedByVariant)
		}
		return map[string]any{"materializations": ms}, b.String(), nil
	})
}
