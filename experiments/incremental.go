package experiments

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/vectors"
)

// Incremental materialization: a variant whose key differs from a kept
// materialization's only in the corpus (the base gained, changed or lost
// documents) forks that materialization, computes the document-level
// delta against the corpus it read (by document id and the SHA-256 of
// the text it embeds, docText), deletes the rows of deleted and changed
// documents, embeds and inserts only new and changed ones (through the
// embedding cache), so that the index is maintained in place, and keeps
// the result as a new materialization. Only embedders whose vectors
// depend on each text alone can be maintained so: providers, and offline
// models with idf=none; a model fitted on the corpus (IDF) changes every
// vector when the corpus changes. Lexical variants are maintained so too
// (rows copied, the GIN index maintained in place, no embedding): ts_rank
// and ts_rank_cd read only the document and the query, no corpus
// statistics, so the result ranks exactly as a cold build. A delta larger than
// Config.IncrementalMaxShare of the corpus is built cold instead, and the
// variant says so.

// docsTable holds, on a materialized fork whose embedder is not fitted on
// the corpus, each document's id and the SHA-256 of its text: what the
// next delta is computed against.
const docsTable = "offshoot_exp_docs"

// IncrementalDelta is what an incremental materialization changed.
type IncrementalDelta struct {
	// From is the materialization it forked.
	From string `json:"from"`
	// Docs counts the corpus read; Added, Changed and Deleted its
	// documents against From's.
	Docs    int64 `json:"docs"`
	Added   int64 `json:"added"`
	Changed int64 `json:"changed"`
	Deleted int64 `json:"deleted"`
	// RowsDeleted and RowsInserted count the chunk rows removed and
	// embedded and inserted.
	RowsDeleted  int64 `json:"rows_deleted"`
	RowsInserted int64 `json:"rows_inserted"`
}

// Share is the delta's share of the corpus.
func (d IncrementalDelta) Share() float64 {
	return float64(d.Added+d.Changed+d.Deleted) / float64(max(d.Docs, 1))
}

// freshRows is what an incremental build changed: the documents it
// embedded (new and changed) and the rows it inserted for them.
type freshRows struct {
	docs map[string]bool
	ids  []string
}

// errDeltaTooLarge is a delta past Config.IncrementalMaxShare.
var errDeltaTooLarge = errors.New("delta too large for an incremental build")

// incremental reports whether v's embedder gives each text a vector of
// its own (not fitted on the corpus), so that its rows can be maintained
// document by document.
func incremental(v VariantSpec) bool {
	switch v.Type {
	case VariantLexical: // ts_rank reads no corpus statistics
		return true
	case "":
	default:
		return false
	}
	spec, err := vectors.ParseSpec(v.Embedder)
	if err != nil {
		return false
	}
	_, err = vectors.NewIDFFitter(spec)
	return errors.Is(err, vectors.ErrNotFittable)
}

// sameFamily reports whether a and b differ at most in the corpus.
func sameFamily(a, b MaterializationKey) bool {
	a.Corpus, b.Corpus = SetFingerprint{}, SetFingerprint{}
	return a.ID() == b.ID()
}

// forkNearestMaterialization forks, into branch name, the most recently
// used live materialization of project whose key differs from key only
// in the corpus, and records the use; nil and no error when there is none.
func (s *Service) forkNearestMaterialization(ctx context.Context, project string, key MaterializationKey, name string) (*Materialization, ForkInfo, error) {
	if s.cfg.IncrementalMaxShare < 0 {
		return nil, ForkInfo{}, nil
	}
	s.matMu.Lock()
	defer s.matMu.Unlock()
	ms, err := s.listMat(project)
	if err != nil {
		return nil, ForkInfo{}, err
	}
	now := s.cfg.Now()
	var best *Materialization
	for _, m := range ms {
		if sameFamily(m.Key, key) && m.Key.Corpus != key.Corpus && !s.matExpired(m, now) &&
			(best == nil || m.LastUsedAt.After(best.LastUsedAt)) {
			best = m
		}
	}
	if best == nil {
		return nil, ForkInfo{}, nil
	}
	fi, err := s.forkMatLocked(ctx, best, name)
	return best, fi, err
}

// docHash is one document of a corpus as its delta sees it: its id, the
// SHA-256 of the text it embeds (docText), and its place, the line of a
// BEIR corpus file when the pass that opened the corpus recorded it
// (corpus.at reads it back by that), else its index in a pass.
type docHash struct {
	id    string
	sum   [sha256.Size]byte
	place int
}

// textHash is the SHA-256 of the text d embeds.
func textHash(d evals.Doc) [sha256.Size]byte { return sha256.Sum256([]byte(docText(d))) }

// errCorpusChanged is a document read back for embedding that is not the
// one the delta was computed from: the corpus changed during the run.
var errCorpusChanged = errors.New("the corpus changed during the run")

