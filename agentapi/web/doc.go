// Package web is offshoot's browser UI, served by `offshoot serve` at /ui/
// ("/" redirects there): a landing page listing every project the caller
// may see with its branch tree and the recent runs, the branch tree of a
// project (with labels and TTL editable in place), a branch page
// (schema browser, read-only SQL console, diff), experiment runs, run
// comparisons, sweeps and schedule histories. Templates, script and styles
// are embedded with go:embed; nothing is loaded from elsewhere, so the UI
// works offline.
//
// Pages are rendered on the server with html/template from facade calls;
// handlers hold no business logic. Charts are drawn by gonum.org/v1/plot as
// SVG inlined in the page; the same charts can be written as SVG or PNG
// files with SaveChart (ChartWidth × ChartHeight; PNG at PNGDPI).
//
// The page script calls the JSON API under /v1 for everything that acts
// (queries, fork, reset, snapshot, labels, TTL, delete) and keeps the API key the user
// enters in the tab's sessionStorage, sending it as a bearer token. Page
// requests are authenticated by Config.Caller like API calls; when the
// server requires a key, a page answers 401 with a key prompt and the
// script fetches it again with the key. A request under /ui/ that looks
// meant for the API (/ui/v1/..., /ui/openapi.json, a client accepting JSON
// but not HTML) and matches no page gets a problem+json 404, not HTML.
package web
