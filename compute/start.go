package compute

// Starting an endpoint's Postgres on its volume, waiting until it accepts
// connections, and provisioning its roles.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/offshootdb/offshoot/compute/pg"
)

// start mounts (when stopped) and starts Postgres for ep, which is busy in
// state Starting.
func (m *Manager) start(ep *endpoint) error {
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.StartTimeout)
	defer cancel()
	if ep.vol == nil {
		vol, err := m.cfg.Volumes.Mount(ctx, ep.project, ep.branch)
		if err != nil {
			return fmt.Errorf("mount: %w", err)
		}
		m.mu.Lock()
		ep.vol = vol
		m.mu.Unlock()
	}
	// Isolation: Postgres runs as the volume's OS user, in a run dir only
	// that user (and root) can enter.
	user, err := endpointUser(ep.vol)
	if err != nil {
		return err
	}
	if err := makeRunDir(ep.dir, user); err != nil {
		return err
	}
	if err := clearStaleLock(ctx, ep.vol.Dir()); err != nil {
		return err
	}
	// Logs go to the endpoint's log file under RunDir, not into PGDATA.
	// Crash recovery, which every fork of a running branch goes through,
	// first makes the data directory durable: with the default (fsync) by
	// opening and fsyncing each of its ~1,000 files, a FUSE round trip or
	// three each; syncfs writes back the mount's dirty pages in one call.
	// On a copy-on-write volume that is as safe: any fsync the recovery's
	// end-of-recovery checkpoint then makes commits everything written
	// through the mount (cowfs' Fsync is mount-wide).
	// Authentication is the Manager's too: hba_file points at a pg_hba.conf
	// in the run dir that trusts the private socket (see hbaConf).
	hba, err := writeHBA(ep.dir, m.cfg.LocalAuth, m.cfg.TCPAuth, user)
	if err != nil {
		return err
	}
	// WAL segments are created, not recycled, as PostgreSQL advises for
	// copy-on-write file systems: a recycled segment keeps the old WAL it
	// held alive in the branch (and in every snapshot of it) until it is
	// overwritten. They are still zero-filled (wal_init_zero stays on): a
	// sparse segment let a branch write past its share of the free-space
	// reserve (TestDiskFullSequence failed 9 runs in 10 with it off).
	// Full-page images are compressed (lz4): the WAL is a branch's file
	// like any other, so every byte of it goes through the mount and is
	// kept by the store (and by every snapshot that holds it), and the
	// first change to each page after a checkpoint logs the whole page.
	// A backend that writes pages itself (a COPY's or a CREATE INDEX's
	// ring of buffers) asks the kernel to write them back every 256 kB
	// (backend_flush_after, off by default): the kernel lets a FUSE mount
	// hold only about 40 MB of dirty pages (strict_limit), so without the
	// hint a bulk load's pages wait until that share fills and the backend
	// then waits on their write-back; with it, the store takes them while
	// the backend goes on (COPY of 1M rows 1.93x native -> 1.81x, medians
	// of 4; docs/benchmarks.md, "The FUSE floor").
	settings := map[string]string{"shared_buffers": strconv.Itoa(defaultSharedBuffers>>20) + "MB", "max_connections": "100",
		"logging_collector": "off", "log_destination": "stderr", "recovery_init_sync_method": "syncfs",
		"wal_recycle": "off", "wal_compression": "lz4", "backend_flush_after": "256kB",
		"hba_file": hba, "unix_socket_permissions": "0700"}
	m.mu.Lock()
	own := m.settings[ep.key]
	m.mu.Unlock()
	for _, set := range []map[string]string{m.cfg.Settings, own} {
		for k, v := range set {
			if !ownSetting(k) {
				settings[k] = v
			}
		}
	}
	sb, err := m.standbyOf(ep)
	if err != nil {
		return err
	}
	standby, err := prepareStandby(sb, ep.dir, ep.vol.Dir(), user)
	if err != nil {
		return err
	}
	for k, v := range standby {
		settings[k] = v
	}
	opts := pg.Options{DataDir: ep.vol.Dir(), SocketDir: m.socketDir(ep), Settings: settings, LogFile: m.logFile(ep), User: user}
	if m.cfg.TCP {
		port, err := freePort()
		if err != nil {
			return fmt.Errorf("pick a loopback port: %w", err)
		}
		opts.Port = port
	}
	m.mu.Lock()
	ep.port = opts.SocketPort()
	m.mu.Unlock()
	pm, err := pg.Start(ctx, opts)
	if err != nil {
		return err
	}
	p := &proc{pm: pm, started: time.Now()}
	m.mu.Lock()
	ep.proc = p
	m.mu.Unlock()
	if err := writePidFile(m.pidFile(ep), pidRecord{Pid: pm.Pid(), DataDir: opts.DataDir, Project: ep.project, Branch: ep.branch}); err != nil {
		m.log.Warn("write pid file", "err", err)
	}
	m.wg.Add(1)
	go m.supervise(ep, p)
	// A cluster already provisioned (its PGDATA says so: every wake after
	// the first of a lineage) needs no query before clients come: it is
	// ready when postmaster.pid says so, as for a native start, and its
	// verifiers are captured in the background.
	fast := sb == nil && m.cfg.LocalAuth == "trust" && m.cfg.User == RoleSuperuser && provisioned(ep.vol.Dir())
	var probe *pgx.Conn
	if fast {
		err = pm.WaitPidReady(ctx)
	} else {
		probe, err = m.waitAccepting(ctx, pm)
	}
	if err != nil {
		m.mu.Lock()
		p.stopping = true
		ep.proc = nil
		m.mu.Unlock()
		sctx, scancel := context.WithTimeout(context.Background(), m.cfg.StopTimeout)
		_ = pm.Stop(sctx, pg.Immediate)
		scancel()
		_ = syscall.Kill(-pm.Pid(), syscall.SIGKILL)
		os.Remove(m.pidFile(ep))
		return fmt.Errorf("%w: %v; last log lines:\n%s", ErrStartFailed, err, pg.LastLines(opts.LogFile, 10))
	}
	if m.cfg.LocalAuth != "trust" || m.cfg.User != RoleSuperuser {
		if probe != nil {
			probe.Close(context.WithoutCancel(ctx))
		}
		if m.cfg.LocalAuth != "trust" {
			return nil
		}
		probe = nil
	}
	if fast {
		if m.cfg.Verifiers != nil {
			m.wg.Add(1)
			go func() {
				defer m.wg.Done()
				// Not while the wake's first clients start their sessions:
				// on two cores the capture's backend, started next to
				// theirs, cost a wake from suspended about 5% at p50 and
				// 8% at p95 (docs/benchmarks.md). A suspend or stop before
				// then captures them anyway.
				select {
				case <-time.After(verifierCaptureDelay):
				case <-pm.Done():
					return
				case <-m.ctx.Done():
					return
				}
				m.captureVerifiers(ep, pm)
			}()
		}
		return nil
	}
	if err := m.provision(ctx, ep, pm, probe, sb != nil); err != nil {
		// The endpoint runs; clients of the built-in roles will see the
		// cause when they connect. Record it rather than fail the start.
		m.log.Error("provision roles", "project", ep.project, "branch", ep.branch, "err", err)
	}
	return nil
}

