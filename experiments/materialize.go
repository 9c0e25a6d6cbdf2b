package experiments

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/experiments/internal/controldb"
	"github.com/offshootdb/offshoot/vectors"
)

// A materialization is a variant's expensive state (its corpus chunked,
// embedded, loaded and indexed on a fork) kept as a branch state after the
// run that built it, keyed by content (MaterializationKey). A later variant
// of any run in the project whose key is the same forks it in O(1) and goes
// straight to evaluation: no embedding, no load, no index build.
//
// The run that builds one checkpoints its fork once the index is built,
// keeps that point with Materializer.Keep (on the store, a snapshot
// "mat.<id>.<unix-nanoseconds>", which outlives the fork and its base) and
// records it in the control database under "mat/<project>/<id>". A
// materialization expires Config.MaterializationTTL after its last use and,
// past Config.MaterializationBudget, least recently used first; never while
// pinned. Specs with reuse "never" (the CLI's --cold) rebuild, and their
// build replaces the kept one (unless it is pinned).

// Materializer is optionally implemented by a RunBranches to keep a run's
// loaded fork as a materialization. Without it runs neither keep nor reuse
// materializations.
type Materializer interface {
	// Keep pins the current state of branch under name, so that Fork
	// from the returned point gives that state, also after branch (and
	// the base it forked) is deleted.
	Keep(ctx context.Context, project, branch, name string) (BranchPoint, error)
	// Drop releases a point returned by Keep.
	Drop(ctx context.Context, project string, at BranchPoint) error
}

// Reuse values of ExperimentSpec.Reuse.
const (
	// ReuseAuto (the default, also "") forks a materialization of the
	// same key when there is one, and keeps what a variant builds.
	ReuseAuto = "auto"
	// ReuseNever builds every variant from the base (a cold run); what it
	// builds replaces the kept materialization of its key.
	ReuseNever = "never"
)

// matLayout versions what a materialization holds: the chunk table
// (vectors.Table named runTable, chunks of docText), its index and the
// fitted corpus statistics in fitTable. A change to any of them must
// change it, so that no run reuses state laid out the old way.
const matLayout = "offshoot_exp_chunks/v1"

// fitTable holds, on a materialized fork, the corpus statistics its
// embedder was fitted with (vectors.IDF as JSON), so that a reuse embeds
// queries exactly as the build did without a pass over the corpus.
const fitTable = "offshoot_exp_fit"

// MaterializationKey is what a materialization holds, by content. Two
// variants with equal keys load the same rows into the same table and
// build the same index on it.
type MaterializationKey struct {
	// Corpus is the data fingerprint of the corpus as read
	// (Provenance.Data.Corpus).
	Corpus   SetFingerprint `json:"corpus"`
	Chunking *ChunkSpec     `json:"chunking,omitempty"`
	// Embedder is the canonical vectors.Spec string; Model the unfitted
	// model's id (its code version and seed) and Dims its dimensions.
	// The vectors' normalization follows from the model.
	Embedder string `json:"embedder"`
	Model    string `json:"model"`
	Dims     int    `json:"dims"`
	// Distance is the index's operator class ("cosine", "l2", "ip").
	Distance string `json:"distance"`
	// Layout is the table layout version.
	Layout string `json:"layout"`
	// Index is the index type and build parameters; type "none" for
	// exact search, "gin" for a lexical variant's tsvector index.
	Index IndexSpec `json:"index"`
	// VectorType is the embedding column's type, empty for "vector"
	// (so that keys made before vector types existed keep their id), and
	// Quantization the index's, empty for none.
	VectorType   string `json:"vector_type,omitempty"`
	Quantization string `json:"quantization,omitempty"`
	// TextSearchConfig is a lexical variant's text search configuration
	// (layout lexLayout; no embedder).
	TextSearchConfig string `json:"text_search_config,omitempty"`
}

// Retriever names what ranks on a materialization: the embedder, or
// "postgres-fts:<config>" for a lexical variant's.
func (k MaterializationKey) Retriever() string {
	if k.Layout == lexLayout {
		return "postgres-fts:" + k.TextSearchConfig
	}
	return k.Embedder
}

