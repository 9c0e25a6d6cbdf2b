package objstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Source is one database of the data directory to upload.
type Source struct {
	// Name is the directory, relative to the data directory, that a
	// restore recreates (e.g. "store", "control").
	Name string
	// Checkpoint writes a consistent copy of the database into dir, which
	// does not exist yet (checkpoint.Pebble). It must include every write
	// acknowledged before the call.
	Checkpoint func(dir string) error
	// Version, if set, returns a number that changes whenever a write is
	// acknowledged (checkpoint.Version). A round in which no source's Version
	// changed since the last complete round takes no checkpoint and
	// uploads nothing. Nil: every round checkpoints the source.
	Version func() uint64
}

// generation is the record of one complete upload round.
type generation struct {
	Gen  uint64    `json:"gen"`
	Time time.Time `json:"time"`
	// Writer is the ID of the uploader state (one per data dir) that
	// wrote the record; empty in records of older versions.
	Writer  string            `json:"writer,omitempty"`
	Sources map[string][]file `json:"sources"`
}

type file struct {
	Name string `json:"name"`
	Key  string `json:"key"`
	Size int64  `json:"size"`
}

// state is what the uploader keeps between runs in its state directory.
type state struct {
	// ID names this data dir's uploads in the generation records it
	// writes (generation.Writer), so that it knows its own rounds from
	// those of another data dir on the same prefix.
	ID       string           `json:"id,omitempty"`
	Gen      uint64           `json:"gen"`
	Uploaded map[string]int64 `json:"uploaded"` // key -> size
	// Lineage, set on a restored data dir, names the keys of the
	// immutable files it writes from then on: a dir restored from an
	// older generation writes sstables under the file numbers the original
	// server used after that generation, with other contents, and must
	// never take (or be mistaken for) their keys. Known maps the files it
	// restored ("store/000012.sst") to their keys in the bucket.
	Lineage string            `json:"lineage,omitempty"`
	Known   map[string]string `json:"known,omitempty"`
}

// Uploader uploads checkpoints of its sources every Interval. Its methods
// are safe for concurrent use.
type Uploader struct {
	cfg     Config
	sources []Source
	dir     string
	log     *slog.Logger
	b       *bucket

	mu      sync.Mutex // serializes rounds; guards st
	st      state
	lastOK  time.Time // checkpoint time of the last complete round
	started time.Time
	fails   int
	sent    Stats
	taken   error // ErrPrefixTaken, once seen: no round uploads again

	rounds, failures, files, bytes prometheus.Counter
	lag, conflict                  prometheus.GaugeFunc

	cancel context.CancelFunc
	done   chan struct{}

	// last is the generation of the last complete round and versions
	// the sources' Versions read before it: a round that would repeat
	// either uploads nothing.
	last     *generation
	versions []uint64

	gens      map[uint64]*generation // generation records read by prune
	lastPrune time.Time
	pruned    PruneStats // totals
}

// New checks the bucket and returns an Uploader that keeps its state and
// staging checkpoints in stateDir (on the same file system as the sources,
// so that checkpoints hard-link). An unreachable endpoint or a missing
// bucket is an error (ErrUnreachable, ErrNoBucket), and so is a prefix
// whose latest generation is newer than this data dir's last and was
// uploaded by another data dir (ErrPrefixTaken). Without a state in
// stateDir (a new data dir, or its state lost) the rounds are numbered
// after the bucket's latest. Start begins uploading.
func New(ctx context.Context, cfg Config, sources []Source, stateDir string, log *slog.Logger) (*Uploader, error) {
	if cfg.Interval < 0 {
		return nil, fmt.Errorf("%w: interval %v: want 0 (the default, %v) or a duration", ErrConfig, cfg.Interval, DefaultInterval)
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	b, err := openBucket(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("object store state: %w", err)
	}
	u := &Uploader{cfg: cfg, sources: sources, dir: stateDir, log: log, b: b, started: time.Now(),
		st: state{Uploaded: map[string]int64{}}}
	if data, err := os.ReadFile(u.statePath()); err == nil {
		if err := json.Unmarshal(data, &u.st); err != nil {
			return nil, fmt.Errorf("object store state %s: %w", u.statePath(), err)
		}
		if u.st.Uploaded == nil {
			u.st.Uploaded = map[string]int64{}
		}
	} else if g, err := u.latest(ctx); err == nil && g != nil {
		// A data dir new to this prefix, or with its state lost: number
		// the rounds after the bucket's last one, under an ID of its own.
		u.st.Gen = g.Gen
	}
	if u.st.ID == "" {
		id, err := newID()
		if err != nil {
			return nil, err
		}
		u.st.ID = id
	}
	if err := u.checkLatest(ctx); err != nil {
		return nil, err
	}
	u.rounds = prometheus.NewCounter(prometheus.CounterOpts{Name: "offshoot_objstore_rounds_total", Help: "Complete upload rounds, those with nothing to upload included."})
	u.failures = prometheus.NewCounter(prometheus.CounterOpts{Name: "offshoot_objstore_failures_total", Help: "Upload rounds that failed (retried with backoff)."})
	u.files = prometheus.NewCounter(prometheus.CounterOpts{Name: "offshoot_objstore_files_uploaded_total", Help: "Files uploaded."})
	u.bytes = prometheus.NewCounter(prometheus.CounterOpts{Name: "offshoot_objstore_bytes_uploaded_total", Help: "Bytes uploaded."})
	u.lag = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "offshoot_objstore_upload_lag_seconds",
		Help: "Age of the newest state complete in the bucket: what losing the machine now would lose."},
		func() float64 { return u.Lag().Seconds() })
	u.conflict = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "offshoot_objstore_prefix_taken",
		Help: "1 when another data dir uploads to the prefix and this server stopped uploading (see the log)."},
		func() float64 {
			if u.Err() != nil {
				return 1
			}
			return 0
		})
	return u, nil
}

