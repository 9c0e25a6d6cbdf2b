package cowfs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/offshootdb/offshoot/storage"
)

// FSType is the file system type of offshoot's mounts in /proc/mounts.
const FSType = "fuse.offshoot"

// MountOptions configure Mount. The zero value is the default.
type MountOptions struct {
	// Logger receives errors the store returns that have no errno of
	// their own. Default slog.Default().
	Logger *slog.Logger
	// NoWritebackCache turns the FUSE writeback cache off. By default the
	// kernel buffers writes in the page cache and hands them over later,
	// in larger requests; fsync and fdatasync still send every dirty page
	// and then commit the store, so acknowledged Postgres commits are
	// durable either way (the crash test runs both ways). What a fork or
	// view of a running head sees is what reached the store: like a
	// crash, it may miss writes not yet fsynced, which Postgres' crash
	// recovery handles. Measured with pgbench (scale 10, 4 clients, same
	// run): initialization (COPY of 1M rows, index, vacuum) 13.7 s with the
	// cache vs 24.9 s without (native disk: 9.6 s); TPC-B 1.05x and
	// select-only 1.08x the tps without it.
	NoWritebackCache bool
	// Debug logs every FUSE request.
	Debug bool
	// Owner, when set, makes the mount private to one OS user: every
	// inode is presented as owned by Owner and the root directory with
	// mode 0700, so that with default_permissions only that user (and
	// root) can enter it. The stored uid and gid are neither changed nor
	// shown: a data directory initialized as `postgres` runs as any owner,
	// and so do its forks. Files created through the mount store the
	// creator's uid and gid as usual. Default nil: ownership as stored.
	Owner *Owner
	// LocalWAL, for a read-write mount of a head whose store holds a
	// pg_wal directory, is a directory on local disk (absent, or left by a
	// mount that did not end cleanly) where Postgres keeps its WAL: the
	// mount shows pg_wal as a symlink to it, and the head copies it into
	// the store before every commit, at every history tick and at
	// Unmount, which then removes it (localwal.go, docs/wal-tier.md).
	// Its parent must be reachable by the OS user Postgres runs as.
	// Default "": the WAL goes through the mount like every other file.
	LocalWAL string
	// Volatile names files of the root directory that are worthless after
	// a crash, so their fsync need not commit the store: it returns once
	// the kernel has handed over the file's dirty pages, and the next
	// fsync of any other file (or a flush of the head) makes them durable
	// with everything else. Crash images stay prefixes of what was
	// written; they just may miss these files' last writes. Compute names
	// postmaster.pid, which it removes on every mount and Postgres fsyncs
	// six times per start. Default none.
	Volatile []string
}

// Owner is the uid and gid a private mount presents (MountOptions.Owner).
type Owner struct {
	UID, GID uint32
}

// MountPoint is one mounted file system. Its methods are safe for concurrent use.
type MountPoint struct {
	dir      string
	readOnly bool
	srv      *fuse.Server
	served   chan struct{}
	fs       *rawFS
	wal      *localWAL // nil without MountOptions.LocalWAL
	walOnce  sync.Once
	walErr   error
}

// Stats are the mount's request counters.
func (m *MountPoint) Stats() *Stats { return &m.fs.stats }

// Mount serves files at dir, an existing empty directory, until Unmount.
// A WritableFiles (a branch head) is mounted read-write, any other Files
// (a view) read-only. The mount is a direct kernel mount (root only) with
// allow_other and default_permissions, so the OS user Postgres runs as can
// use it and the kernel checks permission bits (MountOptions.Owner makes it
// private to that user). If dir holds a stale offshoot
// mount left by a crashed process (its connection is gone: ENOTCONN), it
// is detached first; a live mount there is refused with ErrMounted.
func Mount(dir string, files Files, o MountOptions) (_ *MountPoint, err error) {
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("mount: %w", err)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if mounted, err := isMounted(dir); err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	} else if mounted {
		// statfs always asks the server (stat may be answered from the
		// kernel's cache): a dead server's mount fails with ENOTCONN.
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); !errors.Is(err, syscall.ENOTCONN) {
			return nil, fmt.Errorf("mount %s: %w", dir, ErrMounted) // a live mount
		}
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			return nil, fmt.Errorf("mount %s: detach stale mount: %w", dir, err)
		}
	}
	var wal *localWAL
	if o.LocalWAL != "" {
		h, ok := files.(*storage.Head)
		if !ok {
			return nil, fmt.Errorf("mount %s: a local WAL needs a branch head", dir)
		}
		if wal, err = openLocalWAL(h, o.LocalWAL, o.Owner, o.Logger); err != nil {
			return nil, fmt.Errorf("mount %s: %w", dir, err)
		}
		if wal != nil {
			wal.startWatch()
			files = &walFiles{WritableFiles: h, w: wal}
			h.SetAbsorber(wal.absorb)
			defer func() {
				if err != nil { // nothing ran on it: the store takes all of it back
					if cerr := wal.close(); cerr != nil {
						o.Logger.Error("cowfs: mount failed", "err", cerr)
					}
				}
			}()
		}
	}
	fs := newRawFS(files, o.Logger, o.Owner)
	fs.volatile = o.Volatile
	if fs.rw != nil {
		// Make whatever the store holds durable (a crashed server may have
		// left unsynced writes behind), so that fsyncs may skip syncing
		// until something changes through this mount.
		if err := fs.rw.Sync(); err != nil {
			return nil, fmt.Errorf("mount %s: %w", dir, err)
		}
	}
	mo := fuseOptions(fs.rw != nil, !o.NoWritebackCache)
	mo.Debug = o.Debug
	// go-fuse opens /dev/fuse without O_CLOEXEC and, for direct mounts,
	// never sets it: every program this process starts (Postgres) would
	// inherit the connection of every mount. A holder of the fd can read
	// the mount's requests (written data) and answer its reads, and keeps
	// the connection alive after this process dies (a postmaster exiting
	// then waits forever on its own flush). Holding ForkLock, no fork
	// happens until the new fd is close-on-exec.
	syscall.ForkLock.RLock()
	srv, err := fuse.NewServer(fs, dir, mo)
	if err == nil {
		if err = closeFUSEOnExec(); err != nil {
			defer syscall.Unmount(dir, syscall.MNT_DETACH) // after RUnlock
		}
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	m := &MountPoint{dir: dir, readOnly: fs.rw == nil, srv: srv, served: make(chan struct{}), fs: fs, wal: wal}
	go func() {
		srv.Serve()
		close(m.served)
	}()
	if err := srv.WaitMount(); err != nil {
		_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	return m, nil
}

// closeFUSEOnExec marks every /dev/fuse descriptor of the process
// close-on-exec.
func closeFUSEOnExec() error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("close /dev/fuse on exec: %w", err)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && l == "/dev/fuse" {
			syscall.CloseOnExec(fd)
		}
	}
	return nil
}

