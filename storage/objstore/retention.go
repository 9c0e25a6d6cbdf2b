package objstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
)

// Retention: the bucket keeps past generations, so that a restore can go
// back further than the store's local history window (long retention off
// the machine), and drops the ones past Config.Keep together with the
// objects only they named.
//
// Every generation of the last Config.KeepAll is kept; older ones, up to
// Config.Keep, are thinned to the newest of each hour; the latest is always
// kept. Config.Keep 0 keeps every generation (no pruning).

// GenerationInfo describes one generation the bucket holds.
type GenerationInfo struct {
	Gen   uint64    `json:"gen"`
	Time  time.Time `json:"time"`
	Files int       `json:"files"`
	Bytes int64     `json:"bytes"`
}

// PruneStats counts what a prune removed.
type PruneStats struct {
	Generations, Objects int
	Bytes                int64
}

// Generations lists the generations in the bucket, oldest first.
func Generations(ctx context.Context, cfg Config) ([]GenerationInfo, error) {
	cfg = cfg.withDefaults()
	b, err := openBucket(ctx, cfg)
	if err != nil {
		return nil, err
	}
	gens, err := b.generations(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]GenerationInfo, 0, len(gens))
	for _, n := range gens {
		g, err := b.generation(ctx, n)
		if errors.Is(err, errNoKey) {
			continue // pruned since the listing
		}
		if err != nil {
			return nil, err
		}
		gi := GenerationInfo{Gen: g.Gen, Time: g.Time}
		for _, fs := range g.Sources {
			for _, f := range fs {
				gi.Files++
				gi.Bytes += f.Size
			}
		}
		out = append(out, gi)
	}
	return out, nil
}

// generations lists the numbers of the generation records, ascending.
func (b *bucket) generations(ctx context.Context) ([]uint64, error) {
	objs, err := b.list(ctx, b.key("generations")+"/")
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, o := range objs {
		name := o.key[strings.LastIndexByte(o.key, '/')+1:]
		n, err := strconv.ParseUint(strings.TrimSuffix(name, ".json"), 10, 64)
		if err != nil || !strings.HasSuffix(name, ".json") {
			continue // not a generation record
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

func genKey(b *bucket, n uint64) string { return b.key("generations", fmt.Sprintf("%020d.json", n)) }

// generation reads generation record n (errNoKey if there is none).
func (b *bucket) generation(ctx context.Context, n uint64) (*generation, error) {
	data, err := b.get(ctx, genKey(b, n))
	if err != nil {
		return nil, err
	}
	var g generation
	if err := json.Unmarshal(data, &g); err != nil {
		return nil, fmt.Errorf("generation %d: %w", n, err)
	}
	return &g, nil
}

type object struct {
	key      string
	size     int64
	modified time.Time
}

// list lists the objects whose keys start with prefix.
func (b *bucket) list(ctx context.Context, prefix string) (_ []object, err error) {
	ctx, kick, stop := b.watch(ctx)
	defer func() { err = stop(err) }()
	var out []object
	for o := range b.c.ListObjects(ctx, b.name, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, o.Err
		}
		kick()
		out = append(out, object{key: o.Key, size: o.Size, modified: o.LastModified})
	}
	// A listing cut short by a cancel may end without an error.
	return out, ctx.Err()
}

func (b *bucket) remove(ctx context.Context, key string) error {
	return b.c.RemoveObject(ctx, b.name, key, minio.RemoveObjectOptions{})
}

// keep decides which of the generations (number → time) stay at now:
// the latest, all of the last keepAll, and the newest of each hour up to
// keep.
func keepGenerations(gens map[uint64]time.Time, now time.Time, keep, keepAll time.Duration) map[uint64]bool {
	out := map[uint64]bool{}
	var latest uint64
	hourly := map[int64]uint64{} // hour → newest generation in it
	for n, t := range gens {
		latest = max(latest, n)
		age := now.Sub(t)
		switch {
		case age <= keepAll:
			out[n] = true
		case age <= keep:
			h := t.Unix() / 3600
			if m, ok := hourly[h]; !ok || n > m {
				hourly[h] = n
			}
		}
	}
	for _, n := range hourly {
		out[n] = true
	}
	if len(gens) > 0 {
		out[latest] = true
	}
	return out
}

// prune drops the generations past the retention and then every object
// under the sources' prefixes that no kept generation names and that is
// older than unnamedGrace: it runs after a round, under u.mu, so that
// none of this uploader's uploads is in flight, and the grace keeps what
// a round still in progress elsewhere has sent (one server per prefix is
// the rule; a machine being replaced may still be uploading). An object a
// failed round left unnamed goes too (the next round sends it again).
func (u *Uploader) prune(ctx context.Context, now time.Time) (PruneStats, error) {
	var st PruneStats
	if u.cfg.Keep <= 0 {
		return st, nil
	}
	nums, err := u.b.generations(ctx)
	if err != nil {
		return st, err
	}
	times := map[uint64]time.Time{}
	for _, n := range nums {
		g, err := u.genCached(ctx, n)
		if errors.Is(err, errNoKey) {
			continue
		}
		if err != nil {
			return st, err
		}
		times[n] = g.Time
	}
	kept := keepGenerations(times, now, u.cfg.Keep, u.cfg.KeepAll)
	named := map[string]bool{}
	for n := range kept {
		g, err := u.genCached(ctx, n)
		if err != nil {
			return st, err
		}
		for _, fs := range g.Sources {
			for _, f := range fs {
				named[f.Key] = true
			}
		}
	}
	// Records first: a generation whose record is gone is never restored,
	// so its objects can go after it.
	for n := range times {
		if kept[n] {
			continue
		}
		if err := u.b.remove(ctx, genKey(u.b, n)); err != nil {
			return st, err
		}
		delete(u.gens, n)
		st.Generations++
	}
	var drop []object
	for _, s := range u.sources {
		objs, err := u.b.list(ctx, u.b.key(s.Name)+"/")
		if err != nil {
			return st, err
		}
		for _, o := range objs {
			if !named[o.key] && now.Sub(o.modified) > u.unnamedGrace() {
				drop = append(drop, o)
			}
		}
	}
	// The state forgets them first: a crash in between leaves objects
	// that the next prune deletes, never a state that trusts a deleted
	// one.
	for _, o := range drop {
		delete(u.st.Uploaded, o.key)
	}
	if err := u.saveState(); err != nil {
		return st, err
	}
	for _, o := range drop {
		if err := u.b.remove(ctx, o.key); err != nil {
			return st, err
		}
		st.Objects++
		st.Bytes += o.size
	}
	if st.Generations+st.Objects > 0 {
		u.log.Info("object store pruned", "generations", st.Generations, "objects", st.Objects, "bytes", st.Bytes)
	}
	return st, u.saveState()
}

// unnamedGrace is how long an object no kept generation names is left
// alone: a round in progress may have sent it.
func (u *Uploader) unnamedGrace() time.Duration {
	return max(u.cfg.KeepAll, 10*u.cfg.Interval)
}

// genCached reads generation record n once (records never change).
func (u *Uploader) genCached(ctx context.Context, n uint64) (*generation, error) {
	if g, ok := u.gens[n]; ok {
		return g, nil
	}
	g, err := u.b.generation(ctx, n)
	if err != nil {
		return nil, err
	}
	if u.gens == nil {
		u.gens = map[uint64]*generation{}
	}
	u.gens[n] = g
	return g, nil
}
