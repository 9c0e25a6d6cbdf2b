package agentapi

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/offshootdb/offshoot/agentapi/web"
	"github.com/offshootdb/offshoot/experiments"
)

// Errors returned by this package.
var (
	// ErrConfig means the server configuration is unusable.
	ErrConfig = errors.New("agentapi: bad config")
)

// Config configures a Server. Only Service is required.
type Config struct {
	// Service is the facade every route calls. Required.
	Service *experiments.Service
	// Logger receives request logs and internal errors. Default slog.Default().
	Logger *slog.Logger
	// Registry collects the metrics served at /metrics. The server registers
	// its API latency histogram in it; other packages register theirs.
	// Default: a new registry with the Go and process collectors.
	Registry *prometheus.Registry
	// BodyLimit caps request bodies in bytes; larger ones get 413.
	// Default 1 MiB.
	BodyLimit int64
	// RequestTimeout bounds each request's context (a query's statement
	// timeout is at most 5 minutes by default). Default 6 minutes.
	RequestTimeout time.Duration
	// RequireKeys demands an API key on every /v1 call even on loopback
	// before any key exists. By default a key is required once a live key
	// exists or when the listener is not a loopback address.
	RequireKeys bool
	// MCP, when set, is served at /mcp (GET, POST, DELETE) behind the same API
	// key authentication as /v1, with the caller in the request context.
	// The mcp package builds it; nil: no /mcp route.
	MCP http.Handler
	// Branches lists a project's branches for the web UI's branch tree.
	// Default: the facade's branch catalog.
	Branches web.BranchSource
	// Ready, when set, is checked by /readyz after the facade: an error
	// makes the server not ready, and is answered as any route's error
	// (wrap experiments.ErrUnavailable for 503). Default: none.
	Ready func() error
}

// Server is the HTTP API. Create it with New and run it with Serve; the
// handler is safe for concurrent use.
type Server struct {
	cfg     Config
	svc     *experiments.Service
	log     *slog.Logger
	e       *echo.Echo
	latency *prometheus.HistogramVec
	// requireKeys is set before serving and read by every request.
	requireKeys bool
	known       map[string]bool // registered route paths
	ui          *web.UI
}

//go:embed openapi.json
var openapiJSON []byte

// New builds the server and its routes.
func New(cfg Config) (*Server, error) {
	if cfg.Service == nil {
		return nil, fmt.Errorf("%w: Service is required", ErrConfig)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
		cfg.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if cfg.BodyLimit == 0 {
		cfg.BodyLimit = 1 << 20
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 6 * time.Minute
	}
	if cfg.BodyLimit < 0 || cfg.RequestTimeout < 0 {
		return nil, fmt.Errorf("%w: negative BodyLimit or RequestTimeout", ErrConfig)
	}
	s := &Server{cfg: cfg, svc: cfg.Service, log: cfg.Logger, requireKeys: cfg.RequireKeys}
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "offshoot_http_request_duration_seconds",
		Help:    "HTTP API request latency by method, route template and status code.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
	}, []string{"method", "route", "code"})
	if err := cfg.Registry.Register(s.latency); err != nil {
		return nil, fmt.Errorf("%w: metrics: %w", ErrConfig, err)
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.Use(middleware.RequestID(), s.observe, middleware.Recover(), s.limits)
	s.e = e
	ui, err := s.newUI()
	if err != nil {
		return nil, err
	}
	s.ui = ui
	s.routes()
	s.known = map[string]bool{}
	for _, r := range e.Routes() {
		s.known[r.Path] = true
	}
	return s, nil
}

func (s *Server) routes() {
	e := s.e
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.GET("/readyz", func(c echo.Context) error {
		if err := s.svc.Ready(); err != nil {
			return err
		}
		if s.cfg.Ready != nil {
			if err := s.cfg.Ready(); err != nil {
				return err
			}
		}
		return c.String(http.StatusOK, "ready\n")
	})
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{Registry: s.cfg.Registry})))
	e.GET("/", s.serveUI)
	e.GET("/ui/*", s.serveUI)
	e.GET("/v1/openapi.json", func(c echo.Context) error {
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, openapiJSON)
	})
	e.POST("/v1/projects/:project/branches/:branch/query", s.query, s.auth("query"))
	e.GET("/v1/projects/:project/branches/:branch/diff", s.diff, s.auth("diff"))
	e.GET("/v1/keys", s.listKeys, s.auth("key.list"))
	e.POST("/v1/keys", s.createKey, s.auth("key.create"))
	e.DELETE("/v1/keys/:id", s.revokeKey, s.auth("key.revoke"))
	e.GET("/v1/audit", s.auditLog, s.auth("audit.list"))
	s.branchRoutes()
	s.maskRoutes()
	s.mergeRoutes()
	s.runRoutes()
	s.materializationRoutes()
	s.replicaRoutes()
	if s.cfg.MCP != nil {
		e.Match([]string{http.MethodGet, http.MethodPost, http.MethodDelete}, "/mcp", s.mcp, s.auth("mcp"))
	}
}

// Handler returns the HTTP handler. Callers that serve it themselves
// decide about keys with Config.RequireKeys; Serve also looks at the
// listener's address.
func (s *Server) Handler() http.Handler { return s.e }

// Serve serves on ln until ctx is done, then shuts down gracefully,
// waiting up to 30 s for requests in flight. A listener on an address
// other than loopback makes API keys mandatory.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if !isLoopback(ln.Addr()) {
		s.requireKeys = true
	}
	return s.serve(ctx, ln, nil)
}

// serve runs an http.Server for the handler on ln until ctx is done;
// connContext, if set, derives each connection's base context.
func (s *Server) serve(ctx context.Context, ln net.Listener, connContext func(context.Context, net.Conn) context.Context) error {
	srv := &http.Server{
		ConnContext:       connContext,
		Handler:           s.e,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      s.cfg.RequestTimeout + 30*time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.Network() == "unix"
	}
	return ta.IP.IsLoopback()
}

// observe logs each request and records its latency, after the error
// handler has written the response.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		d := time.Since(start)
		route := c.Path()
		if !s.known[route] {
			route = "unmatched" // bounded label values
		}
		status := c.Response().Status
		s.latency.WithLabelValues(c.Request().Method, route, fmt.Sprint(status)).Observe(d.Seconds())
		keyID, _ := c.Get(keyIDKey).(string)
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelError
		}
		s.log.LogAttrs(c.Request().Context(), level, "http request",
			slog.String("request_id", c.Response().Header().Get(echo.HeaderXRequestID)),
			slog.String("method", c.Request().Method), slog.String("path", c.Request().URL.Path),
			slog.String("route", route), slog.Int("status", status), slog.Duration("duration", d),
			slog.Int64("bytes_out", c.Response().Size), slog.String("remote", c.RealIP()), slog.String("key_id", keyID))
		return nil
	}
}

// limits applies the body size limit and the request timeout.
func (s *Server) limits(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		limit := s.cfg.BodyLimit
		if c.Path() == runImportPath { // a run file, not a JSON request
			limit = max(limit, experiments.MaxRunFileBytes)
		}
		if r.ContentLength > limit {
			return echo.ErrStatusRequestEntityTooLarge
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		r = r.WithContext(ctx)
		r.Body = http.MaxBytesReader(c.Response(), r.Body, limit)
		c.SetRequest(r)
		return next(c)
	}
}
