package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/offshootdb/offshoot/storage/checkpoint"
	"github.com/offshootdb/offshoot/storage/internal/enc"
)

// FormatVersion is the on-disk format this package reads and writes. Open
// refuses a data directory with any other version (ErrFormat).
const FormatVersion = 1

// BlockSize is the unit of copy-on-write sharing: Postgres' page size.
const BlockSize = 8192

// RootIno is the inode number of every timeline's root directory.
const RootIno = 1

// Options configure a Store. The zero value is usable: every field states its default.
type Options struct {
	// HistoryWindow is how far back point-in-time forks reach. Default 24h.
	HistoryWindow time.Duration
	// HistoryTick is the granularity of history inside the window: of the
	// versions of one block written within one tick only the last survives GC,
	// and the seq↔time index records one entry per tick. Default 1s.
	HistoryTick time.Duration
	// GCInterval is the period of the background GC pass. Default 1m;
	// negative disables background GC (call Store.GC instead).
	GCInterval time.Duration
	// GCBatch bounds the number of versions one GC batch deletes while
	// holding the catalog lock. Default 10000.
	GCBatch int
	// CacheSize is the pebble block cache in bytes. Default 256 MiB.
	CacheSize int64
	// Compress compresses sstable blocks (pebble's "fastest" profile).
	// Default false: 8 KiB reads then cost a copy instead of a decompression.
	Compress bool
	// HeadBufferBytes bounds each Head's write-back buffer of 8 KiB blocks.
	// Default 32 MiB.
	HeadBufferBytes int
	// MinFreeBytes is the free space kept on the file system under the
	// data directory: writes that grow the store (Head.WriteAt, Create,
	// Mkdir, Symlink, Link) fail with ErrNoSpace while less is available.
	// Removals, truncations, flushes of already buffered writes, Sync and
	// catalog operations stay allowed, so space can be freed. It must
	// cover pebble's memtable flushes and compactions and the heads'
	// buffers. Default 128 MiB; negative disables the check (and
	// SharedReserveBytes with it).
	MinFreeBytes int64
	// SharedReserveBytes is kept above MinFreeBytes for the branches that
	// did not fill the disk: below MinFreeBytes+SharedReserveBytes free,
	// each branch may write at most SharedReserveBytes/8 more bytes past
	// the end of its files (counted from when space went low) and then
	// gets ErrNoSpace alone, while the others keep writing; overwrites
	// stay allowed down to MinFreeBytes. While space is that low the store
	// also frees space promptly: GC runs every few seconds keeping no
	// history beyond the newest tick (point-in-time forks into the past
	// fail with ErrBeforeHorizon), and whatever is deleted (a branch, a
	// dropped table) is compacted away at once. Default 128 MiB.
	SharedReserveBytes int64
	// Now returns the wall-clock time. Default time.Now. Tests replace it.
	Now func() time.Time
}

func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.HistoryWindow <= 0 {
		r.HistoryWindow = 24 * time.Hour
	}
	if r.HistoryTick <= 0 {
		r.HistoryTick = time.Second
	}
	if r.GCInterval == 0 {
		r.GCInterval = time.Minute
	}
	if r.GCBatch <= 0 {
		r.GCBatch = 10000
	}
	if r.CacheSize <= 0 {
		r.CacheSize = 256 << 20
	}
	if r.HeadBufferBytes <= 0 {
		r.HeadBufferBytes = 32 << 20
	}
	if r.MinFreeBytes == 0 {
		r.MinFreeBytes = 128 << 20
	}
	if r.SharedReserveBytes <= 0 {
		r.SharedReserveBytes = 128 << 20
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	return r
}

// Store is the copy-on-write branch store under one data directory. All
// methods are safe for concurrent use. A data directory is used by one Store
// at a time (pebble holds a lock file).
type Store struct {
	db   *pebble.DB
	dir  string
	opts Options

	// seqMu guards seq allocation.
	seqMu   sync.Mutex
	seq     uint64 // last allocated seq
	seqCeil uint64 // persisted reservation: no seq >= seqCeil was handed out
	idMu    sync.Mutex
	id      uint64
	idCeil  uint64

	// mu guards the catalog, heads, pins, ticks and closed.
	mu     sync.Mutex
	cat    catalog
	heads  map[uint64]*Head // by timeline
	views  map[*View]bool
	pins   map[uint64]map[uint64]int
	ticks  []tick // ascending
	closed bool

	sync   syncer
	space  spaceGuard
	cands  candidates // what the next incremental GC pass visits
	counts counters   // every timeline's usage counters

	stop chan struct{}
	done chan struct{}
}

