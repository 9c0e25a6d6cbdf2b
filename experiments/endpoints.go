package experiments

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/compute"
	"github.com/offshootdb/offshoot/compute/pg"
)

// EndpointStatus is the state of a branch's compute endpoint.
type EndpointStatus struct {
	State          string     `json:"state"`
	Since          *time.Time `json:"since,omitempty"`
	LastActive     *time.Time `json:"last_active,omitempty"`
	Connections    int        `json:"connections"`
	Wakes          int64      `json:"wakes"`
	Crashes        int64      `json:"crashes"`
	ComputeSeconds float64    `json:"compute_seconds"`
	LastError      string     `json:"last_error,omitempty"`
}

// ConnectionRequest asks for a branch's connection string.
type ConnectionRequest struct {
	Project, Branch string
	// Password includes the password of the role, which is the branch's
	// own: it opens this branch only. Handing it out is audited.
	Password bool
	// Role is the database role: "superuser" (admin only), "write" (write
	// scope) or "read"; default the strongest the caller's scope allows.
	Role string
}

// Connection is how to reach a branch through the proxy.
type Connection struct {
	URI      string `json:"uri"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	User     string `json:"user"`
	Database string `json:"database"`
	Options  string `json:"options"`
}

// endpointStatus reads a branch's endpoint from compute; its wakes and
// compute seconds are totals since the branch was created.
func (s *Service) endpointStatus(project, branch string) *EndpointStatus {
	if s.cfg.Compute == nil {
		return nil
	}
	st := s.cfg.Compute.Status(project, branch)
	// Compute counts from this server's start; earlier runs' counts are
	// in the control database.
	base := s.computeUsageBase(project, branch)
	e := &EndpointStatus{State: string(st.State), Connections: st.Connections, Wakes: base.Wakes + st.Wakes, Crashes: st.Crashes,
		ComputeSeconds: base.ComputeSeconds + st.ComputeSeconds, LastError: st.LastError}
	if !st.Since.IsZero() {
		e.Since = &st.Since
	}
	if !st.LastActive.IsZero() {
		e.LastActive = &st.LastActive
	}
	return e
}

// stopEndpoint stops a branch's endpoint so that its volume (the storage
// head) is released before a catalog change that needs it closed. With
// discard, for a branch about to be deleted, Postgres skips the shutdown
// checkpoint (compute.Manager.Discard).
func (s *Service) stopEndpoint(ctx context.Context, project, branch string, discard bool) error {
	if s.cfg.Compute == nil {
		return nil
	}
	stop := s.cfg.Compute.Stop
	if discard {
		stop = s.cfg.Compute.Discard
	}
	if err := stop(ctx, project, branch); err != nil {
		return fmt.Errorf("stop endpoint of %s: %w", branch, computeErr(err))
	}
	if discard {
		s.cfg.Compute.SetSettings(project, branch, nil)
	}
	return nil
}

// Connection returns the libpq URI of a branch through the proxy, for the
// database role the caller's scope allows (see ConnectionRequest.Role).
// With Password it carries the role's password on this branch (made on
// first request); every such grant is audited as branch.credential.
func (s *Service) Connection(ctx context.Context, req ConnectionRequest) (*Connection, error) {
	if !req.Password {
		out, err := s.connection(ctx, req)
		return out, s.refused(ctx, "branch.connection", req.Project+"/"+req.Branch, err)
	}
	var out *Connection
	err := s.audited(ctx, "branch.credential", req.Project+"/"+req.Branch, "role="+req.Role, func() error {
		var err error
		out, err = s.connection(ctx, req)
		return err
	})
	return out, err
}

func (s *Service) connection(ctx context.Context, req ConnectionRequest) (*Connection, error) {
	role, err := s.dbRoleFor(ctx, req.Project, req.Branch, req.Role)
	if err != nil {
		return nil, err
	}
	st, err := s.storeOr()
	if err != nil {
		return nil, err
	}
	b, err := st.Branch(req.Project, req.Branch)
	if err != nil {
		return nil, storeErr(err)
	}
	host, portS, err := net.SplitHostPort(s.cfg.ProxyAddr)
	if err != nil {
		return nil, fmt.Errorf("proxy address %q: %w", s.cfg.ProxyAddr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	port, _ := strconv.Atoi(portS)
	opts := "endpoint=" + req.Branch
	if req.Project != s.cfg.DefaultProject {
		opts += " project=" + req.Project
	}
	user := url.User(role)
	if req.Password {
		c, err := s.credential(b, req.Project, role, false)
		if err != nil {
			return nil, err
		}
		user = url.UserPassword(role, c.Password)
	}
	u := url.URL{Scheme: "postgresql", User: user, Host: net.JoinHostPort(host, portS), Path: "/postgres",
		RawQuery: s.sslParams() + "&options=" + strings.ReplaceAll(url.QueryEscape(opts), "+", "%20")}
	return &Connection{URI: u.String(), Host: host, Port: port, User: role, Database: "postgres", Options: opts}, nil
}

// Endpoint returns the state of a branch's endpoint.
func (s *Service) Endpoint(ctx context.Context, project, branch string) (*EndpointStatus, error) {
	if err := s.authorize(ctx, RoleRead, project, branch); err != nil {
		return nil, s.refused(ctx, "endpoint.get", project+"/"+branch, err)
	}
	if s.cfg.Compute == nil {
		return nil, fmt.Errorf("no compute is configured: %w", ErrUnavailable)
	}
	if _, err := s.cfg.Store.Branch(project, branch); err != nil {
		return nil, storeErr(err)
	}
	return s.endpointStatus(project, branch), nil
}

// EndpointAction starts ("start") or suspends ("suspend") a branch's endpoint.
func (s *Service) EndpointAction(ctx context.Context, project, branch, action string) (*EndpointStatus, error) {
	var out *EndpointStatus
	err := s.audited(ctx, "endpoint."+action, project+"/"+branch, "", func() error {
		if err := s.authorize(ctx, RoleWrite, project, branch); err != nil {
			return err
		}
		if s.cfg.Compute == nil {
			return fmt.Errorf("no compute is configured: %w", ErrUnavailable)
		}
		switch action {
		case "start":
			l, err := s.cfg.Compute.Acquire(ctx, project, branch)
			if err != nil {
				return computeErr(err)
			}
			l.Release()
		case "suspend":
			if err := s.cfg.Compute.Suspend(ctx, project, branch); err != nil {
				return computeErr(err)
			}
		default:
			return invalid("action", "want start or suspend")
		}
		out = s.endpointStatus(project, branch)
		return nil
	})
	return out, err
}

// computeConn is the Connector over compute: a lease on the branch's
// endpoint and a connection over its private Unix socket (trusted, see
// compute's pg_hba) as the role access calls for: compute.RoleRead,
// compute.RoleWrite or, for Superuser and Maintenance, the bootstrap
// superuser.
func (s *Service) computeConn(ctx context.Context, project, branch string, access Access) (*pgx.Conn, func(), error) {
	role := compute.RoleWrite
	switch access {
	case ReadOnly:
		role = compute.RoleRead
	case Superuser, Maintenance:
		role = compute.RoleSuperuser
	}
	l, err := s.cfg.Compute.Acquire(ctx, project, branch)
	if err != nil {
		return nil, nil, computeErr(err)
	}
	cs := l.ConnString(role, "", "postgres")
	if access == Maintenance {
		cs = pg.Pinned(cs)
	}
	conn, err := pgx.Connect(ctx, cs)
	if err != nil {
		l.Release()
		return nil, nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return conn, func() {
		conn.Close(context.Background())
		l.Release()
	}, nil
}

type connectorFunc func(ctx context.Context, project, branch string, access Access) (*pgx.Conn, func(), error)

func (f connectorFunc) Conn(ctx context.Context, project, branch string, access Access) (*pgx.Conn, func(), error) {
	return f(ctx, project, branch, access)
}
