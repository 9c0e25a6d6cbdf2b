package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/offshootdb/offshoot/experiments"
)

// Resource URI templates. Branch names may contain "/", hence {+branch}.
const (
	branchTreeURI = "offshoot://{project}/branches"
	branchURI     = "offshoot://{project}/branch/{+branch}"
)

// addResources registers the readable resources: the branch tree of a
// project and each branch's description, as JSON. Reading one is the same
// facade call as list_branches or describe_branch, for the same caller.
func (s *Server) addResources() {
	s.mcp.AddResourceTemplate(mcpgo.NewResourceTemplate(branchTreeURI, "branch tree",
		mcpgo.WithTemplateDescription("The branches of a project in tree order (main first, each fork under its parent), as list_branches returns them (first 1000)."),
		mcpgo.WithTemplateMIMEType("application/json")),
		s.resource(func(ctx context.Context, args map[string]string) (any, error) {
			return s.svc.ListBranches(ctx, experiments.ListBranchesRequest{Project: args["project"], Limit: 1000})
		}))
	s.mcp.AddResourceTemplate(mcpgo.NewResourceTemplate(branchURI, "branch",
		mcpgo.WithTemplateDescription("One branch's description: parent, fork point, expiry, labels, protection, compute state and storage use, as describe_branch returns it."),
		mcpgo.WithTemplateMIMEType("application/json")),
		s.resource(func(ctx context.Context, args map[string]string) (any, error) {
			return s.svc.GetBranch(ctx, args["project"], args["branch"])
		}))
}

// resource adapts a facade read to a resource handler. Errors carry the
// same message as the tool errors (resources have no isError).
func (s *Server) resource(read func(ctx context.Context, args map[string]string) (any, error)) server.ResourceTemplateHandlerFunc {
	return func(ctx context.Context, req mcpgo.ReadResourceRequest) ([]mcpgo.ResourceContents, error) {
		args := map[string]string{}
		for k, v := range req.Params.Arguments {
			switch v := v.(type) {
			case string:
				args[k] = v
			case []string:
				if len(v) > 0 {
					args[k] = v[0]
				}
			}
		}
		v, err := read(ctx, args)
		if err != nil {
			_, msg := s.explain(&tool{def: mcpgo.Tool{Name: "resources/read"}}, err)
			return nil, errors.New(msg)
		}
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", req.Params.URI, err)
		}
		return []mcpgo.ResourceContents{mcpgo.TextResourceContents{URI: req.Params.URI, MIMEType: "application/json", Text: string(b)}}, nil
	}
}
