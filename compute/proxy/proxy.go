// Package proxy is offshoot's pgwire proxy: one listener for every branch.
// It reads a client's startup packet, picks the branch from the `options`
// parameter (`endpoint=<branch>` or `branch=<branch>`, optionally
// `project=<project>`), authenticates the client (below), wakes the
// branch's endpoint through the compute.Manager, connects to the
// endpoint's Unix socket and splices bytes both ways: once the endpoint is
// ready for queries, a plain-text TCP connection's bytes are forwarded by
// the kernel (a BPF sockmap; see splice.go), and TLS connections, clients
// on the proxy's Unix socket, clients that pipeline queries before
// ReadyForQuery and hosts without BPF keep the proxy's copy loop
// (Server.Path, KernelPath, offshoot_proxy_splices_total say which).
//
// Authentication happens at the proxy, before anything wakes (Config.Auth;
// serve always sets it). The proxy runs the SCRAM-SHA-256 exchange with the
// client against the verifier of the startup packet's user on the branch
// (pg_authid's secrets, captured whenever the branch's endpoint runs and
// inherited by forks, so branches keep their roles and passwords), and
// only then wakes the endpoint and connects to it over its private socket,
// which trusts local connections, as that role. A wrong or missing
// password and an unknown role, branch or project all get the same
// password authentication failure (28P01) after the same exchange, and
// nothing wakes, so a stranger learns nothing about what exists. Failed
// authentications are rate-limited per source address; connections that
// have not authenticated are bounded in time (StartupTimeout) and number
// (MaxUnauthenticated, MaxUnauthenticatedPerSource), and since none of them
// reaches Postgres, stalled clients cannot take its connection slots.
// Authenticated connections are capped per branch (MaxConnsPerBranch,
// under Postgres' max_connections) and in total (MaxConns). Without
// Config.Auth, the proxy passes authentication through to Postgres.
//
// A connection holds a compute.Lease for as long as it is open, so an open
// connection (idle in transaction or not) keeps its endpoint active.
// CancelRequests are routed by the backend key data the proxy saw on the
// way through. Every failure before the splice is answered with a Postgres
// ErrorResponse that names the cause and the fix, but for failed
// authentications, whose one answer names no cause.
//
// With Config.TLS an SSLRequest is answered 'S' and the connection goes on
// in TLS (sslmode=require, verify-full); with Config.RequireTLS a plain-text
// startup from a peer off loopback is refused (SQLSTATE 28000).
//
// Connection strings:
//
//	psql "host=127.0.0.1 port=55432 user=postgres options='endpoint=main project=demo'"
//	PGOPTIONS='branch=main' pgbench -h 127.0.0.1 -p 55432 ...
package proxy

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/offshootdb/offshoot/compute"
	"github.com/offshootdb/offshoot/compute/proxy/internal/sockmap"
)

// Errors returned by this package.
var (
	// ErrMalformed means a startup packet that does not decode.
	ErrMalformed = errors.New("malformed startup packet")
	// ErrOversized means a startup packet longer than the limit.
	ErrOversized = errors.New("oversized startup packet")
	// ErrUnsupported means a protocol version or request the proxy does
	// not speak.
	ErrUnsupported = errors.New("unsupported frontend protocol")
	// ErrNoRoute means the startup packet names no branch (or names two).
	ErrNoRoute = errors.New("no branch to route to")
	// ErrClosed means the proxy is closed.
	ErrClosed = errors.New("proxy closed")
	// ErrTLSRequired means a plain-text startup where Config.RequireTLS
	// asks for TLS.
	ErrTLSRequired = errors.New("TLS required")
	// ErrAuthFailed means a failed authentication of any cause (see
	// AuthError).
	ErrAuthFailed = errors.New("password authentication failed")
	// ErrRateLimited means a source refused after too many failed
	// authentications (see RateLimitError).
	ErrRateLimited = errors.New("too many failed authentication attempts")
	// ErrTooManyAuthenticating means a connection refused because too many
	// have not authenticated yet (MaxUnauthenticated,
	// MaxUnauthenticatedPerSource).
	ErrTooManyAuthenticating = errors.New("too many connections are authenticating")
	// ErrTooManyConns means a connection refused by MaxConnsPerBranch or
	// MaxConns.
	ErrTooManyConns = errors.New("too many connections")
)

