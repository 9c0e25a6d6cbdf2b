package compute

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/offshootdb/offshoot/compute/pg"
)

// Errors returned by this package.
var (
	// ErrBranchNotFound means the volumes know no such project/branch.
	ErrBranchNotFound = errors.New("branch not found")
	// ErrInvalidName means a project or branch name is empty, "." or "..",
	// too long or has control characters.
	ErrInvalidName = errors.New("invalid project or branch name")
	// ErrCapacity means no endpoint could be started because the maximum
	// number of running endpoints or the memory budget is reached and every
	// running endpoint has open connections.
	ErrCapacity = errors.New("too many active branches")
	// ErrStartFailed means Postgres did not become ready; the error carries
	// the last lines of its log.
	ErrStartFailed = errors.New("endpoint failed to start")
	// ErrCrashLoop means the endpoint failed repeatedly and is backing off;
	// the error says when it may be retried and carries the last log lines.
	ErrCrashLoop = errors.New("endpoint is crash-looping")
	// ErrClosed means the Manager is closed (or not open yet).
	ErrClosed = errors.New("compute manager closed")
)

// State is where an endpoint is in its life cycle:
//
//	stopped → starting → running → idle → suspended → stopped
//
// Any Acquire moves stopped, suspended or idle back to running (through
// starting when Postgres must start).
type State string

// The endpoint states.
const (
	// Stopped: no Postgres, volume released. The zero state.
	Stopped State = "stopped"
	// Starting: volume mounted, Postgres starting, not yet answering.
	Starting State = "starting"
	// Running: Postgres answers; connections are open or were recently.
	Running State = "running"
	// Idle: Postgres answers; no connection for IdleAfter.
	Idle State = "idle"
	// Suspended: Postgres stopped (fast shutdown), volume kept mounted.
	Suspended State = "suspended"
)

// States lists every state, in life-cycle order.
var States = []State{Stopped, Starting, Running, Idle, Suspended}

// Timers are the autosuspend timers of an endpoint, all measured from its
// last activity (the moment its last connection closed). A zero field
// means never: with IdleAfter 0 the endpoint stays running, with
// SuspendAfter 0 it stays idle, with StopAfter 0 it stays suspended.
type Timers struct {
	IdleAfter    time.Duration
	SuspendAfter time.Duration
	StopAfter    time.Duration
}

// DefaultTimers are the timers of endpoints without an override.
var DefaultTimers = Timers{IdleAfter: 30 * time.Second, SuspendAfter: 5 * time.Minute, StopAfter: time.Hour}

// Config configures a Manager. Zero fields take the defaults named.
type Config struct {
	// Volumes provides branch data directories (required).
	Volumes Volumes
	// RunDir holds one directory per endpoint with its Unix socket, log and
	// pid file (required). It must be private to one Manager: Open treats
	// every postmaster recorded under it as an orphan of a crashed run.
	RunDir string
	// Timers are the default autosuspend timers; nil means DefaultTimers.
	// Per-branch overrides are set with SetTimers.
	Timers *Timers
	// MaxRunning is the maximum number of endpoints in the starting,
	// running or idle states. Default 16.
	MaxRunning int
	// MemoryBudget bounds MaxRunning further: at most
	// MemoryBudget/EndpointMemory endpoints run. Default 0, no budget.
	MemoryBudget int64
	// EndpointMemory is what one running endpoint is assumed to use, in
	// bytes. Default 256 MiB.
	EndpointMemory int64
	// Settings are -c options for every postmaster, on top of the defaults
	// shared_buffers=128MB, max_connections=100, logging_collector=off,
	// log_destination=stderr (the log is RunDir/<endpoint>/postgres.log) and
	// recovery_init_sync_method=syncfs (see start). Port, socket and
	// listen settings are the Manager's own and cannot be overridden.
	Settings map[string]string
	// TCP makes every endpoint also listen on a free loopback port
	// (127.0.0.1), reported in Status.Port and Lease.Port, for clients that
	// cannot use the Unix socket. Default false: Unix socket only.
	TCP bool
	// LocalAuth is the pg_hba method of connections on the endpoint's
	// private Unix socket: default "trust", for a server that authenticates
	// clients before it connects for them (offshoot serve's proxy) and
	// connects as any role itself. A proxy that passes clients' own
	// authentication through to Postgres sets "scram-sha-256"; the Manager
	// then neither provisions roles nor captures verifiers.
	LocalAuth string
	// TCPAuth is the pg_hba method of TCP connections (Config.TCP):
	// default "scram-sha-256", the role's own password; tests and
	// benchmarks of clusters without passwords use "trust".
	TCPAuth string
	// User and Password are used for the readiness probe. A probe that
	// reaches authentication counts as ready, so a wrong password only
	// loses the final SELECT 1. Default user "postgres".
	User, Password string
	// Verifiers, when set, receives the SCRAM verifiers of a branch's login
	// roles (role → pg_authid.rolpassword, see Verifiers) each time its
	// endpoint has started, and again before a suspend or stop, so the
	// proxy can authenticate clients of a suspended branch without waking
	// it. Called without locks held; it must not call back into the
	// Manager.
	Verifiers func(project, branch string, verifiers map[string]string)
	// StartTimeout bounds one Postgres start (crash recovery included).
	// Default 2 min.
	StartTimeout time.Duration
	// StopTimeout bounds a fast shutdown before it escalates to immediate,
	// and bounds Close. Default 30 s.
	StopTimeout time.Duration
	// CrashBackoff is the wait after the second consecutive failure; it
	// doubles with every further failure up to 64×. Default 1 s.
	CrashBackoff time.Duration
	// Logger receives transitions and failures. Default slog.Default().
	Logger *slog.Logger
}

