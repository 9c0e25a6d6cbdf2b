package objstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
	// does not exist yet (pebble's DB.Checkpoint). It must include every
	// write acknowledged before the call.
	Checkpoint func(dir string) error
}

// generation is the record of one complete upload round.
type generation struct {
	Gen     uint64            `json:"gen"`
	Time    time.Time         `json:"time"`
	Sources map[string][]file `json:"sources"`
}

type file struct {
	Name string `json:"name"`
	Key  string `json:"key"`
	Size int64  `json:"size"`
}

// state is what the uploader keeps between runs in its state directory.
type state struct {
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

	rounds, failures, files, bytes prometheus.Counter
	lag                            prometheus.GaugeFunc

	cancel context.CancelFunc
	done   chan struct{}

	gens      map[uint64]*generation // generation records read by prune
	lastPrune time.Time
	pruned    PruneStats // totals
}

// New checks the bucket and returns an Uploader that keeps its state and
// staging checkpoints in stateDir (on the same file system as the sources,
// so that checkpoints hard-link). An unreachable endpoint or a missing
// bucket is an error (ErrUnreachable, ErrNoBucket). Start begins uploading.
func New(ctx context.Context, cfg Config, sources []Source, stateDir string, log *slog.Logger) (*Uploader, error) {
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
	} else if data, err := b.get(ctx, b.key("latest.json")); err == nil {
		// A data dir restored from (or new to) this prefix: number the
		// rounds after the bucket's last one.
		var g generation
		if json.Unmarshal(data, &g) == nil {
			u.st.Gen = g.Gen
		}
	}
	u.rounds = prometheus.NewCounter(prometheus.CounterOpts{Name: "offshoot_objstore_rounds_total", Help: "Complete upload rounds."})
	u.failures = prometheus.NewCounter(prometheus.CounterOpts{Name: "offshoot_objstore_failures_total", Help: "Upload rounds that failed (retried with backoff)."})
	u.files = prometheus.NewCounter(prometheus.CounterOpts{Name: "offshoot_objstore_files_uploaded_total", Help: "Files uploaded."})
	u.bytes = prometheus.NewCounter(prometheus.CounterOpts{Name: "offshoot_objstore_bytes_uploaded_total", Help: "Bytes uploaded."})
	u.lag = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "offshoot_objstore_upload_lag_seconds",
		Help: "Age of the newest state complete in the bucket: what losing the machine now would lose."},
		func() float64 { return u.Lag().Seconds() })
	return u, nil
}

func (u *Uploader) statePath() string { return filepath.Join(u.dir, "state.json") }

// Collector returns the uploader's metrics.
func (u *Uploader) Collector() prometheus.Collector {
	return collectors{u.rounds, u.failures, u.files, u.bytes, u.lag}
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
				if ctx.Err() != nil {
					return
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
// as of its call is complete in the bucket.
func (u *Uploader) Sync(ctx context.Context) (err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	defer func() {
		if err != nil {
			u.failures.Inc()
		}
	}()
	at := time.Now()
	staging := filepath.Join(u.dir, "staging")
	if err := os.RemoveAll(staging); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	defer os.RemoveAll(staging)
	if err := os.MkdirAll(staging, 0o700); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	gen := generation{Gen: u.st.Gen + 1, Time: at, Sources: map[string][]file{}}
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
	data, err := json.MarshalIndent(gen, "", " ")
	if err != nil {
		return err
	}
	if err := u.b.put(ctx, genKey(u.b, gen.Gen), bytes.NewReader(data), int64(len(data))); err != nil {
		return fmt.Errorf("upload generation: %w", err)
	}
	if err := u.b.put(ctx, u.b.key("latest.json"), bytes.NewReader(data), int64(len(data))); err != nil {
		return fmt.Errorf("upload generation: %w", err)
	}
	u.st.Gen = gen.Gen
	u.lastOK = at
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
	// Pruning is bookkeeping: the round is complete whatever it does.
	if u.cfg.Keep > 0 && time.Since(u.lastPrune) >= u.pruneEvery() {
		st, err := u.prune(ctx, at)
		if err != nil {
			u.log.Warn("object store prune failed; retried after the next round", "err", err)
		} else {
			u.lastPrune = time.Now()
			u.pruned.Generations += st.Generations
			u.pruned.Objects += st.Objects
			u.pruned.Bytes += st.Bytes
		}
	}
	return nil
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