// DefaultAddr is the default listen address.
const DefaultAddr = "127.0.0.1:55432"

// Config configures a Server. Zero fields take the defaults named.
type Config struct {
	// Addr is the TCP listen address. Default DefaultAddr; use
	// "127.0.0.1:0" for an ephemeral port (see Server.Addr).
	Addr string
	// SocketDir, when set, makes the proxy also listen on a Unix socket in
	// that directory, named as libpq expects (.s.PGSQL.<port of Addr>), so
	// local clients connect with host=<SocketDir> port=<port> and skip TCP.
	// The directory must exist. Default "": TCP only.
	SocketDir string
	// Manager wakes endpoints (required).
	Manager *compute.Manager
	// DefaultProject is the project of connections whose options carry no
	// project= token. Empty means such connections are refused.
	DefaultProject string
	// TLS, when set, is offered to clients that send SSLRequest; without
	// it they are told 'N' (no TLS) and may continue in plain text.
	TLS *tls.Config
	// RequireTLS refuses a StartupMessage that arrives in plain text from
	// a TCP peer that is not loopback, with FATAL SQLSTATE 28000 "TLS
	// required". Loopback peers and the Unix socket may still use plain
	// text (their bytes never leave the machine), and so may
	// CancelRequests (libpq before 17 sends them without TLS; they carry
	// no credentials). Needs TLS. Default false: plain text from anyone.
	RequireTLS bool
	// StartupTimeout bounds reading the startup packet (and the TLS
	// handshake) and, with Auth, the whole authentication exchange.
	// Default 10 s.
	StartupTimeout time.Duration
	// WakeTimeout bounds waiting for the endpoint to answer. Default 2 min.
	WakeTimeout time.Duration
	// MaxStartupPacket is the largest startup packet accepted, in bytes.
	// Default MaxStartupPacket (10000, as Postgres).
	MaxStartupPacket int
	// Logger receives connection failures. Default slog.Default().
	Logger *slog.Logger

	// Auth, when set, makes the proxy authenticate clients itself with
	// SCRAM-SHA-256 before it wakes anything (see the package doc); the
	// endpoints must trust local connections on their private socket.
	// offshoot serve always sets it. Default nil: Postgres' own
	// authentication, passed through (tests of clusters without passwords).
	// MaxAuthFailures, AuthFailureWindow and the MaxUnauthenticated limits
	// apply only with Auth.
	Auth Authenticator
	// MaxAuthFailures failed authentications from one source (IP address;
	// all Unix socket clients are one source, "local") within
	// AuthFailureWindow make the proxy refuse that source's attempts until
	// the oldest of them leaves the window. Default 10.
	MaxAuthFailures int
	// AuthFailureWindow is the window of MaxAuthFailures. Default 1 min.
	AuthFailureWindow time.Duration
	// MaxUnauthenticated bounds the connections that have not finished
	// authenticating (startup packet included); beyond it new ones are
	// refused at once (53300). Default 256.
	MaxUnauthenticated int
	// MaxUnauthenticatedPerSource is MaxUnauthenticated per source.
	// Default 32.
	MaxUnauthenticatedPerSource int
	// MaxConnsPerBranch bounds the open connections to one branch, below
	// Postgres' max_connections (100, 3 reserved for superusers), so a
	// client gets the proxy's clear refusal (53300) instead of Postgres'.
	// Default 90.
	MaxConnsPerBranch int
	// MaxConns bounds the open connections through the proxy. Default 2000.
	MaxConns int
	// Now is the clock of the rate limit. Default time.Now.
	Now func() time.Time
	// CopyOnly makes every connection relay its steady state through the
	// proxy's user-space copy loop. Default false: plain-text TCP
	// connections are forwarded in the kernel where the host allows it
	// (see splice.go and KernelPath).
	CopyOnly bool
}

