package experiments

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/offshootdb/offshoot/experiments/merge"
	"github.com/offshootdb/offshoot/storage"
)

// relSegBlocks is Postgres's RELSEG_SIZE: the blocks of one 1 GiB
// segment file of a relation (base/<db>/<relfilenode>, then .1, .2, ...).
const relSegBlocks = 131072

// storeBlocks is merge.Blocks over the store the base and the source
// branches are forks in: after a checkpoint on both, storage's block
// versions say which heap blocks either wrote since their shared state.
type storeBlocks struct {
	s                     *Service
	project, base, source string
	vb, vs                *storage.View
	// prefetches are the read-aheads Changed started, stopped by close.
	prefetches []*prefetch
}

// Prepare checkpoints the base and the source, at once, so that every
// page their merge snapshots read is in the store, then fixes a view of
// each.
func (b *storeBlocks) Prepare(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, br := range []string{b.base, b.source} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, release, err := b.s.connect(ctx, b.project, br, Superuser)
			if err != nil {
				errs[i] = err
				return
			}
			defer release()
			if _, err := c.Exec(ctx, "CHECKPOINT"); err != nil {
				errs[i] = fmt.Errorf("checkpoint %s: %w", br, err)
			}
		}()
	}
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
	if s.cfg.Compute == nil || reg.Empty() {
		return nil
	}
	l, err := s.cfg.Compute.Acquire(context.Background(), project, branch)
	if err != nil {
		return nil
	}
	dir := l.DataDir()
	if dir == "" {
		l.Release()
		return nil
	}
	p := &prefetch{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer l.Release()
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
