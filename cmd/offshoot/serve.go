package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/offshootdb/offshoot/agentapi"
	"github.com/offshootdb/offshoot/cmd/offshoot/internal/servetls"
	"github.com/offshootdb/offshoot/compute"
	"github.com/offshootdb/offshoot/compute/proxy"
	"github.com/offshootdb/offshoot/experiments"
	"github.com/offshootdb/offshoot/mcp"
	"github.com/offshootdb/offshoot/storage"
	"github.com/offshootdb/offshoot/storage/cowfs"
	"github.com/offshootdb/offshoot/storage/objstore"
	"github.com/offshootdb/offshoot/vectors"
)

// serveOptions are the serve flags beyond the shared configuration.
type serveOptions struct {
	runDir         string
	addrFile       string
	maxBranches    int
	maxEndpoints   int
	sweepInterval  time.Duration
	expiryWarning  time.Duration
	runBaseKeep    time.Duration
	matTTL         time.Duration
	matBudget      int64
	timers         compute.Timers
	stopTimeout    time.Duration
	requestTimeout time.Duration
	tlsCert        string   // PEM certificate (chain) of both listeners; with tlsKey
	tlsKey         string   // its key
	tlsHosts       []string // extra names of the generated server certificate
	insecurePlain  bool     // serve plain text to non-loopback peers too
}

func init() {
	subcommands = append(subcommands, func(a *app) *cobra.Command {
		o := serveOptions{timers: compute.DefaultTimers}
		cmd := &cobra.Command{
			Use:   "serve",
			Short: "Run the offshoot server (HTTP API, pgwire proxy, computes)",
			Long: `serve opens the branch store under the data dir, the endpoint manager with
its copy-on-write FUSE volumes, the pgwire proxy and the HTTP API. On an empty
data dir it first creates the project "main" (initdb + pgvector). SIGINT or
SIGTERM stops it cleanly: endpoints get a fast shutdown, mounts are released
and the store is closed.`,
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				return a.serve(ctx, o)
			},
		}
		addAddrFlags(cmd, a)
		addServerFlags(cmd, a)
		f := cmd.Flags()
		f.StringVar(&o.runDir, "run-dir", "", "mount points, sockets and logs of endpoints; the endpoints' OS users (postgres and one per project) must be able to traverse it (default <data-dir>/run, or $TMPDIR/offshoot-run-<hash> when it cannot)")
		f.StringVar(&o.addrFile, "addr-file", "", "write the bound addresses as JSON {\"http\":...,\"proxy\":...} to this file once ready (for scripts using port 0)")
		f.IntVar(&o.maxBranches, "max-branches", 10000, "maximum branches per project (negative: no limit)")
		f.IntVar(&o.maxEndpoints, "max-endpoints", 16, "maximum running endpoints")
		f.DurationVar(&o.sweepInterval, "ttl-sweep", 5*time.Second, "period of the sweeper deleting expired branches (negative disables)")
		f.DurationVar(&o.expiryWarning, "expiry-warning", 10*time.Minute, "warn (audit branch.expiring + log) this long before a branch expires, at most 10% of its TTL (negative disables)")
		f.DurationVar(&o.runBaseKeep, "run-base-retention", 30*24*time.Hour, "keep the snapshot pinning each experiment run's base (run-base.*) this long, so the run's data can be forked again (negative: forever)")
		f.DurationVar(&o.matTTL, "materialization-ttl", 7*24*time.Hour, "keep a materialization (a variant's loaded and indexed fork, reused by later runs of the same corpus, embedder and index) this long after its last use unless pinned (negative: forever)")
		f.Int64Var(&o.matBudget, "materialization-budget", 0, "bytes one project's materializations may hold; past it the least recently used unpinned ones are dropped (0: no budget)")
		f.Float64Var(&a.cfg.Prices.ComputeHour, "price-compute-hour", 0, "price of an endpoint-hour for estimated costs (config prices.compute_hour)")
		f.Float64Var(&a.cfg.Prices.StorageGiBMonth, "price-storage-gib-month", 0, "price of a GiB-month of branch delta for estimated costs (config prices.storage_gib_month)")
		f.StringVar(&a.cfg.Prices.Currency, "price-currency", "", "currency label of estimated costs (default USD; config prices.currency)")
		f.DurationVar(&o.timers.IdleAfter, "idle-after", o.timers.IdleAfter, "an endpoint is idle after no connection for this long (0 never)")
		f.DurationVar(&o.timers.SuspendAfter, "suspend-after", o.timers.SuspendAfter, "suspend (stop Postgres) after no connection for this long (0 never)")
		f.DurationVar(&o.timers.StopAfter, "stop-after", o.timers.StopAfter, "release the volume after no connection for this long (0 never)")
		f.DurationVar(&o.stopTimeout, "stop-timeout", 15*time.Second, "fast shutdown of an endpoint escalates to immediate after this")
		f.DurationVar(&o.requestTimeout, "request-timeout", 6*time.Minute, "longest an API call may run (a replica's initial copy runs within its create call)")
		f.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate (chain) for both listeners, with --tls-key (default: a certificate signed by a CA generated into <data-dir>/tls)")
		f.StringVar(&o.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
		f.StringArrayVar(&o.tlsHosts, "tls-host", nil, "extra DNS name or IP of the generated server certificate (repeatable; localhost, loopback, the hostname and the bind addresses are always in it)")
		f.BoolVar(&o.insecurePlain, "insecure-plaintext", false, "also serve plain text (HTTP and pgwire without TLS) to clients that are not on loopback: API keys and data cross the network in clear text")
		return cmd
	})
}

