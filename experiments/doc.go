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
// SweepBatch per pass, each audited as caller "ttl-sweeper" (one it cannot
// delete, such as a branch with children, is logged and audited once until
// its expiry or subtree changes, and Branch.ExpiryBlocked says why; the
// main branch cannot be given a TTL); a branch
// about to expire (within min(ExpiryWarning, 10% of its TTL)) first gets
// one "branch.expiring" audit entry and log line. MaxBranches caps the
// branches of a project (ErrCapacity). With a Prices table, ProjectUsage
// and GetBranch add an estimated Cost. EndpointLog tails the Postgres log
// of a branch's endpoint.
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
// # Inspecting, explaining, migrating and searching
//
// These serve agents (the MCP tools) as much as people. ListTables and
// DescribeTable read a branch's catalog in READ ONLY queries (read
// scope): relations with estimated rows and sizes; one table's columns,
// constraints and indexes (an unknown table is ErrNotFound). Explain runs
// EXPLAIN (ANALYZE, BUFFERS) of one statement on a throwaway fork
// "explain/<random>" and discards it, so even a DELETE leaves the branch
// untouched (write scope for the fork, read on the branch). The
// fork-first migration pattern is PrepareMigration, which forks the
// branch, runs the migration SQL on the fork in one transaction and
// records the resulting schema diff and duration under an id, and
// CompleteMigration, which runs the same SQL on the branch in one
// transaction and then discards the fork (ErrConflict once completed; a
// failure changes nothing and keeps the fork). VectorSearch returns the k
// rows nearest to a query vector by a pgvector column (l2, cosine or
// inner product, optional equality filters) in a READ ONLY transaction,
// using a matching HNSW or IVFFlat index when there is one.
//
// # Experiment runs
//
// An ExperimentSpec (YAML or JSON, ParseSpec; errors are *FieldError
// naming the field by JSON path, e.g. "variants[1].index.type") names a
// project, a base branch point (its head, a seq, a time or a snapshot), a
// dataset (a BEIR directory, or SQL run on the pinned base, on a fork of
// it), variants (embedder, chunking, distance, index, search parameters,
// optional sweep grid), metrics and k. StartRun records a queued Run and
// returns at once; in the background the base is pinned
// (RunBranches.Resolve: on the store, a run-base.* snapshot that a fork
// can start from even after the base branch is deleted), and each group
// of variants that needs the same data (sweep points differing only in
// search parameters share one), in spec order, gets a fork
// exp/<experiment>/<run>/<variant> (cut to fit a branch name, with a
// hash, when longer; RunBranches.Fork) where the
// corpus is embedded through Config.EmbedCache, loaded, indexed, and every
// query searched (top-k, ANN recall against exact search when indexed)
// and scored with evals. Each sweep point first records the plan of its
// query under its exact settings (PlanSummary): an indexed point is only
// measured on its index, forced if the planner would skip it, with
// pgvector's iterative scan when ef_search would cap the hits below k
// (SearchSpec.IterativeScan). Latency and QPS are then measured after
// warm-up, over repeated passes and at concurrent clients (TimingSpec,
// TimingReport), on a fork whose shared_buffers hold its index (within
// Config.IndexMemoryBudget; buffers.go, recorded in the provenance's
// settings). Everything is recorded in the control
// database: per-query rankings in batches as they are produced, beside
// the run's record (rankings.go), so a million-document run holds only
// document ids in memory and a cancelled or interrupted variant keeps the
// rankings it made; forks are discarded unless KeepBranches. At most
// Spec.Concurrency groups run at once; a failing variant is recorded with
// its phase and cause and the others go on; CancelRun and Close cancel.
// GetRun returns a run's record with its status, each variant's phase,
// metrics and rankings (read scope), GetRunStatus the same without
// rankings (for progress displays), ListRuns the runs a caller may read newest first
// without per-query results, and WaitRun polls until a run is done.
// Offline embedders with exact search give identical numbers on rerun
// (pgvector's HNSW and IVFFlat builds are randomized, so ANN variants may
// differ slightly). Each run records its Provenance (fingerprints of the
// corpus, queries and qrels as read, the base seq, k, the measure
// definitions, the machine) and each variant what it ran with
// (VariantProvenance: embedder, chunking, Postgres and pgvector versions,
// index DDL, settings). CompareRuns runs evals.Compare over two recorded
// variants (raw, Holm and Benjamini–Hochberg p per measure, effect
// sizes), adds the regressed queries' top-k changes, warns when the runs
// read different data and refuses different queries unless
// AllowDifferentQueries; SweepPoints gives the recall–QPS points and
// their Pareto front.
//
// # Lexical and hybrid variants
//
// A variant of type VariantLexical retrieves with Postgres full-text
// search on its own fork (lexical.go: a generated tsvector column with a
// GIN index, LexicalSpec's configuration, ranking function,
// normalization and query mode; no embedder) and is a materialization
// like a dense one, in a layout of its own. A variant of type
// VariantHybrid fuses the recorded rankings of a dense and a lexical
// variant of the same run (hybrid.go: Fuse, RRF or weighted score
// fusion, ties by document id) after the forked variants have finished;
// it has no fork, and its rankings are recorded, compared and exported
// like any variant's.
//
// # Materializations
//
// A variant's loaded and indexed fork is kept after its run as a
// Materialization (materialize.go), keyed by content
// (MaterializationKey: the corpus fingerprint of the run's Provenance,
// chunking, embedder as canonical spec with its model id and dims,
// distance, table layout version, index type and build parameters). With
// a RunBranches that is a Materializer (the store's: a snapshot
// "mat.<id>.<ns>" of the fork, taken after a CHECKPOINT, so it outlives
// the fork and its base and a fork of it starts without replaying the
// load) a later variant of any run in the project with the same key
// forks it and goes straight to evaluation: no IDF pass (the fitted IDF
// is stored on the fork, table offshoot_exp_fit), embedding, load or
// index build, and ANN recall's exact top-k is read from what the build
// recorded (control database, "matx/"). Such a variant records
// VariantRun.Materialization (Reused, the run and variant that built
// it); one that builds records what it kept, with a Note when it did not
// keep it or rebuilt because the materialization could not be used. The
// rest of a reused fork is the materialization's base, not the run's.
// Spec reuse "never" (the CLI's --cold) builds from the base and replaces
// the kept materialization of its key unless that one is pinned.
// Materializations are listed, shown, pinned and deleted
// (ListMaterializations, GetMaterialization, PinMaterialization,
// DeleteMaterialization), counted in ProjectUsage, and expire
// Config.MaterializationTTL after their last use (default 7 days) and,
// per project past Config.MaterializationBudget bytes, least recently
// used first; pinned ones never. Expiry runs with the TTL sweeper and
// when a lookup finds one expired; lookups, forks of one, keeps and
// deletions are serialized, so one is never dropped while it is forked.
//
// # Schedules
//
// A Schedule fires its spec on a cron expression (seconds optional,
// "@every 10m" allowed) from a goroutine the Service owns (started by
// Open, stopped by Close). A finished run is compared per variant with
// the schedule's baseline run: a significant drop of Metric at Alpha
// (the p of all variants adjusted together by Correction, Holm by
// default; Gate), or a drop larger than Threshold, is a regression (logged, audited as
// schedule.regression, POSTed to Webhook); otherwise, with AutoAccept,
// the run becomes the baseline. AcceptRun sets it explicitly and
// ScheduleHistory gives every run's metrics.
//
// # Callers, scopes and audit
//
// Every call that needs authority reads its Caller from the context
// (WithCaller); surfaces authenticate bearer tokens with Authenticate. A
// Scope grants admin, or read or write on one project (or all), optionally
// only on branches matching a glob. Write implies read; a READ ONLY query
// needs read, any other query write; keys and the audit log need admin.
// Every mutating call, and every refused one, is recorded in the audit log
// (AuditLog) and logged with slog; queries, explains and migrations with
// their SQL, as text or as its SHA-256 (Config.AuditSQL). Adapters record
// the refusals they make themselves with RecordRefusal. The first key must
// be an admin key, and the last live admin key cannot be revoked while
// other keys are live: either would lock admin out.
//
// Experiment specs read BEIR datasets only from inside Config.DatasetsDir,
// and schedule webhooks reach loopback, link-local, unspecified or
// multicast addresses only when Config.WebhookAllow permits them.
//
// # Masked forks
//
// A project may hold a masking policy (SetMaskPolicy, admin only; the
// model and its SQL are package masking). CreateBranch with Masked forks,
// applies the policy on the fork as the superuser before anyone can
// connect (label LabelMasked pending, then done) and deletes the fork if
// masking fails. A masked Scope (":masked") grants its role only on
// branches whose masking is done and lets its key fork only masked
// branches, so such a key never reads an original value through any call.
//
// # Errors
//
// Errors wrap the sentinels in errors.go (ErrInvalid with a *FieldError
// naming the field, ErrUnauthenticated, ErrForbidden, ErrNotFound,
// ErrConflict, ErrCapacity, ErrUnavailable, ErrQuery with a *QueryError);
// surfaces map them once.
package experiments
