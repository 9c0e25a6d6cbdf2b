package agentapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/offshootdb/offshoot/experiments"
)

type adminConnKey struct{}

// isAdminConn reports whether a request arrived on the admin socket.
func isAdminConn(ctx context.Context) bool {
	v, _ := ctx.Value(adminConnKey{}).(bool)
	return v
}

// ServeAdmin serves the same API on ln, a Unix socket listener, until ctx
// is done: the local admin channel. Every request on it acts as the local
// operator (experiments.LocalCaller) whatever keys exist, so an operator
// of a server that listens only off loopback can create the first admin
// key, and one who revoked every admin key gets back in. Only peers
// running as root or as this process's user are served (SO_PEERCRED);
// other connections are closed and audited as "admin.connect" denied.
// The caller makes the socket file reachable by those users only (mode
// 0600 in a directory it owns).
func (s *Server) ServeAdmin(ctx context.Context, ln *net.UnixListener) error {
	return s.serve(ctx, &peerCheckedListener{UnixListener: ln, s: s}, func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, adminConnKey{}, true)
	})
}

// peerCheckedListener accepts only connections from root or our own uid.
type peerCheckedListener struct {
	*net.UnixListener
	s *Server
}

// Accept returns the next connection whose peer may administer the server.
func (l *peerCheckedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && (uid == 0 || uid == uint32(os.Getuid())) {
			return c, nil
		}
		if err == nil {
			err = fmt.Errorf("peer uid %d is neither root nor the server's uid %d: %w", uid, os.Getuid(), experiments.ErrForbidden)
		}
		l.s.svc.Audit(context.Background(), experiments.AuditEntry{Action: "admin.connect", Target: "admin.sock", Result: "denied", Error: err.Error()})
		c.Close()
	}
}

// peerUID returns the uid of the process at the other end of c.
func peerUID(c *net.UnixConn) (uint32, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("peer credentials: %w", err)
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, fmt.Errorf("peer credentials: %w", err)
	}
	if cerr != nil {
		return 0, fmt.Errorf("peer credentials: %w", cerr)
	}
	if cred == nil {
		return 0, errors.New("peer credentials: none")
	}
	return cred.Uid, nil
}
