package vectors

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/pgvector/pgvector-go"
)

// Row is one chunk to load.
type Row struct {
	ID        string
	DocID     string
	Start     int // byte offsets of the chunk in its document
	End       int
	CharStart int // rune offsets of the chunk in its document
	CharEnd   int
	Content   string
	// Metadata is stored as jsonb; nil means {}.
	Metadata  map[string]any
	Embedding []float32
}

// ChunkRow makes the row of a chunk.
func ChunkRow(c Chunk, metadata map[string]any, embedding []float32) Row {
	return Row{ID: c.ID(), DocID: c.DocID, Start: c.Start, End: c.End, CharStart: c.CharStart,
		CharEnd: c.CharEnd, Content: c.Text, Metadata: metadata, Embedding: embedding}
}

var tableColumns = []string{"id", "doc_id", "chunk_start", "chunk_end", "char_start", "char_end", "content", "metadata", "embedding"}

// LoadOptions tune Load.
type LoadOptions struct {
	// BatchSize is the number of rows per COPY statement. Default 5,000.
	BatchSize int
	// Progress, if set, is called after every batch with the rows loaded
	// so far and the total, on the goroutine that called Load.
	Progress func(loaded, total int)
}

func (t Table) values(r Row) ([]any, error) {
	if len(r.Embedding) != t.Dims {
		return nil, fmt.Errorf("row %q: %d dims, table has %d: %w", r.ID, len(r.Embedding), t.Dims, ErrDimsMismatch)
	}
	meta := []byte("{}")
	if r.Metadata != nil {
		var err error
		if meta, err = json.Marshal(r.Metadata); err != nil {
			return nil, fmt.Errorf("row %q: metadata: %w", r.ID, err)
		}
	}
	var emb any = pgvector.NewVector(r.Embedding)
	if t.vtype() == HalfVec {
		emb = pgvector.NewHalfVector(r.Embedding)
	}
	return []any{r.ID, r.DocID, r.Start, r.End, r.CharStart, r.CharEnd, r.Content, meta, emb}, nil
}

// Load appends rows to the table with binary COPY (pgx CopyFrom), one COPY
// statement per batch. It returns the number of rows loaded. Cancelling ctx
// stops the load during or between batches; batches already copied stay
// unless db is a transaction the caller rolls back (pass a pgx.Tx for an
// all-or-nothing load). Rows are checked against the table's dims before
// each batch is sent.
func Load(ctx context.Context, db DB, t Table, rows []Row, opt LoadOptions) (int64, error) {
	if err := t.validate(); err != nil {
		return 0, err
	}
	if err := ensureTypes(ctx, db); err != nil {
		return 0, err
	}
	bs := opt.BatchSize
	if bs <= 0 {
		bs = 5000
	}
	var loaded int64
	for lo := 0; lo < len(rows); lo += bs {
		if err := ctx.Err(); err != nil {
			return loaded, fmt.Errorf("load %s: %w", t.Name, err)
		}
		batch := rows[lo:min(lo+bs, len(rows))]
		vals := make([][]any, len(batch))
		for i, r := range batch {
			v, err := t.values(r)
			if err != nil {
				return loaded, fmt.Errorf("load %s: %w", t.Name, err)
			}
			vals[i] = v
		}
		n, err := db.CopyFrom(ctx, t.ident(), tableColumns, pgx.CopyFromRows(vals))
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return loaded, fmt.Errorf("load %s: %w", t.Name, err)
		}
		loaded += n
		if opt.Progress != nil {
			opt.Progress(int(loaded), len(rows))
		}
	}
	return loaded, nil
}