// Status is the visible state of one endpoint.
type Status struct {
	Project, Branch string
	State           State
	// Since is when the endpoint entered State.
	Since time.Time
	// LastActive is when the last connection opened or closed.
	LastActive time.Time
	// Connections is the number of open leases (proxy connections).
	Connections int
	// Wakes counts starts from suspended or stopped.
	Wakes int64
	// Crashes counts postmasters that died or failed to start.
	Crashes int64
	// ComputeSeconds is the time Postgres has been up (starting, running
	// or idle).
	ComputeSeconds float64
	// Pid is the postmaster's pid, 0 when none runs.
	Pid int
	// Socket is the path of the endpoint's Unix socket file.
	Socket string
	// Port is the loopback TCP port while Postgres runs with Config.TCP,
	// else 0.
	Port int
	// LastError describes the last failure, with log lines; "" if none.
	LastError string
}

// Manager runs at most one endpoint per branch and moves endpoints through
// their states. All methods are safe for concurrent use.
type Manager struct {
	cfg     Config
	timers  Timers
	log     *slog.Logger
	metrics *metrics

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	poke   chan struct{}
	wg     sync.WaitGroup

	mu        sync.Mutex
	open      bool
	closed    bool
	endpoints map[key]*endpoint
	overrides map[key]Timers
}

type key struct{ project, branch string }

type proc struct {
	pm       *pg.Postmaster
	stopping bool // we asked it to stop; its exit is no crash
	started  time.Time
}

type endpoint struct {
	key
	dir        string // run dir of this endpoint
	state      State
	since      time.Time
	lastActive time.Time
	conns      int
	busy       bool // a start, suspend or stop runs outside m.mu
	changed    chan struct{}
	vol        Volume
	proc       *proc
	wakes      int64
	crashes    int64
	failures   int // consecutive
	lastFail   time.Time
	lastErr    string
	upSince    time.Time
	upAcc      time.Duration
	port       int // names the socket file; the TCP port with Config.TCP
}

// New checks cfg and returns a Manager; call Open before use.
func New(cfg Config) (*Manager, error) {
	if cfg.Volumes == nil {
		return nil, errors.New("compute: Config.Volumes is required")
	}
	if cfg.RunDir == "" {
		return nil, errors.New("compute: Config.RunDir is required")
	}
	t := DefaultTimers
	if cfg.Timers != nil {
		t = *cfg.Timers
	}
	if cfg.MaxRunning <= 0 {
		cfg.MaxRunning = 16
	}
	if cfg.EndpointMemory <= 0 {
		cfg.EndpointMemory = 256 << 20
	}
	if cfg.User == "" {
		cfg.User = "postgres"
	}
	if cfg.LocalAuth == "" {
		cfg.LocalAuth = "trust"
	}
	if cfg.TCPAuth == "" {
		cfg.TCPAuth = "scram-sha-256"
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 2 * time.Minute
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 30 * time.Second
	}
	if cfg.CrashBackoff <= 0 {
		cfg.CrashBackoff = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		cfg: cfg, timers: t, log: cfg.Logger.With("component", "compute"),
		ctx: ctx, cancel: cancel, poke: make(chan struct{}, 1),
		endpoints: map[key]*endpoint{}, overrides: map[key]Timers{},
	}
	m.metrics = newMetrics(m)
	return m, nil
}