// table is the facade's price table, nil when no price is set.
func (p pricesConfig) table() *experiments.Prices {
	if p.ComputeHour == 0 && p.StorageGiBMonth == 0 {
		return nil
	}
	return &experiments.Prices{ComputeHour: p.ComputeHour, StorageGiBMonth: p.StorageGiBMonth, Currency: p.Currency}
}

// serveAdminSocket serves the API's local admin channel on
// <data-dir>/admin.sock (mode 0600; callers act as the local operator,
// peers other than root or our uid are refused) until ctx is done, and
// removes the socket then. The returned channel closes when it stopped.
// We hold the data dir's lock, so a socket already there is a stale one.
// A data dir whose socket path is too long for a Unix socket gets a
// warning and no admin channel.
func (a *app) serveAdminSocket(ctx context.Context, api *agentapi.Server) (<-chan struct{}, error) {
	done := make(chan struct{})
	p := adminSocketPath(a.cfg.DataDir)
	abs, err := filepath.Abs(p)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if len(abs) >= 108 {
		a.log.Warn("data dir path too long for the admin socket; no local admin channel", "path", abs)
		close(done)
		return done, nil
	}
	os.Remove(p)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	go func() {
		defer close(done)
		if err := api.ServeAdmin(ctx, ln); err != nil {
			a.log.Error("admin socket", "err", err)
		}
		os.Remove(p)
	}()
	return done, nil
}

// loopbackAddr reports whether addr is a TCP address on a loopback IP
// (not a wildcard such as 0.0.0.0 or ::, which listens everywhere).
func loopbackAddr(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// lockDataDir takes an exclusive lock on the data dir so two servers never
// share one store. The lock is released when the process exits.
func lockDataDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data dir %s is in use by another offshoot process (lock %s): %w", dir, f.Name(), err)
	}
	return f, nil
}

