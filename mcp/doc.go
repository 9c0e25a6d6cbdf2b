// Package mcp exposes the experiments facade to AI agents as Model Context
// Protocol tools (fork_branch, run_sql, discard_branch, ...) over stdio and
// streamable HTTP. Each tool is a thin adapter over one facade call, so the
// MCP and HTTP surfaces never drift apart.
package mcp
