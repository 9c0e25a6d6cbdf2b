package experiments

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
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
func (s *Service) applyDelta(ctx context.Context, conn *pgx.Conn, project, branch string, lf *loadedFork, v VariantSpec, docs corpus, from *Materialization,
	vr *VariantRun, progress progressFunc) (*IncrementalDelta, error) {
	progress("load", &PhaseProgress{Unit: "docs", Total: int64(docs.docs), Detail: "computing the delta against materialization " + from.ID})
	t := time.Now()
	// The index is read while the delta is computed (and waited for
	// before the inserts, or on an early return).
	var warm sync.WaitGroup
	var warmErr error
	warm.Add(1)
	go func(index string) {
		defer warm.Done()
		warmErr = s.prewarmIndex(ctx, project, branch, index)
	}(vr.IndexName)
	defer warm.Wait()
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
	if d.RowsDeleted, err = deleteDocRows(ctx, conn, table, gone, v.Chunking == nil, lf.lexical); err != nil {
		return nil, fmt.Errorf("delete the rows of deleted and changed documents: %w", err)
	}
	tDelete := time.Since(t)
	warm.Wait()
	if warmErr != nil {
		s.log.Warn("incremental materialization: prewarm the index", slog.String("index", vr.IndexName), slog.String("err", warmErr.Error()))
	}
	prep := time.Since(t)

	var st vectors.StreamStats
	if lf.lexical {
		t := time.Now()
		st.Rows, err = s.copyLexical(ctx, conn, v, docs.subset(sel), progress)
		st.Load = time.Since(t)
	} else {
		st, err = s.embedDelta(ctx, conn, project, branch, lf, v, docs, sel, progress)
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
		slog.Duration("hash", tHash), slog.Duration("delta", tDelta-tHash), slog.Duration("delete", tDelete-tDelta), slog.Duration("prewarm-wait", prep-tDelete),
		slog.Duration("embed", st.Embed), slog.Duration("insert", st.Load), slog.Duration("record", time.Since(t)))
	return d, nil
}

// prewarmIndex reads index (on the fork branch of project; none when
// empty) into shared buffers (sized to hold it, buffers.go) and the
// operating system's cache in one sequential pass with pg_prewarm: the
// inserts of a delta and the first queries otherwise read an HNSW graph's
// pages one random read at a time, through the copy-on-write store, and
// wait for each. The extension is created in a transaction that is
// rolled back, so the fork's schema stays as it was (the pages read stay
// cached). It changes no data; its error is only worth a log line.
func (s *Service) prewarmIndex(ctx context.Context, project, branch, index string) error {
	if index == "" {
		return nil
	}
	conn, release, err := s.connect(ctx, project, branch, Maintenance)
	if err != nil {
		return err
	}
	defer release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_prewarm"); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, "SELECT pg_prewarm($1::regclass, 'buffer')", index)
	return err
}

// deleteDocRows deletes the rows of the documents docs from table and
// returns how many went. An unchunked document is one row whose id
// follows from the document's (the document's own in a lexical table,
// its chunk 0's, vectors.Chunk.ID, in a vector table), so the primary
// key finds them; doc_id has no index, and a delete by it scans the
// table. When the primary key finds fewer rows than documents (a
// document that had none, or rows named otherwise), the delete by doc_id
// follows and takes whatever is left.
func deleteDocRows(ctx context.Context, conn *pgx.Conn, table string, docs []string, unchunked, lexical bool) (int64, error) {
	if len(docs) == 0 {
		return 0, nil
	}
	tbl := pgx.Identifier{table}.Sanitize()
	var n int64
	if unchunked {
		ids := make([]string, len(docs))
		for i, d := range docs {
			ids[i] = d
			if !lexical {
				ids[i] = vectors.Chunk{DocID: d}.ID()
			}
		}
		tag, err := conn.Exec(ctx, `DELETE FROM `+tbl+` WHERE id = ANY($1) AND doc_id = ANY($2)`, ids, docs)
		if err != nil {
			return 0, err
		}
		if n = tag.RowsAffected(); n == int64(len(docs)) {
			return n, nil
		}
	}
	tag, err := conn.Exec(ctx, `DELETE FROM `+tbl+` WHERE doc_id = ANY($1)`, docs)
	return n + tag.RowsAffected(), err
}

