package compute

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/offshootdb/offshoot/compute/pg"
	"github.com/offshootdb/offshoot/storage"
	"github.com/offshootdb/offshoot/storage/cowfs"
)

// StoreVolumes serves branches of the copy-on-write store: Mount opens the
// branch's writable storage.Head and mounts it with cowfs at
// MountDir/<project>/<branch> (both path-escaped), one mount point per
// endpoint; Release unmounts it and closes the head. Recover detaches the
// stale mounts a crashed process left under MountDir (cowfs.CleanStale), so
// a Manager's Open cleans them before anything is mounted.
//
// Each project's endpoints run as an OS user of their own (ProjectUser,
// created on first mount): its mounts present every file as that user's
// with a private root (cowfs.MountOptions.Owner), and MountDir/<project> is
// that user's, mode 0700, so no other project's user can open, list or even
// name its branches' files. MountDir and every directory above it must be
// traversable by those users (o+x); the Manager's run directory is the
// natural place. A branch is
// mounted at most once at a time (the store refuses a second head with
// storage.ErrBusy). StoreVolumes is safe for concurrent use; Store and
// MountDir are required.
type StoreVolumes struct {
	Store    *storage.Store
	MountDir string
	// Options are the cowfs options of every mount.
	Options cowfs.MountOptions
	// LocalWALDir, when set, turns on the local WAL tier
	// (docs/wal-tier.md): each endpoint's Postgres keeps its WAL in
	// LocalWALDir/<project>/<timeline> (cowfs.MountOptions.LocalWAL),
	// which its store absorbs before every commit, and Recover absorbs
	// what a crash left there. It must be on the store's file system (the
	// WAL is as durable as that disk) and traversable like MountDir.
	// Default "": the WAL goes through the mount.
	LocalWALDir string
}

// Exists implements Volumes.
func (v StoreVolumes) Exists(_ context.Context, project, branch string) (bool, error) {
	_, err := v.Store.Branch(project, branch)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, storage.ErrBranchNotFound), errors.Is(err, storage.ErrProjectNotFound), errors.Is(err, storage.ErrInvalidName):
		return false, nil
	}
	return false, fmt.Errorf("branch %s/%s: %w", project, branch, err)
}

// MountPoint is where the branch is mounted while its endpoint runs.
func (v StoreVolumes) MountPoint(project, branch string) string {
	return filepath.Join(v.MountDir, url.PathEscape(project), url.PathEscape(branch))
}

// Mount implements Volumes. A postmaster.pid found on a fresh mount is
// removed: no Postgres runs on the branch while it is unmounted, so the file
// is stale (a fork of a running branch inherits its parent's).
func (v StoreVolumes) Mount(ctx context.Context, project, branch string) (Volume, error) {
	if err := checkName(project); err != nil {
		return nil, err
	}
	if err := checkName(branch); err != nil {
		return nil, err
	}
	h, err := v.Store.OpenHead(project, branch)
	if errors.Is(err, storage.ErrBranchNotFound) || errors.Is(err, storage.ErrProjectNotFound) {
		return nil, fmt.Errorf("%w: %s/%s", ErrBranchNotFound, project, branch)
	}
	if err != nil {
		return nil, fmt.Errorf("mount %s/%s: %w", project, branch, err)
	}
	u, err := ProjectUser(ctx, project)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("mount %s/%s: %w", project, branch, err)
	}
	dir := v.MountPoint(project, branch)
	if err := privateDir(filepath.Dir(dir), u); err != nil {
		h.Close()
		return nil, fmt.Errorf("mount %s/%s: %w", project, branch, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		h.Close()
		return nil, fmt.Errorf("mount %s/%s: %w", project, branch, err)
	}
	o := v.Options
	o.Owner = &cowfs.Owner{UID: u.UID, GID: u.GID}
	// The lock file is removed below on every mount, so its fsyncs (six
	// per start, each a store sync on the wake's path) need not be durable.
	o.Volatile = slices.Concat(o.Volatile, []string{"postmaster.pid"})
	if v.LocalWALDir != "" {
		pdir := filepath.Join(v.LocalWALDir, url.PathEscape(project))
		if err := privateDir(pdir, u); err != nil {
			h.Close()
			return nil, fmt.Errorf("mount %s/%s: %w", project, branch, err)
		}
		o.LocalWAL = filepath.Join(pdir, strconv.FormatUint(h.Timeline(), 10))
	}
	m, err := cowfs.Mount(dir, h, o)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("mount %s/%s: %w", project, branch, err)
	}
	if err := os.Remove(filepath.Join(m.Dir(), "postmaster.pid")); err != nil && !os.IsNotExist(err) {
		_ = m.Unmount(ctx)
		h.Close()
		return nil, fmt.Errorf("mount %s/%s: remove stale postmaster.pid: %w", project, branch, err)
	}
	return &storeVolume{m: m, h: h, u: u}, nil
}

