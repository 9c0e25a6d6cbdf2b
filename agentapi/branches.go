package agentapi

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/offshootdb/offshoot/experiments"
)

func (s *Server) branchRoutes() {
	e := s.e
	e.GET("/v1/projects", s.listProjects, s.auth("project.list"))
	e.POST("/v1/projects", s.createProject, s.auth("project.create"))
	e.GET("/v1/projects/:project", s.getProject, s.auth("project.get"))
	e.DELETE("/v1/projects/:project", s.deleteProject, s.auth("project.delete"))
	e.GET("/v1/projects/:project/usage", s.usage, s.auth("usage"))
	e.GET("/v1/projects/:project/branches", s.listBranches, s.auth("branch.list"))
	e.POST("/v1/projects/:project/branches", s.createBranch, s.auth("branch.create"))
	e.GET("/v1/projects/:project/branches/:branch", s.getBranch, s.auth("branch.get"))
	e.PATCH("/v1/projects/:project/branches/:branch", s.updateBranch, s.auth("branch.update"))
	e.DELETE("/v1/projects/:project/branches/:branch", s.deleteBranch, s.auth("branch.delete"))
	e.POST("/v1/projects/:project/branches/:branch/reset", s.resetBranch, s.auth("branch.reset"))
	e.GET("/v1/projects/:project/branches/:branch/connection", s.connection, s.auth("branch.connection"))
	e.POST("/v1/projects/:project/branches/:branch/credentials/rotate", s.rotateCredentials, s.auth("branch.credentials.rotate"))
	e.GET("/v1/projects/:project/branches/:branch/endpoint", s.endpoint, s.auth("endpoint.get"))
	e.POST("/v1/projects/:project/branches/:branch/endpoint", s.endpointAction, s.auth("endpoint.action"))
	e.GET("/v1/projects/:project/branches/:branch/endpoint/log", s.endpointLog, s.auth("endpoint.log"))
	e.GET("/v1/projects/:project/branches/:branch/snapshots", s.listBranchSnapshots, s.auth("snapshot.list"))
	e.POST("/v1/projects/:project/branches/:branch/snapshots", s.createSnapshot, s.auth("snapshot.create"))
	e.GET("/v1/projects/:project/snapshots", s.listSnapshots, s.auth("snapshot.list"))
	e.DELETE("/v1/projects/:project/snapshots/:snapshot", s.deleteSnapshot, s.auth("snapshot.delete"))
	e.POST("/v1/projects/:project/snapshots/:snapshot/restore", s.restoreSnapshot, s.auth("snapshot.restore"))
}

func (s *Server) listProjects(c echo.Context) error {
	ps, err := s.svc.ListProjects(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"projects": ps})
}

