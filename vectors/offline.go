package vectors

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"

	"github.com/offshootdb/offshoot/vectors/internal/textfeat"
)

// Offline model names understood by the registry.
const (
	// ModelHashBOW is a hashed bag of words: stemmed, stopworded words,
	// sublinear TF × IDF, signed feature hashing into Dims buckets.
	ModelHashBOW = "hash-bow"
	// ModelHashChar is hashed character 3- to 5-grams of the same words,
	// sublinear TF × IDF, signed feature hashing into Dims buckets.
	ModelHashChar = "hash-char"
	// ModelHashRP is the word TF × IDF vector (64-bit feature ids, no
	// collisions in practice) times a seeded sparse random projection
	// (Achlioptas: +1, −1 with probability 1/6 each, else 0).
	ModelHashRP = "hash-rp"
)

// Feature kinds recorded in IDF.Features.
const (
	featWords = "words"
	featChar  = "char3-5"
)

// offlineVersion is bumped whenever the offline feature pipeline changes
// output, so cached vectors of an older pipeline are never reused.
const offlineVersion = "v1"

// IDF is document-frequency state fitted on a corpus. It is plain data: it
// serializes to JSON with sorted keys (encoding/json sorts map keys), so the
// same corpus always yields the same bytes and the same Fingerprint. An IDF
// is read-only after fitting and safe for concurrent use.
type IDF struct {
	// Features is the feature kind counted ("words" or "char3-5").
	Features string `json:"features"`
	// N is the number of documents fitted.
	N int `json:"n"`
	// DF maps a feature to the number of documents containing it.
	DF map[string]int `json:"df"`
}

// FitIDF counts document frequencies of the features the spec's model uses
// over texts. Only offline models can be fitted (ErrNotFittable otherwise).
// The result depends only on the texts and their order is irrelevant.
func FitIDF(spec Spec, texts []string) (*IDF, error) {
	f, err := NewIDFFitter(spec)
	if err != nil {
		return nil, err
	}
	for _, t := range texts {
		f.Add(t)
	}
	return f.IDF(), nil
}

// IDFFitter fits IDF one text at a time, for corpora streamed rather than
// held in memory; its memory grows with the vocabulary, not the corpus.
// Not safe for concurrent use.
type IDFFitter struct{ f *IDF }

// NewIDFFitter starts fitting the IDF of spec's model (ErrNotFittable for
// models that use none, and with Spec.NoIDF).
func NewIDFFitter(spec Spec) (*IDFFitter, error) {
	if spec.NoIDF {
		return nil, fmt.Errorf("fit %q with idf=none: %w", spec.Model, ErrNotFittable)
	}
	kind, err := featureKind(spec.Model)
	if err != nil {
		return nil, err
	}
	return &IDFFitter{f: &IDF{Features: kind, DF: map[string]int{}}}, nil
}

// Add counts one document.
func (x *IDFFitter) Add(text string) {
	x.f.N++
	seen := map[string]bool{}
	for _, feat := range features(x.f.Features, text) {
		if !seen[feat] {
			seen[feat] = true
			x.f.DF[feat]++
		}
	}
}

// IDF returns the IDF of the documents added so far; adding more
// afterwards changes it.
func (x *IDFFitter) IDF() *IDF { return x.f }

// ReadIDF decodes IDF JSON as written by json.Marshal.
func ReadIDF(data []byte) (*IDF, error) {
	var f IDF
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("read idf: %w", err)
	}
	if f.Features != featWords && f.Features != featChar {
		return nil, fmt.Errorf("read idf: features %q: %w", f.Features, ErrFitMismatch)
	}
	if f.N < 0 {
		return nil, fmt.Errorf("read idf: negative n: %w", ErrFitMismatch)
	}
	for feat, df := range f.DF {
		if df < 1 || df > f.N {
			return nil, fmt.Errorf("read idf: df of %q is %d, not in 1..%d: %w", feat, df, f.N, ErrFitMismatch)
		}
	}
	return &f, nil
}