// Open creates the run directory, cleans what a crashed previous run left
// (orphaned postmasters recorded under RunDir, stale volume mounts via
// Recoverer) and starts the autosuspend loop.
func (m *Manager) Open(ctx context.Context) error {
	// 0711: endpoint users reach their own directory, list none (Isolation).
	if err := os.MkdirAll(m.cfg.RunDir, 0o711); err != nil {
		return fmt.Errorf("open compute: %w", err)
	}
	if err := os.Chmod(m.cfg.RunDir, 0o711); err != nil {
		return fmt.Errorf("open compute: %w", err)
	}
	if err := m.cleanOrphans(ctx); err != nil {
		return fmt.Errorf("open compute: %w", err)
	}
	if r, ok := m.cfg.Volumes.(Recoverer); ok {
		if err := r.Recover(ctx); err != nil {
			return fmt.Errorf("open compute: recover volumes: %w", err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.open = true
	m.wg.Add(1)
	go m.loop()
	return nil
}

// Close stops every endpoint with a fast shutdown (escalating to immediate
// after StopTimeout), releases every volume and stops the autosuspend
// loop. Acquire then fails with ErrClosed. Close returns within about
// StopTimeout plus a few seconds.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.cancel()
	for _, ep := range m.endpoints {
		m.broadcast(ep)
	}
	m.mu.Unlock()
	m.wg.Wait() // the loop and every transition in flight

	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.StopTimeout)
	defer cancel()
	m.mu.Lock()
	eps := make([]*endpoint, 0, len(m.endpoints))
	for _, ep := range m.endpoints {
		eps = append(eps, ep)
		if ep.proc != nil {
			ep.proc.stopping = true
		}
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(eps))
	for i, ep := range eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ep.proc != nil {
				errs[i] = ep.proc.pm.Stop(ctx, pg.Fast)
				os.Remove(m.pidFile(ep))
			}
			if ep.vol != nil {
				if err := ep.vol.Release(ctx); err != nil {
					errs[i] = errors.Join(errs[i], fmt.Errorf("release %s/%s: %w", ep.project, ep.branch, err))
				}
			}
			m.mu.Lock()
			ep.proc, ep.vol = nil, nil
			m.setState(ep, Stopped, "shutdown")
			m.mu.Unlock()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// SetTimers overrides the timers of one branch (nil removes the override).
func (m *Manager) SetTimers(project, branch string, t *Timers) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := key{project, branch}
	if t == nil {
		delete(m.overrides, k)
	} else {
		m.overrides[k] = *t
	}
	m.kick()
}

func (m *Manager) timersOf(k key) Timers {
	if t, ok := m.overrides[k]; ok {
		return t
	}
	return m.timers
}

// Lease is one user of a running endpoint (a proxy connection or an API
// query). While any lease is held the endpoint counts as active: it is
// neither idled, suspended nor evicted (idle-in-transaction included).
type Lease struct {
	Project, Branch string
	// SocketDir and Port locate the endpoint's Unix socket
	// (.s.PGSQL.<Port>); with Config.TCP, Postgres also listens on
	// 127.0.0.1:Port.
	SocketDir string
	Port      int
	m         *Manager
	ep        *endpoint
	once      sync.Once
}

// Socket is the path of the endpoint's Unix socket file.
func (l *Lease) Socket() string {
	return filepath.Join(l.SocketDir, ".s.PGSQL."+strconv.Itoa(l.Port))
}

// ConnString is a keyword/value connection string for the endpoint's socket.
func (l *Lease) ConnString(user, password, database string) string {
	s := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", l.SocketDir, l.Port, user, database)
	if password != "" {
		s += " password='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(password) + "'"
	}
	return s
}

// Release ends the lease; the endpoint's idle timer starts when its last
// lease is released. Safe to call more than once.
func (l *Lease) Release() {
	l.once.Do(func() {
		l.m.mu.Lock()
		defer l.m.mu.Unlock()
		l.ep.conns--
		l.ep.lastActive = time.Now()
		l.m.kick()
	})
}

// Acquire wakes the endpoint of a branch if needed (mounting its volume and
// starting Postgres, suspending the least recently used idle endpoint when
// capacity is short) and returns a lease once Postgres answers. Concurrent
// Acquires of one branch share one start. ctx bounds the wait of this
// caller only; a start in progress continues for the others.
func (m *Manager) Acquire(ctx context.Context, project, branch string) (*Lease, error) {
	if err := checkName(project); err != nil {
		return nil, err
	}
	if err := checkName(branch); err != nil {
		return nil, err
	}
	k := key{project, branch}
	m.mu.Lock()
	_, known := m.endpoints[k]
	m.mu.Unlock()
	if !known {
		ok, err := m.cfg.Volumes.Exists(ctx, project, branch)
		if err != nil {
			return nil, fmt.Errorf("acquire %s/%s: %w", project, branch, err)
		}
		if !ok {
			return nil, fmt.Errorf("%w: %s/%s", ErrBranchNotFound, project, branch)
		}
	}
	for {
		m.mu.Lock()
		if !m.open || m.closed {
			m.mu.Unlock()
			return nil, ErrClosed
		}
		ep := m.endpoint(k)
		if ep.busy {
			ch := ep.changed
			m.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("acquire %s/%s: %w", project, branch, ctx.Err())
			}
		}
		switch ep.state {
		case Running, Idle:
			if p := ep.proc; p != nil && !p.stopping && !alive(p.pm.Pid()) {
				// Died and not yet noticed by supervise: restart now.
				m.crashedLocked(ep, p)
				m.mu.Unlock()
				continue
			}
			if ep.state == Idle {
				m.setState(ep, Running, "connection")
			}
			l := m.leaseLocked(ep)
			m.mu.Unlock()
			return l, nil
		}
		// Suspended or Stopped: start.
		if wait := m.backoffLocked(ep); wait > 0 {
			err := fmt.Errorf("%w: %s/%s failed %d times in a row, retry in %s; %s", ErrCrashLoop, project, branch, ep.failures, wait.Round(time.Millisecond), ep.lastErr)
			m.mu.Unlock()
			return nil, err
		}
		victim, wait, err := m.makeRoomLocked(ep)
		if err != nil {
			m.mu.Unlock()
			return nil, fmt.Errorf("wake %s/%s: %w", project, branch, err)
		}
		if wait != nil {
			m.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("acquire %s/%s: %w", project, branch, ctx.Err())
			}
		}
		if victim != nil {
			m.beginSuspendLocked(victim)
			m.mu.Unlock()
			m.suspend(victim, "make room for "+project+"/"+branch)
			continue
		}
		from := ep.state
		ep.busy = true
		m.setState(ep, Starting, "wake from "+string(from))
		m.wg.Add(1)
		m.mu.Unlock()
		begin := time.Now()
		err = m.start(ep)
		m.wg.Done()
		m.mu.Lock()
		ep.busy = false
		if err != nil {
			if errors.Is(err, ErrBranchNotFound) {
				m.setState(ep, Stopped, "branch gone")
			} else {
				m.failLocked(ep, err)
			}
			m.broadcast(ep)
			m.mu.Unlock()
			return nil, fmt.Errorf("wake %s/%s: %w", project, branch, err)
		}
		ep.wakes++
		m.setState(ep, Running, "ready")
		m.metrics.wake.WithLabelValues(string(from)).Observe(time.Since(begin).Seconds())
		l := m.leaseLocked(ep)
		m.broadcast(ep)
		m.mu.Unlock()
		return l, nil
	}
}

