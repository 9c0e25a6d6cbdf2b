package vectors

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync/atomic"
	"testing"
)

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Spec
		err  error
	}{
		{"hash-bow", Spec{Model: "hash-bow"}, nil},
		{"hash-rp?dims=256&seed=7", Spec{Model: "hash-rp", Dims: 256, Seed: 7}, nil},
		{"openai:text-embedding-3-small?dims=1536&base_url=http://x:1/v1", Spec{Model: "openai", Name: "text-embedding-3-small", Dims: 1536, BaseURL: "http://x:1/v1"}, nil},
		{"", Spec{}, ErrBadSpec},
		{"hash-bow?dims=0", Spec{}, ErrBadSpec},
		{"hash-bow?dims=x", Spec{}, ErrBadSpec},
		{"hash-bow?seed=-1", Spec{}, ErrBadSpec},
		{"hash-bow?color=red", Spec{}, ErrBadSpec},
		{"hash-bow?dims=%zz", Spec{}, ErrBadSpec},
		{"hash-bow?dims=64&idf=none", Spec{Model: "hash-bow", Dims: 64, NoIDF: true}, nil},
		{"hash-bow?idf=corpus", Spec{}, ErrBadSpec},
	} {
		got, err := ParseSpec(tc.in)
		if !errors.Is(err, tc.err) {
			t.Errorf("ParseSpec(%q) error %v, want %v", tc.in, err, tc.err)
			continue
		}
		if err != nil {
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseSpec(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		back, err := ParseSpec(got.String())
		if err != nil || !reflect.DeepEqual(back, got) {
			t.Errorf("round trip of %q via %q: %+v, %v", tc.in, got.String(), back, err)
		}
	}
}

func TestRegistryNew(t *testing.T) {
	r := NewRegistry()
	if got := r.Models(); !reflect.DeepEqual(got, []string{"hash-bow", "hash-char", "hash-rp", "ollama", "openai"}) {
		t.Errorf("models %v", got)
	}
	e, err := r.New(must(ParseSpec("hash-char?dims=128&seed=2")), nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.Dims() != 128 || e.ModelID() != "hash-char/v1/seed2/noidf" {
		t.Errorf("got %s/%d", e.ModelID(), e.Dims())
	}
	// idf=none: not fittable, never fitted.
	noidf := must(ParseSpec("hash-bow?idf=none"))
	if _, err := NewIDFFitter(noidf); !errors.Is(err, ErrNotFittable) {
		t.Errorf("fitter of idf=none: %v", err)
	}
	if _, err := r.New(noidf, must(FitIDF(Spec{Model: "hash-bow"}, []string{"a b"}))); !errors.Is(err, ErrFitMismatch) {
		t.Errorf("idf=none with a fitted IDF: %v", err)
	}
	if e := must(r.New(Spec{Model: "hash-bow"}, nil)); e.Dims() != DefaultOfflineDims {
		t.Errorf("default dims %d", e.Dims())
	}
	// Providers are built without contacting anything.
	oa, err := r.New(Spec{Model: "openai", Name: "text-embedding-3-small", Dims: 1536, APIKey: "k"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if oa.ModelID() != "openai/text-embedding-3-small" || oa.Dims() != 1536 {
		t.Errorf("openai: %s/%d", oa.ModelID(), oa.Dims())
	}
	ol, err := r.New(Spec{Model: "ollama", Name: "nomic-embed-text", Dims: 768}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ol.ModelID() != "ollama/nomic-embed-text" {
		t.Errorf("ollama: %s", ol.ModelID())
	}
	for _, bad := range []struct {
		spec Spec
		err  error
	}{
		{Spec{Model: "nope"}, ErrUnknownModel},
		{Spec{Model: "hash-bow", Name: "x"}, ErrBadSpec},
		{Spec{Model: "hash-bow", BaseURL: "http://x"}, ErrBadSpec},
		{Spec{Model: "openai", Name: "m", Dims: 8}, ErrBadSpec},              // no key
		{Spec{Model: "openai", Dims: 8, APIKey: "k"}, ErrBadSpec},            // no name
		{Spec{Model: "ollama", Name: "m"}, ErrBadSpec},                       // no dims
		{Spec{Model: "ollama", Name: "m", Dims: 8, Seed: 1}, ErrBadSpec},     // seed
		{Spec{Model: "ollama", Name: "m", Dims: 8, APIKey: "k"}, ErrBadSpec}, // key
	} {
		if _, err := r.New(bad.spec, nil); !errors.Is(err, bad.err) {
			t.Errorf("New(%+v): %v, want %v", bad.spec, err, bad.err)
		}
	}
	fitted, fit, err := r.NewFitted(Spec{Model: "hash-char", Dims: 32}, goldenTexts)
	if err != nil || fit == nil || fit.Features != "char3-5" || fitted.ModelID() != must(NewOffline(ModelHashChar, 32, 0, fit)).ModelID() {
		t.Errorf("NewFitted offline: %v %v", fitted, err)
	}
	if p, fit, err := r.NewFitted(Spec{Model: "ollama", Name: "m", Dims: 8}, goldenTexts); err != nil || fit != nil || p.ModelID() != "ollama/m" {
		t.Errorf("NewFitted provider: %v %v %v", p, fit, err)
	}
	r.Register("custom", func(spec Spec, fit *IDF) (Embedder, error) { return NewOffline(ModelHashBOW, 4, 0, fit) })
	if _, err := r.New(Spec{Model: "custom"}, nil); err != nil {
		t.Errorf("custom: %v", err)
	}
}

// TestOpenAICompatible runs the openai provider against a local
// OpenAI-compatible /embeddings endpoint on a real socket: the configured
// base URL and key are used, and a wrong dimension is reported.
func TestOpenAICompatible(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.URL.Path != "/v1/embeddings" || r.Header.Get("Authorization") != "Bearer secret" {
			http.Error(w, "bad request "+r.URL.Path, http.StatusBadRequest)
			return
		}
		var req struct {
			Input []string `json:"input"`
			Model string   `json:"model"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		type item struct {
			Object    string    `json:"object"`
			Index     int       `json:"index"`
			Embedding []float32 `json:"embedding"`
		}
		resp := struct {
			Object string `json:"object"`
			Data   []item `json:"data"`
			Model  string `json:"model"`
		}{Object: "list", Model: req.Model}
		for i, in := range req.Input {
			resp.Data = append(resp.Data, item{"embedding", i, []float32{float32(len(in)), 1, 2}})
		}
		_ = json.NewEncoder(w).Encode(resp)
	}))
	defer srv.Close()
	r := NewRegistry()
	e, err := r.New(Spec{Model: "openai", Name: "tiny", Dims: 3, BaseURL: srv.URL + "/v1", APIKey: "secret"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := e.EmbedDocuments(context.Background(), []string{"ab", "abcd"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(vs, [][]float32{{2, 1, 2}, {4, 1, 2}}) {
		t.Fatalf("got %v", vs)
	}
	wrong := must(r.New(Spec{Model: "openai", Name: "tiny", Dims: 4, BaseURL: srv.URL + "/v1", APIKey: "secret"}, nil))
	if _, err := wrong.EmbedQuery(context.Background(), "x"); !errors.Is(err, ErrDimsMismatch) {
		t.Errorf("wrong dims: %v", err)
	}
	if calls.Load() == 0 {
		t.Fatal("server never called")
	}
}