type tick struct {
	t   int64 // unix nanos
	seq uint64
}

const reserve = 1 << 16

// targetFileSize is pebble's L0 target file size (each level below
// doubles it). Pebble counts the blob values a table references towards
// its size, and a table of block keys references about 200 times its own
// bytes: at pebble's default 2 MiB a flush wrote tables of 10 KiB, which
// compactions moved down unchanged, so a 10 GiB store had 2,100 of them,
// more than the 1,000 open files pebble keeps, and GC seeks and reads
// reopened files. At 8 MiB it has 185. 32 MiB (57 tables) made GC no
// faster and cost COPY loads 10-20% more CPU in compactions.
const targetFileSize = 8 << 20

// pebbleComparer orders keys bytewise and splits versioned keys into
// (prefix, seq) for prefix bloom filters and pebble's columnar blocks.
// Separator and Successor return their first key unchanged: pebble requires
// every key it synthesizes for index blocks to be valid under Split, and
// the default shortening cuts keys mid-field (pebble's invariant checks,
// on under -race, catch that as a Compare/Split mismatch).
var pebbleComparer = func() *pebble.Comparer {
	c := *pebble.DefaultComparer
	c.Split = enc.Split
	c.Separator = func(dst, a, _ []byte) []byte { return append(dst, a...) }
	c.Successor = func(dst, a []byte) []byte { return append(dst, a...) }
	c.Name = "offshoot.storage.v1"
	return &c
}()

// Open opens (creating if needed) the store in dir. A directory written with
// a different FormatVersion is refused with ErrFormat. The caller must Close it.
func Open(dir string, opts *Options) (*Store, error) {
	o := opts.withDefaults()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	popts := &pebble.Options{
		Comparer:           pebbleComparer,
		Cache:              pebble.NewCache(o.CacheSize),
		FormatMajorVersion: pebble.FormatNewest,
		MemTableSize:       32 << 20,
		// The object storage tier uploads the MANIFEST whole.
		MaxManifestFileSize: checkpoint.MaxManifestFileSize,
		Logger:              quietLogger{},
		FS:                  writeBufferFS{vfs.Default},
	}
	for i := range popts.Levels {
		popts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	popts.TargetFileSizes[0] = targetFileSize
	// A flush writes its blob files with L0's block size, and pebble
	// writes each finished blob block with its own write(2) when the
	// block is larger than its 4 KiB write buffer: at the default 4 KiB,
	// one system call per 8 KiB block. 16 KiB blocks hold two, halve
	// those calls and let sequential reads fetch two blocks at a time;
	// random reads read twice the bytes, which measured no slower (32 KiB
	// did: docs/benchmarks.md, "Blob blocks and reference depth").
	popts.Levels[0].BlockSize = 16 << 10
	// 8 KiB block values go to blob files that compactions do not rewrite:
	// versions kept for the history window otherwise cost an LSM rewrite per level.
	s := &Store{dir: dir, opts: o,
		heads: map[uint64]*Head{}, views: map[*View]bool{}, pins: map[uint64]map[uint64]int{},
		stop: make(chan struct{}), done: make(chan struct{})}
	s.cands.needFull = true
	popts.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
		// pebble reads RewriteMinimumAge once, at open; the garbage ratio
		// it reads on every pick. Below 30% garbage no blob file is
		// rewritten, so the short minimum age only matters once that much
		// space is wasted, or while space is low (5%: rewrite blob files
		// holding deleted blocks now).
		// A compaction whose inputs reference more than
		// MaxBlobReferenceDepth overlapping blob files copies their values
		// into new ones. Every flush writes a blob file of its own, so at
		// 10 a compaction of a dozen flushes of rewritten blocks copied
		// every block once more. The locality those copies buy matters
		// little for 8 KiB values read one or two blocks at a time.
		p := pebble.ValueSeparationPolicy{Enabled: true, MinimumSize: 1024, MaxBlobReferenceDepth: 100,
			RewriteMinimumAge: blobRewriteAge, TargetGarbageRatio: 0.3}
		if s.space.low.Load() {
			p.TargetGarbageRatio = 0.05
		}
		return p
	}
	if o.Compress {
		popts.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionFastest })
	} else {
		popts.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionNone })
	}
	defer popts.Cache.Unref()
	db, err := pebble.Open(dir, popts)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.db = db
	s.sync.db = db
	if err := s.load(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := s.cands.load(db, func(tl uint64) bool { return s.cat.timelines[tl] != nil }); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	go s.background()
	return s, nil
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...interface{})  {}
func (quietLogger) Errorf(string, ...interface{}) {}
func (quietLogger) Fatalf(format string, args ...interface{}) {
	panic(fmt.Sprintf(format, args...))
}

