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

// storeDocHashes records each document of docs and the SHA-256 of its
// text in docsTable on conn's database.
func storeDocHashes(ctx context.Context, conn *pgx.Conn, docs corpus, batch int) error {
	tbl := pgx.Identifier{docsTable}
	if _, err := conn.Exec(ctx, "CREATE TABLE "+tbl.Sanitize()+" (doc_id text PRIMARY KEY, sha256 text NOT NULL)"); err != nil {
		return fmt.Errorf("document hashes: %w", err)
	}
	return copyDocHashes(ctx, conn, tbl, docs, batch)
}

// copyDocHashes copies (id, SHA-256 of docText) of every document of docs
// into tbl, batch rows per COPY.
func copyDocHashes(ctx context.Context, conn *pgx.Conn, tbl pgx.Identifier, docs corpus, batch int) error {
	batch = max(batch, 1) * 8
	rows := make([][]any, 0, batch)
	flush := func() error {
		if len(rows) == 0 {
			return nil
		}
		_, err := conn.CopyFrom(ctx, tbl, []string{"doc_id", "sha256"}, pgx.CopyFromRows(rows))
		rows = rows[:0]
		return err
	}
	err := docs.each(ctx, func(d evals.Doc) error {
		h := sha256.Sum256([]byte(docText(d)))
		rows = append(rows, []any{d.ID, hex.EncodeToString(h[:])})
		if len(rows) == batch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return fmt.Errorf("document hashes: %w", err)
	}
	return nil
}

// applyDelta brings the fork of materialization from (on conn, adopted as
// lf) to the corpus docs: the delta by document id and text hash against
// docsTable, then the rows of deleted and changed documents deleted, and
// new and changed documents chunked, embedded and inserted, the index
// maintained in place; docsTable is updated to match. It records the
// phases in vr (embed and load; no index build) and returns the delta, or
// errDeltaTooLarge (changing nothing) when the delta exceeds maxShare of
// the corpus.
func (s *Service) applyDelta(ctx context.Context, conn *pgx.Conn, lf *loadedFork, v VariantSpec, docs corpus, from *Materialization,
	vr *VariantRun, progress progressFunc) (*IncrementalDelta, error) {
	progress("load", &PhaseProgress{Unit: "docs", Total: int64(docs.docs), Detail: "computing the delta against materialization " + from.ID})
	t := time.Now()
	newDocs := pgx.Identifier{"offshoot_new_docs"}
	if _, err := conn.Exec(ctx, "CREATE TEMP TABLE "+newDocs.Sanitize()+" (doc_id text PRIMARY KEY, sha256 text NOT NULL)"); err != nil {
		return nil, err
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+newDocs.Sanitize()) }()
	if err := copyDocHashes(ctx, conn, newDocs, docs, s.cfg.IngestBatch); err != nil {
		return nil, err
	}
	d := &IncrementalDelta{From: from.ID}
	const (
		old = docsTable
		neu = "offshoot_new_docs"
	)
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM `+neu+`),
		(SELECT count(*) FROM `+neu+` n WHERE NOT EXISTS (SELECT 1 FROM `+old+` o WHERE o.doc_id = n.doc_id)),
		(SELECT count(*) FROM `+neu+` n JOIN `+old+` o USING (doc_id) WHERE o.sha256 <> n.sha256),
		(SELECT count(*) FROM `+old+` o WHERE NOT EXISTS (SELECT 1 FROM `+neu+` n WHERE n.doc_id = o.doc_id))`).
		Scan(&d.Docs, &d.Added, &d.Changed, &d.Deleted); err != nil {
		return nil, fmt.Errorf("delta: %w", err)
	}
	if limit := s.cfg.IncrementalMaxShare; d.Share() > limit {
		return d, fmt.Errorf("%w: %d added, %d changed and %d deleted of %d documents is %.1f%% of the corpus, over the %g%% limit",
			errDeltaTooLarge, d.Added, d.Changed, d.Deleted, d.Docs, 100*d.Share(), 100*limit)
	}
	// The ids to embed are held (at most that share of the corpus); the
	// rest of the corpus streams past them.
	rows, err := conn.Query(ctx, `SELECT n.doc_id FROM `+neu+` n LEFT JOIN `+old+` o USING (doc_id)
		WHERE o.doc_id IS NULL OR o.sha256 <> n.sha256`)
	if err != nil {
		return nil, fmt.Errorf("delta: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("delta: %w", err)
	}
	embed := make(map[string]bool, len(ids))
	for _, id := range ids {
		embed[id] = true
	}
	table := runTable
	if lf.lexical {
		table = lexTable
	}
	tag, err := conn.Exec(ctx, `DELETE FROM `+pgx.Identifier{table}.Sanitize()+` c USING `+old+` o
		WHERE c.doc_id = o.doc_id AND NOT EXISTS (SELECT 1 FROM `+neu+` n WHERE n.doc_id = o.doc_id AND n.sha256 = o.sha256)`)
	if err != nil {
		return nil, fmt.Errorf("delete the rows of deleted and changed documents: %w", err)
	}
	d.RowsDeleted = tag.RowsAffected()
	prep := time.Since(t)

	var st vectors.StreamStats
	if lf.lexical {
		t := time.Now()
		st.Rows, err = s.copyLexical(ctx, conn, v, docs, embed, progress)
		st.Load = time.Since(t)
	} else {
		st, err = s.embedDelta(ctx, conn, lf, v, docs, embed, progress)
	}
	vr.Timings.Embed = ms(st.Embed)
	if err != nil {
		return nil, fmt.Errorf("insert new and changed documents: %w", err)
	}
	d.RowsInserted = st.Rows
	t = time.Now()
	if _, err := conn.Exec(ctx, `DELETE FROM `+old+` o WHERE NOT EXISTS (SELECT 1 FROM `+neu+` n WHERE n.doc_id = o.doc_id AND n.sha256 = o.sha256)`); err != nil {
		return nil, fmt.Errorf("document hashes: %w", err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO `+old+` SELECT n.doc_id, n.sha256 FROM `+neu+` n WHERE NOT EXISTS (SELECT 1 FROM `+old+` o WHERE o.doc_id = n.doc_id)`); err != nil {
		return nil, fmt.Errorf("document hashes: %w", err)
	}
	vr.Timings.Load = ms(prep + st.Load + time.Since(t))
	vr.Rows = from.Rows - d.RowsDeleted + d.RowsInserted
	if vr.IndexName != "" {
		if err := conn.QueryRow(ctx, "SELECT pg_relation_size($1::regclass)", vr.IndexName).Scan(&vr.IndexBytes); err != nil {
			return nil, fmt.Errorf("index size: %w", err)
		}
	}
	s.log.Info("incremental materialization", slog.String("from", from.ID), slog.Int64("docs", d.Docs),
		slog.Int64("added", d.Added), slog.Int64("changed", d.Changed), slog.Int64("deleted", d.Deleted))
	return d, nil
}

