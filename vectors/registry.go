package vectors

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Spec describes an embedder. Its string form (see ParseSpec) is
//
//	model[:name][?dims=N&seed=S&base_url=URL&idf=none]
//
// e.g. "hash-bow?dims=384", "hash-rp?dims=256&seed=7", "hash-bow?idf=none",
// "openai:text-embedding-3-small?dims=1536",
// "ollama:nomic-embed-text?dims=768&base_url=http://localhost:11434".
// The API key is never part of the string form.
type Spec struct {
	// Model is the registry name: "hash-bow", "hash-char", "hash-rp",
	// "openai" or "ollama".
	Model string
	// Name is the provider's model name (providers only), e.g.
	// "text-embedding-3-small".
	Name string
	// Dims is the vector length. Required for providers (they are never
	// contacted to learn it); offline models default to 384.
	Dims int
	// Seed seeds the offline hashing and projection. Default 0.
	Seed uint64
	// BaseURL is the provider endpoint. Defaults: OpenAI
	// "https://api.openai.com/v1", Ollama "http://localhost:11434".
	BaseURL string
	// APIKey is the OpenAI-compatible bearer token (required for openai).
	APIKey string
	// NoIDF ("idf=none") builds an offline model without corpus
	// statistics (every feature weighs 1): its vectors depend on each
	// text alone, so a changed corpus changes only the changed texts'
	// vectors. Such a model is not fittable (NewIDFFitter says
	// ErrNotFittable). Providers ignore it.
	NoIDF bool
}

// DefaultOfflineDims is the dimension offline models get when Spec.Dims is 0.
const DefaultOfflineDims = 384

// ParseSpec parses the string form of a Spec.
func ParseSpec(s string) (Spec, error) {
	head, query, _ := strings.Cut(s, "?")
	var sp Spec
	sp.Model, sp.Name, _ = strings.Cut(head, ":")
	if sp.Model == "" {
		return Spec{}, fmt.Errorf("parse spec %q: empty model: %w", s, ErrBadSpec)
	}
	vals, err := url.ParseQuery(query)
	if err != nil {
		return Spec{}, fmt.Errorf("parse spec %q: %w", s, ErrBadSpec)
	}
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := vals.Get(k)
		switch k {
		case "dims":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return Spec{}, fmt.Errorf("parse spec %q: dims %q: %w", s, v, ErrBadSpec)
			}
			sp.Dims = n
		case "seed":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return Spec{}, fmt.Errorf("parse spec %q: seed %q: %w", s, v, ErrBadSpec)
			}
			sp.Seed = n
		case "base_url":
			sp.BaseURL = v
		case "idf":
			if v != "none" {
				return Spec{}, fmt.Errorf("parse spec %q: idf %q (only none): %w", s, v, ErrBadSpec)
			}
			sp.NoIDF = true
		default:
			return Spec{}, fmt.Errorf("parse spec %q: unknown parameter %q: %w", s, k, ErrBadSpec)
		}
	}
	return sp, nil
}

// String is the canonical string form (without the API key); ParseSpec
// reads it back.
func (s Spec) String() string {
	var b strings.Builder
	b.WriteString(s.Model)
	if s.Name != "" {
		b.WriteString(":" + s.Name)
	}
	v := url.Values{}
	if s.Dims != 0 {
		v.Set("dims", strconv.Itoa(s.Dims))
	}
	if s.Seed != 0 {
		v.Set("seed", strconv.FormatUint(s.Seed, 10))
	}
	if s.BaseURL != "" {
		v.Set("base_url", s.BaseURL)
	}
	if s.NoIDF {
		v.Set("idf", "none")
	}
	if len(v) > 0 {
		b.WriteString("?" + v.Encode())
	}
	return b.String()
}

// Factory builds an embedder from a spec; fit is the corpus state for
// models that use one (nil otherwise, or to build an unfitted model).
type Factory func(spec Spec, fit *IDF) (Embedder, error)

// Registry maps model names to factories. Safe for concurrent use.
type Registry struct {
	mu sync.RWMutex
	m  map[string]Factory
}

// NewRegistry returns a registry holding the built-in models: the offline
// hash-bow, hash-char and hash-rp, and the openai and ollama providers.
func NewRegistry() *Registry {
	r := &Registry{m: map[string]Factory{}}
	for _, m := range []string{ModelHashBOW, ModelHashChar, ModelHashRP} {
		r.Register(m, func(spec Spec, fit *IDF) (Embedder, error) {
			if spec.Name != "" {
				return nil, fmt.Errorf("%s takes no name: %w", spec.Model, ErrBadSpec)
			}
			if spec.BaseURL != "" {
				return nil, fmt.Errorf("%s takes no base_url: %w", spec.Model, ErrBadSpec)
			}
			dims := spec.Dims
			if dims == 0 {
				dims = DefaultOfflineDims
			}
			if spec.NoIDF && fit != nil {
				return nil, fmt.Errorf("%s with idf=none takes no fitted IDF: %w", spec.Model, ErrFitMismatch)
			}
			return NewOffline(spec.Model, dims, spec.Seed, fit)
		})
	}
	r.Register(ProviderOpenAI, newOpenAI)
	r.Register(ProviderOllama, newOllama)
	return r
}

// Register adds or replaces the factory for model.
func (r *Registry) Register(model string, f Factory) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[model] = f
}

// Models lists the registered model names, sorted.
func (r *Registry) Models() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.m))
	for k := range r.m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// New builds the embedder a spec describes. It never contacts a provider.
func (r *Registry) New(spec Spec, fit *IDF) (Embedder, error) {
	r.mu.RLock()
	f, ok := r.m[spec.Model]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("new embedder %q: %w", spec.Model, ErrUnknownModel)
	}
	e, err := f(spec, fit)
	if err != nil {
		return nil, fmt.Errorf("new embedder %q: %w", spec.Model, err)
	}
	return e, nil
}

// NewFitted builds the embedder a spec describes, first fitting IDF on
// corpus if the model uses one (the returned IDF, nil otherwise, is what to
// save to rebuild the same model later with New).
func (r *Registry) NewFitted(spec Spec, corpus []string) (Embedder, *IDF, error) {
	fit, err := FitIDF(spec, corpus)
	if errors.Is(err, ErrNotFittable) {
		fit, err = nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	e, err := r.New(spec, fit)
	if err != nil {
		return nil, nil, err
	}
	return e, fit, nil
}
