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
// branch) without FUSE and in tests. Postgres runs as its project's OS user
// (see Isolation) with a private Unix socket directory under the Manager's
// run directory; everything that must not travel with the branch (socket
// dir, port, shared_buffers, max_connections, logging) is passed with -c on
// the command line and never written into PGDATA.
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
// At most MaxRunning endpoints are starting, running or idle at once, and
// with a MemoryBudget only as many as it holds: each is assumed to use
// EndpointMemory, plus its shared_buffers beyond the default 128MB (an
// experiment fork's, SetSettings). A wake that needs room suspends the
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
//
// # Isolation
//
// A superuser session can do whatever its server's OS user can: read any
// file it may open (pg_read_file, pg_ls_dir, lo_import), run programs
// (COPY ... TO/FROM PROGRAM), connect to any socket it may reach. So the
// endpoints of different projects run as different OS users, and
// everything of an endpoint is private to its user:
//
//   - OS users: one per project, named "osk_" and 12 hex digits of the
//     SHA-256 of the project name (ProjectUserName), a system account with
//     a group of its own, no home and no login shell, created by root with
//     useradd the first time the project is initialized or mounted
//     (ProjectUser). Postmaster and backends run with that uid and gid and
//     no supplementary groups; the shared memory Postgres creates (SysV,
//     /dev/shm) is 0600, and signals to other users' processes fail. They
//     inherit no FUSE connection of the server (cowfs makes /dev/fuse
//     close-on-exec): whoever holds one reads that mount's writes.
//   - Mounts: StoreVolumes mounts each branch with cowfs'
//     MountOptions.Owner set to that user: every file is presented as the
//     user's and the mount's root with mode 0700, and the kernel checks
//     permission bits (default_permissions), so any other user gets EACCES
//     at the root. The stored owners are not changed and not shown: data
//     directories initialized as `postgres` and forks of them run as any
//     project user. MountDir/<project> is the user's, mode 0700, which
//     hides the names of the project's branches too. InitProject runs
//     initdb and the set-up as the user on a mount private to it.
//   - Run directories: RunDir is mode 0711 (others traverse it, list
//     nothing). Each endpoint's directory is root's with the user's group,
//     mode 0750: Postgres reads the pg_hba.conf the Manager writes there
//     (root's, 0640) but can neither change nor replace it. Its socket
//     directory is the user's, 0700, with unix_socket_permissions 0700,
//     so only the user and root (the proxy) connect; its postgres.log is
//     the user's, 0600.
//
// A superuser session on a branch therefore reaches its own project:
// every mounted branch of it, their sockets and logs (they share the
// user), plus what any unprivileged account reaches (world-readable system
// files, /tmp, the command lines of processes in /proc, which name data
// directories but hold no data). It does not reach another project's data
// files, WAL, mount, run directory, log, socket, shared memory or
// processes: each attempt fails with "Permission denied" (TestIsolation
// tries the files, WAL, run directory, log and socket). With Config.TCP, endpoints also listen on loopback
// ports, which every local user reaches; there the password is the
// boundary (TCPAuth scram-sha-256; "trust" is for tests only).
//
// The boundary is the project, not the branch, on purpose. Only the
// server itself and admin keys get superuser sessions (scoped keys get
// RoleWrite or RoleRead, which run no programs and read no server files;
// see Roles below), and an admin may reach every branch anyway; so a user
// per branch would protect little against anyone who can open a superuser
// session. And agents make
// thousands of branches, while system accounts come from
// SYS_UID_MIN..SYS_UID_MAX of /etc/login.defs (100-999 on Debian), each
// created under the lock of /etc/passwd: at most some 900 projects per
// host, and useradd's error says when the range is used up.
//
// # Roles and authentication
//
// Every cluster has the roles RoleSuperuser, RoleWrite and RoleRead
// (EnsureRoles, at project init and on the first start of an older
// cluster). On every start the Manager also brings the vector extension
// of each database to the installed pgvector's version (UpdateVector: ALTER
// EXTENSION vector UPDATE), once per lineage and version thanks to a marker
// file in PGDATA that forks inherit. Endpoints run with a pg_hba.conf of the Manager's (hba_file on
// the command line; PGDATA's travels with the branch and is not used) that
// trusts the private socket (Config.LocalAuth): the proxy authenticates
// clients with SCRAM against each branch's own credentials before it
// connects for them, so a password of one branch opens no other, and
// nothing wakes for a stranger. The Manager reports the verifiers of the
// roles users create themselves (Config.Verifiers) whenever an endpoint
// starts (a second after a wake without provisioning, so as not to compete
// with its first clients) and before it suspends.
//
// Endpoints whose Volume does not implement UserVolume (DirVolumes, used
// without FUSE and in tests) all run as the `postgres` OS user and are not
// isolated from each other.
package compute