// checkTraversable makes dir (created if needed) and fails when the
// endpoints' OS users (postgres and one per project, none of them owner
// or group of the run dir's ancestors) could not reach it: every ancestor
// needs o+x.
func checkTraversable(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("run dir: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("run dir: %w", err)
	}
	for d := abs; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("run dir: %w", err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("run dir %s: the endpoints' OS users cannot traverse %s (mode %v): chmod o+x it, or pass --run-dir (or --data-dir) somewhere it can reach, e.g. /var/lib/offshoot", abs, d, fi.Mode().Perm())
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// serveTLS is the TLS of both listeners.
type serveTLS struct {
	cfg         *tls.Config
	fingerprint string // SHA-256 of the CA (generated) or of the certificate (--tls-cert)
	caFile      string // absolute path of the generated CA; "" with --tls-cert
}

// errTLSFlags means --tls-cert without --tls-key or the other way round.
var errTLSFlags = errors.New("--tls-cert and --tls-key go together: give both or neither")

// loadTLS reads --tls-cert/--tls-key, or makes sure the data dir holds a
// generated CA and a server certificate naming this machine and the
// bind hosts.
func (a *app) loadTLS(o serveOptions) (*serveTLS, error) {
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return nil, errTLSFlags
	}
	if o.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("--tls-cert: %w", err)
		}
		return &serveTLS{cfg: servetls.ServerConfig(cert), fingerprint: servetls.Fingerprint(leaf)}, nil
	}
	hostname, _ := os.Hostname()
	hosts := servetls.Hosts(hostname, []string{a.cfg.HTTPAddr, a.cfg.ProxyAddr}, o.tlsHosts)
	dir, err := filepath.Abs(servetls.Dir(a.cfg.DataDir))
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	g, err := servetls.Ensure(dir, hosts, time.Now())
	if err != nil {
		return nil, err
	}
	if g.NewCA {
		a.log.Info("generated a CA for TLS; clients trust it with `offshoot ca`", "ca", g.CAFile, "sha256", servetls.Fingerprint(g.CA))
	}
	if g.NewServer {
		a.log.Info("generated the TLS server certificate", "hosts", g.Hosts)
	}
	for _, addr := range []string{a.cfg.HTTPAddr, a.cfg.ProxyAddr} {
		if h, _, err := net.SplitHostPort(addr); err == nil && len(o.tlsHosts) == 0 && (h == "" || net.ParseIP(h).IsUnspecified()) {
			a.log.Warn("listening on every interface: the certificate names only this host's name and loopback; add --tls-host for each name or IP clients use", "addr", addr, "hosts", g.Hosts)
			break
		}
	}
	return &serveTLS{cfg: servetls.ServerConfig(g.Cert), fingerprint: servetls.Fingerprint(g.CA), caFile: g.CAFile}, nil
}

