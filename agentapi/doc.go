// Package agentapi serves offshoot's HTTP API on echo: projects, branches,
// snapshots, queries, diffs and experiment runs. Every route is a thin
// adapter that decodes a request, calls one method of the experiments facade
// and encodes the result; no business logic lives here.
package agentapi
