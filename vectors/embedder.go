package vectors

import (
	"github.com/tmc/langchaingo/embeddings"
)

// Embedder is a langchaingo embeddings.Embedder that also names its model
// and output size. ModelID is stable: the same id and Dims always mean the
// same function from text to vector, which is what lets the Cache reuse
// vectors across runs. Implementations in this package are safe for
// concurrent use.
type Embedder interface {
	embeddings.Embedder
	// ModelID identifies the model (and, for fitted offline models, the
	// fit state), e.g. "hash-bow/v1/seed0/idf-3f2a9c1b0d4e".
	ModelID() string
	// Dims is the length of every returned vector.
	Dims() int
}
