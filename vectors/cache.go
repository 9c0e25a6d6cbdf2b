package vectors

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// Cache is a persistent embedding cache in a pebble database, keyed by
// (namespace, model id, dims, role, sha256 of the text). One Cache is
// meant to be opened once per process and shared by every run and every
// embedder (pebble locks the directory against a second process); each
// namespace (a project) sees only its own entries, so that whether a text
// hits tells nothing about another namespace's texts. Safe for concurrent
// use.
type Cache struct {
	mu sync.RWMutex // held for reading by users of db, for writing by Close
	db *pebble.DB
}

// OpenCache opens or creates the cache in dir, which is made (or narrowed
// to) mode 0700: it holds hashes of every embedded text.
func OpenCache(dir string) (*Cache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open embedding cache: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open embedding cache: %w", err)
	}
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		return nil, fmt.Errorf("open embedding cache: %w", err)
	}
	return &Cache{db: db}, nil
}

// quietLogger drops pebble's informational messages (WAL recovery notes on
// every open) and keeps errors.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}
func (quietLogger) Errorf(format string, args ...any) {
	pebble.DefaultLogger.Errorf(format, args...)
}
func (quietLogger) Fatalf(format string, args ...any) {
	pebble.DefaultLogger.Fatalf(format, args...)
}

// Close flushes and closes the cache; later use returns ErrCacheClosed.
func (c *Cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.db == nil {
		return nil
	}
	err := c.db.Close()
	c.db = nil
	return err
}

const (
	roleDocument = 'd'
	roleQuery    = 'q'
)

// keyVersion starts every key with a namespace. Keys of older caches
// (which had none) start with the model id's length, never 0, and so
// just miss.
const keyVersion = 0

func cacheKey(namespace, model string, dims int, role byte, text string) []byte {
	sum := sha256.Sum256([]byte(text))
	k := make([]byte, 0, 1+8+len(namespace)+8+len(model)+8+1+len(sum))
	k = append(k, keyVersion)
	k = binary.AppendUvarint(k, uint64(len(namespace)))
	k = append(k, namespace...)
	k = binary.AppendUvarint(k, uint64(len(model)))
	k = append(k, model...)
	k = binary.AppendUvarint(k, uint64(dims))
	k = append(k, role)
	return append(k, sum[:]...)
}

func encodeVec(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// get returns the cached vector or nil.
func (c *Cache) get(key []byte, dims int) ([]float32, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.db == nil {
		return nil, ErrCacheClosed
	}
	val, closer, err := c.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("embedding cache get: %w", err)
	}
	defer closer.Close()
	if len(val) != 4*dims {
		return nil, fmt.Errorf("embedding cache: %d bytes for %d dims: %w", len(val), dims, ErrDimsMismatch)
	}
	v := make([]float32, dims)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(val[4*i:]))
	}
	return v, nil
}

func (c *Cache) put(keys [][]byte, vecs [][]float32) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.db == nil {
		return ErrCacheClosed
	}
	b := c.db.NewBatch()
	defer b.Close()
	for i, k := range keys {
		if err := b.Set(k, encodeVec(vecs[i]), nil); err != nil {
			return fmt.Errorf("embedding cache put: %w", err)
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("embedding cache put: %w", err)
	}
	return nil
}

// Cached is an Embedder that answers from a Cache and embeds only the
// misses (each distinct missing text once per call) with the wrapped
// embedder, storing what it embedded. Document and query embeddings are
// cached separately, since providers may embed them differently. Safe for
// concurrent use.
type Cached struct {
	inner  Embedder
	cache  *Cache
	ns     string
	hits   atomic.Int64
	misses atomic.Int64
}

// Wrap returns a caching embedder in front of e that reads and writes
// only the entries of namespace (a project's name: callers that must not
// learn of each other's texts use different namespaces).
func (c *Cache) Wrap(namespace string, e Embedder) *Cached {
	return &Cached{inner: e, cache: c, ns: namespace}
}

// ModelID implements Embedder; it is the wrapped model's id.
func (e *Cached) ModelID() string { return e.inner.ModelID() }

// Dims implements Embedder.
func (e *Cached) Dims() int { return e.inner.Dims() }

// Stats reports how many texts were answered from the cache and how many
// were embedded, since the wrapper was made.
func (e *Cached) Stats() (hits, misses int64) { return e.hits.Load(), e.misses.Load() }

// EmbedQuery implements embeddings.Embedder.
func (e *Cached) EmbedQuery(ctx context.Context, text string) ([]float32, error) {
	key := cacheKey(e.ns, e.inner.ModelID(), e.inner.Dims(), roleQuery, text)
	v, err := e.cache.get(key, e.inner.Dims())
	if err != nil {
		return nil, err
	}
	if v != nil {
		e.hits.Add(1)
		return v, nil
	}
	v, err = e.inner.EmbedQuery(ctx, text)
	if err != nil {
		return nil, err
	}
	if len(v) != e.inner.Dims() {
		return nil, fmt.Errorf("%s: got %d dims: %w", e.inner.ModelID(), len(v), ErrDimsMismatch)
	}
	e.misses.Add(1)
	return v, e.cache.put([][]byte{key}, [][]float32{v})
}

// EmbedDocuments implements embeddings.Embedder.
func (e *Cached) EmbedDocuments(ctx context.Context, texts []string) ([][]float32, error) {
	dims := e.inner.Dims()
	out := make([][]float32, len(texts))
	keys := make([][]byte, len(texts))
	missAt := map[string][]int{} // text → positions
	var missTexts []string
	var missKeys [][]byte
	for i, t := range texts {
		keys[i] = cacheKey(e.ns, e.inner.ModelID(), dims, roleDocument, t)
		v, err := e.cache.get(keys[i], dims)
		if err != nil {
			return nil, err
		}
		if v != nil {
			out[i] = v
			continue
		}
		if _, seen := missAt[t]; !seen {
			missTexts = append(missTexts, t)
			missKeys = append(missKeys, keys[i])
		}
		missAt[t] = append(missAt[t], i)
	}
	e.hits.Add(int64(len(texts) - len(missTexts)))
	if len(missTexts) == 0 {
		return out, nil
	}
	vs, err := e.inner.EmbedDocuments(ctx, missTexts)
	if err != nil {
		return nil, err
	}
	if len(vs) != len(missTexts) {
		return nil, fmt.Errorf("%s: %d vectors for %d texts: %w", e.inner.ModelID(), len(vs), len(missTexts), ErrDimsMismatch)
	}
	for j, v := range vs {
		if len(v) != dims {
			return nil, fmt.Errorf("%s: got %d dims: %w", e.inner.ModelID(), len(v), ErrDimsMismatch)
		}
		for _, i := range missAt[missTexts[j]] {
			out[i] = v
		}
	}
	e.misses.Add(int64(len(missTexts)))
	if err := e.cache.put(missKeys, vs); err != nil {
		return nil, err
	}
	return out, nil
}