// Server is a running proxy. Its methods are safe for concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	ln      net.Listener
	unixLn  net.Listener
	wg      sync.WaitGroup
	ctx     context.Context // cancelled by Close
	cancel  context.CancelFunc

	secret    []byte             // keys dummy verifiers
	fwd       *sockmap.Forwarder // nil: the copy path only
	fwdErr    error              // why fwd is nil
	watch     *sockmap.Watcher   // with fwd: hang-ups of kernel-path sockets
	limiter   limiter            // per source and target
	srcLimit  limiter            // per source, over every target
	admission admission

	mu      sync.Mutex
	closed  bool
	conns   map[net.Conn]struct{}
	cancels map[string]string // backend pid+key → endpoint socket
}

// New checks cfg and returns a Server; Open starts it.
func New(cfg Config) (*Server, error) {
	if cfg.Manager == nil {
		return nil, errors.New("proxy: Config.Manager is required")
	}
	if cfg.RequireTLS && cfg.TLS == nil {
		return nil, errors.New("proxy: Config.RequireTLS needs Config.TLS")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.StartupTimeout <= 0 {
		cfg.StartupTimeout = 10 * time.Second
	}
	if cfg.WakeTimeout <= 0 {
		cfg.WakeTimeout = 2 * time.Minute
	}
	if cfg.MaxStartupPacket <= 0 {
		cfg.MaxStartupPacket = MaxStartupPacket
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxAuthFailures <= 0 {
		cfg.MaxAuthFailures = 10
	}
	if cfg.AuthFailureWindow <= 0 {
		cfg.AuthFailureWindow = time.Minute
	}
	if cfg.MaxUnauthenticated <= 0 {
		cfg.MaxUnauthenticated = 256
	}
	if cfg.MaxUnauthenticatedPerSource <= 0 {
		cfg.MaxUnauthenticatedPerSource = 32
	}
	if cfg.MaxConnsPerBranch <= 0 {
		cfg.MaxConnsPerBranch = 90
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 2000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "proxy"), metrics: newMetrics(),
		ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}, cancels: map[string]string{},
		secret:   newSecret(),
		limiter:  limiter{max: cfg.MaxAuthFailures, window: cfg.AuthFailureWindow, now: cfg.Now, fails: map[string][]time.Time{}},
		srcLimit: limiter{max: sourceFailures * cfg.MaxAuthFailures, window: cfg.AuthFailureWindow, now: cfg.Now, fails: map[string][]time.Time{}},
	}
	if cfg.CopyOnly {
		s.fwdErr = errors.New("Config.CopyOnly")
	} else if s.fwd, s.fwdErr = sockmap.New(cfg.MaxConns); s.fwdErr != nil {
		s.log.Info("proxy: kernel path unavailable, relaying with the copy loop", "err", s.fwdErr)
	} else if s.watch, s.fwdErr = sockmap.NewWatcher(); s.fwdErr != nil {
		s.fwd.Close()
		s.fwd = nil
		s.log.Info("proxy: kernel path unavailable, relaying with the copy loop", "err", s.fwdErr)
	} else {
		s.metrics.kernelPath.Set(1)
	}
	return s, nil
}

// Open listens on Config.Addr and serves until Close.
func (s *Server) Open(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("proxy listen: %w", err)
	}
	s.ln = ln
	if s.cfg.SocketDir != "" {
		path := filepath.Join(s.cfg.SocketDir, fmt.Sprintf(".s.PGSQL.%d", ln.Addr().(*net.TCPAddr).Port))
		_ = os.Remove(path) // a stale socket of a crashed run
		uln, err := lc.Listen(ctx, "unix", path)
		if err != nil {
			ln.Close()
			return fmt.Errorf("proxy listen: %w", err)
		}
		if err := os.Chmod(path, 0o777); err != nil {
			ln.Close()
			uln.Close()
			return fmt.Errorf("proxy listen: %w", err)
		}
		s.unixLn = uln
		s.wg.Add(1)
		go s.serve(uln)
	}
	s.wg.Add(1)
	go s.serve(ln)
	return nil
}

// SocketPath is the proxy's Unix socket, or "" without Config.SocketDir.
func (s *Server) SocketPath() string {
	if s.unixLn == nil {
		return ""
	}
	return s.unixLn.Addr().String()
}

