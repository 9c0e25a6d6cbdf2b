// Package experiments is the facade every surface (HTTP, MCP, CLI) calls:
// projects, branches, snapshots, queries and diffs on top of storage and
// compute, and experiment runs, comparisons and schedules on top of vectors
// and evals. Validation and behaviour live here, once.
//
// # Lifecycle
//
// New(cfg) validates a Config, Open(ctx) opens the control database (a
// pebble store in Config.ControlDir holding API keys, project passwords and
// the audit log) and starts the TTL sweeper, and Close() stops both. All methods of an open Service are safe for concurrent
// use.
//
// # Projects, branches and snapshots
//
// With Config.Store the facade manages the copy-on-write store: projects
// (CreateProject runs compute.InitProject and keeps the generated
// superuser password in the control database, which the storage catalog
// has no field for; EnsureDefaultProject creates Config.DefaultProject on
// an empty store), branches (fork from a head, snapshot, seq or time; tree
// listing with filters and pagination; describe with endpoint state and
// storage accounting; labels, protection, TTL, rename, reset, delete with
// cascade), snapshots (create, list, delete, restore into a new branch or
// onto an existing one) and libpq connection strings pointing at the
// proxy. Catalog changes that need a branch's head closed (delete, reset,
// rename, restore onto) stop its endpoint first. A background sweeper
// deletes expired unprotected branches every SweepInterval, at most
// SweepBatch per pass, each audited as caller "ttl-sweeper". MaxBranches
// caps the branches of a project (ErrCapacity).
//
// # Reaching branches
//
// The facade reaches a branch's database through a Connector: "give me a
// connection to branch B of project P". With Config.Compute and no
// Connector it uses compute: a lease on the branch's endpoint (waking it)
// and a connection over its Unix socket as the project's superuser;
// compute errors map to ErrNotFound, ErrCapacity and ErrUnavailable (the
// latter with the Postgres log tail). StaticConnector maps names to fixed
// connection strings (tests, external servers). Without either, Query and
// Diff fail with ErrUnavailable.
//
// # Queries and diffs
//
// Query runs statements in one transaction with a statement timeout, a row
// limit and optionally READ ONLY, and returns JSON-friendly values (see
// QueryRequest and Result); Postgres errors come back as *QueryError with
// SQLSTATE, message, detail, hint and position. Diff compares two branches:
// normalized DDL as a unified diff, and per table with a primary key the
// rows added, removed and changed, found by merging both sides' key-ordered
// streams of (key, 64-bit hash of the row's text).
//
// # Callers, scopes and audit
//
// Every call that needs authority reads its Caller from the context
// (WithCaller); surfaces authenticate bearer tokens with Authenticate. A
// Scope grants admin, or read or write on one project (or all), optionally
// only on branches matching a glob. Write implies read; a READ ONLY query
// needs read, any other query write; keys and the audit log need admin.
// Every mutating call, and every refused one, is recorded in the audit log
// (AuditLog) and logged with slog.
//
// # Errors
//
// Errors wrap the sentinels in errors.go (ErrInvalid with a *FieldError
// naming the field, ErrUnauthenticated, ErrForbidden, ErrNotFound,
// ErrConflict, ErrCapacity, ErrUnavailable, ErrQuery with a *QueryError);
// surfaces map them once.
package experiments