// embedDelta chunks, embeds and inserts the documents of docs in ids
// into lf's table, and records them and the rows inserted in lf.fresh.
func (s *Service) embedDelta(ctx context.Context, conn *pgx.Conn, lf *loadedFork, v VariantSpec, docs corpus, ids map[string]bool,
	progress progressFunc) (vectors.StreamStats, error) {
	lf.fresh = &freshRows{docs: ids}
	opt := vectors.StreamOptions{Batch: s.cfg.IngestBatch, Loaded: func(id string) { lf.fresh.ids = append(lf.fresh.ids, id) }}
	if v.Chunking != nil {
		opt.Chunker = &vectors.Chunker{Size: v.Chunking.Size, Overlap: v.Chunking.Overlap}
	}
	progress("load", &PhaseProgress{Unit: "docs", Total: int64(len(ids)), Detail: fmt.Sprintf("embedding %d new and changed documents", len(ids))})
	opt.Progress = func(st vectors.StreamStats) {
		progress("load", &PhaseProgress{Unit: "docs", Done: st.Docs, Total: int64(len(ids)),
			Detail: fmt.Sprintf("%d rows of new and changed documents embedded and inserted", st.Rows)})
	}
	return vectors.IngestStream(ctx, conn, lf.tbl, lf.emb, func(yield func(vectors.Document) error) error {
		return docs.each(ctx, func(doc evals.Doc) error {
			if !ids[doc.ID] {
				return nil
			}
			return yield(vectors.Document{ID: doc.ID, Text: docText(doc)})
		})
	}, opt)
}
