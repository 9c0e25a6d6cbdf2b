package compute

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/offshootdb/offshoot/compute/pg"
)

// UserVolume is implemented by a Volume whose endpoint runs as an OS user
// of its own (see Isolation in the package doc). The Manager runs Postgres
// as User and makes the endpoint's run directory, socket and log private to
// it. A Volume without the method runs as the postgres OS user.
type UserVolume interface {
	Volume
	// User is the OS user that Dir is private to.
	User() pg.OSUser
}

// ProjectUserName is the OS user name of a project's endpoints: "osk_"
// and the first 12 hex digits of the SHA-256 of the project name. It is
// deterministic, so every server on the host and every restart agrees, and
// fits useradd's limit of 32 characters whatever the project is called.
func ProjectUserName(project string) string {
	sum := sha256.Sum256([]byte(project))
	return "osk_" + hex.EncodeToString(sum[:6])
}

// ProjectUser returns the OS user of a project's endpoints
// (ProjectUserName), creating it as a system account on first use
// (pg.EnsureUser, root only). Safe for concurrent use.
func ProjectUser(ctx context.Context, project string) (pg.OSUser, error) {
	if err := checkName(project); err != nil {
		return pg.OSUser{}, err
	}
	u, err := pg.EnsureUser(ctx, ProjectUserName(project))
	if err != nil {
		return pg.OSUser{}, fmt.Errorf("user of project %s: %w", project, err)
	}
	return u, nil
}

// endpointUser is the OS user vol's endpoint runs as.
func endpointUser(vol Volume) (pg.OSUser, error) {
	if uv, ok := vol.(UserVolume); ok {
		return uv.User(), nil
	}
	return pg.PostgresUser()
}

// makeRunDir makes an endpoint's run directory: root's, group u's, mode
// 0750, so that u reads the pg_hba.conf the Manager writes there but can
// neither replace it nor let anyone else in. The socket directory and the
// log inside are u's own (pg.Start).
func makeRunDir(dir string, u pg.OSUser) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("run dir: %w", err)
	}
	if err := os.Chown(dir, 0, int(u.GID)); err != nil {
		return fmt.Errorf("run dir: %w", err)
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		return fmt.Errorf("run dir: %w", err)
	}
	return nil
}
