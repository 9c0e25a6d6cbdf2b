package storage

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// spaceGuard refuses writes that grow the store when the file system under
// the data directory runs low, in two tiers:
//
//   - Below Options.MinFreeBytes + Options.SharedReserveBytes ("low"), each
//     branch may grow its files (write past their end, create files) by at
//     most a share (SharedReserveBytes/8) counted from the moment space
//     went low; a branch past its share gets ErrNoSpace while every other
//     branch keeps its own share. The branch that fills the disk thus hits
//     ENOSPC first and alone, and the others keep running: overwrites of
//     existing blocks (checkpoints, hint bits, vacuum, recycled WAL
//     segments) do not count against the share, since GC frees the
//     versions they replace while space is low.
//   - Below Options.MinFreeBytes every write that grows the store is
//     refused: that reserve belongs to pebble.
//
// The store must never see its disk fill up: pebble treats a failed WAL
// write as fatal (it panics in its commit pipeline with the commit mutex
// held, after which every commit blocks forever), so recovering the panic
// is not safe. Instead the store keeps a reserve for pebble's WAL, memtable
// flushes and compactions, and for writes already buffered in heads.
//
// While space is low the store also frees space promptly (see reclaim):
// GC ignores the history window, and freed key ranges are compacted.
type spaceGuard struct {
	mu    sync.Mutex
	last  time.Time
	since uint64            // bytes admitted since the last statfs
	avail uint64            // at the last statfs
	grew  map[uint64]uint64 // bytes admitted per timeline since space went low
	low   atomic.Bool       // avail was below the low line at the last statfs
	// freed is set when something was deleted while space is low; the
	// background loop then compacts so the space returns to the disk.
	freed atomic.Bool
	// gcAt is when reclaim last ran GC, again when it compacts once more
	// (blob files become rewritable only at blobRewriteAge); only
	// reclaimLoop uses them.
	gcAt, again time.Time
}

const (
	spaceInterval = 50 * time.Millisecond
	spaceBytes    = 1 << 20
	// shareDivisor: a branch's share of the shared reserve while space is low.
	shareDivisor = 8
	// blobRewriteAge is the pebble ValueSeparationPolicy's RewriteMinimumAge.
	blobRewriteAge = 10 * time.Second
	// reclaimGCEvery is the least time between two GC passes of reclaim.
	reclaimGCEvery = 2 * time.Second
)

// admit returns an error wrapping ErrNoSpace if timeline tl may not write
// n more bytes, grow of them past the end of files. It calls statfs at most every spaceInterval or
// spaceBytes, and on every call once the free space is below twice the
// low line.
func (s *Store) admit(tl uint64, n, grow int) error {
	floor := s.opts.MinFreeBytes
	if floor <= 0 {
		return nil
	}
	lowLine := uint64(floor) + uint64(s.opts.SharedReserveBytes)
	g := &s.space
	g.mu.Lock()
	defer g.mu.Unlock()
	g.since += uint64(n)
	if g.last.IsZero() || g.since >= spaceBytes || time.Since(g.last) >= spaceInterval || g.avail < 2*lowLine {
		if err := g.statfsLocked(s.dir, lowLine); err != nil {
			return err
		}
	}
	if g.avail < uint64(floor)+uint64(n) {
		return fmt.Errorf("%w: %d bytes available, reserve %d", ErrNoSpace, g.avail, floor)
	}
	if g.avail < lowLine+uint64(n) {
		share := uint64(s.opts.SharedReserveBytes) / shareDivisor
		if g.grew[tl]+uint64(grow) > share {
			return fmt.Errorf("%w: %d bytes available, this branch used its share (%d bytes) of the reserve %d",
				ErrNoSpace, g.avail, share, lowLine)
		}
		g.grew[tl] += uint64(grow)
	}
	return nil
}

// statfsLocked refreshes avail and the low state. g.mu held.
func (g *spaceGuard) statfsLocked(dir string, lowLine uint64) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Errorf("statfs: %w", err)
	}
	g.last, g.since, g.avail = time.Now(), 0, st.Bavail*uint64(st.Bsize)
	low := g.avail < lowLine
	if g.grew == nil || (!low && len(g.grew) > 0) {
		// Shares count from the moment space went low; while it is not,
		// the map stays empty and is not reallocated on every check.
		g.grew = map[uint64]uint64{}
	}
	g.low.Store(low)
	return nil
}

// SpaceLow reports whether free space under the data directory was below
// Options.MinFreeBytes + Options.SharedReserveBytes at the last check (at
// most a second old while the store is open). While it is, branches get
// ENOSPC once they used their share of the reserve, and GC keeps no history
// beyond the newest tick.
func (s *Store) SpaceLow() bool {
	return s.space.low.Load()
}

// checkSpace refreshes the low state; the background loop calls it every
// tick so that SpaceLow and reclaim follow the disk even without writes.
func (s *Store) checkSpace() {
	if s.opts.MinFreeBytes <= 0 {
		return
	}
	g := &s.space
	g.mu.Lock()
	_ = g.statfsLocked(s.dir, uint64(s.opts.MinFreeBytes)+uint64(s.opts.SharedReserveBytes))
	g.mu.Unlock()
}

// noteFreed records that versions or timelines were deleted; while space
// is low the next background tick compacts them away.
func (s *Store) noteFreed() {
	if s.space.low.Load() {
		s.space.freed.Store(true)
	}
}

// reclaimLoop runs reclaim every HistoryTick until ctx is done. It runs
// apart from the tick loop so that a long compaction delays no flush.
func (s *Store) reclaimLoop(ctx context.Context) {
	tk := time.NewTicker(s.opts.HistoryTick)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			s.reclaim(ctx)
		}
	}
}

// reclaim gives deleted data's space back to the file system while space is
// low: a GC pass (which then keeps no history beyond the newest tick) and,
// when anything was deleted, a compaction of the whole key space. pebble
// removes the sstables and blob files this makes obsolete as it installs
// the compaction's result. reclaimLoop calls it every HistoryTick; it
// does nothing while space is not low, and runs GC at most every
// reclaimGCEvery.
func (s *Store) reclaim(ctx context.Context) {
	if !s.space.low.Load() {
		return
	}
	if time.Since(s.space.gcAt) >= reclaimGCEvery {
		s.space.gcAt = time.Now()
		if st, err := s.GC(ctx); err == nil && (st.Deleted > 0 || st.ExpiredBranches > 0 || st.ExpiredSnapshots > 0) {
			s.space.freed.Store(true)
		}
	}
	switch {
	case s.space.freed.Swap(false):
		s.space.again = time.Now().Add(blobRewriteAge + time.Second)
	case !s.space.again.IsZero() && time.Now().After(s.space.again):
		// Blob files written before the deletion are old enough now for
		// pebble to rewrite them without their garbage; a compaction makes
		// it pick them.
		s.space.again = time.Time{}
	default:
		return
	}
	_ = s.db.Flush()
	_ = s.db.Compact(ctx, []byte{0}, []byte{0xff}, true)
}