// docHashes returns the hashes of c's documents in corpus order: those
// the pass that opened it recorded, or those of a pass of its own.
func (c corpus) docHashes(ctx context.Context) ([]docHash, error) {
	if c.hashes != nil {
		return c.hashes, nil
	}
	out := make([]docHash, 0, c.docs)
	err := c.each(ctx, func(d evals.Doc) error {
		out = append(out, docHash{id: d.ID, sum: textHash(d), place: len(out)})
		return nil
	})
	return out, err
}

// subset streams the documents sel names (taken from c.docHashes, in
// corpus order): read back at their places when c can (c.at), else
// picked from a pass. A document whose text no longer hashes to what sel
// recorded, or that is gone, fails the pass with errCorpusChanged.
func (c corpus) subset(sel []docHash) corpus {
	return corpus{docs: len(sel), each: func(ctx context.Context, fn func(evals.Doc) error) error {
		if c.at != nil {
			places := make([]int, len(sel))
			for i, h := range sel {
				places[i] = h.place
			}
			i := 0
			err := c.at(ctx, places, func(d evals.Doc) error {
				if d.ID != sel[i].id || textHash(d) != sel[i].sum {
					return fmt.Errorf("document %q: %w", sel[i].id, errCorpusChanged)
				}
				i++
				return fn(d)
			})
			if errors.Is(err, evals.ErrFormat) { // a line gone or emptied
				err = fmt.Errorf("%w: %w", errCorpusChanged, err)
			}
			return err
		}
		// A cursor's order may differ from one pass to the next.
		want := make(map[string][sha256.Size]byte, len(sel))
		for _, h := range sel {
			want[h.id] = h.sum
		}
		err := c.each(ctx, func(d evals.Doc) error {
			sum, ok := want[d.ID]
			if !ok {
				return nil
			}
			if textHash(d) != sum {
				return fmt.Errorf("document %q: %w", d.ID, errCorpusChanged)
			}
			delete(want, d.ID)
			return fn(d)
		})
		if err == nil && len(want) > 0 {
			err = fmt.Errorf("%d documents gone: %w", len(want), errCorpusChanged)
		}
		return err
	}}
}

// storeDocHashes records each document of docs and the SHA-256 of its
// text in docsTable on conn's database.
func storeDocHashes(ctx context.Context, conn *pgx.Conn, docs corpus) error {
	hs, err := docs.docHashes(ctx)
	if err != nil {
		return fmt.Errorf("document hashes: %w", err)
	}
	tbl := pgx.Identifier{docsTable}
	if _, err := conn.Exec(ctx, "CREATE TABLE "+tbl.Sanitize()+" (doc_id text PRIMARY KEY, sha256 text NOT NULL)"); err != nil {
		return fmt.Errorf("document hashes: %w", err)
	}
	return copyDocHashes(ctx, conn, hs)
}

// copyDocHashes copies (id, hex SHA-256) of every document of hs into
// docsTable.
func copyDocHashes(ctx context.Context, conn *pgx.Conn, hs []docHash) error {
	_, err := conn.CopyFrom(ctx, pgx.Identifier{docsTable}, []string{"doc_id", "sha256"},
		pgx.CopyFromSlice(len(hs), func(i int) ([]any, error) {
			return []any{hs[i].id, hex.EncodeToString(hs[i].sum[:])}, nil
		}))
	if err != nil {
		return fmt.Errorf("document hashes: %w", err)
	}
	return nil
}

// docState is a document of the new corpus against a materialization's
// docsTable.
type docState uint8

const (
	docAdded docState = iota
	docSame
	docChanged
)

