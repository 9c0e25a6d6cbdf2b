package web

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/experiments"
)

// Errors returned by this package.
var (
	// ErrConfig means the UI configuration is unusable.
	ErrConfig = errors.New("web: bad config")
	// ErrNoData means a chart was asked for data that has nothing to plot.
	ErrNoData = errors.New("web: nothing to plot")
	// ErrFormat means a chart format other than svg or png was asked for.
	ErrFormat = errors.New("web: unsupported chart format")
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Prefix is the path under which the UI is served; "/" redirects to it.
const Prefix = "/ui/"

// Config configures the UI. Service and Caller are required.
type Config struct {
	// Service is the facade every page calls.
	Service *experiments.Service
	// Caller authenticates a page request the way the API does (bearer
	// key, or the local operator when keys are not required) and returns
	// the request's context carrying the caller. An error wrapping
	// experiments.ErrUnauthenticated makes the page ask for an API key.
	Caller func(r *http.Request) (context.Context, error)
	// Branches lists the branches of a project for the branch tree.
	// Default: the facade's branch catalog, usage and endpoint states.
	Branches BranchSource
	// Logger receives internal errors. Default slog.Default().
	Logger *slog.Logger
}

// UI serves the web pages. It is safe for concurrent use.
type UI struct {
	cfg   Config
	log   *slog.Logger
	pages map[string]*template.Template
	mux   *http.ServeMux
}

// New parses the embedded templates and builds the routes.
func New(cfg Config) (*UI, error) {
	if cfg.Service == nil || cfg.Caller == nil {
		return nil, fmt.Errorf("%w: Service and Caller are required", ErrConfig)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	u := &UI{cfg: cfg, log: cfg.Logger, pages: map[string]*template.Template{}}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("web: templates: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("web: templates: %w", err)
	}
	for _, n := range names {
		if n == "templates/layout.html" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("web: template %s: %w", n, err)
		}
		u.pages[strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")] = t
	}
	static, _ := fs.Sub(staticFS, "static")
	m := http.NewServeMux()
	m.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", cacheStatic(http.FileServerFS(static))))
	m.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, Prefix, http.StatusFound) })
	m.HandleFunc("GET /ui/{$}", u.page(u.index))
	m.HandleFunc("GET /ui/open", func(w http.ResponseWriter, r *http.Request) {
		p, b := r.URL.Query().Get("project"), r.URL.Query().Get("branch")
		to := "/ui/projects/" + url.PathEscape(p) + "/branches"
		if b != "" {
			to += "/" + b
		}
		http.Redirect(w, r, to, http.StatusFound)
	})
	m.HandleFunc("GET /ui/projects/{project}/branches", u.page(u.branches))
	m.HandleFunc("GET /ui/projects/{project}/branches/{branch...}", u.page(u.branch))
	m.HandleFunc("GET /ui/projects/{project}/states", u.states)
	m.HandleFunc("GET /ui/projects/{project}/merges", u.page(u.merges))
	m.HandleFunc("GET /ui/projects/{project}/merges/{id}", u.page(u.merge))
	m.HandleFunc("GET /ui/runs", u.page(u.runs))
	m.HandleFunc("GET /ui/runs/{id}", u.page(u.run))
	m.HandleFunc("GET /ui/compare", u.page(u.compare))
	m.HandleFunc("GET /ui/schedules", u.page(u.schedules))
	m.HandleFunc("GET /ui/schedules/{id}", u.page(u.schedule))
	m.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead || apiLike(r) {
			// A client that expects the API gets the API's error shape.
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": "Not Found", "status": http.StatusNotFound,
				"detail": "no such route: " + r.Method + " " + r.URL.Path + " (the API is under /v1)"})
			return
		}
		u.render(w, r, http.StatusNotFound, "error", &view{Title: "Not found", Data: "No page at " + r.URL.Path + "."})
	})
	u.mux = m
	return u, nil
}

// apiLike reports whether a request under Prefix looks meant for the API:
// an API path below /ui/ (/ui/v1/..., /ui/api/..., /ui/mcp, /ui/openapi.json)
// or a client that accepts JSON but not HTML.
func apiLike(r *http.Request) bool {
	rest := strings.TrimPrefix(r.URL.Path, Prefix)
	for _, p := range []string{"v1/", "v1", "api/", "api", "mcp", "openapi.json", "healthz", "readyz", "metrics"} {
		if rest == p || (strings.HasSuffix(p, "/") && strings.HasPrefix(rest, p)) {
			return true
		}
	}
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "json") && !strings.Contains(accept, "text/html")
}