// provision makes sure the cluster of a freshly started endpoint has the
// built-in roles (EnsureRoles) and the installed pgvector version in every
// database (UpdateVector), and reports its verifiers, on conn (the
// readiness probe's superuser session, which it closes) or, when nil, a
// new one: a second connection would cost every wake a backend start. A
// standby only reports its verifiers: it is read-only, and its roles and
// extensions are its primary's.
func (m *Manager) provision(ctx context.Context, ep *endpoint, pm *pg.Postmaster, conn *pgx.Conn, standby bool) error {
	if conn == nil {
		var err error
		if conn, err = pgx.Connect(ctx, pg.Pinned(pm.ConnString(RoleSuperuser, "", "postgres"))); err != nil {
			return err
		}
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if standby {
		return m.reportVerifiers(ctx, ep, conn)
	}
	key := provisionKey()
	if err := EnsureRoles(ctx, conn); err != nil {
		return err
	}
	// A pgvector upgraded under existing branches (scripts/setup) reaches
	// their databases here, once per lineage (see UpdateVector).
	updated, err := UpdateVector(ctx, conn, func(db string) string { return pg.Pinned(pm.ConnString(RoleSuperuser, "", db)) }, pm.Options().DataDir)
	if len(updated) > 0 {
		m.log.Info("updated the vector extension", "project", ep.project, "branch", ep.branch, "databases", updated)
	}
	if err != nil {
		m.log.Error("update the vector extension; run ALTER EXTENSION vector UPDATE in each database", "project", ep.project, "branch", ep.branch, "err", err)
	} else if err := markProvisioned(pm.Options().DataDir, key); err != nil {
		m.log.Warn("mark provisioned", "project", ep.project, "branch", ep.branch, "err", err)
	}
	return m.reportVerifiers(ctx, ep, conn)
}

// verifierCaptureDelay is how long after a wake without provisioning the
// verifiers are captured in the background: the capture catches what a
// crash or immediate stop kept from the last suspend's capture.
const verifierCaptureDelay = time.Second

// captureVerifiers reports the verifiers of a running endpoint (roles
// created or changed in the session): before it suspends or stops, and a
// while after a wake without provisioning.
func (m *Manager) captureVerifiers(ep *endpoint, pm *pg.Postmaster) {
	if m.cfg.Verifiers == nil {
		return
	}
	ctx, cancel := context.WithTimeout(m.ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.Pinned(pm.ConnString(RoleSuperuser, "", "postgres")))
	if err != nil {
		m.log.Warn("capture verifiers", "project", ep.project, "branch", ep.branch, "err", err)
		return
	}
	defer conn.Close(context.Background())
	if err := m.reportVerifiers(ctx, ep, conn); err != nil {
		m.log.Warn("capture verifiers", "project", ep.project, "branch", ep.branch, "err", err)
	}
}

func (m *Manager) reportVerifiers(ctx context.Context, ep *endpoint, conn *pgx.Conn) error {
	if m.cfg.Verifiers == nil {
		return nil
	}
	v, err := Verifiers(ctx, conn)
	if err != nil {
		return err
	}
	m.cfg.Verifiers(ep.project, ep.branch, v)
	return nil
}

// waitAccepting returns when Postgres accepts connections: a real
// connection completes its startup (ReadyForQuery), or fails with anything
// but "starting up" (like pg_isready: a failed authentication proves a
// working server). Probing is cheap but each probe makes the postmaster
// fork, which slows a start on a busy machine; so it probes only once the
// postmaster.pid status line says "ready" (checked every 2 ms), and once a
// second regardless. It returns the probe's connection when the probe got
// in (the caller closes it), nil when it proved readiness by failing.
func (m *Manager) waitAccepting(ctx context.Context, pm *pg.Postmaster) (*pgx.Conn, error) {
	cs := pg.Pinned(pm.ConnString(m.cfg.User, m.cfg.Password, "postgres"))
	const tick = 2 * time.Millisecond
	var err error
	lastProbe := time.Time{}
	for {
		if pg.PidReady(pm.Options().DataDir) || time.Since(lastProbe) >= time.Second {
			lastProbe = time.Now()
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			var conn *pgx.Conn
			conn, err = pgx.Connect(cctx, cs)
			cancel()
			if err == nil {
				return conn, nil
			}
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code != "57P03" {
				return nil, nil
			}
		}
		select {
		case <-pm.Done():
			return nil, fmt.Errorf("%w: %v", pg.ErrExited, pm.ExitErr())
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for postgres: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(tick):
		}
	}
}

// clearStaleLock prepares dataDir for a start after a crash: when
// postmaster.pid names a live postmaster serving it, that is an error;
// otherwise the leftover processes of the dead one are killed and the lock
// file removed (a zombie pid in it would pass Postgres' own liveness
// check).
func clearStaleLock(ctx context.Context, dataDir string) error {
	f := filepath.Join(dataDir, "postmaster.pid")
	b, err := os.ReadFile(f)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if pid, err := strconv.Atoi(strings.TrimSpace(line)); err == nil && isPostmaster(pid, dataDir) {
		return fmt.Errorf("another postmaster (pid %d) serves %s", pid, dataDir)
	}
	if err := killCluster(ctx, dataDir); err != nil {
		return err
	}
	return os.Remove(f)
}

// freePort finds a free loopback TCP port. Another process may take it
// before Postgres binds it; the start then fails and the next Acquire picks
// again.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
