package experiments

import (
	"fmt"

	"github.com/offshootdb/offshoot/vectors"
)

// Vector storage of a dense variant: the embedding column's type
// (VariantSpec.VectorType) and the index's quantization
// (VariantSpec.Quantization, searched with SearchSpec.Rerank).
//
// A halfvec variant stores 2-byte floats: its table and index are about
// half a vector variant's, and its exact search ranks by distances of the
// rounded values. A binary variant keeps the full embeddings in the table
// and indexes one bit per dimension, binary_quantize(embedding)::bit(d),
// by Hamming distance (bit_hamming_ops, 1/32 of a vector index's vector
// bytes); a query fetches the Rerank nearest rows by Hamming distance
// through that index and orders them by the variant's distance on the
// full embeddings (pgvector's re-ranking pattern). ANN recall is measured,
// as for every index, against exact search on the embeddings the table
// holds: for binary, the full-precision ones.

// Values of VariantSpec.VectorType and VariantSpec.Quantization.
const (
	VectorTypeVector    = "vector"
	VectorTypeHalfVec   = "halfvec"
	QuantizationNone    = "none"
	QuantizationBinary  = "binary"
	defaultRerankFactor = 4
	maxRerank           = 10000
)

// binary reports whether v's index is binary quantized.
func (v VariantSpec) binary() bool { return v.Quantization == QuantizationBinary }

// vectorType is the column type of v's embeddings.
func (v VariantSpec) vectorType() vectors.VectorType {
	if v.VectorType == VectorTypeHalfVec {
		return vectors.HalfVec
	}
	return vectors.Vector
}

// rerankFor is the number of Hamming candidates a binary point re-ranks
// for fetch rows (0 when v is not binary): the spec's, or 4·fetch up to
// 10000.
func rerankFor(v VariantSpec, fetch int) int {
	switch {
	case !v.binary():
		return 0
	case v.Search.Rerank != 0:
		return v.Search.Rerank
	}
	return min(defaultRerankFactor*fetch, maxRerank)
}

// scanRows is the number of rows a point's index scan fetches: the
// rerank candidates of a binary point, else the rows a query fetches.
func scanRows(v VariantSpec, fetch int) int {
	if v.binary() {
		return rerankFor(v, fetch)
	}
	return fetch
}

// validateStorage checks v's vector type, quantization and their index
// (field f) for the embedder es.
func (v VariantSpec) validateStorage(f string, es vectors.Spec) error {
	switch v.VectorType {
	case "", VectorTypeVector, VectorTypeHalfVec:
	default:
		return invalid(f+".vector_type", "must be %s or %s, not %q", VectorTypeVector, VectorTypeHalfVec, v.VectorType)
	}
	indexed := v.Index != nil && v.Index.Type != "none"
	switch v.Quantization {
	case "", QuantizationNone:
	case QuantizationBinary:
		if !indexed {
			return invalid(f+".quantization", "binary quantization is an index searched by Hamming distance: give index.type hnsw or ivfflat (for exact search leave quantization out)")
		}
	default:
		return invalid(f+".quantization", "must be %s or %s, not %q", QuantizationNone, QuantizationBinary, v.Quantization)
	}
	if !v.binary() {
		field := ""
		switch {
		case v.Search.Rerank != 0:
			field = f + ".search.rerank"
		case v.Sweep != nil && len(v.Sweep.Rerank) > 0:
			field = f + ".sweep.rerank"
		}
		if field != "" {
			return invalid(field, "re-ranks the Hamming candidates of quantization %s; this variant has none", QuantizationBinary)
		}
	}
	dims := es.Dims
	if dims == 0 && (es.Model == vectors.ModelHashBOW || es.Model == vectors.ModelHashChar || es.Model == vectors.ModelHashRP) {
		dims = vectors.DefaultOfflineDims
	}
	if dims > vectors.MaxDims {
		return invalid(f+".embedder", "has %d dimensions; pgvector stores at most %d in a %s column", dims, vectors.MaxDims, v.vectorType())
	}
	if n := vectors.MaxIndexDims(v.vectorType(), v.binary()); indexed && dims > n {
		what := string(v.vectorType())
		hint := ""
		switch {
		case v.binary():
			what = "bit (binary quantization)"
		case v.vectorType() == vectors.Vector:
			hint = fmt.Sprintf("; vector_type %s indexes up to %d, quantization %s up to %d", VectorTypeHalfVec,
				vectors.MaxIndexDimsHalfVec, QuantizationBinary, vectors.MaxIndexDimsBit)
		default:
			hint = fmt.Sprintf("; quantization %s indexes up to %d", QuantizationBinary, vectors.MaxIndexDimsBit)
		}
		return invalid(f+".embedder", "has %d dimensions; pgvector indexes %s columns of at most %d%s", dims, what, n, hint)
	}
	return nil
}

// validateRerank checks the rerank candidates of v (field f) against the
// rows a query fetches.
func (v VariantSpec) validateRerank(f string, fetch int) error {
	check := func(field string, n int) error {
		if n < fetch || n > maxRerank {
			return invalid(field, "%d candidates; want at least the %d rows a query fetches (k, 4k with chunking) and at most %d", n, fetch, maxRerank)
		}
		return nil
	}
	if v.Search.Rerank != 0 {
		if err := check(f+".search.rerank", v.Search.Rerank); err != nil {
			return err
		}
	}
	if v.Sweep != nil {
		for j, n := range v.Sweep.Rerank {
			if err := check(fmt.Sprintf("%s.sweep.rerank[%d]", f, j), n); err != nil {
				return err
			}
		}
	}
	return nil
}
