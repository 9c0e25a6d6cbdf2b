// Package agentapi serves offshoot's HTTP API on echo: projects, branches,
// snapshots, queries, diffs and experiment runs. Every route is a thin
// adapter that decodes a request, calls one method of the experiments facade
// and encodes the result; no business logic lives here.
//
// Routes live under /v1 and are documented in openapi.json (served at
// /v1/openapi.json; a test keeps it equal to the registered routes).
// /healthz, /readyz and /metrics need no key. A /v1 call needs a bearer API
// key once a live key exists, when the listener is not a loopback address,
// or when Config.RequireKeys is set; otherwise it acts as the local
// operator. Errors are written by one echo error handler as RFC 9457
// problem+json: facade sentinels map to 400 (with the offending field),
// 401, 403, 404, 409, 422 (Postgres errors, with their fields), 429, 503
// and 504; other errors are 500 with the cause only in the server log.
// The web UI (package agentapi/web) is served at /ui/ ("/" redirects
// there), authenticated like /v1; its pages call the same facade.
//
// Each request gets an X-Request-Id, a structured log line and an
// observation in the offshoot_http_request_duration_seconds histogram
// (by method, route template and status).
package agentapi