// Err returns ErrPrefixTaken, wrapped with the details, once the uploader
// has stopped because another data dir uploads to the prefix; else nil.
func (u *Uploader) Err() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.taken
}

func newID() (string, error) {
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(id[:]), nil
}

// latest reads the bucket's latest generation record; nil when there is
// none.
func (u *Uploader) latest(ctx context.Context) (*generation, error) {
	data, err := u.b.get(ctx, u.b.key("latest.json"))
	if errors.Is(err, errNoKey) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read latest: %w", err)
	}
	var g generation
	if err := json.Unmarshal(data, &g); err != nil {
		return nil, fmt.Errorf("latest.json: %w", err)
	}
	return &g, nil
}

// checkLatest compares the bucket's latest generation with this data
// dir's last: one of its own that the state missed (a crash between
// writing latest and the state) moves the numbering on; a newer one of
// another data dir is ErrPrefixTaken, remembered in u.taken.
func (u *Uploader) checkLatest(ctx context.Context) error {
	g, err := u.latest(ctx)
	if err != nil || g == nil || g.Gen <= u.st.Gen {
		return err
	}
	if g.Writer != "" && g.Writer == u.st.ID {
		u.st.Gen = g.Gen
		return nil
	}
	return u.prefixTaken(fmt.Sprintf("generation %d, checkpointed %s, is newer than this data dir's last (%d)",
		g.Gen, g.Time.UTC().Format(time.RFC3339), u.st.Gen))
}

// prefixTaken records and returns ErrPrefixTaken.
func (u *Uploader) prefixTaken(what string) error {
	u.taken = fmt.Errorf("%w s3://%s/%s: %s and was uploaded by another data dir (a server restored from this prefix, "+
		"or a second server); uploading from here would overwrite its history, so nothing more is uploaded: "+
		"serve this data dir with another prefix", ErrPrefixTaken, u.cfg.Bucket, u.cfg.Prefix, what)
	u.log.Error("object store upload stopped", "err", u.taken)
	return u.taken
}

func (u *Uploader) statePath() string { return filepath.Join(u.dir, "state.json") }

// Collector returns the uploader's metrics.
func (u *Uploader) Collector() prometheus.Collector {
	return collectors{u.rounds, u.failures, u.files, u.bytes, u.lag, u.conflict}
}

type collectors []prometheus.Collector

func (c collectors) Describe(ch chan<- *prometheus.Desc) {
	for _, x := range c {
		x.Describe(ch)
	}
}

func (c collectors) Collect(ch chan<- prometheus.Metric) {
	for _, x := range c {
		x.Collect(ch)
	}
}

// Lag is the age of the state last complete in the bucket (since the
// uploader started, when no round has completed yet).
func (u *Uploader) Lag() time.Duration {
	u.mu.Lock()
	t := u.lastOK
	u.mu.Unlock()
	if t.IsZero() {
		t = u.started
	}
	return time.Since(t)
}