// Dir is the mount point.
func (m *MountPoint) Dir() string { return m.dir }

// ReadOnly reports whether the mount serves a read-only view.
func (m *MountPoint) ReadOnly() bool { return m.readOnly }

// Done is closed when the kernel has released the mount and its last
// request has been served.
func (m *MountPoint) Done() <-chan struct{} { return m.served }

// Unmount detaches the file system. When nothing uses it, it is unmounted
// at once. When a process still holds a file or directory in it (EBUSY),
// it is detached lazily: the path is free at once and the remaining users
// keep being served until they let go. If ctx ends first, the connection
// is aborted (their I/O fails with ENOTCONN) through fusectl, which it
// mounts at /sys/fs/fuse/connections if need be; where that fails
// Unmount returns ctx's error and the
// detached mount is served until its last user lets go (see Done).
// Unmount returns nil once the server has stopped; calling it again
// returns nil. With MountOptions.LocalWAL, a clean Unmount absorbs the
// local WAL directory into the store, syncs, and removes it.
func (m *MountPoint) Unmount(ctx context.Context) error {
	select {
	case <-m.served:
		return m.finishWAL()
	default:
	}
	var dev uint64
	var st syscall.Stat_t
	if err := syscall.Stat(m.dir, &st); err == nil {
		dev = st.Dev
	}
	err := syscall.Unmount(m.dir, 0)
	if err != nil && !errors.Is(err, syscall.EINVAL) {
		if err := syscall.Unmount(m.dir, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("unmount %s: %w", m.dir, err)
		}
	}
	select {
	case <-m.served:
		return m.finishWAL()
	case <-ctx.Done():
	}
	if dev != 0 {
		mountFusectl()
	}
	if m.wal != nil {
		m.walOnce.Do(func() {}) // Postgres may still run on the local WAL: it stays for the next Mount
	}
	if dev != 0 && abortConn(dev) {
		select {
		case <-m.served:
			return nil
		case <-time.After(5 * time.Second):
		}
	}
	return fmt.Errorf("unmount %s: still in use: %w", m.dir, ctx.Err())
}

// finishWAL ends the local WAL tier once the mount is gone with nobody
// left using it: the store absorbs the local directory, which then goes.
// After an aborted connection the directory stays (Postgres may still run
// on it); the next Mount of the head absorbs it.
func (m *MountPoint) finishWAL() error {
	if m.wal == nil {
		return nil
	}
	m.walOnce.Do(func() { m.walErr = m.wal.close() })
	if m.walErr != nil {
		return fmt.Errorf("unmount %s: %w", m.dir, m.walErr)
	}
	return nil
}

// abortConn aborts a FUSE connection through fusectl, if it is mounted
// (at /sys/fs/fuse/connections), and reports whether it did.
func abortConn(dev uint64) bool {
	return abortMinor(dev&0xff | (dev>>12)&0xfff00)
}

// fusectlDir is where fusectl lists FUSE connections by device minor.
const fusectlDir = "/sys/fs/fuse/connections"

// mountFusectl mounts fusectl at fusectlDir unless it is mounted, so that
// connections can be aborted; systemd does this at boot, minimal systems
// and containers may not. Failures are ignored (abortMinor then reports
// false).
func mountFusectl() {
	if !fusectlMounted() {
		_ = syscall.Mount("fusectl", fusectlDir, "fusectl", 0, "")
	}
}