// Addr is the address the proxy listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops listening, closes every client connection and waits for
// their goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cancel()
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	if s.unixLn != nil {
		err = errors.Join(err, s.unixLn.Close())
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if s.fwd != nil {
		err = errors.Join(err, s.fwd.Close(), s.watch.Close())
	}
	return err
}

func (s *Server) serve(ln net.Listener) {
	defer s.wg.Done()
	delay := 5 * time.Millisecond
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return
			}
			// Out of file descriptors and the like: back off, keep serving.
			s.log.Warn("accept", "err", err)
			time.Sleep(delay)
			delay = min(delay*2, time.Second)
			continue
		}
		delay = 5 * time.Millisecond
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handle(c)
	}
}

func (s *Server) handle(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	s.metrics.accepted.Inc()
	authenticated := func() {}
	if s.cfg.Auth != nil {
		done, err := s.admitUnauthenticated(sourceOf(c))
		if err != nil {
			s.refuseEarly(c, err)
			return
		}
		authenticated = done
		defer done()
	}
	_ = c.SetDeadline(time.Now().Add(s.cfg.StartupTimeout))
	conn, msg, err := s.startup(c)
	if err != nil {
		s.fail(conn, err)
		return
	}
	switch m := msg.(type) {
	case *pgproto3.CancelRequest:
		s.forwardCancel(m)
		return
	case *pgproto3.StartupMessage:
		s.serveStartup(c, conn, m, authenticated)
	}
}

// startup reads startup packets until a StartupMessage or CancelRequest,
// answering SSLRequest and GSSEncRequest on the way. conn is the
// connection to speak on (TLS after a handshake).
func (s *Server) startup(c net.Conn) (conn net.Conn, msg pgproto3.FrontendMessage, err error) {
	conn = c
	var ssl, gss bool
	for {
		msg, err := ReadStartup(conn, s.cfg.MaxStartupPacket)
		if err != nil {
			return conn, nil, err
		}
		switch msg.(type) {
		case *pgproto3.SSLRequest:
			if ssl || conn != c {
				return conn, nil, fmt.Errorf("%w: a second SSLRequest", ErrMalformed)
			}
			ssl = true
			if s.cfg.TLS == nil {
				if _, err := conn.Write([]byte{'N'}); err != nil {
					return conn, nil, err
				}
				continue
			}
			if _, err := conn.Write([]byte{'S'}); err != nil {
				return conn, nil, err
			}
			tc := tls.Server(conn, s.cfg.TLS)
			if err := tc.Handshake(); err != nil {
				return c, nil, fmt.Errorf("%w: %w", errTLS, err)
			}
			conn = tc
		case *pgproto3.GSSEncRequest:
			if gss {
				return conn, nil, fmt.Errorf("%w: a second GSSEncRequest", ErrMalformed)
			}
			gss = true
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return conn, nil, err
			}
		case *pgproto3.StartupMessage:
			if s.cfg.RequireTLS && conn == c && !plainAllowed(c.RemoteAddr()) {
				return conn, nil, ErrTLSRequired
			}
			return conn, msg, nil
		default:
			return conn, msg, nil
		}
	}
}

// plainAllowed reports whether a peer may speak plain text under
// Config.RequireTLS: loopback TCP and Unix sockets.
func plainAllowed(remote net.Addr) bool {
	switch a := remote.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	return false
}

var errTLS = errors.New("TLS handshake failed")

