package compute

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
)

// Volumes provides the PGDATA directories of branches. The copy-on-write
// store's FUSE mount (storage/cowfs) implements it for real branches;
// DirVolumes implements it for plain directories. Implementations must be
// safe for concurrent use; the Manager mounts a branch at most once at a
// time.
type Volumes interface {
	// Exists reports whether the branch exists (and so can be mounted).
	Exists(ctx context.Context, project, branch string) (bool, error)
	// Mount makes the branch's PGDATA available as a directory owned by
	// the OS user its endpoint runs as: the Volume's User (UserVolume), or
	// the postgres OS user. It returns ErrBranchNotFound (wrapped) for an
	// unknown branch.
	Mount(ctx context.Context, project, branch string) (Volume, error)
}

// Volume is one mounted branch.
type Volume interface {
	// Dir is PGDATA; valid until Release.
	Dir() string
	// Release unmounts. The Manager calls it only after Postgres has
	// stopped, and exactly once.
	Release(ctx context.Context) error
}

// Sweeper is implemented by Volumes that keep state of a branch beside
// its data (StoreVolumes with a local WAL): Sweep drops what belongs to a
// project's branches that are gone. Manager.SweepVolumes calls it.
type Sweeper interface {
	Sweep(ctx context.Context, project string) error
}

// Recoverer is implemented by Volumes that can leave state behind when the
// process dies (FUSE mounts). Manager.Open calls Recover before anything
// else so that stale mounts of a crashed run are cleaned.
type Recoverer interface {
	Recover(ctx context.Context) error
}

// DirVolumes serves branches as plain directories: the PGDATA of branch b
// of project p is Root/<p>/<b> (both path-escaped), an initdb'd cluster
// owned by the postgres user. It is what `offshoot branch export` users
// without FUSE run on, and what the tests use. Mount and Release do
// nothing but check; the zero value is unusable, Root is required.
type DirVolumes struct {
	Root string
}

// Path is where the PGDATA of a branch lives.
func (v DirVolumes) Path(project, branch string) (string, error) {
	if err := checkName(project); err != nil {
		return "", err
	}
	if err := checkName(branch); err != nil {
		return "", err
	}
	return filepath.Join(v.Root, url.PathEscape(project), url.PathEscape(branch)), nil
}

// Exists implements Volumes: the directory holds a PG_VERSION file.
func (v DirVolumes) Exists(_ context.Context, project, branch string) (bool, error) {
	p, err := v.Path(project, branch)
	if err != nil {
		return false, err
	}
	_, err = os.Stat(filepath.Join(p, "PG_VERSION"))
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("branch %s/%s: %w", project, branch, err)
	}
	return true, nil
}

// Mount implements Volumes.
func (v DirVolumes) Mount(ctx context.Context, project, branch string) (Volume, error) {
	ok, err := v.Exists(ctx, project, branch)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s/%s", ErrBranchNotFound, project, branch)
	}
	p, _ := v.Path(project, branch)
	return dirVolume(p), nil
}

type dirVolume string

func (d dirVolume) Dir() string                   { return string(d) }
func (d dirVolume) Release(context.Context) error { return nil }

func checkName(s string) error {
	if s == "" || s == "." || s == ".." || len(s) > 200 {
		return fmt.Errorf("%w: %q", ErrInvalidName, s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %q has a control character", ErrInvalidName, s)
		}
	}
	return nil
}
