package experiments

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/compute"
	"github.com/offshootdb/offshoot/experiments/internal/controldb"
	"github.com/offshootdb/offshoot/storage"
	"github.com/offshootdb/offshoot/vectors"
)

// Connector opens connections to the database of a branch. compute
// implements it (waking the branch's endpoint); tests implement it over
// throwaway clusters.
type Connector interface {
	// Conn returns a connection to branch of project, for access, that the
	// caller uses alone until it calls release, exactly once. Errors wrap
	// ErrNotFound for an unknown project or branch, ErrCapacity when no
	// endpoint can be started now and ErrUnavailable when compute failed.
	// Implementations must be safe for concurrent use. The facade leaves no
	// transaction open on a released connection, but session settings a
	// query changes (SET without LOCAL) stay; a pooling connector should
	// reset them.
	Conn(ctx context.Context, project, branch string, access Access) (conn *pgx.Conn, release func(), err error)
}

// Access is what a connection will be used for.
type Access int

const (
	// ReadWrite connections run any statement.
	ReadWrite Access = iota
	// ReadOnly connections serve READ ONLY queries, diffs and SQL
	// datasets. The facade runs them in READ ONLY transactions; the compute
	// connector also connects as compute.RoleRead (pg_read_all_data, no
	// superuser, no server files, no programs), which makes read scope a
	// hard boundary.
	ReadOnly
	// Superuser connections serve the queries of admin callers, as the
	// cluster's bootstrap superuser. ReadWrite connections use
	// compute.RoleWrite, which owns the user's objects but is no superuser.
	Superuser
	// Maintenance connections are the server's own superuser sessions
	// (checkpoints, WAL positions, prewarming): as the bootstrap superuser
	// with the search_path pinned to pg_catalog, pg_temp (pg.Pinned), so
	// that no name in them resolves to an object a user created.
	Maintenance
)

// StaticConnector connects to fixed connection strings, keyed by
// "project/branch". It opens a new connection per call and closes it on
// release, and uses the same role for both kinds of Access. It serves tests
// and setups whose branches are existing servers.
type StaticConnector map[string]string

