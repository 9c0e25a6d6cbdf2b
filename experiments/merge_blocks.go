package experiments

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/offshootdb/offshoot/compute/pg"
	"github.com/offshootdb/offshoot/experiments/merge"
	"github.com/offshootdb/offshoot/storage"
)

// relSegBlocks is Postgres's RELSEG_SIZE: the blocks of one 1 GiB
// segment file of a relation (base/<db>/<relfilenode>, then .1, .2, ...).
const relSegBlocks = 131072

// storeBlocks is merge.Blocks over the store the base and the source
// branches are forks in: storage's block versions say which heap blocks
// either wrote since their shared state, and the source's WAL since its
// last checkpoint what it changed in pages it has not written yet
// (merge.WALChanges); when that WAL cannot be read, a checkpoint of the
// source writes those pages instead.
type storeBlocks struct {
	s                     *Service
	project, base, source string
	vb, vs                *storage.View
	// wal holds the source's changes since its last checkpoint, per
	// relation file, when Prepare read them from its WAL.
	wal map[merge.RelFile]merge.Region
	// from says where Prepare found the source's unwritten changes: its
	// WAL (MergeFromWAL) or a checkpoint (MergeFromCheckpoint).
	from string
	// prefetches are the read-aheads Changed started, stopped by close.
	prefetches []*prefetch
}

// Where a merge found the source's changes that storage did not have
// yet (Merge.SourceChanges).
const (
	MergeFromWAL        = "wal"
	MergeFromCheckpoint = "checkpoint"
)

// defaultMergeWALLimit is Service.mergeWALLimit unless a test sets it.
// A checkpoint writes at most the source's dirty shared buffers (128 MiB
// by default); past twice that much WAL, reading it is not clearly the
// cheaper way.
const defaultMergeWALLimit = 256 << 20

// Prepare makes storage and the source's WAL cover every page the
// merge's snapshots of the base and the source read: it checkpoints the
// base (a new fork, whose recovery left little to write) and reads the
// source's WAL since its last checkpoint, or, when that fails,
// checkpoints the source too; then it fixes a view of each in storage.
// Both run at once.
func (b *storeBlocks) Prepare(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, 2)
	checkpoint := func(i int, br string) {
		c, release, err := b.s.connect(ctx, b.project, br, Maintenance)
		if err != nil {
			errs[i] = err
			return
		}
		defer release()
		if _, err := c.Exec(ctx, "CHECKPOINT"); err != nil {
			errs[i] = fmt.Errorf("checkpoint %s: %w", br, err)
		}
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		checkpoint(0, b.base)
	}()
	go func() {
		defer wg.Done()
		wal, err := b.s.sourceWAL(ctx, b.project, b.source)
		if err == nil {
			b.wal, b.from = wal, MergeFromWAL
			return
		}
		if ctx.Err() != nil {
			errs[1] = err
			return
		}
		b.s.log.Info("merge: reading the source's changes from a checkpoint", "branch", b.source, "wal", err)
		b.from = MergeFromCheckpoint
		checkpoint(1, b.source)
	}()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	st := b.s.cfg.Store
	var err error
	if b.vb, err = st.OpenView(b.project, b.base, storage.AtHead()); err != nil {
		return storeErr(err)
	}
	if b.vs, err = st.OpenView(b.project, b.source, storage.AtHead()); err != nil {
		return storeErr(err)
	}
	return nil
}

// sourceWAL returns the changes the branch's WAL holds since its last
// completed checkpoint, up to a point after every transaction the
// caller's snapshot of it sees: the pages that checkpoint wrote are in
// storage, and every later change to a page is in that WAL. It writes
// and flushes the WAL up to there (committing a transaction that writes
// a record) and reads it with pg_waldump through the branch's mount.
func (s *Service) sourceWAL(ctx context.Context, project, branch string) (map[merge.RelFile]merge.Region, error) {
	dir, unlease, err := s.mountedDataDir(ctx, project, branch)
	if err != nil {
		return nil, err
	}
	defer unlease()
	c, release, err := s.connect(ctx, project, branch, Maintenance)
	if err != nil {
		return nil, err
	}
	defer release()
	var redo, end string
	var timeline int32
	// The checkpoint first: a later one only moves its redo point ahead.
	if err := c.QueryRow(ctx, "SELECT redo_lsn::text, timeline_id FROM pg_control_checkpoint()").Scan(&redo, &timeline); err != nil {
		return nil, fmt.Errorf("last checkpoint: %w", err)
	}
	// Every record of a transaction the merge's snapshot sees was inserted
	// before this position. A transaction that writes a record (a logical
	// decoding message, which changes no page) flushes the WAL through its
	// commit, so all of them are on disk even if they committed
	// asynchronously.
	tx, err := c.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = on"); err != nil {
		return nil, err
	}
	if err := tx.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text, pg_logical_emit_message(true, 'offshoot.merge', '')").Scan(&end, nil); err != nil {
		return nil, fmt.Errorf("WAL position: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	from, err1 := parseLSN(redo)
	to, err2 := parseLSN(end)
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	if to == from {
		return map[merge.RelFile]merge.Region{}, nil // nothing since the checkpoint
	}
	if to < from || to-from > s.mergeWALLimit {
		return nil, fmt.Errorf("%d MiB of WAL since the last checkpoint", (to-from)>>20)
	}
	cmd := osexec.CommandContext(ctx, pg.Bin("pg_waldump"), "--path", filepath.Join(dir, "pg_wal"),
		"--timeline", strconv.Itoa(int(timeline)), "--start", redo, "--end", end)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	changes, perr := merge.WALChanges(out)
	if perr != nil {
		_, _ = io.Copy(io.Discard, out)
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("pg_waldump: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return changes, perr
}

// mountedDataDir holds a lease on the branch's endpoint (waking it) and
// returns its PGDATA, the branch's mount, and the lease's release; an
// error when compute is not configured or its volumes are not mounts.
func (s *Service) mountedDataDir(ctx context.Context, project, branch string) (string, func(), error) {
	if s.cfg.Compute == nil {
		return "", nil, errors.New("no compute")
	}
	l, err := s.cfg.Compute.Acquire(ctx, project, branch)
	if err != nil {
		return "", nil, err
	}
	dir := l.DataDir()
	if dir == "" {
		l.Release()
		return "", nil, errors.New("the endpoint's data directory is not a mount")
	}
	return dir, l.Release, nil
}

// parseLSN parses a WAL position as Postgres prints it (0/17A7E78).
func parseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("WAL position %q", s)
	}
	return h<<32 | l, nil
}