// Stats counts what this Uploader sent.
type Stats struct {
	Files, Immutable int // files uploaded; of them sstables and blob files
	Bytes            int64
}

// Sent returns what this Uploader has uploaded since New.
func (u *Uploader) Sent() Stats {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.sent
}

// Generation returns the number of the last complete round.
func (u *Uploader) Generation() uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.st.Gen
}

// Start uploads a round now and then every Interval until Close; a failed
// round is retried after a backoff (1 s doubling, at most Interval*6).
func (u *Uploader) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	u.cancel, u.done = cancel, make(chan struct{})
	go func() {
		defer close(u.done)
		wait := time.Duration(0)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			if err := u.Sync(ctx); err != nil {
				if ctx.Err() != nil || errors.Is(err, ErrPrefixTaken) {
					return // logged by prefixTaken
				}
				u.mu.Lock()
				u.fails++
				wait = min(time.Second<<min(u.fails-1, 16), u.cfg.Interval*6)
				u.mu.Unlock()
				u.log.Warn("object store upload failed; retrying", "err", err, "retry_in", wait, "lag", u.Lag().Round(time.Second))
				continue
			}
			u.mu.Lock()
			u.fails = 0
			u.mu.Unlock()
			wait = u.cfg.Interval
		}
	}()
}

// Close stops uploading; a round in flight is abandoned (the bucket keeps
// the previous complete one). Call a last Sync first to upload everything.
func (u *Uploader) Close() error {
	if u.cancel != nil {
		u.cancel()
		<-u.done
		u.cancel = nil
	}
	return nil
}

// Sync runs one upload round: it checkpoints every source and uploads what
// the bucket lacks, then records the generation. It returns once the state
// as of its call is complete in the bucket. Once another data dir has
// uploaded a newer generation to the prefix it uploads nothing and returns
// ErrPrefixTaken: a generation record is never overwritten.
func (u *Uploader) Sync(ctx context.Context) (err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.taken != nil {
		return u.taken
	}
	defer func() {
		if err != nil {
			u.failures.Inc()
		}
	}()
	at := time.Now()
	versions, changed := u.changed()
	if !changed {
		// The bucket holds the state as of now: a complete round, unless
		// another data dir has taken the prefix since (one small read).
		if err := u.checkLatest(ctx); err != nil {
			return err
		}
		u.lastOK = at
		u.rounds.Inc()
		u.maybePrune(ctx, at)
		return nil
	}
	staging := filepath.Join(u.dir, "staging")
	if err := os.RemoveAll(staging); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	defer os.RemoveAll(staging)
	if err := os.MkdirAll(staging, 0o700); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	gen := generation{Time: at, Writer: u.st.ID, Sources: map[string][]file{}}
	for _, s := range u.sources {
		dir := filepath.Join(staging, s.Name)
		if err := s.Checkpoint(dir); err != nil {
			return fmt.Errorf("checkpoint %s: %w", s.Name, err)
		}
		files, err := u.uploadDir(ctx, s.Name, dir)
		if err != nil {
			return fmt.Errorf("upload %s: %w", s.Name, err)
		}
		gen.Sources[s.Name] = files
	}
	if u.last != nil && sameFiles(u.last, &gen) {
		// Nothing changed that the bucket lacks (an empty WAL record
		// moved Version): no new generation.
		u.lastOK, u.versions = at, versions
		u.rounds.Inc()
		u.maybePrune(ctx, at)
		return nil
	}
	// One small read keeps the rounds of two data dirs on one prefix
	// apart; the conditional put catches the race that is left.
	if err := u.checkLatest(ctx); err != nil {
		return err
	}
	gen.Gen = u.st.Gen + 1
	data, err := json.MarshalIndent(gen, "", " ")
	if err != nil {
		return err
	}
	if err := u.b.putNew(ctx, genKey(u.b, gen.Gen), bytes.NewReader(data), int64(len(data))); errors.Is(err, errExists) {
		return u.prefixTaken(fmt.Sprintf("generation %d is already in the bucket", gen.Gen))
	} else if err != nil {
		return fmt.Errorf("upload generation: %w", err)
	}
	if err := u.b.put(ctx, u.b.key("latest.json"), bytes.NewReader(data), int64(len(data))); err != nil {
		return fmt.Errorf("upload generation: %w", err)
	}
	u.st.Gen = gen.Gen
	u.lastOK = at
	u.last, u.versions = &gen, versions
	u.rounds.Inc()
	if err := u.saveState(); err != nil {
		return err
	}
	if g := gen; u.cfg.Keep > 0 {
		if u.gens == nil {
			u.gens = map[uint64]*generation{}
		}
		u.gens[g.Gen] = &g
	}
	u.maybePrune(ctx, at)
	return nil
}

