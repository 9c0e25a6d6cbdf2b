package vectors

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"
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

// StreamStats report an IngestStream.
type StreamStats struct {
	// Docs and Rows count the documents read and the rows loaded.
	Docs int64
	Rows int64
	// Embed and Load are the time spent embedding and in COPY.
	Embed, Load time.Duration
}

// StreamOptions tune IngestStream.
type StreamOptions struct {
	// Chunker and EmbedBatch are as in IngestOptions.
	Chunker    *Chunker
	EmbedBatch int
	// Batch is the number of rows held in memory at once: chunked,
	// embedded, then copied with one COPY statement. Default 1,024.
	// Memory grows with Batch, never with the corpus.
	Batch int
	// Progress, if set, is called after every batch is copied with the
	// totals so far, on the goroutine that runs docs.
	Progress func(StreamStats)
	// Loaded, if set, is called with the id of every row copied, after
	// its batch, on the goroutine that runs docs.
	Loaded func(id string)
}

// IngestStream is Ingest for corpora too large to hold: docs calls yield
// for each document in turn (and returns yield's error when it fails);
// documents are chunked, embedded (through e, so wrap e with a Cache to
// embed each text once across runs) and loaded into t with binary COPY
// one batch at a time. Unlike Ingest, a failure leaves the batches copied
// before it in t (load into a fork you discard, or pass a pgx.Tx, for all
// or nothing). Duplicate ids fail the COPY on t's primary key.
func IngestStream(ctx context.Context, db DB, t Table, e Embedder, docs func(yield func(Document) error) error, opt StreamOptions) (StreamStats, error) {
	var st StreamStats
	if e.Dims() != t.Dims {
		return st, fmt.Errorf("ingest: %s has %d dims, table %s %d: %w", e.ModelID(), e.Dims(), t.Name, t.Dims, ErrDimsMismatch)
	}
	bs := opt.Batch
	if bs <= 0 {
		bs = 1024
	}
	ebs := opt.EmbedBatch
	if ebs <= 0 {
		ebs = 256
	}
	rows := make([]Row, 0, bs)
	texts := make([]string, 0, ebs)
	flush := func() error {
		if len(rows) == 0 {
			return nil
		}
		start := time.Now()
		for lo := 0; lo < len(rows); lo += ebs {
			part := rows[lo:min(lo+ebs, len(rows))]
			texts = texts[:0]
			for _, r := range part {
				texts = append(texts, r.Content)
			}
			vs, err := e.EmbedDocuments(ctx, texts)
			if err != nil {
				return fmt.Errorf("embed: %w", err)
			}
			if len(vs) != len(part) {
				return fmt.Errorf("%d vectors for %d texts: %w", len(vs), len(part), ErrDimsMismatch)
			}
			for i := range part {
				part[i].Embedding = vs[i]
			}
		}
		st.Embed += time.Since(start)
		start = time.Now()
		n, err := Load(ctx, db, t, rows, LoadOptions{BatchSize: len(rows)})
		st.Load += time.Since(start)
		st.Rows += n
		if err != nil {
			return err
		}
		if opt.Loaded != nil {
			for _, r := range rows {
				opt.Loaded(r.ID)
			}
		}
		clear(rows) // drop the texts and vectors for the collector
		rows = rows[:0]
		if opt.Progress != nil {
			opt.Progress(st)
		}
		return nil
	}
	err := docs(func(d Document) error {
		st.Docs++
		if opt.Chunker == nil {
			rows = append(rows, ChunkRow(Chunk{DocID: d.ID, End: len(d.Text), CharEnd: utf8.RuneCountInString(d.Text), Text: d.Text}, d.Metadata, nil))
		} else {
			chunks, err := opt.Chunker.Split(d.ID, d.Text)
			if err != nil {
				return err
			}
			for _, c := range chunks {
				rows = append(rows, ChunkRow(c, d.Metadata, nil))
			}
		}
		if len(rows) >= bs {
			return flush()
		}
		return ctx.Err()
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return st, fmt.Errorf("ingest: %w", err)
	}
	return st, nil
}
