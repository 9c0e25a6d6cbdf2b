package vectors

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"testing"
)

// counting wraps a real embedder and counts the texts it is asked to embed.
type counting struct {
	Embedder
	texts atomic.Int64
}

func (c *counting) EmbedDocuments(ctx context.Context, texts []string) ([][]float32, error) {
	c.texts.Add(int64(len(texts)))
	return c.Embedder.EmbedDocuments(ctx, texts)
}

func (c *counting) EmbedQuery(ctx context.Context, text string) ([]float32, error) {
	c.texts.Add(1)
	return c.Embedder.EmbedQuery(ctx, text)
}

func TestCacheSecondRunEmbedsNothing(t *testing.T) {
	c := loadCranfield(t)
	dir := filepath.Join(t.TempDir(), "cache")
	idf := must(FitIDF(Spec{Model: ModelHashBOW}, c.docs))
	texts := append(append([]string{}, c.docs...), c.docs[:10]...) // with duplicates

	run := func() (docs [][]float32, q []float32, embedded int64) {
		cache, err := OpenCache(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer cache.Close()
		inner := &counting{Embedder: must(NewOffline(ModelHashBOW, 128, 0, idf))}
		e := cache.Wrap("p", inner)
		docs, err = e.EmbedDocuments(context.Background(), texts)
		if err != nil {
			t.Fatal(err)
		}
		q, err = e.EmbedQuery(context.Background(), c.qs[0])
		if err != nil {
			t.Fatal(err)
		}
		return docs, q, inner.texts.Load()
	}
	docs1, q1, n1 := run()
	distinct := map[string]bool{}
	for _, s := range texts {
		distinct[s] = true
	}
	if n1 != int64(len(distinct))+1 {
		t.Errorf("first run embedded %d texts, want %d", n1, len(distinct)+1)
	}
	docs2, q2, n2 := run()
	if n2 != 0 {
		t.Errorf("second run embedded %d texts, want 0", n2)
	}
	if !reflect.DeepEqual(docs1, docs2) || !reflect.DeepEqual(q1, q2) {
		t.Error("cached vectors differ from computed ones")
	}
	direct := must(must(NewOffline(ModelHashBOW, 128, 0, idf)).EmbedDocuments(context.Background(), texts))
	if !reflect.DeepEqual(direct, docs1) {
		t.Error("cached embedder output differs from the model's")
	}

	// Another model, dims or fit never reuses these entries.
	cache := must(OpenCache(dir))
	defer cache.Close()
	for _, e := range []*Offline{
		must(NewOffline(ModelHashBOW, 64, 0, idf)),
		must(NewOffline(ModelHashBOW, 128, 0, nil)),
		must(NewOffline(ModelHashRP, 128, 0, idf)),
	} {
		inner := &counting{Embedder: e}
		w := cache.Wrap("p", inner)
		if _, err := w.EmbedDocuments(context.Background(), c.docs[:5]); err != nil {
			t.Fatal(err)
		}
		if inner.texts.Load() != 5 {
			t.Errorf("%s/%d: embedded %d of 5, want all", e.ModelID(), e.Dims(), inner.texts.Load())
		}
		if hits, misses := w.Stats(); hits != 0 || misses != 5 {
			t.Errorf("stats %d/%d", hits, misses)
		}
	}
	if err := cache.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Wrap("p", must(NewOffline(ModelHashBOW, 8, 0, nil))).EmbedQuery(context.Background(), "x"); !errors.Is(err, ErrCacheClosed) {
		t.Errorf("closed cache: %v", err)
	}
}

// TestCacheNamespaces: a namespace (a project) never hits another's
// entries, so hit counts tell nothing of other projects' texts, and the
// cache directory is its owner's only.
func TestCacheNamespaces(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cache := must(OpenCache(dir))
	defer cache.Close()
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("cache directory mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	texts := []string{"the secret merger", "layoffs in march"}
	for _, c := range []struct {
		ns         string
		hits, miss int64
	}{{"main", 0, 2}, {"p2", 0, 2}, {"main", 2, 0}} {
		w := cache.Wrap(c.ns, must(NewOffline(ModelHashBOW, 16, 0, nil)))
		if _, err := w.EmbedDocuments(context.Background(), texts); err != nil {
			t.Fatal(err)
		}
		if _, err := w.EmbedQuery(context.Background(), texts[0]); err != nil {
			t.Fatal(err)
		}
		if hits, misses := w.Stats(); hits != c.hits+c.hits/2 || misses != c.miss+c.miss/2 {
			t.Errorf("namespace %s: %d hits, %d misses; want %d, %d", c.ns, hits, misses, c.hits+c.hits/2, c.miss+c.miss/2)
		}
	}
}
