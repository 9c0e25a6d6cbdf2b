package agentapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/offshootdb/offshoot/experiments"
)

// decode reads a JSON body into v: numbers kept exact, unknown fields
// refused, errors naming the field.
func decode(c echo.Context, v any) error {
	b, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return echo.ErrStatusRequestEntityTooLarge
		}
		return fmt.Errorf("read body: %w", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return &experiments.FieldError{Field: "body", Reason: "is empty; send a JSON object"}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var fe *experiments.FieldError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &fe):
			return fe
		case errors.As(err, &te):
			return &experiments.FieldError{Field: te.Field, Reason: fmt.Sprintf("want %s, got JSON %s", te.Type, te.Value)}
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return &experiments.FieldError{Field: f, Reason: "unknown field"}
		default:
			return &experiments.FieldError{Field: "body", Reason: "not valid JSON: " + err.Error()}
		}
	}
	if dec.More() {
		return &experiments.FieldError{Field: "body", Reason: "trailing data after the JSON object"}
	}
	return nil
}

func (s *Server) query(c echo.Context) error {
	var req experiments.QueryRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	req.Project, req.Branch = param(c, "project"), param(c, "branch")
	res, err := s.svc.Query(c.Request().Context(), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

func (s *Server) diff(c echo.Context) error {
	req := experiments.DiffRequest{Project: param(c, "project"), Branch: param(c, "branch"), Against: c.QueryParam("against")}
	if v := c.QueryParam("sample_rows"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return &experiments.FieldError{Field: "sample_rows", Reason: "want an integer"}
		}
		req.SampleRows = n
	}
	d, err := s.svc.Diff(c.Request().Context(), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

func (s *Server) createKey(c echo.Context) error {
	var req experiments.KeyRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	k, err := s.svc.CreateKey(c.Request().Context(), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, k)
}

func (s *Server) listKeys(c echo.Context) error {
	keys, err := s.svc.ListKeys(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"keys": keys})
}

func (s *Server) revokeKey(c echo.Context) error {
	k, err := s.svc.RevokeKey(c.Request().Context(), param(c, "id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, k)
}

func (s *Server) auditLog(c echo.Context) error {
	var q experiments.AuditQuery
	if v := c.QueryParam("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return &experiments.FieldError{Field: "since", Reason: "want an RFC 3339 time, e.g. 2026-01-02T15:04:05Z"}
		}
		q.Since = t
	}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return &experiments.FieldError{Field: "limit", Reason: "want an integer"}
		}
		q.Limit = n
	}
	page, err := s.svc.AuditLog(c.Request().Context(), q)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, page)
}