// Conn implements Connector.
func (m StaticConnector) Conn(ctx context.Context, project, branch string, _ Access) (*pgx.Conn, func(), error) {
	dsn, ok := m[project+"/"+branch]
	if !ok {
		return nil, nil, fmt.Errorf("branch %s of project %s: %w", branch, project, ErrNotFound)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return conn, func() { conn.Close(context.Background()) }, nil
}

// Config configures a Service. Only ControlDir is required.
type Config struct {
	// ControlDir is the directory of the control database (API keys and
	// the audit log), conventionally <data-dir>/control. Required.
	ControlDir string
	// Connector reaches branches. Nil (the default until compute is
	// wired): Query and Diff fail with ErrUnavailable.
	Connector Connector
	// Logger receives audit lines and internal messages. Default slog.Default().
	Logger *slog.Logger
	// MaxQueryTimeout caps QueryRequest.TimeoutMS. Default 5 minutes.
	MaxQueryTimeout time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time

	// Store is the branch store behind projects, branches and snapshots.
	// Nil: those calls fail with ErrUnavailable.
	Store *storage.Store
	// Compute runs the branches' endpoints (state, start/suspend, usage).
	// With Compute and no Connector, the Service connects to branches
	// through compute: a lease on the endpoint and its Unix socket, as the
	// project's superuser.
	Compute *compute.Manager
	// InitDir is where CreateProject mounts a new project's root timeline
	// to run initdb as the project's OS user (compute.ProjectUser); it
	// must be traversable by every user (o+x).
	// Default os.TempDir().
	InitDir string
	// ProxyAddr is the host:port of the pgwire proxy that connection
	// strings point at. Default 127.0.0.1:55432.
	ProxyAddr string
	// ProxySSLMode is the sslmode that connection strings carry: "disable"
	// (the default, for a proxy without TLS), "require", or "verify-full",
	// which needs ProxyRootCert.
	ProxySSLMode string
	// ProxyRootCert is the CA file that verify-full connection strings name
	// as sslrootcert. Default "".
	ProxyRootCert string
	// DefaultProject is the project the proxy assumes when a connection
	// names none, and the one EnsureDefaultProject creates. Default "main".
	DefaultProject string
	// MaxBranches caps the branches of one project (main included); a
	// fork past it fails with ErrCapacity. Default 10000 (measured: list,
	// fork and delete cost the same as with 10); negative: no cap.
	MaxBranches int
	// SweepInterval is the period of the TTL sweeper, which deletes
	// expired unprotected branches. Default 5 s; negative disables it.
	SweepInterval time.Duration
	// SweepBatch bounds the branches one sweep deletes. Default 100.
	SweepBatch int
	// ExpiryWarning is the lead time of the expiry warning: a sweep that
	// finds a branch expiring within min(ExpiryWarning, 10% of its TTL)
	// emits, once per branch and expiry time, an audit entry
	// "branch.expiring" and a structured log line. Default 10 minutes;
	// negative disables the warning.
	ExpiryWarning time.Duration
	// Prices, if set, turns usage into an estimated cost (Usage.Cost and
	// BranchUsage.Cost). Nil: no cost is reported.
	Prices *Prices
	// RunBaseRetention is how long the snapshot that pins a run's base
	// (run-base.*) is kept, so that the run's data can be forked again;
	// the store's GC deletes it afterwards. Default 30 days; negative:
	// forever.
	RunBaseRetention time.Duration
	// MaterializationTTL is how long a materialization (a variant's
	// loaded and indexed fork kept for reuse, see Materialization) is
	// kept after its last use, unless pinned. Default 7 days; negative:
	// forever.
	MaterializationTTL time.Duration
	// MaterializationBudget bounds the bytes one project's
	// materializations hold (their copy-on-write deltas); past it the
	// least recently used unpinned ones are dropped. Default 0: no
	// budget.
	MaterializationBudget int64
	// IncrementalMaxShare is the largest corpus delta (documents added,
	// changed and deleted, as a share of the corpus) that a variant
	// applies to the nearest materialization of its family instead of
	// building cold. Default 0.3; negative: never incremental.
	IncrementalMaxShare float64
	// Branches forks and discards the branches of experiment runs.
	// Default: the Service's own branches when Store is set; otherwise
	// StartRun fails with ErrUnavailable.
	Branches RunBranches
	// Embedders builds the embedders runs use. Default vectors.NewRegistry().
	Embedders *vectors.Registry
	// EmbedCache, if set, caches every embedding runs compute.
	EmbedCache *vectors.Cache
	// DatasetsDir holds BEIR directories, one per subdirectory, that
	// ListDatasets reports. A spec's dataset.beir must resolve (symbolic
	// links followed) to a directory inside it; a relative one is taken
	// relative to it. Default "": no datasets are listed and specs must
	// read their dataset by SQL from the base.
	DatasetsDir string
	// WebhookAllow lists what schedule webhooks may reach although it is
	// loopback, link-local, unspecified or multicast: CIDR prefixes
	// ("127.0.0.0/8"), addresses or host names (matched exactly, case
	// insensitively; every address of an allowed name may be reached).
	// Default none: webhooks reach only other addresses.
	WebhookAllow []string
	// AuditSQL is how audit entries of queries, explains and migrations
	// carry their SQL: "text" (the statements, clipped at 64 KiB) or
	// "hash" ("sha256:<hex>" of the full text, for servers whose SQL may
	// hold secrets). Default "text".
	AuditSQL string
	// IndexMemoryBudget bounds the maintenance_work_mem an experiment's
	// index build is given, in bytes; within it the build gets what the
	// graph is estimated to need (vectors.SizeBuild). Default a quarter of
	// the machine's memory, at most 16 GiB.
	IndexMemoryBudget int64
	// IngestBatch is the number of corpus rows a run holds at once while
	// it chunks, embeds and copies them; memory grows with it, not with
	// the corpus. Default 1024.
	IngestBatch int
}

// Service is the facade. Create it with New, start it with Open, stop it
// with Close. All methods are safe for concurrent use. Calls that need
// authority read the caller from the context (WithCaller); a context
// without one is refused with ErrUnauthenticated.
type Service struct {
	cfg Config
	log *slog.Logger

	mu     sync.RWMutex // guards db and keys; held shared while db is used
	credMu sync.Mutex   // serializes making credentials (get or create)
	db     *controldb.DB
	keys   map[string]storedKey
	lastAu auditClock

	sweepStop, sweepDone chan struct{}           // TTL sweeper; nil when not running
	usageStop, usageDone chan struct{}           // compute usage flusher; nil when not running
	usageMu              sync.Mutex              // guards usageBase and usageSaved
	usageBase            map[string]computeUsage // compute usage earlier runs recorded (computeusage.go)
	usageSaved           map[string]computeUsage // what this run last wrote
	matMu                sync.Mutex              // serializes changes to materializations, and their forks
	warnMu               sync.Mutex
	warned               map[string]time.Time  // "project/branch" → expiry already warned about
	blocked              map[string]sweepBlock // "project/branch" → why the sweeper left it (guarded by warnMu)
	rn                   *runner               // experiment runs and schedules; stopped by Close
	hooks                webhookPolicy         // where webhooks may go
	hookClient           *http.Client          // delivers webhooks under hooks
	replMu               sync.Mutex
	replTasks            map[string]*replTask // replica project → its follower or removal
	creating             map[string]bool      // replica projects CreateReplica is seeding
	// mergeWALLimit is the most WAL since a merge source's last checkpoint
	// the merge reads for its changes; past it, a checkpoint of the source
	// is cheaper (storeBlocks.Prepare). Tests lower it.
	mergeWALLimit uint64
}

// New validates cfg and returns an unopened Service.
func New(cfg Config) (*Service, error) {
	if cfg.ControlDir == "" {
		return nil, fmt.Errorf("config: control dir: %w", invalid("control_dir", "is required"))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxQueryTimeout == 0 {
		cfg.MaxQueryTimeout = 5 * time.Minute
	}
	if cfg.IndexMemoryBudget <= 0 {
		cfg.IndexMemoryBudget = defaultIndexBudget()
	}
	if cfg.IngestBatch <= 0 {
		cfg.IngestBatch = defaultIngestBatch
	}
	if cfg.MaxQueryTimeout < 0 {
		return nil, fmt.Errorf("config: %w", invalid("max_query_timeout", "must be positive"))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.InitDir == "" {
		cfg.InitDir = os.TempDir()
	}
	if cfg.ProxyAddr == "" {
		cfg.ProxyAddr = "127.0.0.1:55432"
	}
	if _, _, err := net.SplitHostPort(cfg.ProxyAddr); err != nil {
		return nil, fmt.Errorf("config: %w", invalid("proxy_addr", "want host:port: %v", err))
	}
	switch cfg.ProxySSLMode {
	case "":
		cfg.ProxySSLMode = "disable"
	case "disable", "require":
	case "verify-full":
		if cfg.ProxyRootCert == "" {
			return nil, fmt.Errorf("config: %w", invalid("proxy_ssl_mode", "verify-full needs a root certificate"))
		}
	default:
		return nil, fmt.Errorf("config: %w", invalid("proxy_ssl_mode", "want disable, require or verify-full, not %q", cfg.ProxySSLMode))
	}
	if cfg.DefaultProject == "" {
		cfg.DefaultProject = "main"
	}
	if cfg.MaxBranches == 0 {
		cfg.MaxBranches = 10000
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = 5 * time.Second
	}
	if cfg.SweepBatch <= 0 {
		cfg.SweepBatch = 100
	}
	if cfg.ExpiryWarning == 0 {
		cfg.ExpiryWarning = 10 * time.Minute
	}
	if cfg.RunBaseRetention == 0 {
		cfg.RunBaseRetention = 30 * 24 * time.Hour
	}
	if cfg.MaterializationTTL == 0 {
		cfg.MaterializationTTL = 7 * 24 * time.Hour
	}
	if cfg.IncrementalMaxShare == 0 {
		cfg.IncrementalMaxShare = 0.3
	}
	if cfg.Prices != nil {
		if err := cfg.Prices.validate(); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	switch cfg.AuditSQL {
	case "":
		cfg.AuditSQL = AuditSQLText
	case AuditSQLText, AuditSQLHash:
	default:
		return nil, fmt.Errorf("config: %w", invalid("audit_sql", "%q: want text or hash", cfg.AuditSQL))
	}
	hooks, err := newWebhookPolicy(cfg.WebhookAllow)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	s := &Service{cfg: cfg, log: cfg.Logger, rn: newRunner(), hooks: hooks, hookClient: hooks.client(), mergeWALLimit: defaultMergeWALLimit}
	if cfg.Connector == nil && cfg.Compute != nil {
		s.cfg.Connector = connectorFunc(s.computeConn)
	}
	if cfg.Branches == nil && cfg.Store != nil {
		s.cfg.Branches = storeBranches{s}
	}
	return s, nil
}

// Open opens the control database and loads the API keys.
func (s *Service) Open(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db != nil {
		return errors.New("open: already open")
	}
	db, err := controldb.Open(s.cfg.ControlDir, s.log)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	keys, err := loadKeys(db)
	if err != nil {
		db.Close()
		return fmt.Errorf("open: %w", err)
	}
	usage, err := loadComputeUsage(db)
	if err != nil {
		db.Close()
		return fmt.Errorf("open: %w", err)
	}
	s.db, s.keys = db, keys
	s.usageMu.Lock()
	s.usageBase, s.usageSaved = usage, map[string]computeUsage{}
	s.usageMu.Unlock()
	if s.cfg.Compute != nil && s.cfg.Store != nil {
		s.usageStop, s.usageDone = make(chan struct{}), make(chan struct{})
		go s.computeUsageFlusher(s.usageStop, s.usageDone)
	}
	if s.cfg.Store != nil && s.cfg.SweepInterval > 0 {
		s.sweepStop, s.sweepDone = make(chan struct{}), make(chan struct{})
		go s.sweeper(s.sweepStop, s.sweepDone)
	}
	stale, err := markInterrupted(db, s.cfg.Now())
	if err != nil {
		s.log.Error("open: mark interrupted runs", slog.String("err", err.Error()))
	}
	s.discardInterrupted(stale)
	s.startScheduler()
	return nil
}

// Close interrupts runs in flight and waits for them (they are marked
// StatusInterrupted and their forks discarded), stops the scheduler and
// closes the control database; calls made afterwards fail with
// ErrUnavailable. It waits for calls that are using the database. A
// closed Service cannot start runs again.
func (s *Service) Close() error {
	s.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	return err
}

// Stop ends the service's background work: it interrupts runs in flight
// and waits for them (they are marked StatusInterrupted and their forks
// discarded), stops following replicas, the scheduler and the TTL
// sweeper, and records compute usage (computeusage.go). Calls still work (the control database stays open) until
// Close, which calls Stop first. Idempotent.
func (s *Service) Stop() {
	s.rn.shutdown()
	s.unfollowAll()
	s.mu.Lock()
	stop, done := s.sweepStop, s.sweepDone
	s.sweepStop, s.sweepDone = nil, nil
	ustop, udone := s.usageStop, s.usageDone
	s.usageStop, s.usageDone = nil, nil
	s.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
	if ustop != nil {
		close(ustop)
		<-udone
	}
	// Every call, not only the first: Close after compute has shut its
	// endpoints down records their last seconds.
	if err := s.flushComputeUsage(); err != nil && !errors.Is(err, ErrUnavailable) {
		s.log.Warn("stop: compute usage", slog.String("err", err.Error()))
	}
}

// Ready reports whether the service can serve calls: nil once Open
// succeeded and until Close.
func (s *Service) Ready() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return fmt.Errorf("control db not open: %w", ErrUnavailable)
	}
	return nil
}

// CheckpointControl writes a consistent copy of the control database
// (projects, branches' records, snapshots' names, keys, audit, runs) with
// every write made before the call into dir, which must not exist. The
// object storage tier uploads it.
func (s *Service) CheckpointControl(dir string) error {
	return s.withDB(func(db *controldb.DB) error { return db.Checkpoint(dir) })
}

// ControlVersion returns a number that changes whenever the control
// database commits a write (objstore.Source.Version); 0 once it is closed.
func (s *Service) ControlVersion() uint64 {
	var v uint64
	_ = s.withDB(func(db *controldb.DB) error { v = db.Version(); return nil })
	return v
}

// withDB runs fn with the open database under the shared lock.
func (s *Service) withDB(fn func(db *controldb.DB) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return fmt.Errorf("control db closed: %w", ErrUnavailable)
	}
	return fn(s.db)
}

// validName checks a project or branch name: non-empty, at most 255
// bytes, printable, no leading or trailing slash.
func validName(field, name string) error {
	if name == "" {
		return invalid(field, "is required")
	}
	if len(name) > 255 {
		return invalid(field, "longer than 255 bytes")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return invalid(field, "contains a control character")
		}
	}
	if name[0] == '/' || name[len(name)-1] == '/' {
		return invalid(field, "must not start or end with /")
	}
	if u, err := url.PathUnescape(name); err != nil || u != name {
		return invalid(field, "must not contain %%-escapes")
	}
	return nil
}

// sslParams is the TLS part of the query of connection strings through
// the proxy (Config.ProxySSLMode, Config.ProxyRootCert).
func (s *Service) sslParams() string {
	q := "sslmode=" + s.cfg.ProxySSLMode
	if s.cfg.ProxySSLMode == "verify-full" {
		q += "&sslrootcert=" + strings.ReplaceAll(url.QueryEscape(s.cfg.ProxyRootCert), "+", "%20") // libpq reads + literally
	}
	return q
}
