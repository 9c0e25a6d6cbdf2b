package agentapi

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/offshootdb/offshoot/agentapi/web"
)

// uiAuthKey carries the outcome of authenticate from the echo route to
// the UI's Config.Caller.
type uiAuthKey struct{}

type uiAuth struct {
	ctx context.Context
	err error
}

// newUI builds the web UI, authenticated like the API.
func (s *Server) newUI() (*web.UI, error) {
	return web.New(web.Config{
		Service:  s.svc,
		Logger:   s.log,
		Branches: s.cfg.Branches,
		Caller: func(r *http.Request) (context.Context, error) {
			a, ok := r.Context().Value(uiAuthKey{}).(uiAuth)
			if !ok {
				return r.Context(), nil // assets and redirects
			}
			return a.ctx, a.err
		},
	})
}

// servesUI serves a page of the web UI.
func (s *Server) serveUI(c echo.Context) error {
	ctx, caller, err := s.authenticate(c)
	if err == nil {
		c.Set(keyIDKey, caller.KeyID)
	}
	r := c.Request()
	s.ui.ServeHTTP(c.Response(), r.WithContext(context.WithValue(r.Context(), uiAuthKey{}, uiAuth{ctx: ctx, err: err})))
	return nil
}
