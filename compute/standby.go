package compute

// Hot standbys: endpoints that follow a primary elsewhere with PostgreSQL's
// streaming replication, and the base backup that seeds them.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/offshootdb/offshoot/compute/pg"
	"github.com/offshootdb/offshoot/storage/cowfs"
)

// Standby makes an endpoint a hot standby of a primary reached with
// libpq: Config.Standby returns one for each branch that is a replica.
type Standby struct {
	// ConnInfo is libpq keyword/value connection parameters of the
	// primary (host, port, user, options, sslmode, ...), without password,
	// passfile or sslrootcert: those three the Manager adds from the fields
	// below, as files in the endpoint's run directory, so that no secret
	// reaches a command line or the branch's data directory.
	ConnInfo string
	// Password of ConnInfo's user; "" for none.
	Password string
	// RootCert is the PEM of the CA that signs the primary's certificate,
	// for sslmode verify-ca or verify-full; nil for none.
	RootCert []byte
	// Slot is the physical replication slot on the primary that keeps the
	// WAL the standby has not received yet.
	Slot string
}

// standbySignal is the file in PGDATA that starts Postgres as a standby.
const standbySignal = "standby.signal"

// standbyOf asks Config.Standby about ep. An error (for example the service
// that knows its replicas is not ready) fails the start: starting a
// replica as an ordinary server would end its recovery for good.
func (m *Manager) standbyOf(ep *endpoint) (*Standby, error) {
	if m.cfg.Standby == nil {
		return nil, nil
	}
	sb, err := m.cfg.Standby(ep.project, ep.branch)
	if err != nil {
		return nil, fmt.Errorf("is %s/%s a replica: %w", ep.project, ep.branch, err)
	}
	return sb, nil
}