// fusectlMounted reports whether fusectl is mounted (anywhere).
func fusectlMounted() bool {
	ms, err := readMountInfo()
	if err != nil {
		return false
	}
	for _, m := range ms {
		if m.fstype == "fusectl" {
			return true
		}
	}
	return false
}

// abortMinor aborts the FUSE connection of device minor through fusectl
// and reports whether it did.
func abortMinor(minor uint64) bool {
	f, err := os.OpenFile(fmt.Sprintf("%s/%d/abort", fusectlDir, minor), os.O_WRONLY, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	_, err = f.Write([]byte("1"))
	return err == nil
}

// mountInfo is one line of /proc/self/mountinfo.
type mountInfo struct {
	dir    string
	fstype string
	minor  uint64 // of the mount's device: its FUSE connection in fusectl
}

func readMountInfo() ([]mountInfo, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMountInfo(f)
}

// parseMountInfo parses the format of proc(5) /proc/pid/mountinfo:
// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue".
func parseMountInfo(r io.Reader) ([]mountInfo, error) {
	var out []mountInfo
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" && i >= 6 {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) {
			return nil, fmt.Errorf("mountinfo line %q: %w", sc.Text(), ErrBadMountInfo)
		}
		m := mountInfo{dir: unescapeOctal(fields[4]), fstype: fields[sep+1]}
		if _, mn, ok := strings.Cut(fields[2], ":"); ok {
			m.minor, _ = strconv.ParseUint(mn, 10, 64)
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// unescapeOctal undoes the \ooo escapes (space, tab, newline, backslash)
// of paths in mountinfo.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isMounted(dir string) (bool, error) {
	ms, err := readMountInfo()
	if err != nil {
		return false, err
	}
	for _, m := range ms {
		if m.dir == dir {
			if m.fstype != FSType {
				return false, fmt.Errorf("%w (%s)", ErrForeignMount, m.fstype)
			}
			return true, nil
		}
	}
	return false, nil
}

// CleanStale aborts the FUSE connection of every offshoot mount at or
// below runDir (mounting fusectl if need be), lazily detaches the mounts,
// deepest first, and returns the mount points it detached. Call it at
// start-up, before anything is mounted, to clear what a crashed process
// left behind (their mount points fail with ENOTCONN). It must not run
// while another live process serves mounts under runDir.
func CleanStale(runDir string) ([]string, error) {
	runDir, err := filepath.Abs(runDir)
	if err != nil {
		return nil, fmt.Errorf("clean stale mounts: %w", err)
	}
	ms, err := readMountInfo()
	if err != nil {
		return nil, fmt.Errorf("clean stale mounts: %w", err)
	}
	var dirs []string
	var minors []uint64
	for _, m := range ms {
		if m.fstype == FSType && (m.dir == runDir || strings.HasPrefix(m.dir, runDir+"/")) {
			dirs = append(dirs, m.dir)
			minors = append(minors, m.minor)
		}
	}
	// A connection some process still holds (an inherited /dev/fuse
	// descriptor) would keep every request to the dead server waiting
	// forever, and its callers in D state: abort it first, so they fail
	// with ENOTCONN and can exit.
	if len(minors) > 0 {
		mountFusectl()
	}
	for _, minor := range minors {
		abortMinor(minor)
	}
	var done []string
	var errs []error
	for i := len(dirs) - 1; i >= 0; i-- { // mountinfo lists parents first
		if err := syscall.Unmount(dirs[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, fmt.Errorf("detach %s: %w", dirs[i], err))
			continue
		}
		done = append(done, dirs[i])
	}
	if err := errors.Join(errs...); err != nil {
		return done, fmt.Errorf("clean stale mounts: %w", err)
	}
	return done, nil
}

// fuseOptions are the kernel options of a mount (writable or not, with
// the writeback cache or not): the benchmarks' pass-through FUSE baseline
// mounts with them too.
func fuseOptions(writable, writeback bool) *fuse.MountOptions {
	flags := uintptr(syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOATIME)
	if !writable {
		flags |= syscall.MS_RDONLY
	}
	var caps uint64
	if writable && writeback {
		caps |= fuse.CAP_WRITEBACK_CACHE
	}
	return &fuse.MountOptions{
		ExtraCapabilities: caps,
		DirectMountStrict: true,
		DirectMountFlags:  flags,
		AllowOther:        true,
		Options:           []string{"default_permissions"},
		FsName:            "offshoot",
		Name:              "offshoot",
		MaxWrite:          1 << 20,
		MaxBackground:     64,
		// Postgres only needs names when it lists a directory.
		DisableReadDirPlus: true,
		DisableXAttrs:      true,
		// A symlink's target never changes (pg_wal's, with the local
		// WAL tier, is opened through at every new WAL segment).
		EnableSymlinkCaching: true,
		// Only this mount changes the files, so the kernel must not drop
		// a file's page cache when it sees a new mtime or size (which
		// every write through this mount makes): without this, select-only
		// pgbench re-read 133 MB through FUSE in 10 s, with it 0.
		ExplicitDataCacheControl: true,
	}
}
