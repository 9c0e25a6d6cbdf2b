// Package pg runs PostgreSQL 15 server processes: it finds the binaries,
// initializes clusters with initdb and starts and stops postmasters as an
// unprivileged OS user (`postgres` unless told otherwise; EnsureUser makes
// others). It is the mechanism under compute's endpoints, the
// project initializer and the tests; it knows nothing of branches.
package pg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Errors returned by this package.
var (
	// ErrNoPostgres means the PostgreSQL 15 server binaries were not found.
	ErrNoPostgres = errors.New("postgres 15 binaries not found (run scripts/setup, or set OFFSHOOT_PG_BIN)")
	// ErrNoOSUser means the `postgres` OS user does not exist.
	ErrNoOSUser = errors.New("OS user postgres not found (installing postgresql-15 creates it)")
	// ErrExited means the postmaster exited before it became ready.
	ErrExited = errors.New("postgres exited")
	// ErrNoUseradd means EnsureUser found no useradd program.
	ErrNoUseradd = errors.New("useradd not found (the passwd package provides it)")
)

// BinDir is the directory of the PostgreSQL 15 binaries:
// $OFFSHOOT_PG_BIN, default /usr/lib/postgresql/15/bin.
func BinDir() string {
	if d := os.Getenv("OFFSHOOT_PG_BIN"); d != "" {
		return d
	}
	return "/usr/lib/postgresql/15/bin"
}

// Bin is the path of one PostgreSQL program, e.g. Bin("initdb").
func Bin(name string) string { return filepath.Join(BinDir(), name) }

// OSUser is the account server processes run as.
type OSUser struct {
	Name     string
	UID, GID uint32
}

// PostgresUser looks up the `postgres` OS user.
func PostgresUser() (OSUser, error) {
	u, err := LookupUser("postgres")
	if err != nil {
		return OSUser{}, ErrNoOSUser
	}
	return u, nil
}

// LookupUser looks up an OS user by name; its GID is the primary group.
func LookupUser(name string) (OSUser, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return OSUser{}, err
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return OSUser{Name: u.Username, UID: uint32(uid), GID: uint32(gid)}, nil
}

// Useradd is the path of the useradd program: found in $PATH, else in
// /usr/sbin or /sbin (a root shell's PATH may lack them). It returns
// ErrNoUseradd when there is none.
func Useradd() (string, error) {
	if p, err := exec.LookPath("useradd"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/useradd", "/sbin/useradd"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", ErrNoUseradd
}

// userMu serializes EnsureUser within the process; useradd locks
// /etc/passwd against other processes.
var userMu sync.Mutex

// EnsureUser returns the OS user name, creating it first when it does not
// exist: a system account with a group of its own, no home and no login
// shell (useradd --system --user-group). It needs root (and useradd, from
// Debian's essential passwd package). Safe for concurrent use, also by
// several processes: a user another one created in the meantime is
// returned as found. System accounts take uids from SYS_UID_MIN..SYS_UID_MAX
// of /etc/login.defs (100-999 on Debian); useradd's error says when they run
// out.
func EnsureUser(ctx context.Context, name string) (OSUser, error) {
	if u, err := LookupUser(name); err == nil {
		return u, nil
	}
	userMu.Lock()
	defer userMu.Unlock()
	if u, err := LookupUser(name); err == nil {
		return u, nil
	}
	bin, err := Useradd()
	if err != nil {
		return OSUser{}, fmt.Errorf("create OS user %s: %w", name, err)
	}
	out, err := exec.CommandContext(ctx, bin, "--system", "--no-create-home", "--home-dir", "/nonexistent",
		"--shell", "/usr/sbin/nologin", "--user-group", name).CombinedOutput()
	if u, lerr := LookupUser(name); lerr == nil {
		return u, nil // created, here or by another process (useradd exits 9)
	}
	if err == nil {
		err = errors.New("useradd succeeded but the user is not found")
	}
	return OSUser{}, fmt.Errorf("create OS user %s: %w: %s", name, err, strings.TrimSpace(string(out)))
}

// Chown gives path to u.
func (u OSUser) Chown(path string) error { return os.Chown(path, int(u.UID), int(u.GID)) }

// Command builds an exec.Cmd of a PostgreSQL program running as u. When the
// current process is not root, it runs as the current user.
func (u OSUser) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, Bin(name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "TZ=UTC")
	if os.Geteuid() == 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID}
		// Not root's home: libpq inside the server (a standby's WAL
		// receiver, postgres_fdw) looks there for ~/.postgresql client
		// certificates and fails on a directory it may not enter.
		home := "/nonexistent"
		if pu, err := user.LookupId(strconv.FormatUint(uint64(u.UID), 10)); err == nil && pu.HomeDir != "" {
			home = pu.HomeDir
		}
		cmd.Env = append(cmd.Env, "HOME="+home)
	}
	return cmd
}