func (s *Server) createProject(c echo.Context) error {
	var req struct {
		Name string `json:"name"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	p, err := s.svc.CreateProject(c.Request().Context(), req.Name)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, p)
}

func (s *Server) getProject(c echo.Context) error {
	p, err := s.svc.GetProject(c.Request().Context(), param(c, "project"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

func (s *Server) deleteProject(c echo.Context) error {
	force, err := boolParam(c, "force")
	if err != nil {
		return err
	}
	if err := s.svc.DeleteProject(c.Request().Context(), param(c, "project"), force); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) usage(c echo.Context) error {
	u, err := s.svc.ProjectUsage(c.Request().Context(), param(c, "project"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, u)
}

func (s *Server) listBranches(c echo.Context) error {
	req := experiments.ListBranchesRequest{Project: param(c, "project"), Prefix: c.QueryParam("prefix"), Cursor: c.QueryParam("cursor")}
	eps, err := boolParam(c, "endpoints")
	if err != nil {
		return err
	}
	req.Endpoints = eps
	if req.Usage, err = boolParam(c, "usage"); err != nil {
		return err
	}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return &experiments.FieldError{Field: "limit", Reason: "want an integer"}
		}
		req.Limit = n
	}
	for _, l := range c.QueryParams()["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return &experiments.FieldError{Field: "label", Reason: "want key=value"}
		}
		if req.Labels == nil {
			req.Labels = map[string]string{}
		}
		req.Labels[k] = v
	}
	page, err := s.svc.ListBranches(c.Request().Context(), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, page)
}

func (s *Server) createBranch(c echo.Context) error {
	var req experiments.CreateBranchRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	req.Project = param(c, "project")
	b, err := s.svc.CreateBranch(c.Request().Context(), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, b)
}

func (s *Server) getBranch(c echo.Context) error {
	b, err := s.svc.GetBranch(c.Request().Context(), param(c, "project"), param(c, "branch"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, b)
}

func (s *Server) updateBranch(c echo.Context) error {
	var req experiments.UpdateBranchRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	req.Project, req.Branch = param(c, "project"), param(c, "branch")
	b, err := s.svc.UpdateBranch(c.Request().Context(), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, b)
}

func boolParam(c echo.Context, name string) (bool, error) {
	v := c.QueryParam(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, &experiments.FieldError{Field: name, Reason: "want true or false"}
	}
	return b, nil
}

func (s *Server) deleteBranch(c echo.Context) error {
	cascade, err := boolParam(c, "cascade")
	if err != nil {
		return err
	}
	if err := s.svc.DeleteBranch(c.Request().Context(), param(c, "project"), param(c, "branch"), cascade); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) resetBranch(c echo.Context) error {
	var req struct {
		Snapshot string `json:"snapshot"`
		Discard  bool   `json:"discard"`
	}
	if c.Request().ContentLength != 0 {
		if err := decode(c, &req); err != nil {
			return err
		}
	}
	b, err := s.svc.ResetBranch(c.Request().Context(), param(c, "project"), param(c, "branch"), req.Snapshot, req.Discard)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, b)
}

func (s *Server) connection(c echo.Context) error {
	pw, err := boolParam(c, "password")
	if err != nil {
		return err
	}
	conn, err := s.svc.Connection(c.Request().Context(), experiments.ConnectionRequest{Project: param(c, "project"), Branch: param(c, "branch"),
		Password: pw, Role: c.QueryParam("role")})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, conn)
}

func (s *Server) rotateCredentials(c echo.Context) error {
	var req struct {
		Role string `json:"role"`
	}
	if c.Request().ContentLength != 0 {
		if err := decode(c, &req); err != nil {
			return err
		}
	}
	roles, err := s.svc.RotateCredentials(c.Request().Context(), experiments.RotateRequest{Project: param(c, "project"), Branch: param(c, "branch"), Role: req.Role})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"rotated": roles})
}

func (s *Server) endpoint(c echo.Context) error {
	st, err := s.svc.Endpoint(c.Request().Context(), param(c, "project"), param(c, "branch"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

func (s *Server) endpointLog(c echo.Context) error {
	n := 0
	if v := c.QueryParam("lines"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			return &experiments.FieldError{Field: "lines", Reason: "want an integer"}
		}
	}
	lines, err := s.svc.EndpointLog(c.Request().Context(), param(c, "project"), param(c, "branch"), n)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"lines": lines})
}

func (s *Server) endpointAction(c echo.Context) error {
	var req struct {
		Action string `json:"action"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	st, err := s.svc.EndpointAction(c.Request().Context(), param(c, "project"), param(c, "branch"), req.Action)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

func (s *Server) createSnapshot(c echo.Context) error {
	var req experiments.CreateSnapshotRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	req.Project, req.Branch = param(c, "project"), param(c, "branch")
	sn, err := s.svc.CreateSnapshot(c.Request().Context(), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, sn)
}

func (s *Server) listSnapshots(c echo.Context) error {
	sns, err := s.svc.ListSnapshots(c.Request().Context(), param(c, "project"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"snapshots": sns})
}

func (s *Server) listBranchSnapshots(c echo.Context) error {
	sns, err := s.svc.ListSnapshots(c.Request().Context(), param(c, "project"))
	if err != nil {
		return err
	}
	out := []experiments.Snapshot{}
	for _, sn := range sns {
		if sn.Branch == param(c, "branch") {
			out = append(out, sn)
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"snapshots": out})
}

func (s *Server) deleteSnapshot(c echo.Context) error {
	if err := s.svc.DeleteSnapshot(c.Request().Context(), param(c, "project"), param(c, "snapshot")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) restoreSnapshot(c echo.Context) error {
	var req experiments.RestoreRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	req.Project, req.Snapshot = param(c, "project"), param(c, "snapshot")
	b, err := s.svc.RestoreSnapshot(c.Request().Context(), req)
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if req.Branch != "" {
		status = http.StatusOK
	}
	return c.JSON(status, b)
}