// serveStartup serves a StartupMessage: authentication at the proxy (with
// Config.Auth; authenticated is called once it succeeded), the caps, the
// wake, then the splice.
func (s *Server) serveStartup(raw, conn net.Conn, m *pgproto3.StartupMessage, authenticated func()) {
	proxyAuth := s.cfg.Auth != nil
	if proxyAuth {
		if err := s.authenticate(conn, sourceOf(raw), m.Parameters); err != nil {
			s.fail(conn, err)
			return
		}
		authenticated()
	}
	route, params, err := ParseRoute(m.Parameters, s.cfg.DefaultProject)
	if err != nil {
		s.fail(conn, err)
		return
	}
	release, err := s.admitConn(route)
	if err != nil {
		s.fail(conn, err)
		return
	}
	defer release()
	wctx, cancel := context.WithTimeout(s.ctx, s.cfg.WakeTimeout)
	lease, err := s.cfg.Manager.Acquire(wctx, route.Project, route.Branch)
	cancel()
	if err != nil {
		s.fail(conn, err)
		return
	}
	defer lease.Release()
	backend, err := net.DialTimeout("unix", lease.Socket(), 10*time.Second)
	if err != nil {
		s.fail(conn, fmt.Errorf("%w: %w", errBackend, err))
		return
	}
	defer backend.Close()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.fail(conn, ErrClosed)
		return
	}
	s.conns[backend] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, backend)
		s.mu.Unlock()
	}()
	pkt, err := (&pgproto3.StartupMessage{ProtocolVersion: m.ProtocolVersion, Parameters: params}).Encode(nil)
	if err == nil {
		_, err = backend.Write(pkt)
	}
	if err != nil {
		s.fail(conn, fmt.Errorf("%w: %w", errBackend, err))
		return
	}
	_ = raw.SetDeadline(time.Time{})
	s.metrics.active.Inc()
	defer s.metrics.active.Dec()
	cancelKey := s.splice(raw, conn, backend, lease.Socket(), proxyAuth)
	if cancelKey != "" {
		s.mu.Lock()
		delete(s.cancels, cancelKey)
		s.mu.Unlock()
	}
}

var errBackend = errors.New("cannot reach the endpoint")

func keyOf(pid uint32, secret []byte) string {
	b := binary.BigEndian.AppendUint32(nil, pid)
	return string(append(b, secret...))
}

// forwardCancel passes a CancelRequest to the endpoint whose backend
// issued the key. Unknown keys are dropped silently, as Postgres does.
func (s *Server) forwardCancel(m *pgproto3.CancelRequest) {
	s.mu.Lock()
	sock, ok := s.cancels[keyOf(m.ProcessID, m.SecretKey)]
	s.mu.Unlock()
	if !ok {
		s.metrics.errors.WithLabelValues("unknown_cancel_key").Inc()
		return
	}
	s.metrics.cancels.Inc()
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		s.metrics.errors.WithLabelValues("backend").Inc()
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	pkt, err := m.Encode(nil)
	if err != nil {
		return
	}
	if _, err := c.Write(pkt); err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, c) // Postgres closes once it has acted
}

// fail answers a failed connection attempt with an ErrorResponse (unless
// the client is gone) and counts it.
func (s *Server) fail(conn net.Conn, err error) {
	kind, resp := errorResponse(err)
	s.metrics.errors.WithLabelValues(kind).Inc()
	if kind == "disconnect" {
		return
	}
	remote := "local"
	if a := conn.RemoteAddr(); a != nil && a.String() != "" {
		remote = a.String()
	}
	s.log.Info("connection refused", "remote", remote, "kind", kind, "err", err)
	if resp == nil {
		return
	}
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if b, err := resp.Encode(nil); err == nil {
		_, _ = conn.Write(b)
	}
}

