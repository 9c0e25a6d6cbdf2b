package cowfs

import (
	"sync"
	"time"

	"github.com/offshootdb/offshoot/storage"
)

// DefaultMinFree is the default MountOptions.MinFree.
const DefaultMinFree = 128 << 20

// spaceGuard refuses writes that grow the store while the file system
// under the store's data directory has less than min bytes available.
//
// The store must never see its disk fill up: pebble treats a failed WAL
// write as fatal (it panics in the commit pipeline with its mutex held,
// after which every write blocks forever). So the file system returns
// ENOSPC to Postgres early, while the reserve still holds the store's
// WAL, memtable flushes and compactions; removals stay allowed, so space
// can be freed.
type spaceGuard struct {
	stat func() (storage.FSStats, error)
	min  uint64

	mu    sync.Mutex
	last  time.Time
	since uint64 // bytes admitted since the last statfs
	full  bool
}

const (
	guardInterval = 50 * time.Millisecond
	guardBytes    = 4 << 20
)

// admit reports whether n more bytes may be written.
func (g *spaceGuard) admit(n int) bool {
	if g.min == 0 {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.since += uint64(n)
	if g.full || g.since >= guardBytes || time.Since(g.last) >= guardInterval {
		st, err := g.stat()
		if err != nil {
			return true // no numbers: let the store report what happens
		}
		g.last, g.since = time.Now(), 0
		g.full = st.AvailBytes < g.min
	}
	return !g.full
}
