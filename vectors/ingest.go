package vectors

import (
	"context"
	"fmt"
)

// Document is a text to ingest.
type Document struct {
	ID   string
	Text string
	// Metadata is copied to every chunk's row (nil means {}).
	Metadata map[string]any
}

// IngestOptions tune Ingest.
type IngestOptions struct {
	// Chunker splits documents; nil stores each document as one chunk
	// spanning its whole text.
	Chunker *Chunker
	// EmbedBatch is the number of texts per EmbedDocuments call. Default 256.
	EmbedBatch int
	// Load tunes the COPY; its Progress reports rows loaded.
	Load LoadOptions
	// Embedded, if set, is called after every embedding batch with the
	// chunks embedded so far and the total, on the calling goroutine.
	Embedded func(done, total int)
}

// Ingest chunks docs, embeds the chunks with e (wrap e with a Cache to
// embed each text once across runs) and loads them into t, which must
// exist. It returns the number of rows loaded. Rows are loaded only after
// every chunk is embedded, so an embedding failure loads nothing.
func Ingest(ctx context.Context, db DB, t Table, e Embedder, docs []Document, opt IngestOptions) (int64, error) {
	if e.Dims() != t.Dims {
		return 0, fmt.Errorf("ingest: %s has %d dims, table %s %d: %w", e.ModelID(), e.Dims(), t.Name, t.Dims, ErrDimsMismatch)
	}
	var rows []Row
	for _, d := range docs {
		if opt.Chunker == nil {
			rows = append(rows, ChunkRow(Chunk{DocID: d.ID, End: len(d.Text), CharEnd: len([]rune(d.Text)), Text: d.Text}, d.Metadata, nil))
			continue
		}
		chunks, err := opt.Chunker.Split(d.ID, d.Text)
		if err != nil {
			return 0, fmt.Errorf("ingest: %w", err)
		}
		for _, c := range chunks {
			rows = append(rows, ChunkRow(c, d.Metadata, nil))
		}
	}
	bs := opt.EmbedBatch
	if bs <= 0 {
		bs = 256
	}
	texts := make([]string, 0, bs)
	for lo := 0; lo < len(rows); lo += bs {
		part := rows[lo:min(lo+bs, len(rows))]
		texts = texts[:0]
		for _, r := range part {
			texts = append(texts, r.Content)
		}
		vs, err := e.EmbedDocuments(ctx, texts)
		if err != nil {
			return 0, fmt.Errorf("ingest: embed: %w", err)
		}
		if len(vs) != len(part) {
			return 0, fmt.Errorf("ingest: %d vectors for %d texts: %w", len(vs), len(part), ErrDimsMismatch)
		}
		for i := range part {
			part[i].Embedding = vs[i]
		}
		if opt.Embedded != nil {
			opt.Embedded(lo+len(part), len(rows))
		}
	}
	n, err := Load(ctx, db, t, rows, opt.Load)
	if err != nil {
		return n, fmt.Errorf("ingest: %w", err)
	}
	return n, nil
}
