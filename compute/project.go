package compute

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/offshootdb/offshoot/compute/pg"
	"github.com/offshootdb/offshoot/storage/cowfs"
)

// InitOptions configure InitProject.
type InitOptions struct {
	// Superuser is the bootstrap superuser. Default "postgres".
	Superuser string
	// Password is the superuser's password. Default: 32 random URL-safe
	// characters.
	Password string
	// LogFile receives the server log of the set-up run. Default: none.
	LogFile string
	// Project, when set, makes initdb and the set-up run as the project's
	// OS user (ProjectUser, created if needed) on a mount private to it,
	// as its endpoints will. Default: the postgres OS user, on a mount
	// private to it. Either way the cluster runs as any endpoint user
	// later: the mounts of StoreVolumes present ownership (see Isolation).
	Project string
}

// InitProject makes a new Postgres cluster on head, the empty head of a
// project's root timeline: it mounts head at mnt (an empty directory, created if missing,
// whose parents the OS user can traverse) privately to the OS user (see
// InitOptions.Project), runs initdb as that user with data checksums, UTF8 and SCRAM authentication for the
// superuser password, starts Postgres once to run CREATE EXTENSION vector
// in database postgres (so every branch inherits pgvector) and create the
// built-in roles (EnsureRoles), shuts it down
// cleanly, syncs the store and unmounts. It returns the superuser password.
func InitProject(ctx context.Context, head cowfs.WritableFiles, mnt string, o InitOptions) (password string, err error) {
	if o.Superuser == "" {
		o.Superuser = "postgres"
	}
	if o.Password == "" {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return "", fmt.Errorf("init project: %w", err)
		}
		o.Password = base64.RawURLEncoding.EncodeToString(b)
	}
	u, err := pg.PostgresUser()
	if o.Project != "" {
		u, err = ProjectUser(ctx, o.Project)
	}
	if err != nil {
		return "", fmt.Errorf("init project: %w", err)
	}
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return "", fmt.Errorf("init project: %w", err)
	}
	m, err := cowfs.Mount(mnt, head, cowfs.MountOptions{Owner: &cowfs.Owner{UID: u.UID, GID: u.GID}})
	if err != nil {
		return "", fmt.Errorf("init project: %w", err)
	}
	defer func() {
		if uerr := m.Unmount(context.WithoutCancel(ctx)); uerr != nil && err == nil {
			err = fmt.Errorf("init project: %w", uerr)
		}
	}()
	if err := pg.InitDB(ctx, pg.InitOptions{DataDir: m.Dir(), Superuser: o.Superuser, Password: o.Password, User: u}); err != nil {
		return "", fmt.Errorf("init project: %w", err)
	}
	sock, err := os.MkdirTemp("", "offshoot-init-")
	if err != nil {
		return "", fmt.Errorf("init project: %w", err)
	}
	defer os.RemoveAll(sock)
	p, err := pg.Start(ctx, pg.Options{DataDir: m.Dir(), SocketDir: sock, LogFile: o.LogFile, User: u})
	if err != nil {
		return "", fmt.Errorf("init project: %w", err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = p.Stop(context.WithoutCancel(ctx), pg.Immediate)
		}
	}()
	cs := p.ConnString(o.Superuser, o.Password, "postgres")
	if err := p.WaitReady(ctx, cs); err != nil {
		return "", fmt.Errorf("init project: %w", err)
	}
	conn, err := pgx.Connect(ctx, cs)
	if err != nil {
		return "", fmt.Errorf("init project: %w", err)
	}
	_, err = conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS vector")
	if err == nil {
		err = EnsureRoles(ctx, conn)
	}
	conn.Close(context.WithoutCancel(ctx))
	if err != nil {
		return "", fmt.Errorf("init project: %w", err)
	}
	stopped = true
	if err := p.Stop(ctx, pg.Fast); err != nil {
		return "", fmt.Errorf("init project: %w", err)
	}
	if err := head.Sync(); err != nil {
		return "", fmt.Errorf("init project: %w", err)
	}
	return o.Password, nil
}