// privateDir makes dir (its parents 0755) and gives it to u, mode 0700.
func privateDir(dir string, u pg.OSUser) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !os.IsExist(err) {
		return err
	}
	if err := u.Chown(dir); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// Recover implements Recoverer.
func (v StoreVolumes) Recover(context.Context) error {
	if err := os.MkdirAll(v.MountDir, 0o755); err != nil {
		return fmt.Errorf("recover mounts: %w", err)
	}
	if _, err := cowfs.CleanStale(v.MountDir); err != nil {
		return fmt.Errorf("recover mounts: %w", err)
	}
	if err := v.recoverLocalWAL(); err != nil {
		return fmt.Errorf("recover local WAL: %w", err)
	}
	return nil
}

// Sweep implements Sweeper: it removes the local WAL directories of
// project's branches that are gone. A directory outlives its mount only
// when a crash or a full disk kept it; once its branch is deleted, its
// space comes back here rather than at the next start.
func (v StoreVolumes) Sweep(_ context.Context, project string) error {
	if v.LocalWALDir == "" {
		return nil
	}
	pdir := filepath.Join(v.LocalWALDir, url.PathEscape(project))
	ents, err := os.ReadDir(pdir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sweep local WAL: %w", err)
	}
	for _, e := range ents {
		// A copy in progress (<timeline>.tmp) belongs to a mount under
		// way; Recover removes those a crash left.
		tl, err := strconv.ParseUint(e.Name(), 10, 64)
		if err != nil {
			continue
		}
		if t, ok := v.Store.Timeline(tl); ok && t.Branch != 0 {
			continue
		}
		if err := os.RemoveAll(filepath.Join(pdir, e.Name())); err != nil {
			return fmt.Errorf("sweep local WAL: %w", err)
		}
	}
	return nil
}

// recoverLocalWAL absorbs into its branch every local WAL directory a
// crash left under LocalWALDir (the acknowledged commits since the
// branch's last absorb are only there) and removes it, and removes those
// whose branch is gone: after it, the store alone holds every branch, so
// a reset, a delete or an upload never meets a stale local directory.
// Orphaned postmasters are stopped before (Manager.Open).
func (v StoreVolumes) recoverLocalWAL() error {
	if v.LocalWALDir == "" {
		return nil
	}
	projects, err := os.ReadDir(v.LocalWALDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, pe := range projects {
		pdir := filepath.Join(v.LocalWALDir, pe.Name())
		project, err := url.PathUnescape(pe.Name())
		if err != nil {
			return fmt.Errorf("%s: %w", pdir, err)
		}
		branches, err := v.Store.Branches(project)
		if errors.Is(err, storage.ErrProjectNotFound) {
			branches = nil
		} else if err != nil {
			return err
		}
		byTimeline := map[string]string{}
		for _, b := range branches {
			byTimeline[strconv.FormatUint(b.Timeline, 10)] = b.Name
		}
		ents, err := os.ReadDir(pdir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			dir := filepath.Join(pdir, e.Name())
			branch, ok := byTimeline[e.Name()]
			if !ok { // its branch is gone, or a copy a crash cut short (.tmp)
				if err := os.RemoveAll(dir); err != nil {
					return err
				}
				continue
			}
			h, err := v.Store.OpenHead(project, branch)
			if err != nil {
				return fmt.Errorf("%s/%s: %w", project, branch, err)
			}
			err = cowfs.AbsorbLocalWAL(h, dir, slog.Default())
			if cerr := h.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%s/%s: %w", project, branch, err)
			}
			slog.Default().Warn("absorbed the local WAL a crash left", "project", project, "branch", branch)
		}
	}
	return nil
}

type storeVolume struct {
	m *cowfs.MountPoint
	h *storage.Head
	u pg.OSUser
}

func (s *storeVolume) Dir() string { return s.m.Dir() }

// User implements UserVolume.
func (s *storeVolume) User() pg.OSUser { return s.u }

func (s *storeVolume) Release(ctx context.Context) error {
	uerr := s.m.Unmount(ctx)
	cerr := s.h.Close()
	if errors.Is(uerr, cowfs.ErrWALKept) {
		// A full disk refused the last absorb: the local WAL stays for the
		// branch's next mount (or is dropped with the branch,
		// SweepLocalWAL), and the head, closed, committed nothing it does
		// not cover. The endpoint is stopped all the same.
		slog.Default().Warn("release: local WAL kept", "mount", s.m.Dir(), "err", uerr)
		return nil
	}
	if uerr != nil {
		return fmt.Errorf("release: %w", uerr)
	}
	if cerr != nil {
		return fmt.Errorf("release: %w", cerr)
	}
	return nil
}
