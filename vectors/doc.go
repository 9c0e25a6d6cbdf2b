// Package vectors turns text into pgvector data and searches it: the
// measuring instruments' input side, below package experiments.
//
// # Embedders
//
// An Embedder is a langchaingo embeddings.Embedder with a stable ModelID
// and Dims. A Spec ("hash-bow?dims=384", "openai:text-embedding-3-small?dims=1536")
// names one; a Registry builds it. Providers (openai: any OpenAI-compatible
// base URL and key; ollama) are built only from the Spec, never from the
// environment, and are not contacted until asked to embed.
//
// The offline models need no network and are exactly reproducible:
//
//   - hash-bow: stemmed, stopworded words; weight (1 + ln tf) · idf;
//     signed feature hashing into Dims buckets.
//   - hash-char: the same weighting over character 3- to 5-grams of the
//     words (robust to morphology and typos).
//   - hash-rp: the word tf·idf vector projected to Dims by a seeded sparse
//     random projection computed on the fly.
//
// IDF is fitted on a corpus (FitIDF) and is plain, serializable data; its
// fingerprint is part of the model id, so a different corpus is a different
// model. Vectors are L2-normalized. Bit-identical output on every machine
// comes from: no map iteration, a portable logarithm instead of math.Log
// (which has per-architecture assembly), explicit float64 conversions that
// forbid fused multiply-add, and IEEE-exact square roots. Golden digests in
// the tests pin the bits; change the pipeline and you must bump its version.
//
// # Cache
//
// Cache is a pebble database keyed by (model id, dims, document|query,
// sha256(text)). Cache.Wrap puts it in front of any Embedder: only misses
// are embedded, so a second run of the same model embeds nothing. Open one
// Cache per process and share it.
//
// # Chunks and rows
//
// Chunker uses langchaingo's recursive character splitter and gives each
// chunk its exact byte and rune offsets in the document (by replaying the
// splitter on spans and checking the replay against its output). A Table
// holds one Row per chunk: id, doc_id, offsets, content, jsonb metadata and
// a vector(d) or halfvec(d) embedding, created by CreateTable.
//
// # Loading, indexes, search
//
// Load writes rows with binary COPY (pgx CopyFrom, pgvector-go codecs),
// one COPY per batch, reporting progress and stopping on context
// cancellation. IngestStream chunks, embeds and copies a corpus streamed
// one document at a time, holding one batch of rows: memory does not grow
// with the corpus. SizeBuild sizes an index build's maintenance_work_mem
// (the estimated HNSW graph, within a budget) and parallel workers, and
// WatchBuild reads a build's pg_stat_progress_create_index counters from
// another connection. CreateIndex builds HNSW or IVFFlat for cosine, L2 or inner
// product and reports build time and size; DropIndex removes it. Search
// runs a top-k query in its own transaction with per-query SET LOCAL
// settings (hnsw.ef_search, ivfflat.probes, iterative scans), an optional
// jsonb containment filter, and reports per-query latency; Query.Exact
// forces a sequential scan, the ground truth for ANN recall.
//
// All Postgres helpers take a DB (a *pgx.Conn, pgx.Tx or pool); pgvector
// types are registered automatically on a *pgx.Conn or pgx.Tx.
package vectors
