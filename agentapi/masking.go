package agentapi

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/offshootdb/offshoot/experiments"
)

func (s *Server) maskRoutes() {
	e := s.e
	e.GET("/v1/projects/:project/masking", s.getMaskPolicy, s.auth("mask.get"))
	e.PUT("/v1/projects/:project/masking", s.setMaskPolicy, s.auth("mask.set"))
	e.DELETE("/v1/projects/:project/masking", s.deleteMaskPolicy, s.auth("mask.delete"))
}

func (s *Server) getMaskPolicy(c echo.Context) error {
	p, err := s.svc.GetMaskPolicy(c.Request().Context(), param(c, "project"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

func (s *Server) setMaskPolicy(c echo.Context) error {
	var req experiments.MaskPolicy // what GET returns; only rules count
	if err := decode(c, &req); err != nil {
		return err
	}
	p, err := s.svc.SetMaskPolicy(c.Request().Context(), param(c, "project"), req.Policy)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

func (s *Server) deleteMaskPolicy(c echo.Context) error {
	if err := s.svc.DeleteMaskPolicy(c.Request().Context(), param(c, "project")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