func (m *Manager) leaseLocked(ep *endpoint) *Lease {
	ep.conns++
	ep.lastActive = time.Now()
	return &Lease{Project: ep.project, Branch: ep.branch, SocketDir: m.socketDir(ep), Port: ep.port, m: m, ep: ep}
}

// endpoint returns the endpoint of k, creating it stopped. m.mu held.
func (m *Manager) endpoint(k key) *endpoint {
	ep := m.endpoints[k]
	if ep == nil {
		sum := sha256.Sum256([]byte(k.project + "\x00" + k.branch))
		now := time.Now()
		ep = &endpoint{key: k, dir: filepath.Join(m.cfg.RunDir, hex.EncodeToString(sum[:8])),
			state: Stopped, since: now, lastActive: now, changed: make(chan struct{}), port: 5432}
		m.endpoints[k] = ep
	}
	return ep
}

func (m *Manager) socketDir(ep *endpoint) string { return filepath.Join(ep.dir, "sock") }
func (m *Manager) pidFile(ep *endpoint) string   { return filepath.Join(ep.dir, "postmaster.json") }
func (m *Manager) logFile(ep *endpoint) string   { return filepath.Join(ep.dir, "postgres.log") }

// setState records a transition. m.mu held.
func (m *Manager) setState(ep *endpoint, s State, reason string) {
	if ep.state == s {
		return
	}
	now := time.Now()
	up := func(s State) bool { return s == Starting || s == Running || s == Idle }
	if up(s) && !up(ep.state) {
		ep.upSince = now
	}
	if !up(s) && up(ep.state) {
		ep.upAcc += now.Sub(ep.upSince)
		ep.upSince = time.Time{}
	}
	m.log.Info("endpoint transition", "project", ep.project, "branch", ep.branch, "from", ep.state, "to", s, "reason", reason, "after", now.Sub(ep.since).Round(time.Millisecond))
	m.metrics.transitions.WithLabelValues(string(ep.state), string(s)).Inc()
	ep.state, ep.since = s, now
	m.kick()
}