// ServeHTTP serves "/" (a redirect) and everything under Prefix.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) { u.mux.ServeHTTP(w, r) }

func cacheStatic(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

// view is what every page template receives.
type view struct {
	Title string
	// Nav marks the current section: "branches", "runs", "schedules".
	Nav string
	// Project is the project in context, for the navigation.
	Project string
	// NeedsKey makes the page script fetch the page again with the key
	// kept in the browser session.
	NeedsKey bool
	Data     any
	// Rendered is when the page was rendered.
	Rendered time.Time
}

// handler renders one page: it returns the template name and its view, or
// an error mapped to an error page.
type handler func(ctx context.Context, r *http.Request) (string, *view, error)

func (u *UI) page(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, err := u.cfg.Caller(r)
		if err == nil {
			var name string
			var v *view
			name, v, err = h(ctx, r)
			if err == nil {
				u.render(w, r, http.StatusOK, name, v)
				return
			}
		}
		status, msg := statusOf(err)
		if status >= 500 {
			u.log.Error("web page", slog.String("path", r.URL.Path), slog.String("err", err.Error()))
		}
		v := &view{Title: http.StatusText(status), Data: msg, NeedsKey: status == http.StatusUnauthorized}
		u.render(w, r, status, "error", v)
	}
}

// statusOf maps a facade error to an HTTP status and what the page says.
func statusOf(err error) (int, string) {
	var fe *experiments.FieldError
	switch {
	case errors.As(err, &fe):
		return http.StatusBadRequest, fe.Error()
	case errors.Is(err, experiments.ErrUnauthenticated):
		return http.StatusUnauthorized, "This server requires an API key. Enter one above; it is kept in this browser tab only."
	case errors.Is(err, experiments.ErrForbidden):
		return http.StatusForbidden, "Your API key's scope does not cover this page: " + err.Error()
	case errors.Is(err, experiments.ErrNotFound):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, experiments.ErrQuery):
		return http.StatusUnprocessableEntity, err.Error()
	case errors.Is(err, experiments.ErrConflict):
		return http.StatusConflict, err.Error()
	case errors.Is(err, experiments.ErrUnavailable), errors.Is(err, experiments.ErrCapacity):
		return http.StatusServiceUnavailable, err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "The page took too long to build."
	}
	return http.StatusInternalServerError, "Internal error; the server log has the cause."
}

func (u *UI) render(w http.ResponseWriter, _ *http.Request, status int, name string, v *view) {
	t, ok := u.pages[name]
	if !ok {
		http.Error(w, "no template "+name, http.StatusInternalServerError)
		return
	}
	v.Rendered = time.Now().UTC()
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", v); err != nil {
		u.log.Error("web render", slog.String("page", name), slog.String("err", err.Error()))
		http.Error(w, "render failed", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

var funcs = template.FuncMap{
	"bytes":   humanBytes,
	"pct":     func(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) },
	"f3":      func(f float64) string { return fmt.Sprintf("%.3f", f) },
	"f4":      func(f float64) string { return fmt.Sprintf("%.4f", f) },
	"signed":  func(f float64) string { return fmt.Sprintf("%+.4f", f) },
	"ms":      func(f float64) string { return fmt.Sprintf("%.1f ms", f) },
	"dur":     func(d time.Duration) string { return d.Round(time.Microsecond).String() },
	"when":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
	"esc":     url.PathEscape,
	"join":    strings.Join,
	"q":       url.QueryEscape,
	"safeSVG": func(s string) template.HTML { return template.HTML(s) }, // produced by inlineSVG from gonum/plot output
	"json":    jsonString,
	"conf":    func(alpha float64) string { return fmt.Sprintf("%.0f", 100*(1-alpha)) },
	"effect":  evals.FormatEffect,
	"dict": func(kv ...any) map[string]any {
		m := make(map[string]any, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	},
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n), 0
	for ; (f >= unit || f <= -unit) && i < 6; i++ {
		f /= unit
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTPE"[i-1])
}
