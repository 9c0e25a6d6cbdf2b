package vectors

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"sort"
	"testing"
)

func vecDigest(v []float32) string {
	h := sha256.New()
	for _, x := range v {
		_ = binary.Write(h, binary.LittleEndian, math.Float32bits(x))
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

var goldenTexts = []string{
	"experimental investigation of the aerodynamics of a wing in a slipstream .",
	"what similarity laws must be obeyed when constructing aeroelastic models of heated high speed aircraft .",
}

func goldenIDF(t *testing.T, model string) *IDF {
	t.Helper()
	idf, err := FitIDF(Spec{Model: model}, goldenTexts)
	if err != nil {
		t.Fatal(err)
	}
	return idf
}

// TestOfflineGolden pins the exact bits of each offline model: if these
// change, every cached vector and every published number changes, so the
// model version must be bumped.
func TestOfflineGolden(t *testing.T) {
	want := map[string]string{
		ModelHashBOW:  "a2fe489d4a5363a7",
		ModelHashChar: "1bf272a0f00aed66",
		ModelHashRP:   "44a0d31547ff0809",
	}
	models := []string{ModelHashBOW, ModelHashChar, ModelHashRP}
	for _, m := range models {
		e, err := NewOffline(m, 64, 3, goldenIDF(t, m))
		if err != nil {
			t.Fatal(err)
		}
		v, err := e.EmbedQuery(context.Background(), goldenTexts[0])
		if err != nil {
			t.Fatal(err)
		}
		if len(v) != 64 {
			t.Fatalf("%s: %d dims", m, len(v))
		}
		var ss float64
		for _, x := range v {
			ss += float64(x) * float64(x)
		}
		if math.Abs(ss-1) > 1e-5 {
			t.Errorf("%s: norm² %v, want 1", m, ss)
		}
		if got := vecDigest(v); got != want[m] {
			t.Errorf("%s (%s): digest %s, want %s", m, e.ModelID(), got, want[m])
		}
		docs, err := e.EmbedDocuments(context.Background(), goldenTexts)
		if err != nil {
			t.Fatal(err)
		}
		if vecDigest(docs[0]) != vecDigest(v) {
			t.Errorf("%s: document and query embedding of the same text differ", m)
		}
	}
}

func TestOfflineIDFRoundTrip(t *testing.T) {
	idf := goldenIDF(t, ModelHashBOW)
	b, err := json.Marshal(idf)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ReadIDF(b)
	if err != nil {
		t.Fatal(err)
	}
	// Fitting in another order gives the same state.
	again, err := FitIDF(Spec{Model: ModelHashRP}, []string{goldenTexts[1], goldenTexts[0]})
	if err != nil {
		t.Fatal(err)
	}
	if back.Fingerprint() != idf.Fingerprint() || again.Fingerprint() != idf.Fingerprint() {
		t.Fatalf("fingerprints differ: %s %s %s", idf.Fingerprint(), back.Fingerprint(), again.Fingerprint())
	}
	a, _ := NewOffline(ModelHashBOW, 32, 0, idf)
	c, _ := NewOffline(ModelHashBOW, 32, 0, back)
	if a.ModelID() != c.ModelID() {
		t.Fatalf("model ids differ: %s %s", a.ModelID(), c.ModelID())
	}
	va, _ := a.EmbedQuery(context.Background(), goldenTexts[1])
	vc, _ := c.EmbedQuery(context.Background(), goldenTexts[1])
	if vecDigest(va) != vecDigest(vc) {
		t.Fatal("vectors differ after IDF round trip")
	}
	// Different fit, seed or model → different id.
	ids := map[string]bool{a.ModelID(): true}
	for _, e := range []*Offline{
		must(NewOffline(ModelHashBOW, 32, 0, nil)),
		must(NewOffline(ModelHashBOW, 32, 1, idf)),
		must(NewOffline(ModelHashRP, 32, 0, idf)),
	} {
		if ids[e.ModelID()] {
			t.Errorf("duplicate model id %s", e.ModelID())
		}
		ids[e.ModelID()] = true
	}
	if _, err := ReadIDF([]byte(`{"features":"bytes","n":1}`)); !errors.Is(err, ErrFitMismatch) {
		t.Errorf("bad features: %v", err)
	}
	if _, err := ReadIDF([]byte(`{"features":"words","n":1,"df":{"a":2}}`)); !errors.Is(err, ErrFitMismatch) {
		t.Errorf("df > n: %v", err)
	}
	if _, err := ReadIDF([]byte(`{`)); err == nil {
		t.Error("truncated JSON accepted")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestOfflineErrors(t *testing.T) {
	if _, err := NewOffline("nope", 8, 0, nil); !errors.Is(err, ErrUnknownModel) {
		t.Errorf("unknown model: %v", err)
	}
	if _, err := NewOffline(ModelHashBOW, 0, 0, nil); !errors.Is(err, ErrBadSpec) {
		t.Errorf("zero dims: %v", err)
	}
	if _, err := NewOffline(ModelHashChar, 8, 0, goldenIDF(t, ModelHashBOW)); !errors.Is(err, ErrFitMismatch) {
		t.Errorf("word IDF on char model: %v", err)
	}
	if _, err := FitIDF(Spec{Model: ProviderOpenAI}, goldenTexts); !errors.Is(err, ErrNotFittable) {
		t.Errorf("fit provider: %v", err)
	}
	e := must(NewOffline(ModelHashBOW, 8, 0, nil))
	v, err := e.EmbedQuery(context.Background(), "the of and")
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range v {
		if x != 0 {
			t.Fatalf("text without features: %v, want zero vector", v)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.EmbedDocuments(ctx, goldenTexts); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// TestOfflineQualityCranfield ranks the whole Cranfield corpus by cosine in
// memory for each offline model and checks that each retrieves far better
// than chance (recall@10 of a random ranking is about 0.007), and that the
// models really differ.
func TestOfflineQualityCranfield(t *testing.T) {
	c := loadCranfield(t)
	recall := map[string]float64{}
	for _, m := range []string{ModelHashBOW, ModelHashChar, ModelHashRP} {
		idf, err := FitIDF(Spec{Model: m}, c.docs)
		if err != nil {
			t.Fatal(err)
		}
		e := must(NewOffline(m, 384, 0, idf))
		docs := must(e.EmbedDocuments(context.Background(), c.docs))
		qs := must(e.EmbedDocuments(context.Background(), c.qs))
		var sum float64
		n := 0
		for qi, q := range qs {
			rel := c.rel[c.qIDs[qi]]
			if len(rel) == 0 {
				continue
			}
			top := bruteForce(q, docs, c.docIDs, 10)
			sum += overlapAt(top, rel, len(c.docs)) // |top ∩ rel| / |rel|
			n++
		}
		recall[m] = sum / float64(n)
		t.Logf("%s (%s): mean recall@10 vs qrels = %.4f", m, e.ModelID(), recall[m])
		if recall[m] < 0.2 {
			t.Errorf("%s: recall@10 %.4f, want ≥ 0.2", m, recall[m])
		}
	}
	if recall[ModelHashBOW] == recall[ModelHashChar] {
		t.Error("bow and char models score identically")
	}
}

// bruteForce returns the ids of the k docs with the highest dot product
// (cosine: vectors are normalized), ties by id.
func bruteForce(q []float32, docs [][]float32, ids []string, k int) []string {
	type sc struct {
		id string
		s  float64
	}
	all := make([]sc, len(docs))
	for i, d := range docs {
		var s float64
		for j := range d {
			s += float64(d[j]) * float64(q[j])
		}
		all[i] = sc{ids[i], s}
	}
	sort.Slice(all, func(a, b int) bool {
		if all[a].s != all[b].s {
			return all[a].s > all[b].s
		}
		return all[a].id < all[b].id
	})
	out := make([]string, 0, k)
	for _, s := range all[:k] {
		out = append(out, s.id)
	}
	return out
}
