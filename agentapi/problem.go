package agentapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/offshootdb/offshoot/experiments"
)

// Problem is an RFC 9457 problem details body (application/problem+json).
// Code is stable and also ends Type; Field names the offending input of a
// 400; Postgres carries the fields of a failed statement (422).
type Problem struct {
	Type      string                  `json:"type"`
	Title     string                  `json:"title"`
	Status    int                     `json:"status"`
	Detail    string                  `json:"detail,omitempty"`
	Instance  string                  `json:"instance,omitempty"`
	Code      string                  `json:"code"`
	RequestID string                  `json:"request_id,omitempty"`
	Field     string                  `json:"field,omitempty"`
	Postgres  *experiments.QueryError `json:"postgres,omitempty"`
}

// problemTypeBase prefixes every problem type URI.
const problemTypeBase = "https://offshoot.dev/problems/"

// problemFor maps an error to a problem. It is the one place where
// facade errors become HTTP statuses. internal reports errors whose text
// must stay in the server log.
func problemFor(err error) (p Problem, internal bool) {
	set := func(status int, code string) {
		p.Status, p.Code, p.Detail = status, code, err.Error()
	}
	var fe *experiments.FieldError
	var qe *experiments.QueryError
	var he *echo.HTTPError
	switch {
	case errors.As(err, &fe):
		set(http.StatusBadRequest, "invalid-input")
		p.Field = fe.Field
	case errors.As(err, &qe):
		set(http.StatusUnprocessableEntity, "query-failed")
		p.Postgres = qe
	case errors.Is(err, experiments.ErrInvalid):
		set(http.StatusBadRequest, "invalid-input")
	case errors.Is(err, experiments.ErrUnauthenticated):
		set(http.StatusUnauthorized, "unauthenticated")
	case errors.Is(err, experiments.ErrForbidden):
		set(http.StatusForbidden, "forbidden")
	case errors.Is(err, experiments.ErrNotFound):
		set(http.StatusNotFound, "not-found")
	case errors.Is(err, experiments.ErrConflict):
		set(http.StatusConflict, "conflict")
	case errors.Is(err, experiments.ErrCapacity):
		set(http.StatusTooManyRequests, "capacity")
	case errors.Is(err, experiments.ErrUnavailable):
		set(http.StatusServiceUnavailable, "unavailable")
	case errors.Is(err, context.DeadlineExceeded):
		p.Status, p.Code, p.Detail = http.StatusGatewayTimeout, "timeout", "the request took longer than the server's request timeout"
	case errors.As(err, &he):
		p.Status, p.Code = he.Code, httpCode(he.Code)
		if m, ok := he.Message.(string); ok {
			p.Detail = m
		}
		internal = he.Internal != nil && he.Code >= 500
	default:
		p.Status, p.Code, p.Detail = http.StatusInternalServerError, "internal", "internal error; the server log has the cause under this request id"
		internal = true
	}
	p.Title = http.StatusText(p.Status)
	p.Type = problemTypeBase + p.Code
	return p, internal
}

// httpCode names the problem code of a plain HTTP status from echo.
func httpCode(status int) string {
	switch status {
	case http.StatusNotFound:
		return "route-not-found"
	case http.StatusMethodNotAllowed:
		return "method-not-allowed"
	case http.StatusRequestEntityTooLarge:
		return "body-too-large"
	case http.StatusUnsupportedMediaType:
		return "unsupported-media-type"
	}
	if status >= 500 {
		return "internal"
	}
	return "bad-request"
}

// handleError is echo's one error handler: every error a route returns
// is written as problem+json; internal errors are logged, not sent.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	p, internal := problemFor(err)
	p.Instance = c.Request().URL.Path
	p.RequestID = c.Response().Header().Get(echo.HeaderXRequestID)
	if internal {
		s.log.LogAttrs(c.Request().Context(), slog.LevelError, "internal error",
			slog.String("request_id", p.RequestID), slog.String("path", p.Instance), slog.String("err", err.Error()))
	}
	h := c.Response().Header()
	switch p.Status {
	case http.StatusUnauthorized:
		h.Set(echo.HeaderWWWAuthenticate, `Bearer realm="offshoot"`)
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		h.Set("Retry-After", "5")
	case http.StatusMethodNotAllowed:
		if allow, ok := c.Get(echo.ContextKeyHeaderAllow).(string); ok {
			h.Set(echo.HeaderAllow, allow)
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // details quote commands like <token>
	merr := enc.Encode(p)
	b := buf.Bytes()
	if merr != nil {
		b = []byte(fmt.Sprintf(`{"type":%q,"title":"Internal Server Error","status":500,"code":"internal"}`, problemTypeBase+"internal"))
		p.Status = http.StatusInternalServerError
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(p.Status)
		return
	}
	_ = c.Blob(p.Status, "application/problem+json", b)
}
