package storage

import (
	"fmt"
	"sync"
	"syscall"
	"time"
)

// spaceGuard refuses writes that grow the store while the file system under
// the data directory has less than Options.MinFreeBytes available.
//
// The store must never see its disk fill up: pebble treats a failed WAL
// write as fatal (it panics in its commit pipeline with the commit mutex
// held, after which every commit blocks forever), so recovering the panic
// is not safe. Instead the store keeps a reserve for pebble's WAL, memtable
// flushes and compactions, and for writes already buffered in heads.
type spaceGuard struct {
	mu    sync.Mutex
	last  time.Time
	since uint64 // bytes admitted since the last statfs
	avail uint64 // at the last statfs
}

const (
	spaceInterval = 50 * time.Millisecond
	spaceBytes    = 1 << 20
)

// admit returns an error wrapping ErrNoSpace if n more bytes may not be
// written. It calls statfs at most every spaceInterval or spaceBytes, and
// on every call once the free space is below twice the reserve.
func (s *Store) admit(n int) error {
	floor := s.opts.MinFreeBytes
	if floor <= 0 {
		return nil
	}
	g := &s.space
	g.mu.Lock()
	defer g.mu.Unlock()
	g.since += uint64(n)
	if g.last.IsZero() || g.since >= spaceBytes || time.Since(g.last) >= spaceInterval || g.avail < 2*uint64(floor) {
		var st syscall.Statfs_t
		if err := syscall.Statfs(s.dir, &st); err != nil {
			return fmt.Errorf("statfs: %w", err)
		}
		g.last, g.since, g.avail = time.Now(), 0, st.Bavail*uint64(st.Bsize)
	}
	if g.avail < uint64(floor)+uint64(n) {
		return fmt.Errorf("%w: %d bytes available, reserve %d", ErrNoSpace, g.avail, floor)
	}
	return nil
}