// errorResponse maps an error to a metric kind and the ErrorResponse the
// client gets (nil when it gets nothing). It is the one place where
// errors become SQLSTATEs.
func errorResponse(err error) (string, *pgproto3.ErrorResponse) {
	e := func(code, msg, hint string) *pgproto3.ErrorResponse {
		return &pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg, Hint: hint}
	}
	var ne net.Error
	var ae *AuthError
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return "disconnect", nil
	case errors.As(err, &ae):
		// The same words for every cause: nothing tells a stranger which
		// branches, projects or roles exist.
		return "auth_failed", e("28P01", ae.Error(),
			"check the user name and password, and the branch and project in options; an unknown branch, project or role gets this same answer")
	case errors.Is(err, ErrRateLimited):
		return "rate_limited", e("28000", "offshoot proxy: "+err.Error(),
			"wait, then connect with the right password; failed authentications are limited per client address")
	case errors.Is(err, ErrTooManyAuthenticating):
		return "preauth_full", e("53300", "offshoot proxy: "+err.Error(),
			"retry in a moment; clients must send their password right after connecting, and connections that stall before authenticating are closed after the startup timeout")
	case errors.Is(err, ErrTooManyConns):
		return "conn_cap", e("53300", "offshoot proxy: "+err.Error(),
			"close idle connections or share them through a pool (pgxpool, pgbouncer); the operator can raise the proxy's cap, within the endpoints' max_connections")
	case errors.Is(err, errAuthTimeout):
		return "auth_timeout", e("08P01", "offshoot proxy: "+err.Error(),
			"answer the authentication request right away; use a Postgres client with the password set (PGPASSWORD, .pgpass or the connection string)")
	case errors.Is(err, errSASL):
		return "sasl", e("08P01", "offshoot proxy: "+err.Error(),
			"use a client that speaks SCRAM-SHA-256 (libpq 10+, pgx); channel binding is not offered, so set channel_binding=prefer or disable")
	case errors.Is(err, errEndpointAuth):
		return "endpoint_auth", e("XX000", "offshoot proxy: "+err.Error(),
			"this is a server configuration error; report a bug")
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout", e("08P01", "offshoot proxy: timed out waiting for the startup packet",
			"send the startup packet right after connecting; use a Postgres client (psql, pgx, libpq)")
	case errors.Is(err, ErrTLSRequired):
		return "tls_required", e("28000", "offshoot proxy: TLS required: connect with sslmode=require",
			"this proxy refuses plain text from other machines; use sslmode=verify-full with sslrootcert set to the CA that `offshoot ca` prints (or sslmode=require)")
	case errors.Is(err, errTLS):
		return "tls", nil // the client speaks TLS and cannot read a plain ErrorResponse
	case errors.Is(err, ErrOversized):
		return "oversized", e("08P01", "offshoot proxy: "+err.Error(),
			"shorten the startup parameters (options, application_name) or connect with a Postgres client")
	case errors.Is(err, ErrMalformed):
		return "malformed", e("08P01", "offshoot proxy: "+err.Error(),
			"connect with a Postgres client (psql, pgx, libpq); this port speaks the Postgres protocol")
	case errors.Is(err, ErrUnsupported):
		return "unsupported", e("0A000", "offshoot proxy: "+err.Error(), "use a client that speaks protocol 3")
	case errors.Is(err, ErrNoRoute):
		return "no_route", e("08004", "offshoot proxy: "+err.Error(),
			"name the branch in the options parameter, e.g. options='endpoint=main project=myproject' in the connection string or PGOPTIONS='branch=main'")
	case errors.Is(err, compute.ErrBranchNotFound), errors.Is(err, compute.ErrInvalidName):
		return "unknown_branch", e("3D000", "offshoot proxy: "+err.Error(),
			"check the branch and project names (offshoot branch list); the branch must exist before you connect")
	case errors.Is(err, compute.ErrCapacity):
		return "capacity", e("53300", "offshoot proxy: "+err.Error(),
			"close idle connections to other branches so their endpoints can be suspended, or raise the maximum of running endpoints")
	case errors.Is(err, compute.ErrCrashLoop), errors.Is(err, compute.ErrStartFailed):
		msg, detail := splitLog(err.Error())
		r := e("57P03", "offshoot proxy: "+msg, "look at the Postgres log of the branch (detail has its last lines); the data directory may be damaged")
		r.Detail = detail
		return "wake_failed", r
	case errors.Is(err, context.DeadlineExceeded):
		return "wake_timeout", e("57P03", "offshoot proxy: the endpoint did not answer in time: "+err.Error(),
			"retry; if it persists, look at the endpoint's status and log")
	case errors.Is(err, compute.ErrClosed), errors.Is(err, ErrClosed), errors.Is(err, context.Canceled):
		return "shutdown", e("57P01", "offshoot proxy: the server is shutting down", "reconnect once offshoot is back")
	case errors.Is(err, errBackend):
		return "backend", e("57P03", "offshoot proxy: "+err.Error(), "retry; the endpoint may have just crashed and restarts on the next connection")
	default:
		return "internal", e("XX000", "offshoot proxy: "+err.Error(), "retry; report a bug if it persists")
	}
}

// splitLog separates "...; last log lines:\n..." into message and detail.
func splitLog(s string) (string, string) {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '\n' {
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}