// Version returns the output of `postgres --version`, e.g.
// "postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)".
func Version(ctx context.Context) (string, error) {
	if _, err := os.Stat(Bin("postgres")); err != nil {
		return "", ErrNoPostgres
	}
	out, err := exec.CommandContext(ctx, Bin("postgres"), "--version").Output()
	if err != nil {
		return "", fmt.Errorf("postgres --version: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// InitOptions configure InitDB.
type InitOptions struct {
	// DataDir is the new cluster's directory; it must be empty or absent
	// and its parent traversable by User.
	DataDir string
	// User owns the cluster and runs initdb. Default (zero): the postgres
	// user.
	User OSUser
	// Superuser is the bootstrap superuser's name. Default "postgres".
	Superuser string
	// Password is the superuser's password. With a password, every
	// connection (local and host) authenticates with SCRAM-SHA-256; without
	// one, local connections are trusted (tests only).
	Password string
}

// InitDB runs initdb as o.User with data checksums and UTF8.
func InitDB(ctx context.Context, o InitOptions) error {
	u, err := o.User.orPostgres()
	if err != nil {
		return err
	}
	if o.Superuser == "" {
		o.Superuser = "postgres"
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	if err := u.Chown(o.DataDir); err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	args := []string{"-D", o.DataDir, "-U", o.Superuser, "--data-checksums", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"}
	if o.Password != "" {
		pw, err := os.CreateTemp("", "offshoot-pw-*")
		if err != nil {
			return fmt.Errorf("initdb: %w", err)
		}
		defer os.Remove(pw.Name())
		if _, err := pw.WriteString(o.Password + "\n"); err != nil {
			pw.Close()
			return fmt.Errorf("initdb: %w", err)
		}
		pw.Close()
		if err := u.Chown(pw.Name()); err != nil {
			return fmt.Errorf("initdb: %w", err)
		}
		args = append(args, "--auth=scram-sha-256", "--pwfile="+pw.Name())
	} else {
		args = append(args, "--auth=trust")
	}
	out, err := u.Command(ctx, "initdb", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb %s: %w: %s", o.DataDir, err, LastLinesOf(string(out), 10))
	}
	return nil
}

// Options configure a postmaster. Settings that must not travel with a
// branch's PGDATA are passed here, on the command line, never written into
// the data directory.
type Options struct {
	// DataDir is PGDATA.
	DataDir string
	// SocketDir is the private Unix socket directory (required).
	SocketDir string
	// Port is the TCP port on 127.0.0.1, or 0 for Unix socket only. It also
	// names the socket file (.s.PGSQL.<port>); with 0 that name uses 5432.
	Port int
	// Settings are extra -c name=value options (shared_buffers, ...).
	Settings map[string]string
	// LogFile receives the server's stderr; empty discards it. Start
	// makes it User's, mode 0600.
	LogFile string
	// User runs the server; it must own DataDir (mode 0700). Start makes
	// SocketDir its, mode 0700. Default (zero): the postgres user.
	User OSUser
}

// orPostgres is u, or the postgres user for the zero OSUser.
func (u OSUser) orPostgres() (OSUser, error) {
	if u == (OSUser{}) {
		return PostgresUser()
	}
	return u, nil
}

// SocketPort is the port number in the socket file name.
func (o Options) SocketPort() int {
	if o.Port == 0 {
		return 5432
	}
	return o.Port
}

// Postmaster is a running postgres server process.
type Postmaster struct {
	opts Options
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	err  error
}

// Start launches postgres as o.User and returns without waiting for
// readiness; use WaitReady.
func Start(ctx context.Context, o Options) (*Postmaster, error) {
	u, err := o.User.orPostgres()
	if err != nil {
		return nil, err
	}
	if o.SocketDir == "" {
		return nil, errors.New("start postgres: SocketDir is required")
	}
	if err := os.MkdirAll(o.SocketDir, 0o700); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	if err := u.Chown(o.SocketDir); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	if err := os.Chmod(o.SocketDir, 0o700); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	settings := map[string]string{
		"unix_socket_directories": o.SocketDir,
		"port":                    strconv.Itoa(o.SocketPort()),
		"listen_addresses":        "",
	}
	if o.Port != 0 {
		settings["listen_addresses"] = "127.0.0.1"
	}
	for k, v := range o.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := []string{"-D", o.DataDir}
	for _, k := range keys {
		args = append(args, "-c", k+"="+settings[k])
	}
	// Not CommandContext: the postmaster outlives the start request.
	cmd := u.Command(context.Background(), "postgres", args...)
	if o.LogFile != "" {
		f, err := os.OpenFile(o.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("start postgres: %w", err)
		}
		defer f.Close()
		if err := f.Chmod(0o600); err != nil {
			return nil, fmt.Errorf("start postgres: %w", err)
		}
		if os.Geteuid() == 0 {
			if err := f.Chown(int(u.UID), int(u.GID)); err != nil {
				return nil, fmt.Errorf("start postgres: %w", err)
			}
		}
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	p := &Postmaster{opts: o, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Pid is the postmaster's process id.
func (p *Postmaster) Pid() int { return p.cmd.Process.Pid }

// Options returns the options the postmaster was started with.
func (p *Postmaster) Options() Options { return p.opts }

// Done is closed when the postmaster has exited.
func (p *Postmaster) Done() <-chan struct{} { return p.done }

// ExitErr is how the postmaster exited (nil while running or on a clean exit).
func (p *Postmaster) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// ConnString is a keyword/value connection string for the Unix socket.
func (p *Postmaster) ConnString(user, password, database string) string {
	s := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", p.opts.SocketDir, p.opts.SocketPort(), user, database)
	if password != "" {
		s += " password='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(password) + "'"
	}
	return s
}

// Pinned is connString with the session's search_path pinned to
// pg_catalog, pg_temp (in the startup packet, which no database or role
// default overrides): the server's own superuser sessions then resolve no
// function, operator or table through a schema a user owns, where a
// better-matching overload or a default search_path set by a database's
// owner would run the user's code as the superuser.
func Pinned(connString string) string {
	return connString + " options='-c search_path=pg_catalog,pg_temp'"
}

// WaitReady returns once a real connection with connString answers a query,
// or when ctx ends or the postmaster exits.
func (p *Postmaster) WaitReady(ctx context.Context, connString string) error {
	delay := 5 * time.Millisecond
	for {
		conn, err := pgx.Connect(ctx, connString)
		if err == nil {
			_, err = conn.Exec(ctx, "SELECT 1")
			conn.Close(context.Background())
			if err == nil {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%w: %v (last connection error: %v)", ErrExited, p.ExitErr(), err)
		case <-ctx.Done():
			return fmt.Errorf("wait for postgres: %w (last connection error: %v)", ctx.Err(), err)
		case <-time.After(delay):
		}
		if delay < 100*time.Millisecond {
			delay *= 2
		}
	}
}

// WaitPidReady returns once postmaster.pid's status line says the server
// accepts connections (PidReady, checked every 2 ms), or fails when the
// postmaster exits or ctx ends. Unlike WaitReady it opens no connection,
// which costs a backend start.
func (p *Postmaster) WaitPidReady(ctx context.Context) error {
	for !PidReady(p.opts.DataDir) {
		select {
		case <-p.done:
			return fmt.Errorf("%w: %v", ErrExited, p.ExitErr())
		case <-ctx.Done():
			return fmt.Errorf("wait for postgres: %w", ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

// PidReady reports whether dataDir's postmaster.pid status line (the 8th)
// says the server accepts connections.
func PidReady(dataDir string) bool {
	b, err := ReadDataFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return false
	}
	lines := strings.Split(string(b), "\n")
	return len(lines) > 7 && strings.TrimSpace(lines[7]) == "ready"
}

// ReadDataFile is os.ReadFile without its fstat, which on a FUSE mount
// costs a GETATTR whenever the file was read or written since the last
// one (the kernel drops its cached times then); a read of cached pages
// costs no request. postmaster.pid is polled every 2 ms while Postgres
// starts.
func ReadDataFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// StopMode is a PostgreSQL shutdown mode.
type StopMode int

const (
	// Fast disconnects clients and shuts down cleanly (SIGINT).
	Fast StopMode = iota
	// Immediate quits without a checkpoint; crash recovery runs on the next start (SIGQUIT).
	Immediate
	// Smart waits for clients to disconnect (SIGTERM).
	Smart
)

// Stop signals the postmaster and waits for it to exit. If ctx ends first
// it escalates to an immediate shutdown, then SIGKILL.
func (p *Postmaster) Stop(ctx context.Context, mode StopMode) error {
	sig := map[StopMode]syscall.Signal{Fast: syscall.SIGINT, Immediate: syscall.SIGQUIT, Smart: syscall.SIGTERM}[mode]
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
	}
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("stop postgres %d: %w", p.Pid(), ctx.Err())
}

// LastLinesOf returns the last n lines of s (a program's output).
func LastLinesOf(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// LastLines returns the last n lines of a file (a server log), or "".
func LastLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return LastLinesOf(string(b), n)
}
