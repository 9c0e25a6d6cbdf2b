package agentapi

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/offshootdb/offshoot/experiments"
)

// mergeRoutes serve three-way merges of branches and merge sessions. A
// merge answers 200 whatever its outcome: its status says whether it was
// merged, previewed, left conflicts (nothing changed) or opened a session.
func (s *Server) mergeRoutes() {
	e := s.e
	e.POST("/v1/projects/:project/branches/:branch/merge", s.mergeBranch, s.auth("branch.merge"))
	e.GET("/v1/projects/:project/merges", s.listMerges, s.auth("merge.list"))
	e.GET("/v1/projects/:project/merges/:merge", s.getMerge, s.auth("merge.get"))
	e.POST("/v1/projects/:project/merges/:merge/conflicts/:conflict/resolve", s.resolveConflict, s.auth("merge.resolve"))
	e.POST("/v1/projects/:project/merges/:merge/complete", s.mergeAction((*experiments.Service).CompleteMerge), s.auth("merge.complete"))
	e.POST("/v1/projects/:project/merges/:merge/abort", s.mergeAction((*experiments.Service).AbortMerge), s.auth("merge.abort"))
	e.POST("/v1/projects/:project/merges/:merge/undo", s.mergeAction((*experiments.Service).UndoMerge), s.auth("merge.undo"))
}

func (s *Server) mergeBranch(c echo.Context) error {
	var req experiments.MergeRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	req.Project, req.Source = param(c, "project"), param(c, "branch")
	m, err := s.svc.MergeBranch(c.Request().Context(), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, m)
}

func (s *Server) listMerges(c echo.Context) error {
	ms, err := s.svc.ListMerges(c.Request().Context(), param(c, "project"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"merges": ms})
}

func (s *Server) getMerge(c echo.Context) error {
	m, err := s.svc.GetMerge(c.Request().Context(), param(c, "project"), param(c, "merge"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, m)
}

func (s *Server) resolveConflict(c echo.Context) error {
	var req experiments.ResolveRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	req.Project, req.Merge, req.Conflict = param(c, "project"), param(c, "merge"), param(c, "conflict")
	m, err := s.svc.ResolveConflict(c.Request().Context(), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, m)
}

// mergeAction serves a bodiless action on a merge session.
func (s *Server) mergeAction(fn func(*experiments.Service, context.Context, string, string) (*experiments.Merge, error)) echo.HandlerFunc {
	return func(c echo.Context) error {
		m, err := fn(s.svc, c.Request().Context(), param(c, "project"), param(c, "merge"))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, m)
	}
}