// broadcast wakes everyone waiting for ep to change. m.mu held.
func (m *Manager) broadcast(ep *endpoint) {
	close(ep.changed)
	ep.changed = make(chan struct{})
}

// kick wakes the autosuspend loop to recompute its deadline.
func (m *Manager) kick() {
	select {
	case m.poke <- struct{}{}:
	default:
	}
}

func (m *Manager) backoffLocked(ep *endpoint) time.Duration {
	if ep.failures < 2 {
		return 0
	}
	d := m.cfg.CrashBackoff << min(ep.failures-2, 6)
	return time.Until(ep.lastFail.Add(d))
}

// failLocked records a failed start or a crash. m.mu held.
func (m *Manager) failLocked(ep *endpoint, err error) {
	ep.crashes++
	ep.failures++
	ep.lastFail = time.Now()
	ep.lastErr = err.Error()
	m.metrics.crashes.Inc()
	m.log.Error("endpoint failed", "project", ep.project, "branch", ep.branch, "consecutive", ep.failures, "err", err)
	if ep.vol != nil {
		m.setState(ep, Suspended, "failure")
	} else {
		m.setState(ep, Stopped, "failure")
	}
}

func (m *Manager) running() int {
	n := 0
	for _, ep := range m.endpoints {
		if ep.state == Starting || ep.state == Running || ep.state == Idle {
			n++
		}
	}
	return n
}

