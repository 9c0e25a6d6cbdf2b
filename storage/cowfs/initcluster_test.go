package cowfs

import (
	"context"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/compute/pg"
)

const testPassword = "cowfs-test-password"

// initCluster is the test twin of compute.InitProject (which cowfs cannot
// import without a cycle): initdb on a mount of head, CREATE EXTENSION
// vector, clean shutdown, sync, unmount. It returns the superuser password.
func initCluster(ctx context.Context, head WritableFiles, mnt, logFile string) (password string, err error) {
	m, err := Mount(mnt, head, MountOptions{})
	if err != nil {
		return "", err
	}
	defer func() {
		if uerr := m.Unmount(context.WithoutCancel(ctx)); uerr != nil && err == nil {
			err = uerr
		}
	}()
	if err := pg.InitDB(ctx, pg.InitOptions{DataDir: m.Dir(), Superuser: "postgres", Password: testPassword}); err != nil {
		return "", err
	}
	sock, err := os.MkdirTemp("", "offshoot-init-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(sock)
	p, err := pg.Start(ctx, pg.Options{DataDir: m.Dir(), SocketDir: sock, LogFile: logFile})
	if err != nil {
		return "", err
	}
	cs := p.ConnString("postgres", testPassword, "postgres")
	if err := p.WaitReady(ctx, cs); err != nil {
		_ = p.Stop(context.WithoutCancel(ctx), pg.Immediate)
		return "", err
	}
	conn, err := pgx.Connect(ctx, cs)
	if err != nil {
		_ = p.Stop(context.WithoutCancel(ctx), pg.Immediate)
		return "", err
	}
	_, err = conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS vector")
	conn.Close(context.WithoutCancel(ctx))
	if err != nil {
		_ = p.Stop(context.WithoutCancel(ctx), pg.Immediate)
		return "", fmt.Errorf("create extension vector: %w", err)
	}
	if err := p.Stop(ctx, pg.Fast); err != nil {
		return "", err
	}
	return testPassword, head.Sync()
}
