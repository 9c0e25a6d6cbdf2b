package agentapi

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/offshootdb/offshoot/experiments"
)

// keyIDKey is the echo context key of the caller's key id, for logs.
const keyIDKey = "offshoot.key_id"

// auth resolves the caller of a /v1 route and puts it in the request
// context for the facade, which enforces scopes. A bearer token must
// match a live key; without one the caller is the local operator, unless
// keys are required (a live key exists, the listener is not loopback, or
// Config.RequireKeys). On the admin socket (ServeAdmin) every caller is
// the local operator. Refused attempts are audited under action.
func (s *Server) auth(action string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			ctx, caller, err := s.authenticate(c)
			if err != nil {
				s.svc.Audit(ctx, experiments.AuditEntry{Action: action, Target: target(c), Result: "denied", Error: err.Error()})
				return err
			}
			c.Set(keyIDKey, caller.KeyID)
			c.SetRequest(c.Request().WithContext(ctx))
			return next(c)
		}
	}
}

// authenticate resolves the caller of a request (see auth) and returns the
// request's context carrying the request info and, on success, the caller.
func (s *Server) authenticate(c echo.Context) (context.Context, experiments.Caller, error) {
	r := c.Request()
	ctx := experiments.WithRequest(r.Context(), experiments.RequestInfo{
		ID: c.Response().Header().Get(echo.HeaderXRequestID), Remote: c.RealIP()})
	var caller experiments.Caller
	var err error
	h := r.Header.Get(echo.HeaderAuthorization)
	scheme, token, _ := strings.Cut(h, " ")
	switch {
	case isAdminConn(r.Context()):
		caller = experiments.LocalCaller // ServeAdmin checked the peer
	case h != "" && !strings.EqualFold(scheme, "Bearer"):
		err = fmt.Errorf("authorization scheme %q: want Bearer: %w", scheme, experiments.ErrUnauthenticated)
	case h != "":
		caller, err = s.svc.Authenticate(ctx, strings.TrimSpace(token))
	case s.requireKeys || s.svc.KeysRequired():
		err = fmt.Errorf("this server requires an API key: send Authorization: Bearer <token> (create one with `offshoot key create`): %w", experiments.ErrUnauthenticated)
	default:
		caller = experiments.LocalCaller
	}
	if err != nil {
		return ctx, caller, err
	}
	return experiments.WithCaller(ctx, caller), caller, nil
}

// target names what a route acts on, for the audit log.
func target(c echo.Context) string {
	p, b := param(c, "project"), param(c, "branch")
	switch {
	case p != "":
		return p + "/" + b
	case param(c, "id") != "":
		return "key/" + param(c, "id")
	}
	return strings.TrimPrefix(c.Path(), "/v1/")
}

// param returns a path parameter, unescaped: branch names may contain
// "/", sent as %2F.
func param(c echo.Context, name string) string {
	v := c.Param(name)
	if u, err := url.PathUnescape(v); err == nil {
		return u
	}
	return v
}
