package compute

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

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
	// MemoryBudget bounds MaxRunning further: the running endpoints'
	// assumed memory (EndpointMemory each, plus shared_buffers over the
	// default 128MB) stays within it. Default 0, no budget.
	MemoryBudget int64
	// EndpointMemory is what one running endpoint is assumed to use, in
	// bytes. Default 256 MiB.
	EndpointMemory int64
	// Settings are -c options for every postmaster, on top of the defaults
	// shared_buffers=128MB, max_connections=100, logging_collector=off,
	// log_destination=stderr (the log is RunDir/<endpoint>/postgres.log),
	// recovery_init_sync_method=syncfs and wal_recycle=off (see start).
	// Port, socket and
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
	// endpoint has started (a second later when the start needed no
	// provisioning, unless it stops first), and again before a suspend or
	// stop, so the
	// proxy can authenticate clients of a suspended branch without waking
	// it. Called without locks held; it must not call back into the
	// Manager.
	Verifiers func(project, branch string, verifiers map[string]string)
	// Standby, when set, is asked before every start whether the branch is
	// a replica: a non-nil Standby starts it as a hot standby following
	// that primary (see standby.go); nil starts it as an ordinary server,
	// ending a recovery its data directory was left in. An error fails the
	// start. Called without locks held; it must not call back into the
	// Manager.
	Standby func(project, branch string) (*Standby, error)
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
	settings  map[key]map[string]string // per-branch postmaster settings (SetSettings)
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
		endpoints: map[key]*endpoint{}, overrides: map[key]Timers{}, settings: map[key]map[string]string{},
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

// SweepVolumes lets the volumes drop what they keep for project's
// branches that are gone (Sweeper); the caller deleted some.
func (m *Manager) SweepVolumes(ctx context.Context, project string) error {
	if sw, ok := m.cfg.Volumes.(Sweeper); ok {
		return sw.Sweep(ctx, project)
	}
	return nil
}

// SetSettings sets postmaster settings of one branch's endpoint on top of
// Config.Settings, from its next start on (nil removes them): the
// experiment service gives its run forks shared_buffers that hold their
// index. The Manager's own settings (port, socket, listen and hba) cannot
// be set, and a shared_buffers above the default also counts against
// Config.MemoryBudget (memoryOf).
func (m *Manager) SetSettings(project, branch string, settings map[string]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := key{project, branch}
	if settings == nil {
		delete(m.settings, k)
		return
	}
	m.settings[k] = maps.Clone(settings)
}

// Settings returns the postmaster settings SetSettings gave one branch's
// endpoint (a copy; nil when none).
func (m *Manager) Settings(project, branch string) map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.settings[key{project, branch}])
}

// MaxSharedBuffers is the largest shared_buffers (bytes) one endpoint can
// be given with SetSettings and still start within Config.MemoryBudget;
// math.MaxInt64 without a budget.
func (m *Manager) MaxSharedBuffers() int64 {
	if m.cfg.MemoryBudget <= 0 {
		return math.MaxInt64
	}
	return max(m.cfg.MemoryBudget-m.cfg.EndpointMemory+defaultSharedBuffers, 0)
}

// SharedBuffers is the shared_buffers (bytes) of endpoints without their
// own (SetSettings): Config.Settings' or the default 128MB.
func (m *Manager) SharedBuffers() int64 {
	if n, err := pgMemory(m.cfg.Settings["shared_buffers"]); err == nil {
		return n
	}
	return defaultSharedBuffers
}

// memoryOf is what ep is assumed to use running: Config.EndpointMemory,
// plus what its shared_buffers (Config.Settings, then SetSettings) adds
// over the default 128MB. m.mu held.
func (m *Manager) memoryOf(ep *endpoint) int64 {
	sb := m.cfg.Settings["shared_buffers"]
	if v, ok := m.settings[ep.key]["shared_buffers"]; ok {
		sb = v
	}
	n, err := pgMemory(sb)
	if err != nil || n <= defaultSharedBuffers {
		return m.cfg.EndpointMemory
	}
	return m.cfg.EndpointMemory + n - defaultSharedBuffers
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
		s += " password=" + QuoteConnValue(password)
	}
	return s
}

// DataDir is the endpoint's PGDATA, its mounted volume, valid while the
// lease is held.
func (l *Lease) DataDir() string {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	if l.ep.vol == nil {
		return ""
	}
	return l.ep.vol.Dir()
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

// running returns how many endpoints are starting, running or idle and
// the memory they are assumed to use (memoryOf). m.mu held.
func (m *Manager) running() (n int, mem int64) {
	for _, ep := range m.endpoints {
		if ep.state == Starting || ep.state == Running || ep.state == Idle {
			n++
			mem += m.memoryOf(ep)
		}
	}
	return n, mem
}

// makeRoomLocked decides whether ep may start: nil results mean yes; a
// victim is to be suspended first; wait means another suspend frees room
// soon. m.mu held.
func (m *Manager) makeRoomLocked(ep *endpoint) (victim *endpoint, wait <-chan struct{}, err error) {
	n, mem := m.running()
	need := m.memoryOf(ep)
	if m.cfg.MemoryBudget > 0 && need > m.cfg.MemoryBudget {
		return nil, nil, fmt.Errorf("%w: the memory budget of %d MiB holds no endpoint of %d MiB; raise the memory budget", ErrCapacity, m.cfg.MemoryBudget>>20, need>>20)
	}
	if n < m.cfg.MaxRunning && (m.cfg.MemoryBudget <= 0 || mem+need <= m.cfg.MemoryBudget) {
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
	return nil, nil, fmt.Errorf("%w: all %d running endpoints have open connections; close connections to other branches or raise the limit of running endpoints", ErrCapacity, n)
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