// maybePrune prunes when Keep is set and pruneEvery has passed, also after
// a round with nothing to upload (generations age all the same). Pruning
// is bookkeeping: the round is complete whatever it does. u.mu held.
func (u *Uploader) maybePrune(ctx context.Context, at time.Time) {
	if u.cfg.Keep <= 0 || time.Since(u.lastPrune) < u.pruneEvery() {
		return
	}
	st, err := u.prune(ctx, at)
	if err != nil {
		u.log.Warn("object store prune failed; retried after the next round", "err", err)
		return
	}
	u.lastPrune = time.Now()
	u.pruned.Generations += st.Generations
	u.pruned.Objects += st.Objects
	u.pruned.Bytes += st.Bytes
}

// changed reads every source's Version and reports whether any differs
// from the last complete round's (true when a source has none, or before
// the first round).
func (u *Uploader) changed() ([]uint64, bool) {
	vs := make([]uint64, len(u.sources))
	changed := u.last == nil || len(u.versions) != len(vs)
	for i, s := range u.sources {
		if s.Version == nil {
			changed = true
			continue
		}
		vs[i] = s.Version()
		if !changed && vs[i] != u.versions[i] {
			changed = true
		}
	}
	return vs, changed
}

// sameFiles reports whether two generations list the same files under the
// same keys.
func sameFiles(a, b *generation) bool {
	if len(a.Sources) != len(b.Sources) {
		return false
	}
	for name, fa := range a.Sources {
		fb, ok := b.Sources[name]
		if !ok || len(fa) != len(fb) {
			return false
		}
		for i := range fa {
			if fa[i] != fb[i] {
				return false
			}
		}
	}
	return true
}

// pruneEvery is how often rounds prune: a sixth of KeepAll, between one
// interval and ten minutes.
func (u *Uploader) pruneEvery() time.Duration {
	return max(u.cfg.Interval, min(10*time.Minute, u.cfg.KeepAll/6))
}

// Pruned returns what pruning has removed from the bucket so far.
func (u *Uploader) Pruned() PruneStats {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.pruned
}

func (u *Uploader) saveState() error {
	data, err := json.Marshal(u.st)
	if err != nil {
		return err
	}
	tmp := u.statePath() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("save upload state: %w", err)
	}
	return os.Rename(tmp, u.statePath())
}

// immutable reports whether pebble never rewrites a file of this name.
func immutable(name string) bool {
	return strings.HasSuffix(name, ".sst") || strings.HasSuffix(name, ".blob")
}

// uploadDir uploads the files of one checkpoint that the bucket lacks.
func (u *Uploader) uploadDir(ctx context.Context, src, dir string) ([]file, error) {
	var files []file
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		key := u.b.key(src, rel)
		if u.st.Lineage != "" {
			key = u.b.key(src, "l-"+u.st.Lineage, rel)
		}
		if k, ok := u.st.Known[src+"/"+rel]; ok && immutable(rel) && u.st.Uploaded[k] == info.Size() {
			key = k // brought back by the restore, unchanged
		}
		if !immutable(rel) {
			sum, err := hashFile(p)
			if err != nil {
				return err
			}
			key = u.b.key(src, "m", rel+"@"+sum)
		}
		files = append(files, file{Name: rel, Key: key, Size: info.Size()})
		if size, ok := u.st.Uploaded[key]; ok && size == info.Size() {
			return nil
		}
		// Resuming without (or with a stale) state: an object of the same
		// name and size is the same immutable file.
		if size, err := u.b.size(ctx, key); err != nil {
			return err
		} else if size == info.Size() {
			u.st.Uploaded[key] = size
			return nil
		}
		if err := u.b.putFile(ctx, key, p); err != nil {
			return err
		}
		u.st.Uploaded[key] = info.Size()
		u.files.Inc()
		u.bytes.Add(float64(info.Size()))
		u.sent.Files++
		u.sent.Bytes += info.Size()
		if immutable(rel) {
			u.sent.Immutable++
			// Progress survives a restart mid-round.
			return u.saveState()
		}
		return nil
	})
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	return files, err
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)[:12]), nil
}
