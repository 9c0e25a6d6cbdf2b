package proxy

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/offshootdb/offshoot/compute/proxy/scram"
)

// Authenticator tells the proxy how to authenticate clients. Safe for
// concurrent use.
type Authenticator interface {
	// Verifier returns the SCRAM-SHA-256 verifier (pg_authid format, see
	// package scram) of role on branch of project, and false when the
	// project, branch or role is unknown, has no password, or may not
	// connect now. It must not wake anything.
	Verifier(ctx context.Context, project, branch, role string) (verifier string, ok bool)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context, project, branch, role string) (string, bool)

// Verifier calls f.
func (f AuthenticatorFunc) Verifier(ctx context.Context, project, branch, role string) (string, bool) {
	return f(ctx, project, branch, role)
}

// AuthError is the one answer to every failed authentication: a wrong or
// missing password, an unknown role, branch or project. The client sees
// only Error() (SQLSTATE 28P01, as Postgres words it); Reason is for logs
// and metrics.
type AuthError struct {
	User string
	// Reason is "wrong_password" or "unknown".
	Reason string
}

func (e *AuthError) Error() string {
	return `password authentication failed for user "` + e.User + `"`
}

// Unwrap makes errors.Is(err, ErrAuthFailed) hold.
func (e *AuthError) Unwrap() error { return ErrAuthFailed }

// RateLimitError refuses a source after too many failed authentications
// (SQLSTATE 28000).
type RateLimitError struct {
	Source string
	// Target names the role and branch the failures were for.
	Target string
	Retry  time.Duration // until the oldest counted failure leaves the window
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("too many failed authentication attempts from %s for %s; retry in %d s", e.Source, e.Target, int64((e.Retry+time.Second-1)/time.Second))
}

// Unwrap makes errors.Is(err, ErrRateLimited) hold.
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

var (
	errSASL         = errors.New("SASL authentication failed")
	errAuthTimeout  = errors.New("timed out during authentication")
	errEndpointAuth = errors.New("the endpoint asked for a password: it is not configured for proxy authentication (its pg_hba.conf must trust local connections on its private socket)")
)

// maxSASLMessage bounds a client's SASL message, as Postgres'
// PG_MAX_AUTH_TOKEN_LENGTH.
const maxSASLMessage = 65535

// authenticate runs the SCRAM exchange with the client of a startup
// message before anything is woken: the rate limit first, then the route,
// then SASL against the route's verifier, or against a dummy one when the
// route or role is unknown, so both look the same to the client until the
// same final failure.
//
// Failures count per source and target (role, branch and project), at
// most MaxAuthFailures a window: a client that keeps failing for one role
// of one branch, such as a replica whose source's password was rotated,
// locks out only that target from its address, not every other client
// there. Every failure also counts for the source, which may fail
// sourceFailures times as often over all targets; a failure for an
// unknown target counts only there, so that no source opens unbounded
// buckets.
func (s *Server) authenticate(conn net.Conn, src string, params map[string]string) error {
	route, _, err := ParseRoute(params, s.cfg.DefaultProject)
	if err != nil {
		return err
	}
	user := params["user"]
	target := fmt.Sprintf("role %s on branch %s of project %s", user, route.Branch, route.Project)
	bucket := src + " " + target
	for _, c := range []struct {
		l           *limiter
		key, target string
	}{{&s.srcLimit, src, "any role or branch"}, {&s.limiter, bucket, target}} {
		if err := c.l.check(c.key); err != nil {
			s.metrics.rateLimited.Inc()
			var rl *RateLimitError
			if errors.As(err, &rl) {
				rl.Source, rl.Target = src, c.target
			}
			return err
		}
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.StartupTimeout)
	defer cancel()
	known := false
	v := s.dummyVerifier(route, user)
	if str, ok := s.cfg.Auth.Verifier(ctx, route.Project, route.Branch, user); ok {
		if pv, err := scram.ParseVerifier(str); err != nil {
			s.log.Warn("unusable verifier", "project", route.Project, "branch", route.Branch, "role", user, "err", err)
		} else {
			v, known = pv, true
		}
	}
	err = s.sasl(conn, v)
	switch {
	case err == nil && known:
		return nil
	case err == nil, errors.Is(err, scram.ErrProof):
		reason := "wrong_password"
		if !known {
			reason = "unknown"
		}
		s.srcLimit.fail(src)
		if known {
			s.limiter.fail(bucket)
		}
		s.metrics.authFailures.WithLabelValues(reason).Inc()
		s.log.Info("authentication failed", "remote", src, "project", route.Project, "branch", route.Branch, "role", user, "reason", reason)
		return &AuthError{User: user, Reason: reason}
	case errors.Is(err, errSASL):
		s.srcLimit.fail(src)
		if known {
			s.limiter.fail(bucket)
		}
		s.metrics.authFailures.WithLabelValues("protocol").Inc()
		return err
	default: // the client is gone or too slow
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("%w: %w", errAuthTimeout, err)
		}
		return err
	}
}

