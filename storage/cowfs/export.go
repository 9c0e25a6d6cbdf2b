package cowfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/offshootdb/offshoot/storage"
)

// exportSkip are files a copy must not carry: the lock file of the
// postmaster that ran on the source (its pid may be alive, and Postgres
// refuses to start next to a live lock file).
var exportSkip = map[string]bool{"postmaster.pid": true}

// Export writes the tree of files (normally a read-only view at a seq, so
// that the copy is one consistent state) to dir as plain directories and
// files (and symlinks), keeping modes, owners and modification times, and
// fsyncs it.
// dir must be absent or empty. A Postgres data directory exported from a
// view is crash-consistent: plain Postgres starts on it with ordinary
// crash recovery. Export reads through the Files API, not through a mount.
func Export(ctx context.Context, files Files, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	names, err := f.Readdirnames(1)
	f.Close()
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("export: %w", err)
	}
	if len(names) > 0 {
		return fmt.Errorf("export to %s: %w", dir, ErrNotEmpty)
	}
	root, err := files.GetAttr(storage.RootIno)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	buf := make([]byte, 1<<20)
	if err := exportDir(ctx, files, root, dir, buf); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

func exportDir(ctx context.Context, files Files, a storage.Attr, dir string, buf []byte) error {
	ents, err := files.ReadDir(a.Ino)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		if exportSkip[e.Name] && a.Ino == storage.RootIno {
			continue
		}
		ca, err := files.GetAttr(e.Ino)
		if err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(dir, e.Name), err)
		}
		p := filepath.Join(dir, e.Name)
		switch ca.Mode & syscall.S_IFMT {
		case syscall.S_IFDIR:
			if err := os.Mkdir(p, 0o700); err != nil {
				return err
			}
			if err := exportDir(ctx, files, ca, p, buf); err != nil {
				return err
			}
		case syscall.S_IFREG:
			if err := exportFile(files, ca, p, buf); err != nil {
				return err
			}
		case syscall.S_IFLNK:
			target, err := files.Readlink(ca.Ino)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if err := os.Symlink(target, p); err != nil {
				return err
			}
			if err := finish(p, ca); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: %w (mode %o)", p, ErrFileType, ca.Mode)
		}
	}
	return finish(dir, a)
}

func exportFile(files Files, a storage.Attr, p string, buf []byte) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	for off := int64(0); off < int64(a.Size); {
		n, err := files.ReadAt(a.Ino, buf[:min(int64(len(buf)), int64(a.Size)-off)], off)
		if n == 0 && err == nil {
			err = io.ErrUnexpectedEOF
		}
		if err != nil && !(errors.Is(err, io.EOF) && n > 0) {
			return fmt.Errorf("%s: read at %d: %w", p, off, err)
		}
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return err
		}
		off += int64(n)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return finish(p, a)
}

// finish sets mode, owner and mtime, and fsyncs a directory.
func finish(p string, a storage.Attr) error {
	if a.Mode&syscall.S_IFMT == syscall.S_IFLNK {
		return os.Lchown(p, int(a.Uid), int(a.Gid))
	}
	if err := os.Chown(p, int(a.Uid), int(a.Gid)); err != nil {
		return err
	}
	if err := os.Chmod(p, os.FileMode(a.Mode&0o777)); err != nil {
		return err
	}
	if !a.Mtime.IsZero() {
		if err := os.Chtimes(p, a.Mtime, a.Mtime); err != nil {
			return err
		}
	}
	if a.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		d, err := os.Open(p)
		if err != nil {
			return err
		}
		defer d.Close()
		return d.Sync()
	}
	return nil
}

// ExportBranch exports branch of project at point at (storage.AtHead for
// its current state) to dir through a view it opens and closes; see Export.
func ExportBranch(ctx context.Context, s *storage.Store, project, branch string, at storage.At, dir string) error {
	v, err := s.OpenView(project, branch, at)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer v.Close()
	return Export(ctx, v, dir)
}