// ID is the key's identity: 16 hex digits of the SHA-256 of its JSON.
func (k MaterializationKey) ID() string {
	b, _ := json.Marshal(k)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// Materialization is the record of a kept, loaded and indexed fork.
type Materialization struct {
	ID      string             `json:"id"`
	Project string             `json:"project"`
	Key     MaterializationKey `json:"key"`
	// Point is where reuses fork from.
	Point BranchPoint `json:"point"`
	// CreatedByRun and CreatedByVariant name the variant that built it.
	CreatedByRun     string    `json:"created_by_run"`
	CreatedByVariant string    `json:"created_by_variant"`
	CreatedAt        time.Time `json:"created_at"`
	// LastUsedAt is when it was built or last forked; Hits counts forks.
	LastUsedAt time.Time `json:"last_used_at"`
	Hits       int64     `json:"hits"`
	// Pinned materializations never expire nor are evicted.
	Pinned bool `json:"pinned,omitempty"`
	// ExpiresAt is LastUsedAt + Config.MaterializationTTL; absent when
	// pinned or without a TTL.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Rows, ModelID (the fitted model), Normalization, IndexName and
	// IndexBytes are those of the variant that built it.
	Rows          int64  `json:"rows"`
	ModelID       string `json:"model_id"`
	Normalization string `json:"normalization"`
	IndexName     string `json:"index_name,omitempty"`
	IndexBytes    int64  `json:"index_bytes"`
	// DeltaBytes is the storage it holds on its own: its fork's
	// copy-on-write delta (table, index, WAL) from the store's
	// accounting when it was kept; absent when the branches report no
	// usage.
	DeltaBytes *int64 `json:"delta_bytes,omitempty"`
	// CurrentBytes is the part of DeltaBytes its snapshot reads: what it
	// holds once the history its build wrote (WAL segments, rewritten
	// pages) has aged out of the store's history window.
	CurrentBytes *int64 `json:"current_bytes,omitempty"`
	// Build is what building it took (fork, embed, load and index
	// phases): what a reuse saves.
	Build Timings `json:"build_ms"`
	// Incremental is set when it was built from another materialization
	// and the corpus delta (the index maintained in place, not built).
	Incremental *IncrementalDelta `json:"incremental,omitempty"`
}

// MaterializationUse is how a variant used a materialization.
type MaterializationUse struct {
	ID string `json:"id"`
	// Reused is true when the variant forked the materialization and
	// skipped embedding, loading and indexing; false when the variant
	// built it.
	Reused bool `json:"reused"`
	// CreatedByRun and CreatedByVariant name the variant that built it.
	CreatedByRun     string `json:"created_by_run"`
	CreatedByVariant string `json:"created_by_variant"`
	// Note says why a materialization was not kept, or could not be
	// reused and the variant was built cold.
	Note string `json:"note,omitempty"`
	// Incremental is set when the variant built it from another
	// materialization of the same family and the corpus delta.
	Incremental *IncrementalDelta `json:"incremental,omitempty"`
	// fresh is what the incremental build inserted, while its run
	// evaluates (exactCandidates); not recorded.
	fresh *freshRows
}

func matKey(project, id string) []byte { return []byte("mat/" + project + "/" + id) }

// matExactPrefix prefixes the exact top-k results recorded on a
// materialization (exactIDs).
func matExactPrefix(project, id string) []byte { return []byte("matx/" + project + "/" + id + "/") }

func matPrefix(project string) (lo, hi []byte) {
	return []byte("mat/" + project + "/"), []byte("mat/" + project + "0")
}

// materializer is the Materializer of the configured branches, nil when
// they have none.
func (s *Service) materializer() Materializer {
	m, _ := s.cfg.Branches.(Materializer)
	return m
}

// materializationKey is the key of what variant v of run builds, nil when
// runs keep no materializations (no Materializer, no corpus fingerprint, a
// run_file variant) or the embedder does not build.
func (s *Service) materializationKey(run *Run, v VariantSpec) *MaterializationKey {
	if s.materializer() == nil || run.Provenance == nil || v.Type == VariantRunFile || v.Type == VariantHybrid {
		return nil
	}
	if v.Type == VariantLexical {
		return lexicalKey(run.Provenance.Data.Corpus, v)
	}
	spec, err := vectors.ParseSpec(v.Embedder)
	if err != nil {
		return nil
	}
	emb, err := s.embedders().New(spec, nil) // unfitted: the model's id without corpus statistics
	if err != nil {
		return nil
	}
	k := &MaterializationKey{Corpus: run.Provenance.Data.Corpus, Chunking: v.Chunking, Embedder: spec.String(),
		Model: emb.ModelID(), Dims: emb.Dims(), Distance: v.Distance, Layout: matLayout, Index: IndexSpec{Type: "none"}}
	if k.Distance == "" {
		k.Distance = string(vectors.Cosine)
	}
	if v.Index != nil && v.Index.Type != "none" {
		k.Index = *v.Index
	}
	if vt := v.vectorType(); vt != vectors.Vector {
		k.VectorType = string(vt)
	}
	if v.binary() {
		k.Quantization = QuantizationBinary
	}
	return k
}

// view fills the computed fields of m.
func (s *Service) matView(m *Materialization) *Materialization {
	m.ExpiresAt = nil
	if ttl := s.cfg.MaterializationTTL; ttl > 0 && !m.Pinned {
		t := m.LastUsedAt.Add(ttl)
		m.ExpiresAt = &t
	}
	return m
}

func (s *Service) getMat(project, id string) (*Materialization, error) {
	var m Materialization
	err := s.withDB(func(db *controldb.DB) error { return db.Get(matKey(project, id), &m) })
	if errors.Is(err, controldb.ErrNotFound) {
		return nil, fmt.Errorf("materialization %s of project %s: %w", id, project, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return s.matView(&m), nil
}

func (s *Service) putMat(m *Materialization) error {
	return s.withDB(func(db *controldb.DB) error { return db.Put(matKey(m.Project, m.ID), m) })
}

func (s *Service) listMat(project string) ([]*Materialization, error) {
	var out []*Materialization
	lo, hi := matPrefix(project)
	err := s.withDB(func(db *controldb.DB) error {
		return db.Scan(lo, hi, func(_, v []byte) (bool, error) {
			var m Materialization
			if err := decodeJSON(v, &m); err != nil {
				return false, err
			}
			out = append(out, s.matView(&m))
			return true, nil
		})
	})
	return out, err
}

// dropMat releases m's point and deletes its record; s.matMu held. A
// point already gone is no error.
func (s *Service) dropMat(ctx context.Context, m *Materialization) error {
	if err := s.materializer().Drop(ctx, m.Project, m.Point); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("drop materialization %s: %w", m.ID, err)
	}
	return s.withDB(func(db *controldb.DB) error {
		if err := deletePrefix(db, matExactPrefix(m.Project, m.ID)); err != nil {
			return err
		}
		return db.Delete(matKey(m.Project, m.ID))
	})
}

// deletePrefix deletes every record whose key starts with prefix, which
// ends in '/'.
func deletePrefix(db *controldb.DB, prefix []byte) error {
	hi := append(prefix[:len(prefix)-1:len(prefix)-1], '0')
	var keys [][]byte
	if err := db.Scan(prefix, hi, func(k, _ []byte) (bool, error) {
		keys = append(keys, append([]byte(nil), k...))
		return true, nil
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if err := db.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// deleteMatRecords forgets the materializations of a deleted project
// (their snapshots went with it).
func deleteMatRecords(db *controldb.DB, project string) error {
	if err := deletePrefix(db, []byte("matx/"+project+"/")); err != nil {
		return err
	}
	lo, _ := matPrefix(project)
	return deletePrefix(db, lo)
}

// kept reports whether u names the materialization on the variant's
// fork: one it reused, or one it built and kept.
func (u *MaterializationUse) kept() bool {
	return u != nil && (u.Reused || u.Note == "" || strings.HasPrefix(u.Note, "rebuilt: "))
}

// exactIDs returns the ids of the exact top k rows of tbl nearest to vec
// by metric, the ground truth of ANN recall. On a fork holding a
// materialization (use) they depend on nothing but the key, the vector, k
// and the metric, so they are recorded with the materialization and a
// reuse reads them instead of scanning the table again; a build (also a
// cold one) computes and records them afresh.
func (s *Service) exactIDs(ctx context.Context, project string, use *MaterializationUse, conn *pgx.Conn, tbl vectors.Table,
	vec []float32, k int, metric vectors.Metric) ([]string, error) {
	var key []byte
	if use.kept() {
		h := sha256.New()
		fmt.Fprintf(h, "v2|%s|%d|", metric, k)
		_ = binary.Write(h, binary.LittleEndian, vec)
		key = append(matExactPrefix(project, use.ID), hex.EncodeToString(h.Sum(nil))...)
	}
	if key != nil && use.Reused {
		var rec exactRecord
		err := s.withDB(func(db *controldb.DB) error { return db.Get(key, &rec) })
		if err == nil && (len(rec.IDs) >= k || rec.Complete) {
			return rec.IDs[:min(k, len(rec.IDs))], nil
		}
		if err != nil && !errors.Is(err, controldb.ErrNotFound) {
			return nil, err
		}
	}
	depth := exactDepth(k)
	q := vectors.Query{Vector: vec, K: depth, Metric: metric, Exact: true}
	valid := -1 // how many of the hits are the table's exact order: all
	if key != nil && use.Incremental != nil && use.fresh != nil {
		among, exact, err := s.exactCandidates(ctx, project, use, conn, tbl, key[len(matExactPrefix(project, use.ID)):], k)
		if err != nil {
			return nil, err
		}
		if among != nil {
			q.IDs, valid = among, exact
		}
	}
	ex, err := vectors.Search(ctx, conn, tbl, q)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(ex.Hits))
	for _, h := range ex.Hits {
		ids = append(ids, h.ID)
	}
	rec := exactRecord{IDs: ids, Complete: len(ids) < depth}
	if valid >= 0 && valid < len(ids) {
		rec = exactRecord{IDs: ids[:valid]}
	}
	if q.IDs != nil && testHookExactAmong != nil {
		testHookExactAmong(ctx, conn, tbl, q, rec.IDs)
	}
	if key != nil {
		if err := s.withDB(func(db *controldb.DB) error { return db.Put(key, rec) }); err != nil {
			return nil, err
		}
	}
	return ids[:min(k, len(ids))], nil
}

// exactRecord is the exact order recorded with a materialization for one
// query: the table's first len(IDs) rows by distance, ties by id (up to
// exactDepth of the k asked for), Complete when they are all its rows.
// The depth past k lets an incremental build lose a few of them and still
// know its own top k without scanning (exactCandidates).
type exactRecord struct {
	IDs      []string `json:"ids"`
	Complete bool     `json:"complete,omitempty"`
}

// exactDepth is how deep exactIDs records the exact order for a top k.
func exactDepth(k int) int { return min(2*k, 10000) }

// testHookExactAmong, when set by a test, is called with every exact
// order that exactIDs took among candidates (q.IDs) and recorded, on the
// fork's connection.
var testHookExactAmong func(ctx context.Context, conn *pgx.Conn, tbl vectors.Table, q vectors.Query, got []string)

// exactCandidates returns the rows among which an incremental build's
// exact order for one query (hash, the suffix of its record key) is to be
// found, and how deep that order is exact: the rows recorded for the
// materialization it started from that are still there and were not
// re-embedded ("kept"), and the rows it inserted. Every other row kept its
// distance and ranked below all recorded ones, so the first len(kept) of
// the candidates' exact order are the table's (all of it when the record
// was complete: exact -1); exact search orders ties by id, so to the last
// bit. It returns nil (scan the table) without a record, or when fewer
// than k rows are kept.
func (s *Service) exactCandidates(ctx context.Context, project string, use *MaterializationUse, conn *pgx.Conn, tbl vectors.Table,
	hash []byte, k int) (among []string, exact int, err error) {
	var prev exactRecord
	err = s.withDB(func(db *controldb.DB) error {
		return db.Get(append(matExactPrefix(project, use.Incremental.From), hash...), &prev)
	})
	if errors.Is(err, controldb.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	rows, err := conn.Query(ctx, "SELECT id, doc_id FROM "+pgx.Identifier{tbl.Name}.Sanitize()+" WHERE id = ANY($1::text[])", prev.IDs)
	if err != nil {
		return nil, 0, fmt.Errorf("exact candidates: %w", err)
	}
	there := map[string]bool{}
	var id, doc string
	_, err = pgx.ForEachRow(rows, []any{&id, &doc}, func() error {
		there[id] = !use.fresh.docs[doc] // re-embedded: its distance changed
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("exact candidates: %w", err)
	}
	kept := make([]string, 0, len(prev.IDs)+len(use.fresh.ids))
	for _, id := range prev.IDs {
		if there[id] {
			kept = append(kept, id)
		}
	}
	exact = len(kept)
	if prev.Complete {
		exact = -1
	} else if exact < k {
		return nil, 0, nil
	}
	return append(kept, use.fresh.ids...), exact, nil
}

// expired reports whether m is past its TTL at now.
func (s *Service) matExpired(m *Materialization, now time.Time) bool {
	return m.ExpiresAt != nil && now.After(*m.ExpiresAt)
}

// forkMaterialization forks the live materialization of key in project
// into branch name and records the use. It returns nil and no error when
// there is none (or it expired); an error when there is one but its fork
// failed (the caller builds cold). The materialization cannot be deleted
// while it is being forked.
func (s *Service) forkMaterialization(ctx context.Context, project string, key MaterializationKey, name string) (*Materialization, ForkInfo, error) {
	s.matMu.Lock()
	defer s.matMu.Unlock()
	m, err := s.getMat(project, key.ID())
	if errors.Is(err, ErrNotFound) {
		return nil, ForkInfo{}, nil
	}
	if err != nil {
		return nil, ForkInfo{}, err
	}
	if s.matExpired(m, s.cfg.Now()) {
		if err := s.dropMat(ctx, m); err != nil {
			s.log.Warn("materialization: drop expired", slog.String("id", m.ID), slog.String("err", err.Error()))
		}
		return nil, ForkInfo{}, nil
	}
	fi, err := s.forkMatLocked(ctx, m, name)
	return m, fi, err
}

// forkMatLocked forks m into branch name and records the use; s.matMu
// held. A materialization whose point is gone is forgotten.
func (s *Service) forkMatLocked(ctx context.Context, m *Materialization, name string) (ForkInfo, error) {
	fi, err := s.cfg.Branches.Fork(ctx, m.Project, m.Point, name)
	if err != nil {
		if errors.Is(err, ErrNotFound) { // its point is gone: forget it
			_ = s.dropMat(ctx, m)
		}
		return ForkInfo{}, fmt.Errorf("fork materialization %s: %w", m.ID, err)
	}
	m.Hits++
	m.LastUsedAt = s.cfg.Now()
	if err := s.putMat(m); err != nil {
		s.log.Warn("materialization: record use", slog.String("id", m.ID), slog.String("err", err.Error()))
	}
	return fi, nil
}

// forgetMaterialization drops m after a reuse of it failed for cause, so
// that the next run of its key builds it again.
func (s *Service) forgetMaterialization(ctx context.Context, m *Materialization, cause error) {
	s.log.Warn("materialization: not reusable, dropped", slog.String("project", m.Project), slog.String("id", m.ID),
		slog.String("err", cause.Error()))
	s.matMu.Lock()
	defer s.matMu.Unlock()
	cur, err := s.getMat(m.Project, m.ID)
	if err != nil || cur.Point != m.Point || cur.Pinned {
		return // replaced meanwhile, or pinned: someone decides
	}
	if err := s.dropMat(context.WithoutCancel(ctx), cur); err != nil {
		s.log.Warn("materialization: drop", slog.String("id", m.ID), slog.String("err", err.Error()))
	}
}

// keepMaterialization keeps branch (variant vr of run, loaded and indexed
// under key) as a materialization: a checkpoint so that a fork of it
// starts without replaying the load, then one measure of growth (which
// records vr.StorageDelta), then Materializer.Keep, then the record,
// which replaces an unpinned one of the same key (a pinned one stays and
// the new point is dropped). It returns how the variant used it, with a
// Note when it was not kept; delta is set for an incremental build.
func (s *Service) keepMaterialization(ctx context.Context, run *Run, key MaterializationKey, branch string, vr *VariantRun,
	delta *IncrementalDelta, growth *forkGrowth) *MaterializationUse {
	id := key.ID()
	use := &MaterializationUse{ID: id, CreatedByRun: run.ID, CreatedByVariant: vr.Name, Incremental: delta}
	conn, release, err := s.connect(ctx, run.Project, branch, Maintenance)
	if err == nil {
		_, err = conn.Exec(ctx, "CHECKPOINT")
		release()
	}
	// Measured after the checkpoint, which writes the build's dirty pages
	// to the fork and removes or recycles the WAL segments of the load:
	// before it, the delta misses those pages and the current bytes count
	// WAL that the snapshot Keep takes next no longer reads.
	current := growth.measure(ctx, vr)
	if err != nil {
		use.Note = "not kept: checkpoint: " + err.Error()
		return use
	}
	now := s.cfg.Now()
	name := fmt.Sprintf("mat.%s.%d", id, now.UnixNano())
	pt, err := s.materializer().Keep(ctx, run.Project, branch, name)
	if err != nil {
		use.Note = "not kept: " + err.Error()
		return use
	}
	m := &Materialization{ID: id, Project: run.Project, Key: key, Point: pt, CreatedByRun: run.ID, CreatedByVariant: vr.Name,
		CreatedAt: now, LastUsedAt: now, Rows: vr.Rows, ModelID: vr.ModelID, IndexName: vr.IndexName, IndexBytes: vr.IndexBytes,
		DeltaBytes: vr.StorageDelta, CurrentBytes: current, Build: vr.Timings, Incremental: delta}
	if vr.Provenance != nil {
		m.Normalization = vr.Provenance.Normalization
	}
	s.matMu.Lock()
	defer s.matMu.Unlock()
	dctx := context.WithoutCancel(ctx)
	old, err := s.getMat(run.Project, id)
	switch {
	case err == nil && old.Pinned:
		_ = s.materializer().Drop(dctx, run.Project, pt)
		use.Note = fmt.Sprintf("not kept: materialization %s is pinned (built by %s/%s)", id, old.CreatedByRun, old.CreatedByVariant)
		return use
	case err == nil:
		if err := s.materializer().Drop(dctx, run.Project, old.Point); err != nil && !errors.Is(err, ErrNotFound) {
			s.log.Warn("materialization: drop the replaced one", slog.String("id", id), slog.String("err", err.Error()))
		}
	case !errors.Is(err, ErrNotFound):
		_ = s.materializer().Drop(dctx, run.Project, pt)
		use.Note = "not kept: " + err.Error()
		return use
	}
	if err := s.putMat(m); err != nil {
		_ = s.materializer().Drop(dctx, run.Project, pt)
		use.Note = "not kept: " + err.Error()
	}
	return use
}

// ListMaterializations lists a project's materializations, most recently
// used first (read scope); an unknown project is ErrNotFound, as for its
// branches.
func (s *Service) ListMaterializations(ctx context.Context, project string) ([]*Materialization, error) {
	if err := s.authorize(ctx, RoleRead, project, ""); err != nil {
		return nil, s.refused(ctx, "materialization.list", project, err)
	}
	if st := s.cfg.Store; st != nil { // without a store, runs keep none
		if _, err := st.Project(project); err != nil {
			return nil, storeErr(err)
		}
	}
	ms, err := s.listMat(project)
	if err != nil {
		return nil, err
	}
	sort.Slice(ms, func(i, j int) bool {
		if !ms[i].LastUsedAt.Equal(ms[j].LastUsedAt) {
			return ms[i].LastUsedAt.After(ms[j].LastUsedAt)
		}
		return ms[i].ID < ms[j].ID
	})
	if ms == nil {
		ms = []*Materialization{}
	}
	return ms, nil
}

// GetMaterialization returns one materialization (read scope).
func (s *Service) GetMaterialization(ctx context.Context, project, id string) (*Materialization, error) {
	if err := s.authorize(ctx, RoleRead, project, ""); err != nil {
		return nil, s.refused(ctx, "materialization.get", project+"/"+id, err)
	}
	return s.getMat(project, id)
}

// DeleteMaterialization deletes a materialization and releases its
// storage (write scope on the project); pinned ones too. Variants forked
// from it are not affected.
func (s *Service) DeleteMaterialization(ctx context.Context, project, id string) error {
	return s.audited(ctx, "materialization.delete", project+"/"+id, "", func() error {
		if err := s.authorize(ctx, RoleWrite, project, ""); err != nil {
			return err
		}
		s.matMu.Lock()
		defer s.matMu.Unlock()
		m, err := s.getMat(project, id)
		if err != nil {
			return err
		}
		return s.dropMat(ctx, m)
	})
}

// PinMaterialization pins (or with pinned false unpins) a
// materialization: a pinned one neither expires nor is evicted (write
// scope on the project).
func (s *Service) PinMaterialization(ctx context.Context, project, id string, pinned bool) (*Materialization, error) {
	var out *Materialization
	err := s.audited(ctx, "materialization.pin", project+"/"+id, fmt.Sprintf("pinned=%v", pinned), func() error {
		if err := s.authorize(ctx, RoleWrite, project, ""); err != nil {
			return err
		}
		s.matMu.Lock()
		defer s.matMu.Unlock()
		m, err := s.getMat(project, id)
		if err != nil {
			return err
		}
		m.Pinned = pinned
		if !pinned {
			m.LastUsedAt = s.cfg.Now() // its TTL starts again
		}
		if err := s.putMat(m); err != nil {
			return err
		}
		out = s.matView(m)
		return nil
	})
	return out, err
}

// MaterializationUsage sums a project's materializations.
type MaterializationUsage struct {
	Count  int `json:"count"`
	Pinned int `json:"pinned"`
	// DeltaBytes sums their own storage (Materialization.DeltaBytes).
	DeltaBytes int64 `json:"delta_bytes"`
}

// materializationUsage sums project's materializations.
func (s *Service) materializationUsage(project string) (MaterializationUsage, error) {
	ms, err := s.listMat(project)
	var u MaterializationUsage
	for _, m := range ms {
		u.Count++
		u.Pinned += btoi(m.Pinned)
		if m.DeltaBytes != nil {
			u.DeltaBytes += *m.DeltaBytes
		}
	}
	return u, err
}

// expireMaterializations drops, in every project, unpinned
// materializations past their TTL and then, while a project's
// materializations hold more than Config.MaterializationBudget bytes, the
// least recently used unpinned ones. Each drop is audited as the
// "ttl-sweeper". It returns how many it dropped.
func (s *Service) expireMaterializations(ctx context.Context) int {
	if s.materializer() == nil {
		return 0
	}
	ctx = WithCaller(ctx, Caller{KeyID: "ttl-sweeper", Scopes: []Scope{{Role: RoleAdmin}}})
	projects := map[string]bool{}
	err := s.withDB(func(db *controldb.DB) error {
		return db.Scan([]byte("mat/"), []byte("mat0"), func(k, _ []byte) (bool, error) {
			if p, _, ok := strings.Cut(strings.TrimPrefix(string(k), "mat/"), "/"); ok {
				projects[p] = true
			}
			return true, nil
		})
	})
	if err != nil {
		s.log.Warn("materialization sweep", slog.String("err", err.Error()))
		return 0
	}
	n := 0
	for p := range projects {
		n += s.expireProjectMaterializations(ctx, p)
	}
	return n
}

func (s *Service) expireProjectMaterializations(ctx context.Context, project string) int {
	s.matMu.Lock()
	defer s.matMu.Unlock()
	ms, err := s.listMat(project)
	if err != nil {
		return 0
	}
	now := s.cfg.Now()
	var total int64
	var keep []*Materialization
	n := 0
	drop := func(m *Materialization, why string) {
		err := s.dropMat(ctx, m)
		s.record(ctx, "materialization.expire", project+"/"+m.ID, why, err)
		if err == nil {
			n++
		}
	}
	for _, m := range ms {
		if !m.Pinned && s.matExpired(m, now) {
			drop(m, "ttl")
			continue
		}
		keep = append(keep, m)
		if m.DeltaBytes != nil {
			total += *m.DeltaBytes
		}
	}
	budget := s.cfg.MaterializationBudget
	if budget <= 0 {
		return n
	}
	sort.Slice(keep, func(i, j int) bool { return keep[i].LastUsedAt.Before(keep[j].LastUsedAt) })
	for _, m := range keep {
		if total <= budget {
			break
		}
		if m.Pinned || m.DeltaBytes == nil {
			continue
		}
		drop(m, fmt.Sprintf("budget: %d bytes held, budget %d", total, budget))
		total -= *m.DeltaBytes
	}
	return n
}