// sasl runs AuthenticationSASL → SASLContinue → SASLFinal with the client.
// A wrong proof gives scram.ErrProof, a protocol violation errSASL.
func (s *Server) sasl(conn net.Conn, v *scram.Verifier) error {
	if err := send(conn, &pgproto3.AuthenticationSASL{AuthMechanisms: []string{scram.Mechanism}}); err != nil {
		return err
	}
	body, err := readSASL(conn)
	if err != nil {
		return err
	}
	var init pgproto3.SASLInitialResponse
	if err := init.Decode(body); err != nil {
		return fmt.Errorf("%w: expected a SASLInitialResponse (%v)", errSASL, err)
	}
	if init.AuthMechanism != scram.Mechanism {
		if init.AuthMechanism == scram.Mechanism+"-PLUS" {
			return fmt.Errorf("%w: %w", errSASL, scram.ErrChannelBinding)
		}
		return fmt.Errorf("%w: the client selected mechanism %q; only %s is offered", errSASL, init.AuthMechanism, scram.Mechanism)
	}
	c := scram.NewConversation(v)
	first, err := c.ClientFirst(init.Data)
	if err != nil {
		return fmt.Errorf("%w: %w", errSASL, err)
	}
	if err := send(conn, &pgproto3.AuthenticationSASLContinue{Data: first}); err != nil {
		return err
	}
	if body, err = readSASL(conn); err != nil {
		return err
	}
	final, err := c.ClientFinal(body)
	if errors.Is(err, scram.ErrProof) {
		return err
	}
	if err != nil {
		return fmt.Errorf("%w: %w", errSASL, err)
	}
	return send(conn, &pgproto3.AuthenticationSASLFinal{Data: final})
}

// dummyVerifier is the stand-in for an unknown route or role: its salt is
// an HMAC of the names under a per-process secret, so a client asking
// twice sees the same salt, as for a real role, and no password matches.
func (s *Server) dummyVerifier(r Route, user string) *scram.Verifier {
	sum := func(label string) []byte {
		h := hmac.New(sha256.New, s.secret)
		for _, p := range []string{label, r.Project, r.Branch, user} {
			h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(p))))
			h.Write([]byte(p))
		}
		return h.Sum(nil)
	}
	return &scram.Verifier{Iterations: scram.DefaultIterations, Salt: sum("salt")[:scram.SaltLen],
		StoredKey: sum("stored"), ServerKey: sum("server")}
}

func newSecret() []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return b
}

func send(w io.Writer, m pgproto3.BackendMessage) error {
	b, err := m.Encode(nil)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// readSASL reads one frontend message, which must be a SASL response
// ('p'), and returns its body. It reads exactly the message, nothing
// buffered beyond.
func readSASL(r io.Reader) ([]byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int64(binary.BigEndian.Uint32(hdr[1:]))
	if n < 4 || n-4 > maxSASLMessage {
		return nil, fmt.Errorf("%w: a message of %d bytes", errSASL, n)
	}
	// Read the body even of a wrong message, so the error reaches a client
	// (closing with unread data would reset the connection).
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if hdr[0] != 'p' {
		return nil, fmt.Errorf("%w: expected a SASL response, got message type %q", errSASL, hdr[0])
	}
	return body, nil
}

// sourceFailures is how many times MaxAuthFailures one source may fail
// in a window over all its targets.
const sourceFailures = 6

// sourceOf is the rate limit and admission bucket of a client: its IP
// address, or "local" for Unix socket clients.
func sourceOf(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return "local"
}

// limiter counts failed authentications per source in a sliding window.
type limiter struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu    sync.Mutex
	fails map[string][]time.Time // at most max, oldest first
}

