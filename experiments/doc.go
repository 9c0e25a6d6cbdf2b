// Package experiments is the facade every surface (HTTP, MCP, CLI) calls:
// projects, branches, snapshots, queries and diffs on top of storage and
// compute, and experiment runs, comparisons and schedules on top of vectors
// and evals. Validation and behaviour live here, once.
package experiments