// makeRoomLocked decides whether ep may start: nil results mean yes; a
// victim is to be suspended first; wait means another suspend frees room
// soon. m.mu held.
func (m *Manager) makeRoomLocked(ep *endpoint) (victim *endpoint, wait <-chan struct{}, err error) {
	limit := m.cfg.MaxRunning
	if m.cfg.MemoryBudget > 0 {
		limit = min(limit, int(m.cfg.MemoryBudget/m.cfg.EndpointMemory))
	}
	n := m.running()
	if n < limit {
		return nil, nil, nil
	}
	for _, o := range m.endpoints {
		if o == ep || (o.state != Running && o.state != Idle) {
			continue
		}
		if o.busy {
			return nil, o.changed, nil // being suspended already
		}
		if o.conns == 0 && (victim == nil || o.lastActive.Before(victim.lastActive)) {
			victim = o
		}
	}
	if victim != nil {
		return victim, nil, nil
	}
	if limit < 1 {
		return nil, nil, fmt.Errorf("%w: the memory budget of %d MiB holds no endpoint of %d MiB; raise the memory budget", ErrCapacity, m.cfg.MemoryBudget>>20, m.cfg.EndpointMemory>>20)
	}
	return nil, nil, fmt.Errorf("%w: all %d running endpoints have open connections; close connections to other branches or raise the limit of running endpoints", ErrCapacity, n)
}

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
	settings := map[string]string{"shared_buffers": "128MB", "max_connections": "100",
		"logging_collector": "off", "log_destination": "stderr", "recovery_init_sync_method": "syncfs",
		"hba_file": hba, "unix_socket_permissions": "0700"}
	for k, v := range m.cfg.Settings {
		switch k {
		case "port", "unix_socket_directories", "listen_addresses", "hba_file", "unix_socket_permissions":
			// the Manager's own: the proxy must find the endpoint
		default:
			settings[k] = v
		}
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
	probe, err := m.waitAccepting(ctx, pm)
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
	if err := m.provision(ctx, ep, pm, probe); err != nil {
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
// new one: a second connection would cost every wake a backend start.
func (m *Manager) provision(ctx context.Context, ep *endpoint, pm *pg.Postmaster, conn *pgx.Conn) error {
	if conn == nil {
		var err error
		if conn, err = pgx.Connect(ctx, pm.ConnString(RoleSuperuser, "", "postgres")); err != nil {
			return err
		}
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := EnsureRoles(ctx, conn); err != nil {
		return err
	}
	// A pgvector upgraded under existing branches (scripts/setup) reaches
	// their databases here, once per lineage (see UpdateVector).
	updated, err := UpdateVector(ctx, conn, func(db string) string { return pm.ConnString(RoleSuperuser, "", db) }, pm.Options().DataDir)
	if len(updated) > 0 {
		m.log.Info("updated the vector extension", "project", ep.project, "branch", ep.branch, "databases", updated)
	}
	if err != nil {
		m.log.Error("update the vector extension; run ALTER EXTENSION vector UPDATE in each database", "project", ep.project, "branch", ep.branch, "err", err)
	}
	return m.reportVerifiers(ctx, ep, conn)
}

// captureVerifiers reports the verifiers of a running endpoint before it
// stops (roles created or changed in the session).
func (m *Manager) captureVerifiers(ep *endpoint, pm *pg.Postmaster) {
	if m.cfg.Verifiers == nil {
		return
	}
	ctx, cancel := context.WithTimeout(m.ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pm.ConnString(RoleSuperuser, "", "postgres"))
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
	cs := pm.ConnString(m.cfg.User, m.cfg.Password, "postgres")
	pidFile := filepath.Join(pm.Options().DataDir, "postmaster.pid")
	const tick = 2 * time.Millisecond
	var err error
	lastProbe := time.Time{}
	for {
		if pidFileReady(pidFile) || time.Since(lastProbe) >= time.Second {
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

// pidFileReady reports whether postmaster.pid's status line (the 8th) says
// the server accepts connections.
func pidFileReady(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	lines := strings.Split(string(b), "\n")
	return len(lines) > 7 && strings.TrimSpace(lines[7]) == "ready"
}

// supervise notices a postmaster that exits without being asked to.
func (m *Manager) supervise(ep *endpoint, p *proc) {
	defer m.wg.Done()
	select {
	case <-p.pm.Done():
	case <-m.ctx.Done():
		// Close stops it; wait no longer here so Close can proceed.
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.crashedLocked(ep, p)
}

// crashedLocked handles the unrequested death of p, ep's postmaster. m.mu
// held.
func (m *Manager) crashedLocked(ep *endpoint, p *proc) {
	if p.stopping || ep.proc != p {
		return
	}
	// Backends of a dead postmaster exit on their own; the next start
	// makes sure (clearStaleLock).
	os.Remove(m.pidFile(ep))
	ep.proc = nil
	if time.Since(p.started) > time.Minute {
		ep.failures = 0 // a long run before the crash is no loop
	}
	if ep.busy {
		return // start in progress: it sees the exit and reports
	}
	m.failLocked(ep, fmt.Errorf("postmaster %d died: %v; last log lines:\n%s", p.pm.Pid(), p.pm.ExitErr(), pg.LastLines(m.logFile(ep), 10)))
	m.broadcast(ep)
}

// killCluster kills every process left of a dead postmaster's cluster
// (backends call setsid, so its process group does not reach them; their
// working directory is PGDATA) and waits until they are gone: they hold
// the shared memory a new postmaster needs.
func killCluster(ctx context.Context, dataDir string) error {
	for {
		left := false
		dirs, _ := os.ReadDir("/proc")
		for _, d := range dirs {
			pid, err := strconv.Atoi(d.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			if cwd, err := os.Readlink("/proc/" + d.Name() + "/cwd"); err != nil || cwd != dataDir || !alive(pid) {
				continue
			}
			left = true
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if !left {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for processes of a dead postmaster in %s: %w", dataDir, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// beginSuspendLocked marks ep (running or idle, not busy) as being
// suspended. m.mu held.
func (m *Manager) beginSuspendLocked(ep *endpoint) {
	ep.busy = true
	if ep.proc != nil {
		ep.proc.stopping = true
	}
	m.wg.Add(1)
}

// suspend stops Postgres of ep (marked by beginSuspendLocked) with a fast
// shutdown and keeps the volume.
func (m *Manager) suspend(ep *endpoint, reason string) { m.stopProc(ep, reason, pg.Fast) }

// stopProc stops Postgres of ep (marked by beginSuspendLocked) in mode and
// keeps the volume.
func (m *Manager) stopProc(ep *endpoint, reason string, mode pg.StopMode) {
	defer m.wg.Done()
	m.mu.Lock()
	p := ep.proc
	m.mu.Unlock()
	if p != nil {
		if mode != pg.Immediate && m.cfg.LocalAuth == "trust" {
			m.captureVerifiers(ep, p.pm)
		}
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.StopTimeout)
		if err := p.pm.Stop(ctx, mode); err != nil {
			m.log.Warn("suspend", "project", ep.project, "branch", ep.branch, "err", err)
		}
		cancel()
		os.Remove(m.pidFile(ep))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ep.proc = nil
	ep.busy = false
	ep.failures = 0
	m.setState(ep, Suspended, reason)
	m.broadcast(ep)
}

// release releases the volume of a suspended ep marked busy.
func (m *Manager) release(ep *endpoint, reason string) {
	defer m.wg.Done()
	m.mu.Lock()
	vol := ep.vol
	m.mu.Unlock()
	var err error
	if vol != nil {
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.StopTimeout)
		err = vol.Release(ctx)
		cancel()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ep.busy = false
	if err != nil {
		ep.lastErr = fmt.Sprintf("release volume: %v", err)
		m.log.Error("release volume", "project", ep.project, "branch", ep.branch, "err", err)
	} else {
		ep.vol = nil
		m.setState(ep, Stopped, reason)
	}
	m.broadcast(ep)
}

// Suspend suspends a branch's endpoint now (fast shutdown: open
// connections are closed). A stopped or suspended endpoint is left as is.
func (m *Manager) Suspend(ctx context.Context, project, branch string) error {
	return m.transition(ctx, key{project, branch}, Suspended, pg.Fast)
}

// Stop stops a branch's endpoint now and releases its volume.
func (m *Manager) Stop(ctx context.Context, project, branch string) error {
	return m.transition(ctx, key{project, branch}, Stopped, pg.Fast)
}

// Discard is Stop for a branch about to be deleted: Postgres gets an
// immediate shutdown, which skips the shutdown checkpoint (the pages it
// would write are never read again). Should the branch survive after
// all, its next start runs ordinary crash recovery: nothing committed is
// lost.
func (m *Manager) Discard(ctx context.Context, project, branch string) error {
	return m.transition(ctx, key{project, branch}, Stopped, pg.Immediate)
}

// transition moves a branch's endpoint to Suspended or Stopped, stopping
// a running Postgres in mode.
func (m *Manager) transition(ctx context.Context, k key, to State, mode pg.StopMode) error {
	for {
		m.mu.Lock()
		if !m.open || m.closed {
			m.mu.Unlock()
			return ErrClosed
		}
		ep, ok := m.endpoints[k]
		if !ok {
			m.mu.Unlock()
			return nil
		}
		if ep.busy {
			ch := ep.changed
			m.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		switch {
		case ep.state == Running || ep.state == Idle:
			m.beginSuspendLocked(ep)
			m.mu.Unlock()
			m.stopProc(ep, "requested", mode)
			if to == Suspended {
				return nil
			}
		case ep.state == Suspended && to == Stopped:
			ep.busy = true
			m.wg.Add(1)
			m.mu.Unlock()
			m.release(ep, "requested")
			return nil
		default:
			m.mu.Unlock()
			return nil
		}
	}
}

// Status returns the state of one branch's endpoint (stopped if never
// used).
func (m *Manager) Status(project, branch string) Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	ep, ok := m.endpoints[key{project, branch}]
	if !ok {
		return Status{Project: project, Branch: branch, State: Stopped}
	}
	return m.statusLocked(ep)
}

// List returns the status of every endpoint the Manager knows, sorted by
// project and branch.
func (m *Manager) List() []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Status, 0, len(m.endpoints))
	for _, ep := range m.endpoints {
		out = append(out, m.statusLocked(ep))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Project != out[j].Project {
			return out[i].Project < out[j].Project
		}
		return out[i].Branch < out[j].Branch
	})
	return out
}

func (m *Manager) statusLocked(ep *endpoint) Status {
	up := ep.upAcc
	if !ep.upSince.IsZero() {
		up += time.Since(ep.upSince)
	}
	s := Status{Project: ep.project, Branch: ep.branch, State: ep.state, Since: ep.since, LastActive: ep.lastActive,
		Connections: ep.conns, Wakes: ep.wakes, Crashes: ep.crashes, ComputeSeconds: up.Seconds(),
		Socket: filepath.Join(m.socketDir(ep), ".s.PGSQL."+strconv.Itoa(ep.port)), LastError: ep.lastErr}
	if m.cfg.TCP && ep.proc != nil {
		s.Port = ep.port
	}
	if ep.proc != nil {
		s.Pid = ep.proc.pm.Pid()
	}
	return s
}

// loop runs the autosuspend timers until Close.
func (m *Manager) loop() {
	defer m.wg.Done()
	for {
		next := m.tick(time.Now())
		t := time.NewTimer(time.Until(next))
		select {
		case <-m.ctx.Done():
			t.Stop()
			return
		case <-m.poke:
		case <-t.C:
		}
		t.Stop()
	}
}

// tick applies due timers and returns when it next needs to run.
func (m *Manager) tick(now time.Time) time.Time {
	next := now.Add(time.Minute)
	due := func(d time.Duration, last time.Time) bool {
		if d <= 0 {
			return false
		}
		at := last.Add(d)
		if !now.Before(at) {
			return true
		}
		if at.Before(next) {
			next = at
		}
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return next
	}
	for _, ep := range m.endpoints {
		if ep.busy || ep.conns > 0 {
			continue
		}
		t := m.timersOf(ep.key)
		switch ep.state {
		case Running:
			if due(t.IdleAfter, ep.lastActive) {
				m.setState(ep, Idle, fmt.Sprintf("no connection for %s", t.IdleAfter))
				due(t.SuspendAfter, ep.lastActive) // schedule the next step
			}
		case Idle:
			if due(t.SuspendAfter, ep.lastActive) {
				m.beginSuspendLocked(ep)
				go m.suspend(ep, fmt.Sprintf("no connection for %s", t.SuspendAfter))
			}
		case Suspended:
			if due(t.StopAfter, ep.lastActive) {
				ep.busy = true
				m.wg.Add(1)
				go m.release(ep, fmt.Sprintf("suspended, no connection for %s", t.StopAfter))
			}
		}
	}
	return next
}

// pidRecord is the pid file of one endpoint under RunDir.
type pidRecord struct {
	Pid     int    `json:"pid"`
	DataDir string `json:"data_dir"`
	Project string `json:"project"`
	Branch  string `json:"branch"`
}

func writePidFile(path string, r pidRecord) error {
	b, _ := json.Marshal(r)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// cleanOrphans stops every postmaster recorded under RunDir (left by a
// crashed run) and removes the records.
func (m *Manager) cleanOrphans(ctx context.Context) error {
	files, err := filepath.Glob(filepath.Join(m.cfg.RunDir, "*", "postmaster.json"))
	if err != nil {
		return err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var r pidRecord
		if err := json.Unmarshal(b, &r); err != nil || r.Pid <= 1 {
			m.log.Warn("removing unreadable pid file", "file", f)
			os.Remove(f)
			continue
		}
		if isPostmaster(r.Pid, r.DataDir) {
			m.log.Warn("stopping orphaned postmaster", "pid", r.Pid, "project", r.Project, "branch", r.Branch, "data_dir", r.DataDir)
			_ = syscall.Kill(-r.Pid, syscall.SIGQUIT) // immediate shutdown of its process group
			deadline := time.Now().Add(5 * time.Second)
			for alive(r.Pid) && time.Now().Before(deadline) && ctx.Err() == nil {
				time.Sleep(20 * time.Millisecond)
			}
			_ = syscall.Kill(-r.Pid, syscall.SIGKILL)
			for alive(r.Pid) && ctx.Err() == nil {
				time.Sleep(10 * time.Millisecond)
			}
		}
		// The dead postmaster may linger as a zombie until init reaps it,
		// and Postgres refuses a socket lock file whose pid still answers
		// kill(pid, 0): remove its socket and lock file now.
		if socks, _ := filepath.Glob(filepath.Join(filepath.Dir(f), "*", ".s.PGSQL.*")); len(socks) > 0 {
			for _, sf := range socks {
				os.Remove(sf)
			}
		}
		os.Remove(f)
	}
	return ctx.Err()
}

// alive reports whether pid runs (zombies count as dead).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// state is the field after "(comm)".
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

// isPostmaster reports whether pid is a live postgres serving dataDir.
func isPostmaster(pid int, dataDir string) bool {
	if !alive(pid) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(b), "\x00")
	if len(args) == 0 || filepath.Base(args[0]) != "postgres" {
		return false
	}
	for i, a := range args {
		if a == "-D" && i+1 < len(args) && args[i+1] == dataDir {
			return true
		}
	}
	return false
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