func (s *Store) load() error {
	v, closer, err := s.db.Get(enc.FormatKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		// A fresh store, or one whose first commit never finished: any
		// other key present means the latter; both are safe to initialize.
		b := s.db.NewBatch()
		_ = b.Set(enc.FormatKey, binary.BigEndian.AppendUint32(nil, FormatVersion), nil)
		if err := b.Commit(pebble.Sync); err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		ok := len(v) == 4 && binary.BigEndian.Uint32(v) == FormatVersion
		got := fmt.Sprintf("%x", v)
		_ = closer.Close()
		if !ok {
			return fmt.Errorf("%w: found %s, want %d", ErrFormat, got, FormatVersion)
		}
	}
	if s.seqCeil, err = s.getU64(enc.MetaKey("seqceil")); err != nil {
		return err
	}
	s.seq = s.seqCeil
	if s.idCeil, err = s.getU64(enc.MetaKey("idceil")); err != nil {
		return err
	}
	if s.idCeil < RootIno+1 {
		s.idCeil = RootIno + 1
	}
	s.id = s.idCeil
	if err := s.cat.load(s.db); err != nil {
		return err
	}
	if err := s.loadCounts(); err != nil {
		return err
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{enc.KindTick}, UpperBound: []byte{enc.KindTick + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		t, err := enc.DecodeTickKey(it.Key())
		if err != nil {
			return fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		seq, err := enc.DecodeU64(it.Value())
		if err != nil {
			return fmt.Errorf("%w: tick: %w", ErrCorrupt, err)
		}
		s.ticks = append(s.ticks, tick{t, seq})
	}
	return it.Error()
}

func (s *Store) getU64(k []byte) (uint64, error) {
	v, closer, err := s.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	n, err := enc.DecodeU64(v)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %w", ErrCorrupt, k, err)
	}
	return n, nil
}

// Close stops background work, closes open heads and views, and closes
// pebble. Unsynced writes are flushed to the WAL but not fsynced.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	heads := make([]*Head, 0, len(s.heads))
	for _, h := range s.heads {
		heads = append(heads, h)
	}
	views := make([]*View, 0, len(s.views))
	for v := range s.views {
		views = append(views, v)
	}
	s.mu.Unlock()
	for _, h := range heads {
		_ = h.Close()
	}
	for _, v := range views {
		_ = v.Close()
	}
	close(s.stop)
	<-s.done
	s.mu.Lock()
	s.closed = true
	// No head, view or pass changes the candidates any more (a pass
	// stops at its next batch, which needs s.mu).
	serr := s.cands.save(s.db)
	s.mu.Unlock()
	s.recordTick()
	if err := s.db.Close(); err != nil {
		return err
	}
	return serr
}

// nextSeq allocates the next seq. The reservation that covers it is durable
// before it is handed out, so a seq is never reused after a crash.
func (s *Store) nextSeq() (uint64, error) {
	s.seqMu.Lock()
	defer s.seqMu.Unlock()
	if s.seq+1 >= s.seqCeil {
		ceil := s.seq + 1 + reserve
		if err := s.db.Set(enc.MetaKey("seqceil"), enc.U64(ceil), pebble.Sync); err != nil {
			return 0, fmt.Errorf("reserve seq: %w", err)
		}
		s.seqCeil = ceil
	}
	s.seq++
	return s.seq, nil
}