// prepareStandby readies ep's data directory and run directory for its
// role: for a standby it writes standby.signal into PGDATA and the
// password and CA files into the run directory (readable by the
// endpoint's group only) and returns the settings that point Postgres at
// the primary; for any other branch it removes a standby.signal the
// branch inherited (a fork of a replica, or a replica whose promotion was
// cut short), so the branch ends recovery and comes up writable.
func prepareStandby(sb *Standby, runDir, dataDir string, u pg.OSUser) (map[string]string, error) {
	signal := filepath.Join(dataDir, standbySignal)
	if sb == nil {
		if err := os.Remove(signal); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove %s: %w", standbySignal, err)
		}
		// A promoted replica keeps no way into its former source.
		removeStandbyFiles(runDir)
		return nil, nil
	}
	if err := os.WriteFile(signal, nil, 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", standbySignal, err)
	}
	conninfo := sb.ConnInfo
	if sb.Password != "" {
		// passfile lines are host:port:database:user:password; a
		// replication connection looks up database "replication".
		// libpq ignores a password file others may read: it is the
		// endpoint user's, mode 0600.
		line := "*:*:*:*:" + strings.NewReplacer(`\`, `\\`, `:`, `\:`).Replace(sb.Password) + "\n"
		p := filepath.Join(runDir, "primary.pgpass")
		err := os.WriteFile(p, []byte(line), 0o600)
		if err == nil {
			err = os.Chown(p, int(u.UID), int(u.GID))
		}
		if err == nil {
			err = os.Chmod(p, 0o600)
		}
		if err != nil {
			return nil, fmt.Errorf("write the primary's password file: %w", err)
		}
		conninfo += " passfile=" + QuoteConnValue(p)
	}
	if len(sb.RootCert) > 0 {
		p, err := writeRunFile(runDir, "primary-root.crt", sb.RootCert, u)
		if err != nil {
			return nil, err
		}
		conninfo += " sslrootcert=" + QuoteConnValue(p)
	}
	return map[string]string{"primary_conninfo": conninfo, "primary_slot_name": sb.Slot, "hot_standby": "on"}, nil
}

// removeStandbyFiles removes what prepareStandby wrote into an
// endpoint's run directory to reach its primary: the replication
// password and the primary's CA.
func removeStandbyFiles(runDir string) {
	os.Remove(filepath.Join(runDir, "primary.pgpass"))
	os.Remove(filepath.Join(runDir, "primary-root.crt"))
}

// writeRunFile writes a file into an endpoint's run directory owned by
// root and readable by the group of u only (0640), like its pg_hba.conf.
func writeRunFile(dir, name string, data []byte, u pg.OSUser) (string, error) {
	p := filepath.Join(dir, name)
	err := os.WriteFile(p, data, 0o640)
	if err == nil {
		err = os.Chown(p, 0, int(u.GID))
	}
	if err == nil {
		err = os.Chmod(p, 0o640) // a file left by an earlier run keeps its mode otherwise
	}
	if err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	return p, nil
}

// QuoteConnValue quotes a libpq keyword/value connection parameter value.
func QuoteConnValue(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// WithRootCert returns ConnInfo for a client of this process: with
// sslrootcert naming a temporary copy of RootCert when there is one, and
// a func that removes the copy.
func (sb Standby) WithRootCert() (conninfo string, done func(), err error) {
	if len(sb.RootCert) == 0 {
		return sb.ConnInfo, func() {}, nil
	}
	f, err := os.CreateTemp("", "offshoot-root-*.crt")
	if err != nil {
		return "", nil, err
	}
	_, err = f.Write(sb.RootCert)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", nil, err
	}
	return sb.ConnInfo + " sslrootcert=" + QuoteConnValue(f.Name()), func() { os.Remove(f.Name()) }, nil
}

// BaseBackupOptions configure BaseBackup.
type BaseBackupOptions struct {
	// Standby is the primary to copy and, later, follow. Its slot is
	// created by the backup (it must not exist yet) and keeps the WAL
	// from the backup's start until the standby connects.
	Standby Standby
	// Project is the project whose OS user the mount presents as owner
	// (ProjectUser); "" for the postgres OS user.
	Project string
	// LogFile receives pg_basebackup's output; default: none.
	LogFile string
	// MaxRate caps the transfer rate from the primary, as pg_basebackup's
	// --max-rate takes it (kB/s, or with a k or M suffix); "": no cap.
	MaxRate string
}

// BaseBackup seeds head, the empty head of a project's root timeline,
// with a copy of a running primary: it mounts head at mnt (created if
// missing) privately to the OS user, runs pg_basebackup there with WAL
// streamed alongside and a new replication slot, writes standby.signal,
// syncs the store and unmounts. The endpoint then starts as a hot standby
// when Config.Standby names the branch.
func BaseBackup(ctx context.Context, head cowfs.WritableFiles, mnt string, o BaseBackupOptions) (err error) {
	u, err := pg.PostgresUser()
	if o.Project != "" {
		u, err = ProjectUser(ctx, o.Project)
	}
	if err != nil {
		return fmt.Errorf("base backup: %w", err)
	}
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return fmt.Errorf("base backup: %w", err)
	}
	m, err := cowfs.Mount(mnt, head, cowfs.MountOptions{Owner: &cowfs.Owner{UID: u.UID, GID: u.GID}})
	if err != nil {
		return fmt.Errorf("base backup: %w", err)
	}
	defer func() {
		if uerr := m.Unmount(context.WithoutCancel(ctx)); uerr != nil && err == nil {
			err = fmt.Errorf("base backup: %w", uerr)
		}
	}()
	// pg_basebackup runs as root, which reads the CA file the caller
	// named and writes through the mount, whose files every reader sees
	// as the project user's. The password travels in the environment, not
	// on the command line.
	conninfo, done, err := o.Standby.WithRootCert()
	if err != nil {
		return fmt.Errorf("base backup: %w", err)
	}
	defer done()
	cmd := exec.CommandContext(ctx, pg.Bin("pg_basebackup"), "--pgdata", m.Dir(), "--dbname", conninfo,
		"--wal-method", "stream", "--checkpoint", "fast", "--slot", o.Standby.Slot, "--create-slot", "--no-sync",
		"--label", "offshoot replica "+o.Standby.Slot)
	if o.MaxRate != "" {
		cmd.Args = append(cmd.Args, "--max-rate", o.MaxRate)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "PGCONNECT_TIMEOUT=30")
	if o.Standby.Password != "" {
		cmd.Env = append(cmd.Env, "PGPASSWORD="+o.Standby.Password)
	}
	out, err := cmd.CombinedOutput()
	if o.LogFile != "" {
		_ = os.WriteFile(o.LogFile, out, 0o600)
	}
	if err != nil {
		return fmt.Errorf("base backup: pg_basebackup: %w: %s", err, strings.TrimSpace(pg.LastLinesOf(string(out), 5)))
	}
	if err := os.WriteFile(filepath.Join(m.Dir(), standbySignal), nil, 0o600); err != nil {
		return fmt.Errorf("base backup: %w", err)
	}
	if err := head.Sync(); err != nil {
		return fmt.Errorf("base backup: %w", err)
	}
	return nil
}

// KillBaseBackups kills the pg_basebackup processes that copy into a
// standby with the given slot (BaseBackup's, left running by a killed
// server: they hold the slot on the primary) and returns how many it
// found.
func KillBaseBackups(slot string) int {
	n := 0
	eachProc(func(pid int) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			return
		}
		args := strings.Split(string(b), "\x00")
		if filepath.Base(args[0]) != "pg_basebackup" || !slices.Contains(args, "--slot") || !slices.Contains(args, slot) {
			return
		}
		// Its WAL streamer is a forked child with the same command line.
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	})
	return n
}
