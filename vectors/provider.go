package vectors

import (
	"context"
	"fmt"

	"github.com/tmc/langchaingo/embeddings"
	"github.com/tmc/langchaingo/llms/ollama"
	"github.com/tmc/langchaingo/llms/openai"
)

// Provider model names understood by the registry.
const (
	// ProviderOpenAI is any OpenAI-compatible /embeddings endpoint.
	ProviderOpenAI = "openai"
	// ProviderOllama is an Ollama server.
	ProviderOllama = "ollama"
)

// providerEmbedder adapts a langchaingo embedder, checking dimensions of
// everything the provider returns.
type providerEmbedder struct {
	inner embeddings.Embedder
	id    string
	dims  int
}

func (p *providerEmbedder) ModelID() string { return p.id }
func (p *providerEmbedder) Dims() int       { return p.dims }

func (p *providerEmbedder) EmbedQuery(ctx context.Context, text string) ([]float32, error) {
	v, err := p.inner.EmbedQuery(ctx, text)
	if err != nil {
		return nil, fmt.Errorf("%s: embed query: %w", p.id, err)
	}
	if len(v) != p.dims {
		return nil, fmt.Errorf("%s: got %d dims, want %d: %w", p.id, len(v), p.dims, ErrDimsMismatch)
	}
	return v, nil
}

func (p *providerEmbedder) EmbedDocuments(ctx context.Context, texts []string) ([][]float32, error) {
	if len(texts) == 0 {
		return [][]float32{}, nil
	}
	vs, err := p.inner.EmbedDocuments(ctx, texts)
	if err != nil {
		return nil, fmt.Errorf("%s: embed documents: %w", p.id, err)
	}
	if len(vs) != len(texts) {
		return nil, fmt.Errorf("%s: got %d vectors for %d texts: %w", p.id, len(vs), len(texts), ErrDimsMismatch)
	}
	for _, v := range vs {
		if len(v) != p.dims {
			return nil, fmt.Errorf("%s: got %d dims, want %d: %w", p.id, len(v), p.dims, ErrDimsMismatch)
		}
	}
	return vs, nil
}

func checkProviderSpec(spec Spec) error {
	if spec.Name == "" {
		return fmt.Errorf("%s needs a model name (%s:NAME): %w", spec.Model, spec.Model, ErrBadSpec)
	}
	if spec.Dims <= 0 {
		return fmt.Errorf("%s needs dims: %w", spec.Model, ErrBadSpec)
	}
	if spec.Seed != 0 {
		return fmt.Errorf("%s takes no seed: %w", spec.Model, ErrBadSpec)
	}
	return nil
}

// newOpenAI builds an OpenAI-compatible embedder from explicit config only:
// the base URL and key come from the spec, never from the environment.
func newOpenAI(spec Spec, _ *IDF) (Embedder, error) {
	if err := checkProviderSpec(spec); err != nil {
		return nil, err
	}
	if spec.APIKey == "" {
		return nil, fmt.Errorf("openai needs an API key: %w", ErrBadSpec)
	}
	base := spec.BaseURL
	if base == "" {
		base = "https://api.openai.com/v1"
	}
	llm, err := openai.New(openai.WithToken(spec.APIKey), openai.WithBaseURL(base),
		openai.WithEmbeddingModel(spec.Name), openai.WithModel(spec.Name))
	if err != nil {
		return nil, err
	}
	inner, err := embeddings.NewEmbedder(llm, embeddings.WithStripNewLines(false))
	if err != nil {
		return nil, err
	}
	return &providerEmbedder{inner: inner, id: "openai/" + spec.Name, dims: spec.Dims}, nil
}

// newOllama builds an Ollama embedder from explicit config only.
func newOllama(spec Spec, _ *IDF) (Embedder, error) {
	if err := checkProviderSpec(spec); err != nil {
		return nil, err
	}
	if spec.APIKey != "" {
		return nil, fmt.Errorf("ollama takes no API key: %w", ErrBadSpec)
	}
	base := spec.BaseURL
	if base == "" {
		base = "http://localhost:11434"
	}
	llm, err := ollama.New(ollama.WithServerURL(base), ollama.WithModel(spec.Name))
	if err != nil {
		return nil, err
	}
	inner, err := embeddings.NewEmbedder(llm, embeddings.WithStripNewLines(false))
	if err != nil {
		return nil, err
	}
	return &providerEmbedder{inner: inner, id: "ollama/" + spec.Name, dims: spec.Dims}, nil
}