func (a *app) serve(ctx context.Context, o serveOptions) (err error) {
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return &exitError{code: 2, err: errTLSFlags}
	}
	if _, err := proxyCopyOnly(a.cfg.ProxyPath); err != nil {
		return &exitError{code: 2, err: err}
	}
	if _, err := walLocal(a.cfg.WALPath); err != nil {
		return &exitError{code: 2, err: err}
	}
	// Before anything writes to it: serving on a partial restore would
	// make a default project and drop the replication slots of the
	// replicas whose projects did not arrive.
	if err := objstore.CheckRestored(a.cfg.DataDir); err != nil {
		return &exitError{code: exitConflict, err: err}
	}
	checks := a.doctorChecks()
	for i := range checks {
		if checks[i].name == "disk space" {
			// Below the threshold serve still starts, so that branches can
			// be deleted and tables dropped to free space (the store keeps
			// its own reserve, see storage.Options.MinFreeBytes).
			checks[i].required = false
		}
	}
	results, err := runChecks(ctx, a.stderr, checks)
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("%w (see the fixes above; `offshoot doctor` repeats these checks)", err)}
	}
	for _, r := range results {
		if r.name == "disk space" && r.err != nil {
			a.log.Warn("LOW DISK SPACE: starting anyway so that space can be freed; writes that grow a branch fail with ENOSPC once free space falls below the store's reserve. Delete branches (offshoot branch delete), drop tables, or grow the disk",
				"err", r.err, "data_dir", a.cfg.DataDir)
			fmt.Fprintf(a.stderr, "\n*** LOW DISK SPACE (%v): serving anyway so that space can be freed; see the warning above ***\n\n", r.err)
		}
	}
	lock, err := lockDataDir(a.cfg.DataDir)
	if err != nil {
		return err
	}
	defer lock.Close()
	if o.runDir == "" {
		o.runDir = filepath.Join(a.cfg.DataDir, "run")
		if checkTraversable(o.runDir) != nil {
			// e.g. a data dir under /root: mounts and sockets go to a
			// directory of their own, fixed per data dir so that a restart
			// finds what a crashed run left.
			abs, _ := filepath.Abs(a.cfg.DataDir)
			o.runDir = filepath.Join(os.TempDir(), fmt.Sprintf("offshoot-run-%08x", crc32.ChecksumIEEE([]byte(abs))))
			a.log.Info("data dir is not reachable by the endpoints' OS users; using a separate run dir", "run_dir", o.runDir)
		}
	}
	if err := checkTraversable(o.runDir); err != nil {
		return err
	}
	initDir := filepath.Join(o.runDir, "init")
	if err := os.MkdirAll(initDir, 0o755); err != nil {
		return err
	}
	// A crash while a project was created or a replica seeded leaves that
	// mount here (its FUSE server gone); nothing else is mounted yet.
	stale, err := cowfs.CleanStale(initDir)
	if err != nil {
		return fmt.Errorf("clean stale mounts under %s: %w", initDir, err)
	}
	for _, m := range stale {
		a.log.Warn("detached a mount a crashed run left", "mount", m)
		_ = os.Remove(m)
	}

	st, err := storage.Open(filepath.Join(a.cfg.DataDir, "store"), nil)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close store: %w", cerr)
		}
	}()
	// The facade is made after compute and the proxy (it needs both); until
	// then verifiers captured by endpoints have nowhere to go, and no
	// endpoint runs before it anyway.
	var facade atomic.Pointer[experiments.Service]
	volumes := compute.StoreVolumes{Store: st, MountDir: filepath.Join(o.runDir, "mnt")}
	if local, _ := walLocal(a.cfg.WALPath); local {
		dir, err := localWALDir(o.runDir, a.cfg.DataDir)
		switch {
		case err == nil:
			volumes.LocalWALDir = dir
			a.log.Info("endpoints write their WAL to local disk (wal_path local)", "dir", dir)
		case a.cfg.WALPath == "": // the default gives way
			a.log.Warn("endpoints write their WAL through their mounts (wal_path store), about half the commit rate", "reason", err)
		default:
			return &exitError{code: 2, err: err}
		}
	}
	m, err := compute.New(compute.Config{
		Volumes: volumes,
		RunDir:  filepath.Join(o.runDir, "compute"), Timers: &o.timers, MaxRunning: o.maxEndpoints,
		StopTimeout: o.stopTimeout, Logger: a.log,
		Verifiers: func(project, branch string, v map[string]string) {
			if svc := facade.Load(); svc != nil {
				svc.CaptureVerifiers(project, branch, v)
			}
		},
		Standby: func(project, branch string) (*compute.Standby, error) {
			if svc := facade.Load(); svc != nil {
				return svc.StandbyOf(project, branch)
			}
			return nil, errors.New("the service is not ready")
		},
	})
	if err != nil {
		return err
	}
	// Open stops orphaned postmasters and detaches stale mounts of a
	// crashed previous run before anything is mounted.
	if err := m.Open(ctx); err != nil {
		return err
	}
	defer func() {
		if cerr := m.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close compute: %w", cerr)
		}
	}()
	tl, err := a.loadTLS(o)
	if err != nil {
		return err
	}
	const defaultProject = "main"
	// Clients authenticate at the proxy against the branch's own
	// credentials (experiments.Service.Verifier) before anything wakes.
	auth := proxy.AuthenticatorFunc(func(ctx context.Context, project, branch, role string) (string, bool) {
		if svc := facade.Load(); svc != nil {
			return svc.Verifier(ctx, project, branch, role)
		}
		return "", false
	})
	copyOnly, err := proxyCopyOnly(a.cfg.ProxyPath)
	if err != nil {
		return err
	}
	px, err := proxy.New(proxy.Config{Addr: a.cfg.ProxyAddr, Manager: m, DefaultProject: defaultProject, Logger: a.log, Auth: auth,
		TLS: tl.cfg, RequireTLS: !o.insecurePlain, CopyOnly: copyOnly})
	if err != nil {
		return err
	}
	if err := px.Open(ctx); err != nil {
		return err
	}
	defer px.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.Collector(), px.Collector())
	// One embedding cache for every run: a second run of a model embeds nothing.
	cache, err := vectors.OpenCache(filepath.Join(a.cfg.DataDir, "embeddings"))
	if err != nil {
		return fmt.Errorf("embedding cache: %w", err)
	}
	defer cache.Close()
	datasetsDir := a.cfg.DatasetsDir
	if datasetsDir == "" {
		datasetsDir = filepath.Join(a.cfg.DataDir, "datasets")
	}
	ecfg := experiments.Config{
		ControlDir: filepath.Join(a.cfg.DataDir, "control"), Logger: a.log,
		Store: st, Compute: m, InitDir: initDir, ProxyAddr: px.Addr().String(), DefaultProject: defaultProject,
		MaxBranches: o.maxBranches, SweepInterval: o.sweepInterval, EmbedCache: cache,
		ExpiryWarning: o.expiryWarning, Prices: a.cfg.Prices.table(), RunBaseRetention: o.runBaseKeep,
		MaterializationTTL: o.matTTL, MaterializationBudget: o.matBudget,
		DatasetsDir: datasetsDir, WebhookAllow: a.cfg.WebhookAllow, AuditSQL: a.cfg.AuditSQL, ProxySSLMode: "require",
	}
	if tl.caFile != "" {
		// The generated CA: clients can verify the proxy with the file.
		ecfg.ProxySSLMode, ecfg.ProxyRootCert = "verify-full", tl.caFile
	}
	svc, err := experiments.New(ecfg)
	if err != nil {
		return err
	}
	if err := svc.Open(ctx); err != nil {
		return err
	}
	defer svc.Close()
	facade.Store(svc)
	svc.FollowReplicas()
	up, err := a.startUploader(ctx, st, svc, reg)
	if err != nil {
		return err
	}
	if up != nil {
		// A clean stop ends with one more round, so the bucket holds
		// everything the server acknowledged (the proxy and the API are
		// closed by then: nothing commits during it). The runs stop and
		// the endpoints shut down first, so the round holds each branch
		// checkpointed: a restore starts without crash recovery.
		defer func() {
			svc.Stop()
			if err := m.Close(); err != nil {
				a.log.Warn("close compute before the final upload round", "err", err)
			}
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := up.Sync(sctx); err != nil {
				a.log.Warn("the final upload round failed: the bucket holds the previous round", "err", err)
			} else {
				a.log.Info("final upload round done", "generation", up.Generation())
			}
			up.Close()
		}()
	}
	created, err := svc.EnsureDefaultProject(ctx)
	if err != nil {
		return fmt.Errorf("create default project %q: %w", defaultProject, err)
	}
	if created {
		a.log.Info("created default project", "project", defaultProject)
	}
	mcpSrv, err := mcp.New(mcp.Config{Service: svc, Logger: a.log, DefaultProject: defaultProject, Version: version})
	if err != nil {
		return err
	}
	ready := func() error {
		if up == nil {
			return nil
		}
		if err := up.Err(); err != nil {
			return fmt.Errorf("%w: %w", experiments.ErrUnavailable, err)
		}
		return nil
	}
	api, err := agentapi.New(agentapi.Config{Service: svc, Logger: a.log, Registry: reg, MCP: mcpSrv.Handler(), RequestTimeout: o.requestTimeout, Ready: ready})
	if err != nil {
		return err
	}
	rawLn, err := net.Listen("tcp", a.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	allowPlain := servetls.LoopbackOnly
	if o.insecurePlain {
		allowPlain = func(net.Addr) bool { return true }
	}
	ln := servetls.NewListener(rawLn, tl.cfg, allowPlain, a.log)
	if err := writeServerInfo(a.cfg.DataDir, serverInfo{HTTP: ln.Addr().String(), TLS: true, CAFile: tl.caFile}); err != nil {
		ln.Close()
		return err
	}
	defer os.Remove(serverInfoPath(a.cfg.DataDir))
	errc := make(chan error, 1)
	go func() { errc <- api.Serve(ctx, ln) }()
	adminCtx, adminCancel := context.WithCancel(ctx)
	adminDone, err := a.serveAdminSocket(adminCtx, api)
	if err != nil {
		adminCancel()
		return err
	}
	defer func() { adminCancel(); <-adminDone }()

	plain := "plain text from loopback only"
	if o.insecurePlain {
		plain = "plain text from anyone (--insecure-plaintext)"
	}
	a.log.Info("offshoot serving", "http", "https://"+ln.Addr().String(), "proxy", px.Addr().String(), "data_dir", a.cfg.DataDir,
		"tls_sha256", tl.fingerprint, "insecure_plaintext", o.insecurePlain)
	fmt.Fprintf(a.stdout, "offshoot %s\n  data dir  %s\n  http      https://%s  (web UI at /ui/, /v1 API, /v1/openapi.json, /mcp, /healthz, /readyz, /metrics)\n  proxy     %s  (pgwire; options=endpoint=<branch> [project=<project>])\n  admin     %s  (local admin channel: client verbs with --data-dir and no --server/--token)\n",
		version, a.cfg.DataDir, ln.Addr(), px.Addr(), adminSocketPath(a.cfg.DataDir))
	if tl.caFile != "" {
		fmt.Fprintf(a.stdout, "  tls       CA %s  (SHA-256 %s; `offshoot ca` prints it); %s\n", tl.caFile, tl.fingerprint, plain)
	} else {
		fmt.Fprintf(a.stdout, "  tls       --tls-cert (SHA-256 %s); %s\n", tl.fingerprint, plain)
	}
	// The superuser password goes into the banner only while the proxy
	// listens on loopback: off it, the banner may end up in shared logs.
	ctxLocal := experiments.WithCaller(ctx, experiments.LocalCaller)
	withPassword := loopbackAddr(px.Addr())
	if c, err := svc.Connection(ctxLocal, experiments.ConnectionRequest{Project: defaultProject, Branch: "main", Password: withPassword}); err == nil {
		if withPassword {
			fmt.Fprintf(a.stdout, "  connect   psql '%s'\n", c.URI)
		} else {
			fmt.Fprintf(a.stdout, "  connect   psql '%s'  (password not shown off loopback: `offshoot psql main` connects with it; GET .../connection?password=true gives it)\n", c.URI)
		}
	}
	if o.addrFile != "" {
		b, _ := json.Marshal(map[string]string{"http": ln.Addr().String(), "proxy": px.Addr().String()})
		tmp := o.addrFile + ".tmp"
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			return fmt.Errorf("addr file: %w", err)
		}
		if err := os.Rename(tmp, o.addrFile); err != nil {
			return fmt.Errorf("addr file: %w", err)
		}
	}

	if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	a.log.Info("shutting down: closing proxy, stopping endpoints, releasing mounts, closing store")
	return nil
}

