// Package compute runs one Postgres 15 (with pgvector) per active branch on
// the branch's data directory, and moves it through the endpoint states on
// its own timers. The next connection through the pgwire proxy
// (compute/proxy) wakes it.
//
// # Endpoints
//
// An endpoint is the one read-write Postgres of one branch, identified by
// (project, branch). A Manager owns every endpoint. It gets a branch's
// PGDATA from a Volumes implementation: the copy-on-write store's FUSE mount
// (storage/cowfs) in production, DirVolumes (one plain initdb'd directory per
// branch) without FUSE and in tests. Postgres runs as the `postgres` OS user
// with a private Unix socket directory under the Manager's run directory;
// everything that must not travel with the branch (socket dir, port,
// shared_buffers, max_connections, logging) is passed with -c on the command
// line and never written into PGDATA.
//
// # States
//
//	stopped ──► starting ──► running ──► idle ──► suspended ──► stopped
//	        Acquire      ready      idle_after   suspend_after  stop_after
//
//	Acquire: idle ──► running;  suspended, stopped ──► starting
//
// Stopped: nothing runs, the volume is released. Starting: the volume is
// mounted and Postgres starts; it becomes running once a real connection
// completes its startup (not after a sleep). Running: Postgres answers;
// connections are open, or closed less than IdleAfter ago. Idle: no
// connection for IdleAfter; Postgres still runs, so the next connection is
// immediate. Suspended: after SuspendAfter Postgres is stopped with a fast
// shutdown (a checkpoint; nothing is lost) and the volume stays mounted with
// its caches. Stopped again after StopAfter: the volume is released. All
// three timers count from the last activity and default to 30 s, 5 min and
// 1 h; SetTimers overrides them per branch, where 0 means never.
//
// Activity is counted in leases: Acquire wakes the endpoint if needed and
// returns a Lease, Release ends it. The proxy holds one lease per client
// connection for as long as the connection is open, so a connection that is
// idle in a transaction keeps its endpoint running. Concurrent Acquires of
// one branch share one start.
//
// Every transition is logged (slog), counted
// (offshoot_compute_transitions_total) and visible in Status: state, since
// when, last activity, open connections, wakes, crashes and compute seconds
// (time spent starting, running or idle).
//
// # Capacity
//
// At most MaxRunning endpoints (and at most MemoryBudget/EndpointMemory)
// are starting, running or idle at once. A wake that needs room suspends the
// least recently used endpoint without open connections; when every running
// endpoint has connections, Acquire fails at once with ErrCapacity ("too
// many active branches"), which the proxy turns into SQLSTATE 53300.
//
// # Supervision
//
// A postmaster that exits unasked is noticed (by its wait goroutine, or by
// the next Acquire if that comes first); the endpoint drops to suspended and
// the next Acquire starts it again, after killing leftover backends of the
// dead postmaster (they hold its shared memory) and removing its stale
// postmaster.pid; Postgres' crash recovery does the rest. From the second
// consecutive failure on, starts back off (CrashBackoff, doubling) and
// Acquire fails with ErrCrashLoop carrying the last lines of the Postgres
// log. Each running postmaster is recorded in a pid file under the run
// directory; Open stops the postmasters a crashed previous run left behind
// and lets a Recoverer volume clean its stale mounts before anything else.
// Close stops every endpoint with a fast shutdown (immediate after
// StopTimeout) and then releases every volume.
package compute
