package cowfs

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// walWatch tells an absorb whether the local WAL directory may have
// changed since the last absorb that succeeded, so that the absorbs which
// find nothing new (every namespace change and fsync of the mount, every
// history tick of an idle branch) skip walking and reading the directory:
// a wake used to spend about a fifth of the FUSE server's CPU there
// (BenchmarkStart).
//
// It is an inotify instance on the directory and its subdirectories. The
// kernel queues an event before the write(2), rename or unlink that causes
// it returns, so anything Postgres wrote before the request that makes the
// head commit (the data page its WAL covers, an unlink after a commit) is
// seen by the absorb that commit runs. An event that arrives during a walk
// stays queued for the next absorb; a queue overflow is an event too.
type walWatch struct {
	fd    int
	clean bool // no event since the last absorb that succeeded
	buf   []byte
}

const walWatchMask = unix.IN_MODIFY | unix.IN_ATTRIB | unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM |
	unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_CLOSE_WRITE

// newWALWatch watches dirs; the first absorb walks regardless.
func newWALWatch(dirs ...string) (*walWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	ww := &walWatch{fd: fd, buf: make([]byte, 64<<10)}
	for _, d := range dirs {
		if err := ww.add(d); err != nil {
			ww.close()
			return nil, err
		}
	}
	return ww, nil
}

// add watches directory dir (again: a watch on a path already watched is
// the same watch).
func (ww *walWatch) add(dir string) error {
	if _, err := unix.InotifyAddWatch(ww.fd, dir, walWatchMask); err != nil {
		return fmt.Errorf("inotify watch %s: %w", dir, err)
	}
	return nil
}

// changed drains the queued events and reports whether an absorb has
// anything to look at: an event came since the last absorb that
// succeeded, or none has yet. Reporting a change does not clear it: only
// absorbed does, so an absorb that fails leaves the next one to walk.
func (ww *walWatch) changed() bool {
	for {
		n, err := unix.Read(ww.fd, ww.buf)
		if n > 0 {
			ww.clean = false
			continue
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil && !errors.Is(err, unix.EAGAIN) {
			ww.clean = false // cannot tell
		}
		break
	}
	return !ww.clean
}

// absorbed records that an absorb which began after the last changed()
// succeeded: until the next event there is nothing new.
func (ww *walWatch) absorbed() { ww.clean = true }

func (ww *walWatch) close() { unix.Close(ww.fd) }