// walLocal maps the wal_path setting to whether endpoints keep their WAL
// on local disk (the default; it gives way to store when the run dir
// cannot hold it, see localWALDir).
func walLocal(path string) (bool, error) {
	switch path {
	case "store":
		return false, nil
	case "", "local":
		return true, nil
	}
	return false, fmt.Errorf("--wal-path %q: want store or local", path)
}

// localWALDir is where endpoints keep their WAL with wal_path local:
// <run-dir>/wal, which must be on the data dir's file system (not a
// tmpfs), since acknowledged commits live there until the store absorbs
// them.
func localWALDir(runDir, dataDir string) (string, error) {
	var rs, ds syscall.Stat_t
	if err := syscall.Stat(runDir, &rs); err != nil {
		return "", fmt.Errorf("wal_path local: %w", err)
	}
	if err := syscall.Stat(dataDir, &ds); err != nil {
		return "", fmt.Errorf("wal_path local: %w", err)
	}
	if rs.Dev != ds.Dev {
		return "", fmt.Errorf("wal_path local: the run dir %s is not on the data dir's file system (%s), so WAL kept there would not be as durable as the store; use a run dir inside the data dir", runDir, dataDir)
	}
	return filepath.Join(runDir, "wal"), nil
}

// proxyCopyOnly maps the proxy_path setting to proxy.Config.CopyOnly.
func proxyCopyOnly(path string) (bool, error) {
	switch path {
	case "", "auto":
		return false, nil
	case "copy":
		return true, nil
	}
	return false, fmt.Errorf("--proxy-path %q: want auto or copy", path)
}