// Fingerprint is a short hex digest of the canonical JSON of f.
func (f *IDF) Fingerprint() string {
	b, err := json.Marshal(f)
	if err != nil {
		panic(err) // a struct of strings and ints always marshals
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}

// weight is the smoothed IDF ln((N+1)/(df+1)) + 1; features never seen get
// the largest weight. A nil IDF weighs everything 1.
func (f *IDF) weight(feat string) float64 {
	if f == nil {
		return 1
	}
	return textfeat.Log(float64(f.N+1)/float64(f.DF[feat]+1)) + 1
}

func featureKind(model string) (string, error) {
	switch model {
	case ModelHashBOW, ModelHashRP:
		return featWords, nil
	case ModelHashChar:
		return featChar, nil
	}
	return "", fmt.Errorf("fit %q: %w", model, ErrNotFittable)
}

func features(kind, text string) []string {
	if kind == featChar {
		return textfeat.CharNGrams(text, 3, 5)
	}
	return textfeat.Words(text)
}

// Offline is a deterministic embedder that needs no network. Vectors are L2
// normalized (a text without features gets the zero vector, whose cosine
// distance is undefined). The same model, dims, seed and IDF produce
// bit-identical vectors on every machine. Safe for concurrent use.
type Offline struct {
	model string
	kind  string
	dims  int
	seed  uint64
	idf   *IDF
	id    string
}

// NewOffline builds an offline embedder. model is ModelHashBOW,
// ModelHashChar or ModelHashRP; dims must be positive; idf may be nil (all
// weights 1) or must have been fitted for the model's feature kind.
func NewOffline(model string, dims int, seed uint64, idf *IDF) (*Offline, error) {
	kind, err := featureKind(model)
	if err != nil {
		return nil, fmt.Errorf("new offline embedder: %w", ErrUnknownModel)
	}
	if dims <= 0 {
		return nil, fmt.Errorf("new offline embedder: dims %d: %w", dims, ErrBadSpec)
	}
	fit := "noidf"
	if idf != nil {
		if idf.Features != kind {
			return nil, fmt.Errorf("new offline embedder: %s needs %s, got %s: %w", model, kind, idf.Features, ErrFitMismatch)
		}
		fit = "idf-" + idf.Fingerprint()
	}
	return &Offline{
		model: model, kind: kind, dims: dims, seed: seed, idf: idf,
		id: fmt.Sprintf("%s/%s/seed%d/%s", model, offlineVersion, seed, fit),
	}, nil
}

// ModelID implements Embedder.
func (e *Offline) ModelID() string { return e.id }

// Dims implements Embedder.
func (e *Offline) Dims() int { return e.dims }

// EmbedQuery implements embeddings.Embedder; queries and documents are
// embedded the same way.
func (e *Offline) EmbedQuery(ctx context.Context, text string) ([]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return e.embed(text), nil
}

// EmbedDocuments implements embeddings.Embedder.
func (e *Offline) EmbedDocuments(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	for i, t := range texts {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		out[i] = e.embed(t)
	}
	return out, nil
}

func (e *Offline) embed(text string) []float32 {
	// Term frequencies in first-occurrence order: no map is iterated.
	feats := features(e.kind, text)
	tf := map[string]int{}
	var order []string
	for _, f := range feats {
		if tf[f] == 0 {
			order = append(order, f)
		}
		tf[f]++
	}
	acc := make([]float64, e.dims)
	for _, f := range order {
		w := float64((1 + textfeat.Log(float64(tf[f]))) * e.idf.weight(f))
		h := textfeat.Hash64(e.seed, f)
		if e.model == ModelHashRP {
			for j := range acc {
				switch textfeat.Mix64(h^(uint64(j+1)*0x9e3779b97f4a7c15)) % 6 {
				case 0:
					acc[j] += w
				case 1:
					acc[j] -= w
				}
			}
			continue
		}
		if h>>63 == 1 {
			acc[h%uint64(e.dims)] -= w
		} else {
			acc[h%uint64(e.dims)] += w
		}
	}
	var ss float64
	for _, x := range acc {
		ss += float64(x * x) // conversion forbids fusing into an FMA
	}
	out := make([]float32, e.dims)
	if ss == 0 {
		return out
	}
	norm := math.Sqrt(ss) // IEEE-exact everywhere
	for i, x := range acc {
		out[i] = float32(x / norm)
	}
	return out
}
