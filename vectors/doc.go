// Package vectors turns text into pgvector data: embedders behind
// langchaingo's embeddings.Embedder (real providers when configured,
// deterministic offline ones otherwise), a content-hash embedding cache,
// chunking, bulk loading with binary COPY, HNSW/IVFFlat index management and
// top-k search with exact search as ground truth.
package vectors