// curSeq is the last allocated seq.
func (s *Store) curSeq() uint64 {
	s.seqMu.Lock()
	defer s.seqMu.Unlock()
	return s.seq
}

// nextID allocates a store-wide unique id for inodes and catalog records.
func (s *Store) nextID() (uint64, error) {
	s.idMu.Lock()
	defer s.idMu.Unlock()
	if s.id+1 >= s.idCeil {
		ceil := s.id + 1 + reserve
		if err := s.db.Set(enc.MetaKey("idceil"), enc.U64(ceil), pebble.Sync); err != nil {
			return 0, fmt.Errorf("reserve id: %w", err)
		}
		s.idCeil = ceil
	}
	s.id++
	return s.id, nil
}

// syncer makes concurrent Sync calls share pebble WAL fsyncs: a caller waits
// for one fsync that started after it called.
type syncer struct {
	db      *pebble.DB
	mu      sync.Mutex
	cond    *sync.Cond
	started uint64
	done    uint64
	running bool
	err     error
}

func (y *syncer) sync() error {
	y.mu.Lock()
	defer y.mu.Unlock()
	if y.cond == nil {
		y.cond = sync.NewCond(&y.mu)
	}
	want := y.started + 1
	for y.done < want {
		if y.running {
			y.cond.Wait()
			continue
		}
		y.running = true
		y.started++
		my := y.started
		y.mu.Unlock()
		err := y.db.LogData(nil, pebble.Sync)
		y.mu.Lock()
		y.running = false
		y.done = my
		y.err = err
		y.cond.Broadcast()
	}
	if y.err != nil {
		return fmt.Errorf("sync: %w", y.err)
	}
	return nil
}

// Sync makes every write acknowledged so far durable. Concurrent calls share
// one fsync (group commit).
func (s *Store) Sync() error { return s.sync.sync() }

func (s *Store) background() {
	defer close(s.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	reclaimed := make(chan struct{})
	defer func() { <-reclaimed }()
	go func() {
		defer close(reclaimed)
		s.reclaimLoop(ctx)
	}()
	tk := time.NewTicker(s.opts.HistoryTick)
	defer tk.Stop()
	var gcC <-chan time.Time
	if s.opts.GCInterval > 0 {
		gt := time.NewTicker(s.opts.GCInterval)
		defer gt.Stop()
		gcC = gt.C
	}
	for {
		select {
		case <-s.stop:
			return
		case <-tk.C:
			s.flushHeads()
			s.recordTick()
			s.checkSpace()
		case <-gcC:
			_, _ = s.GC(ctx)
		}
	}
}

// flushHeads flushes every open head's write-back buffer. A head that
// committed nothing since the previous tick also gives its recycled
// blocks back (up to Options.HeadBufferBytes each), so idle heads hold
// no write buffer.
func (s *Store) flushHeads() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.heads {
		h.mu.Lock()
		if g := h.gen.Load(); g == h.tickGen && len(h.wbuf) == 0 && len(h.dirty) == 0 {
			if h.absorber != nil {
				_ = h.flushLocked() // the absorber's sources may have changed
			}
			if h.gen.Load() == g {
				h.free = nil
			} else {
				h.tickGen = h.gen.Load()
			}
		} else {
			_ = h.flushLocked()
			h.tickGen = h.gen.Load()
		}
		h.mu.Unlock()
	}
}

// recordTick appends a (time, seq) entry to the history index if anything
// was written since the last one.
func (s *Store) recordTick() {
	seq := s.curSeq()
	now := s.opts.Now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.ticks); n > 0 && (s.ticks[n-1].seq == seq || s.ticks[n-1].t >= now) {
		return
	}
	if err := s.db.Set(enc.TickKey(now), enc.U64(seq), pebble.NoSync); err != nil {
		return
	}
	s.ticks = append(s.ticks, tick{now, seq})
}

