package agentapi

import (
	"bytes"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/offshootdb/offshoot/experiments"
)

// mcp serves the MCP streamable HTTP transport, with this API's errors: a
// GET without a session (which would hold an empty event stream open) and
// the transport's own plain-text refusals (an unknown session, a bad
// method) become problem+json like every other error of the server.
func (s *Server) mcp(c echo.Context) error {
	r := c.Request()
	if r.Method == http.MethodGet && r.Header.Get("Mcp-Session-Id") == "" {
		return &experiments.FieldError{Field: "Mcp-Session-Id",
			Reason: "GET /mcp opens the event stream of a session: initialize with POST /mcp first and send the Mcp-Session-Id header it returns"}
	}
	w := &mcpWriter{ResponseWriter: c.Response().Writer}
	s.cfg.MCP.ServeHTTP(w, r)
	if w.failed != 0 {
		msg := strings.TrimSpace(w.body.String())
		if msg == "" {
			msg = http.StatusText(w.failed)
		}
		return echo.NewHTTPError(w.failed, "mcp: "+msg)
	}
	return nil
}

// mcpWriter passes a response through, except an error status with a
// body that is not JSON, which it keeps for mcp to turn into a problem.
type mcpWriter struct {
	http.ResponseWriter
	failed int // the held error status, 0 when passing through
	body   bytes.Buffer
}

func (w *mcpWriter) WriteHeader(code int) {
	if code >= 400 && !strings.Contains(w.Header().Get("Content-Type"), "json") {
		w.failed = code
		w.Header().Del("Content-Type")
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *mcpWriter) Write(b []byte) (int, error) {
	if w.failed != 0 {
		return w.body.Write(b)
	}
	return w.ResponseWriter.Write(b)
}

// Flush keeps event streams flowing.
func (w *mcpWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok && w.failed == 0 {
		f.Flush()
	}
}