// Changed maps the relation's segment files to the blocks and tuples
// in which they differ (merge.HeapChanges), and starts reading those
// blocks ahead on both sides (prefetch).
func (b *storeBlocks) Changed(relpath string, nblocks uint64) (merge.Region, bool, error) {
	var reg merge.Region
	for seg := uint64(0); seg == 0 || seg*relSegBlocks < nblocks; seg++ {
		p := relpath
		if seg > 0 {
			p = fmt.Sprintf("%s.%d", relpath, seg)
		}
		first := seg * relSegBlocks
		_, ok, err := b.s.cfg.Store.DiffBlocks(b.vb, b.vs, p, func(blk uint64, x, y []byte) bool {
			offs, whole := merge.HeapChanges(x, y)
			switch {
			case whole:
				if n := len(reg.Blocks); n > 0 && reg.Blocks[n-1][1] == first+blk {
					reg.Blocks[n-1][1]++
				} else {
					reg.Blocks = append(reg.Blocks, [2]uint64{first + blk, first + blk + 1})
				}
			case len(offs) > 0:
				for _, o := range offs {
					reg.Tuples = append(reg.Tuples, [2]uint64{first + blk, uint64(o)})
				}
			}
			return whole || len(offs) > 0
		})
		if err != nil || !ok {
			return merge.Region{}, false, err
		}
	}
	if b.wal != nil {
		f, err := merge.ParseRelPath(relpath)
		if err != nil {
			return merge.Region{}, false, nil
		}
		reg = reg.Union(b.wal[f])
	}
	for _, br := range []string{b.base, b.source} {
		if p := b.s.startPrefetch(b.project, br, relpath, reg); p != nil {
			b.prefetches = append(b.prefetches, p)
		}
	}
	return reg, true, nil
}

func (b *storeBlocks) close() {
	for _, p := range b.prefetches {
		p.stop()
	}
	for _, v := range []*storage.View{b.vb, b.vs} {
		if v != nil {
			v.Close()
		}
	}
}

// prefetchRun is the longest block range a prefetch asks for: a longer
// one Postgres reads as a range scan, which the kernel reads ahead itself.
const prefetchRun = 32

// prefetch asks the kernel to read a region's blocks of a relation into
// the page cache of a branch's mount (posix_fadvise WILLNEED), so that
// Postgres, which fetches the region's tuples one block at a time (a TID
// scan does not read ahead), finds them there: up to the mount's
// background limit of FUSE reads in flight instead of one. A read ahead
// is only a hint: a block it did not reach is read as before.
type prefetch struct {
	quit chan struct{}
	done chan struct{}
}

// startPrefetch starts reading reg's blocks of the relation at relpath
// ahead on branch's mount, holding a lease on its endpoint until stopped;
// nil when the branch has no mounted endpoint to read through (compute
// is not configured, or its volumes are not mounts).
func (s *Service) startPrefetch(project, branch, relpath string, reg merge.Region) *prefetch {
	if reg.Empty() {
		return nil
	}
	dir, unlease, err := s.mountedDataDir(context.Background(), project, branch)
	if err != nil {
		return nil
	}
	p := &prefetch{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer unlease()
		files := map[uint64]*os.File{}
		defer func() {
			for _, f := range files {
				if f != nil {
					f.Close()
				}
			}
		}()
		advise := func(blk, n uint64) bool {
			select {
			case <-p.quit:
				return false
			default:
			}
			seg := blk / relSegBlocks
			f, ok := files[seg]
			if !ok {
				name := filepath.Join(dir, relpath)
				if seg > 0 {
					name = fmt.Sprintf("%s.%d", name, seg)
				}
				f, _ = os.Open(name) // a segment that is not there has nothing to read
				files[seg] = f
			}
			if f != nil {
				_ = unix.Fadvise(int(f.Fd()), int64(blk%relSegBlocks)*8192, int64(n)*8192, unix.FADV_WILLNEED)
			}
			return true
		}
		last := ^uint64(0)
		for _, t := range reg.Tuples {
			if t[0] != last {
				if !advise(t[0], 1) {
					return
				}
				last = t[0]
			}
		}
		for _, r := range reg.Blocks {
			if r[1]-r[0] <= prefetchRun && !advise(r[0], r[1]-r[0]) {
				return
			}
		}
	}()
	return p
}

// stop ends the read-ahead and waits for it.
func (p *prefetch) stop() {
	close(p.quit)
	<-p.done
}