// deltaSplit is the number of new and changed documents from which
// embedDelta inserts over two connections.
const deltaSplit = 64

// embedDelta chunks, embeds and inserts the documents sel names (read
// back from docs, corpus.subset) into lf's table, and records them and
// the rows inserted in lf.fresh. Inserting a row into an HNSW graph is
// CPU-bound work of the backend that inserts it, so from deltaSplit
// documents on, the second half goes over a second connection to the
// fork (branch of project) at the same time: two backends, two cores.
// Both halves end in the one graph; in which order rows were linked
// changes the graph, not exact search, and ANN recall is measured. The
// stats' Embed is the longer half's embedding and Load the rest of the
// wall time.
func (s *Service) embedDelta(ctx context.Context, conn *pgx.Conn, project, branch string, lf *loadedFork, v VariantSpec, docs corpus,
	sel []docHash, progress progressFunc) (vectors.StreamStats, error) {
	lf.fresh = &freshRows{docs: make(map[string]bool, len(sel))}
	for _, h := range sel {
		lf.fresh.docs[h.id] = true
	}
	parts := [][]docHash{sel}
	if len(sel) >= deltaSplit {
		parts = [][]docHash{sel[:len(sel)/2], sel[len(sel)/2:]}
	}
	total := int64(len(sel))
	progress("load", &PhaseProgress{Unit: "docs", Total: total, Detail: fmt.Sprintf("embedding %d new and changed documents", total)})
	var mu sync.Mutex // guards lf.fresh.ids and the progress of each part
	done := make([]vectors.StreamStats, len(parts))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	t := time.Now()
	for i, part := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = s.insertPart(ctx, conn, project, branch, i > 0, lf, v, docs.subset(part), func(st vectors.StreamStats, id string) {
				mu.Lock()
				defer mu.Unlock()
				if id != "" {
					lf.fresh.ids = append(lf.fresh.ids, id)
					return
				}
				done[i] = st
				var sum vectors.StreamStats
				for _, d := range done {
					sum.Docs, sum.Rows = sum.Docs+d.Docs, sum.Rows+d.Rows
				}
				progress("load", &PhaseProgress{Unit: "docs", Done: sum.Docs, Total: total,
					Detail: fmt.Sprintf("%d rows of new and changed documents embedded and inserted", sum.Rows)})
			}); errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	var st vectors.StreamStats
	for _, d := range done {
		st.Docs, st.Rows, st.Embed = st.Docs+d.Docs, st.Rows+d.Rows, max(st.Embed, d.Embed)
	}
	st.Load = time.Since(t) - st.Embed
	return st, errors.Join(errs...)
}

// insertPart embeds and inserts docs into lf's table over conn, or over
// a connection of its own to the fork when own; report gets the stream's
// stats after each batch and the id of each row inserted.
func (s *Service) insertPart(ctx context.Context, conn *pgx.Conn, project, branch string, own bool, lf *loadedFork, v VariantSpec,
	docs corpus, report func(st vectors.StreamStats, id string)) error {
	if own {
		c, release, err := s.connect(ctx, project, branch, ReadWrite)
		if err != nil {
			return err
		}
		defer release()
		if err := vectors.RegisterTypes(ctx, c); err != nil {
			return err
		}
		conn = c
	}
	opt := vectors.StreamOptions{Batch: s.cfg.IngestBatch,
		Loaded:   func(id string) { report(vectors.StreamStats{}, id) },
		Progress: func(st vectors.StreamStats) { report(st, "") }}
	if v.Chunking != nil {
		opt.Chunker = &vectors.Chunker{Size: v.Chunking.Size, Overlap: v.Chunking.Overlap}
	}
	st, err := vectors.IngestStream(ctx, conn, lf.tbl, lf.emb, func(yield func(vectors.Document) error) error {
		return docs.each(ctx, func(doc evals.Doc) error {
			return yield(vectors.Document{ID: doc.ID, Text: docText(doc)})
		})
	}, opt)
	report(st, "")
	return err
}
