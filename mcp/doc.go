// Package mcp exposes the experiments facade to AI agents as Model Context
// Protocol tools over stdio and streamable HTTP. Each tool is a thin
// adapter over one facade call (decode arguments, call, render), so the
// MCP and HTTP surfaces never drift apart; validation and behaviour live
// in the facade.
//
// # Tools
//
// list_projects, list_branches, describe_branch, fork_branch (agent forks
// expire after 24 h unless ttl says otherwise), discard_branch,
// reset_branch, run_sql, run_sql_transaction, explain_sql (on a throwaway
// fork), list_tables, describe_table, diff_branches,
// get_connection_string, create_snapshot, list_snapshots,
// restore_snapshot, vector_search, and prepare_migration / complete_migration (try the
// DDL on a fork, then apply it to the parent). Experiment runs:
// run_experiment (a spec as a JSON object; one fork per variant,
// returns the run id at once), get_run and list_runs
// (status, phase and headline metrics, without per-query rankings),
// cancel_run, list_datasets (the BEIR directories under the server's
// datasets dir, with counts), and compare_runs (A and B as RUN or
// RUN:VARIANT; verdict, per-measure delta, CI and p, the most regressed
// queries); export_run (a variant's rankings as a TREC run file or JSON
// lines) and import_run (an external TREC run, as text, added to a
// finished run as a run_file variant for compare_runs);
// list_materializations (the loaded and indexed forks later runs reuse).
// Every tool sets all four annotations (readOnlyHint,
// destructiveHint, idempotentHint, openWorldHint); destructive ones say
// CHANGES DATA or DELETES in their description. Results carry the facade's
// JSON as structured content plus a compact text rendering (row and cell
// limits, cuts marked).
//
// # Callers
//
// A call acts for the experiments.Caller in its context: over HTTP the
// agentapi authentication puts it there (agentapi.Config.MCP mounts
// Handler at /mcp behind the API keys); over stdio ServeStdio is given
// one. A caller without any write scope sees only read-only tools, and
// run_sql in a read-only variant whose queries always run READ ONLY; a
// call it makes to a write tool anyway is answered with a tool error that
// says why. Such refusals, run_sql with read_only false from such a
// caller, and calls of unknown tools are audited as denied
// (experiments.Service.RecordRefusal); the facade audits its own.
//
// # Errors
//
// Tool failures are tool results with isError set, never protocol errors:
// one mapper (toolError) turns the facade's sentinels into the cause plus
// the next step ("...: not found; list_branches shows the existing
// branches"), and Postgres errors into the SQLSTATE with advice. Panics in
// a tool become tool errors too.
//
// # Transports
//
// Handler serves streamable HTTP; ServeStdio serves one stdio client;
// Forward relays a stdio client to a running server's /mcp endpoint,
// which is how `offshoot mcp` avoids opening a data dir that a server
// already holds.
package mcp