// applyDelta brings the fork of materialization from (on conn, adopted as
// lf) to the corpus docs: the delta by document id and text hash against
// docsTable, then the rows of deleted and changed documents deleted, and
// new and changed documents (read back alone, corpus.subset) chunked,
// embedded and inserted, the index maintained in place; docsTable is
// updated to match. It records the phases in vr (embed and load; no
// index build) and returns the delta, or errDeltaTooLarge (changing
// nothing) when the delta exceeds maxShare of the corpus.
func (s *Service) applyDelta(ctx context.Context, conn *pgx.Conn, lf *loadedFork, v VariantSpec, docs corpus, from *Materialization,
	vr *VariantRun, progress progressFunc) (*IncrementalDelta, error) {
	progress("load", &PhaseProgress{Unit: "docs", Total: int64(docs.docs), Detail: "computing the delta against materialization " + from.ID})
	t := time.Now()
	cur, err := docs.docHashes(ctx)
	if err != nil {
		return nil, fmt.Errorf("document hashes: %w", err)
	}
	tHash := time.Since(t)
	d := &IncrementalDelta{From: from.ID, Docs: int64(len(cur))}
	index := make(map[string]int, len(cur))
	for i, h := range cur {
		if _, dup := index[h.id]; dup {
			return nil, fmt.Errorf("delta: document %q is in the corpus twice", h.id)
		}
		index[h.id] = i
	}
	state := make([]docState, len(cur)) // docAdded until docsTable names it
	var gone []string                   // deleted and changed documents, whose rows go
	rows, err := conn.Query(ctx, "SELECT doc_id, sha256 FROM "+pgx.Identifier{docsTable}.Sanitize())
	if err != nil {
		return nil, fmt.Errorf("delta: %w", err)
	}
	var id, sum string
	_, err = pgx.ForEachRow(rows, []any{&id, &sum}, func() error {
		i, ok := index[id]
		switch {
		case !ok:
			d.Deleted++
			gone = append(gone, id)
		case sum != hex.EncodeToString(cur[i].sum[:]):
			d.Changed++
			state[i] = docChanged
			gone = append(gone, id)
		default:
			state[i] = docSame
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("delta: %w", err)
	}
	var sel []docHash // new and changed documents, in corpus order
	for i, st := range state {
		if st != docSame {
			sel = append(sel, cur[i])
		}
	}
	d.Added = int64(len(sel)) - d.Changed
	if limit := s.cfg.IncrementalMaxShare; d.Share() > limit {
		return d, fmt.Errorf("%w: %d added, %d changed and %d deleted of %d documents is %.1f%% of the corpus, over the %g%% limit",
			errDeltaTooLarge, d.Added, d.Changed, d.Deleted, d.Docs, 100*d.Share(), 100*limit)
	}
	table := runTable
	if lf.lexical {
		table = lexTable
	}
	tDelta := time.Since(t)
	if len(gone) > 0 {
		tag, err := conn.Exec(ctx, `DELETE FROM `+pgx.Identifier{table}.Sanitize()+` WHERE doc_id = ANY($1)`, gone)
		if err != nil {
			return nil, fmt.Errorf("delete the rows of deleted and changed documents: %w", err)
		}
		d.RowsDeleted = tag.RowsAffected()
	}
	prep := time.Since(t)

	var st vectors.StreamStats
	if lf.lexical {
		t := time.Now()
		st.Rows, err = s.copyLexical(ctx, conn, v, docs.subset(sel), progress)
		st.Load = time.Since(t)
	} else {
		st, err = s.embedDelta(ctx, conn, lf, v, docs.subset(sel), progress)
	}
	vr.Timings.Embed = ms(st.Embed)
	if err != nil {
		return nil, fmt.Errorf("insert new and changed documents: %w", err)
	}
	d.RowsInserted = st.Rows
	t = time.Now()
	if len(gone) > 0 {
		if _, err := conn.Exec(ctx, `DELETE FROM `+pgx.Identifier{docsTable}.Sanitize()+` WHERE doc_id = ANY($1)`, gone); err != nil {
			return nil, fmt.Errorf("document hashes: %w", err)
		}
	}
	if err := copyDocHashes(ctx, conn, sel); err != nil {
		return nil, err
	}
	vr.Timings.Load = ms(prep + st.Load + time.Since(t))
	vr.Rows = from.Rows - d.RowsDeleted + d.RowsInserted
	if vr.IndexName != "" {
		if err := conn.QueryRow(ctx, "SELECT pg_relation_size($1::regclass)", vr.IndexName).Scan(&vr.IndexBytes); err != nil {
			return nil, fmt.Errorf("index size: %w", err)
		}
	}
	s.log.Info("incremental materialization", slog.String("from", from.ID), slog.Int64("docs", d.Docs),
		slog.Int64("added", d.Added), slog.Int64("changed", d.Changed), slog.Int64("deleted", d.Deleted),
		slog.Duration("hash", tHash), slog.Duration("delta", tDelta-tHash), slog.Duration("delete", prep-tDelta),
		slog.Duration("embed", st.Embed), slog.Duration("insert", st.Load), slog.Duration("record", time.Since(t)))
	return d, nil
}

// embedDelta chunks, embeds and inserts the documents of docs (the new
// and changed ones) into lf's table, and records them and the rows
// inserted in lf.fresh.
func (s *Service) embedDelta(ctx context.Context, conn *pgx.Conn, lf *loadedFork, v VariantSpec, docs corpus,
	progress progressFunc) (vectors.StreamStats, error) {
	lf.fresh = &freshRows{docs: make(map[string]bool, docs.docs)}
	opt := vectors.StreamOptions{Batch: s.cfg.IngestBatch, Loaded: func(id string) { lf.fresh.ids = append(lf.fresh.ids, id) }}
	if v.Chunking != nil {
		opt.Chunker = &vectors.Chunker{Size: v.Chunking.Size, Overlap: v.Chunking.Overlap}
	}
	progress("load", &PhaseProgress{Unit: "docs", Total: int64(docs.docs), Detail: fmt.Sprintf("embedding %d new and changed documents", docs.docs)})
	opt.Progress = func(st vectors.StreamStats) {
		progress("load", &PhaseProgress{Unit: "docs", Done: st.Docs, Total: int64(docs.docs),
			Detail: fmt.Sprintf("%d rows of new and changed documents embedded and inserted", st.Rows)})
	}
	return vectors.IngestStream(ctx, conn, lf.tbl, lf.emb, func(yield func(vectors.Document) error) error {
		return docs.each(ctx, func(doc evals.Doc) error {
			lf.fresh.docs[doc.ID] = true
			return yield(vectors.Document{ID: doc.ID, Text: docText(doc)})
		})
	}, opt)
}
