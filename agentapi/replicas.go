package agentapi

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/offshootdb/offshoot/experiments"
)

// replicaRoutes registers replicas: read-only copies of a branch of
// another offshoot server that follow it, each in a project of its own.
func (s *Server) replicaRoutes() {
	e := s.e
	e.GET("/v1/replicas", s.listReplicas, s.auth("replica.list"))
	e.POST("/v1/replicas", s.createReplica, s.auth("replica.create"))
	e.GET("/v1/replicas/:project", s.getReplica, s.auth("replica.get"))
	e.POST("/v1/replicas/:project/promote", s.promoteReplica, s.auth("replica.promote"))
	e.DELETE("/v1/replicas/:project", s.deleteReplica, s.auth("replica.delete"))
}

func (s *Server) listReplicas(c echo.Context) error {
	rs, err := s.svc.ListReplicas(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"replicas": rs})
}

func (s *Server) createReplica(c echo.Context) error {
	var req experiments.CreateReplicaRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	r, err := s.svc.CreateReplica(c.Request().Context(), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, r)
}

func (s *Server) getReplica(c echo.Context) error {
	r, err := s.svc.GetReplica(c.Request().Context(), param(c, "project"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, r)
}

func (s *Server) promoteReplica(c echo.Context) error {
	r, err := s.svc.PromoteReplica(c.Request().Context(), param(c, "project"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, r)
}

func (s *Server) deleteReplica(c echo.Context) error {
	r, err := s.svc.DeleteReplica(c.Request().Context(), param(c, "project"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, r)
}
