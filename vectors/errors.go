package vectors

import "errors"

var (
	// ErrBadSpec means an embedder spec is malformed or incomplete.
	ErrBadSpec = errors.New("bad embedder spec")
	// ErrUnknownModel means no registered factory has the spec's model name.
	ErrUnknownModel = errors.New("unknown embedding model")
	// ErrNotFittable means the model has no corpus statistics to fit.
	ErrNotFittable = errors.New("model cannot be fitted")
	// ErrFitMismatch means fitted statistics were made for other features.
	ErrFitMismatch = errors.New("fit state does not match model")
	// ErrDimsMismatch means a vector does not have the expected dimensions.
	ErrDimsMismatch = errors.New("vector dimensions mismatch")
	// ErrBadChunking means chunk size or overlap are out of range.
	ErrBadChunking = errors.New("bad chunking options")
	// ErrBadTable means a table description is invalid.
	ErrBadTable = errors.New("bad table")
	// ErrBadIndex means an index description is invalid.
	ErrBadIndex = errors.New("bad index")
	// ErrBadQuery means a search request is invalid.
	ErrBadQuery = errors.New("bad query")
	// ErrCacheClosed means the embedding cache was used after Close.
	ErrCacheClosed = errors.New("embedding cache closed")
)