// Tick flushes all heads and records a history tick now. The background
// loop calls it every Options.HistoryTick; tests call it to make tick
// boundaries deterministic.
func (s *Store) Tick() {
	s.flushHeads()
	s.recordTick()
}

// horizonLocked returns the GC horizon: the seq of the newest tick at or
// before now-HistoryWindow (0 if none). Reads at seqs below it are not
// guaranteed unless pinned by a branch point, snapshot or view. s.mu held.
func (s *Store) horizonLocked() uint64 {
	if s.space.low.Load() && len(s.ticks) > 0 {
		// Space is low: history beyond the newest tick goes (see
		// Options.SharedReserveBytes).
		return s.ticks[len(s.ticks)-1].seq
	}
	cut := s.opts.Now().Add(-s.opts.HistoryWindow).UnixNano()
	i := sort.Search(len(s.ticks), func(i int) bool { return s.ticks[i].t > cut })
	if i == 0 {
		return 0
	}
	return s.ticks[i-1].seq
}

// roundToTickLocked maps seq to the history tick boundary at or below it if
// seq is older than the newest tick (GC keeps in-window history at tick
// granularity); newer seqs are exact. ok is false when seq is older than
// the retained history: before the GC horizon or the oldest tick. s.mu held.
func (s *Store) roundToTickLocked(seq uint64) (uint64, bool) {
	n := len(s.ticks)
	if n == 0 || seq >= s.ticks[n-1].seq {
		return seq, true
	}
	if seq < s.horizonLocked() {
		return 0, false
	}
	i := sort.Search(n, func(i int) bool { return s.ticks[i].seq > seq })
	if i == 0 {
		return 0, false
	}
	return s.ticks[i-1].seq, true
}

// SeqAt returns the seq of the store's state as of wall-clock time t: the
// seq of the newest history tick at or before t. ErrFuture if t is after now,
// ErrBeforeHorizon if t is before the history window.
func (s *Store) SeqAt(t time.Time) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seqAtLocked(t)
}

func (s *Store) seqAtLocked(t time.Time) (uint64, error) {
	now := s.opts.Now()
	if t.After(now) {
		return 0, fmt.Errorf("%w: %s is after now", ErrFuture, t.Format(time.RFC3339Nano))
	}
	if t.Before(now.Add(-s.opts.HistoryWindow)) {
		return 0, fmt.Errorf("%w: %s is before the %s history window", ErrBeforeHorizon, t.Format(time.RFC3339Nano), s.opts.HistoryWindow)
	}
	tn := t.UnixNano()
	i := sort.Search(len(s.ticks), func(i int) bool { return s.ticks[i].t > tn })
	if i == 0 {
		return 0, fmt.Errorf("%w: no history recorded at or before %s", ErrBeforeHorizon, t.Format(time.RFC3339Nano))
	}
	return s.ticks[i-1].seq, nil
}

// Checkpoint writes a consistent copy of the store into dir, which must not
// exist, for the object storage tier (checkpoint.Pebble): hard
// links to its sstables and blob files where the file system allows,
// copies of the rest, every write committed before the call, and no WAL
// (the memtable is flushed first). Heads with an Absorber absorb first, so
// the copy also holds what they had not taken in yet (a local WAL's
// acknowledged commits). A store opened on dir is the store as of the
// call. Safe to call concurrently with writes.
func (s *Store) Checkpoint(dir string) error {
	s.absorbAll()
	return checkpoint.Pebble(s.db, dir)
}

// Version returns a number that changes whenever a write is committed
// (checkpoint.Version), after absorbing what heads with an Absorber
// hold, as Checkpoint does: equal Versions before two Checkpoints mean the
// second holds nothing new.
func (s *Store) Version() uint64 {
	s.absorbAll()
	return checkpoint.Version(s.db)
}

// absorbAll makes every head with an Absorber take in what it holds.
func (s *Store) absorbAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.heads {
		h.mu.Lock()
		if h.absorber != nil {
			_ = h.flushLocked() // a refused absorb (a full disk) leaves it out, as a crash would
		}
		h.mu.Unlock()
	}
}
