package agentapi

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// materializationRoutes registers a project's materializations: variants'
// loaded and indexed forks kept for reuse by later runs.
func (s *Server) materializationRoutes() {
	e := s.e
	e.GET("/v1/projects/:project/materializations", s.listMaterializations, s.auth("materialization.list"))
	e.GET("/v1/projects/:project/materializations/:id", s.getMaterialization, s.auth("materialization.get"))
	e.DELETE("/v1/projects/:project/materializations/:id", s.deleteMaterialization, s.auth("materialization.delete"))
	e.POST("/v1/projects/:project/materializations/:id/pin", s.pinMaterialization, s.auth("materialization.pin"))
}

func (s *Server) listMaterializations(c echo.Context) error {
	ms, err := s.svc.ListMaterializations(c.Request().Context(), param(c, "project"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"materializations": ms})
}

func (s *Server) getMaterialization(c echo.Context) error {
	m, err := s.svc.GetMaterialization(c.Request().Context(), param(c, "project"), param(c, "id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, m)
}

func (s *Server) deleteMaterialization(c echo.Context) error {
	if err := s.svc.DeleteMaterialization(c.Request().Context(), param(c, "project"), param(c, "id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// pinMaterialization pins, or with {"pinned": false} unpins; an empty
// body pins.
func (s *Server) pinMaterialization(c echo.Context) error {
	req := struct {
		Pinned *bool `json:"pinned"`
	}{}
	if c.Request().ContentLength != 0 {
		if err := decode(c, &req); err != nil {
			return err
		}
	}
	pinned := req.Pinned == nil || *req.Pinned
	m, err := s.svc.PinMaterialization(c.Request().Context(), param(c, "project"), param(c, "id"), pinned)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, m)
}