// check returns a *RateLimitError when src had max failures within the
// window.
func (l *limiter) check(src string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	f := l.prune(src, now)
	if len(f) < l.max {
		return nil
	}
	return &RateLimitError{Source: src, Retry: f[0].Add(l.window).Sub(now)}
}

// fail counts a failure of src.
func (l *limiter) fail(src string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	f := append(l.prune(src, now), now)
	if len(f) > l.max {
		f = f[len(f)-l.max:]
	}
	l.fails[src] = f
	if len(l.fails) > 4096 { // forget sources whose failures have expired
		for s := range l.fails {
			l.prune(s, now)
		}
	}
}

// prune drops src's failures outside the window. l.mu held.
func (l *limiter) prune(src string, now time.Time) []time.Time {
	f := l.fails[src]
	i := 0
	for i < len(f) && !now.Before(f[i].Add(l.window)) {
		i++
	}
	f = f[i:]
	if len(f) == 0 {
		delete(l.fails, src)
	} else {
		l.fails[src] = f
	}
	return f
}

// admission counts connections that have not authenticated (per source
// and in total) and connections past authentication (per branch and in
// total), and refuses those beyond the caps.
type admission struct {
	preauth capped[string]
	conns   capped[Route]
}

// capped counts holders per key and in total under one lock.
type capped[K comparable] struct {
	mu    sync.Mutex
	per   map[K]int
	total int
}

// take counts one more holder of k unless that passes maxTotal (over is
// "total") or maxPer (over is "per"); the returned func (idempotent)
// gives it back. n is the count that was at its limit.
func (c *capped[K]) take(k K, maxTotal, maxPer int) (release func(), over string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.total >= maxTotal {
		return nil, "total", c.total
	}
	if c.per[k] >= maxPer {
		return nil, "per", c.per[k]
	}
	if c.per == nil {
		c.per = map[K]int{}
	}
	c.per[k]++
	c.total++
	return sync.OnceFunc(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.per[k]--; c.per[k] == 0 {
			delete(c.per, k)
		}
		c.total--
	}), "", 0
}

// admitUnauthenticated counts a new connection of src in the pre-auth
// phase; the returned func (idempotent) ends that phase.
func (s *Server) admitUnauthenticated(src string) (func(), error) {
	release, over, n := s.admission.preauth.take(src, s.cfg.MaxUnauthenticated, s.cfg.MaxUnauthenticatedPerSource)
	switch over {
	case "total":
		s.metrics.preauthRefused.WithLabelValues("total").Inc()
		return nil, fmt.Errorf("%w: %d in total, the limit", ErrTooManyAuthenticating, n)
	case "per":
		s.metrics.preauthRefused.WithLabelValues("source").Inc()
		return nil, fmt.Errorf("%w: %d from %s, the limit per source", ErrTooManyAuthenticating, n, src)
	}
	s.metrics.preauth.Inc()
	return sync.OnceFunc(func() {
		release()
		s.metrics.preauth.Dec()
	}), nil
}

// admitConn counts a connection to route past authentication; the
// returned func (idempotent) ends it.
func (s *Server) admitConn(r Route) (func(), error) {
	release, over, n := s.admission.conns.take(r, s.cfg.MaxConns, s.cfg.MaxConnsPerBranch)
	switch over {
	case "total":
		s.metrics.capRefused.WithLabelValues("total").Inc()
		return nil, fmt.Errorf("%w: %d connections through the proxy, the limit (MaxConns)", ErrTooManyConns, n)
	case "per":
		s.metrics.capRefused.WithLabelValues("branch").Inc()
		return nil, fmt.Errorf("%w: %d connections to branch %s/%s, the limit per branch (MaxConnsPerBranch)", ErrTooManyConns, n, r.Project, r.Branch)
	}
	return release, nil
}

// refuseEarly answers a connection refused before its startup packet was
// read: it sends the ErrorResponse, then reads (and drops) what the client
// sent for up to a second, so closing does not reset the connection
// before the client has read the answer.
func (s *Server) refuseEarly(c net.Conn, err error) {
	s.fail(c, err)
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.CopyN(io.Discard, c, int64(s.cfg.MaxStartupPacket))
}
