package experiments

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/bits"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/vectors"
)

// Metric definitions a run's numbers follow, recorded in every run so a
// reader knows what they may be checked against.
const (
	// MetricsVersion names the measure definitions of package evals.
	MetricsVersion = "trec_eval 10.0"
	// MetricsTieRule is how evals ranks a run's documents before
	// measuring, trec_eval's rule.
	MetricsTieRule = "score descending, ties by document id descending (trec_eval)"
)

// Provenance is what a reader needs to trust and repeat a run: the data it
// read, k, the measure definitions and the machine. Each variant adds its
// own (VariantProvenance). Runs recorded before provenance existed have
// none.
type Provenance struct {
	Data    DataFingerprint   `json:"data"`
	K       int               `json:"k"`
	Metrics MetricDefinitions `json:"metrics"`
	Machine Machine           `json:"machine"`
}

// DataFingerprint identifies the dataset a run read, as read (after the
// SQL ran or the BEIR files were parsed), and the base it forked.
type DataFingerprint struct {
	// Base is the pinned branch point (its Seq) every variant forked.
	Base    BranchPoint    `json:"base"`
	Corpus  SetFingerprint `json:"corpus"`
	Queries SetFingerprint `json:"queries"`
	// Qrels counts judgment lines (query, document, grade).
	Qrels SetFingerprint `json:"qrels"`
}

// SetFingerprint is a row count and an order-independent checksum of a
// set of rows: SHA-256 over the count and the sum modulo 2^256 of each
// row's SHA-256 (each field length-prefixed). The same rows in any order
// give the same checksum, so a reader can compute it while streaming;
// changing, adding or dropping one row changes it.
type SetFingerprint struct {
	Rows   int    `json:"rows"`
	SHA256 string `json:"sha256"`
}

// MetricDefinitions names the measures' definitions and tie rule.
type MetricDefinitions struct {
	Version string `json:"version"`
	Ties    string `json:"ties"`
}

// Machine is the host the server ran on.
type Machine struct {
	Cores int `json:"cores"`
	// MemoryBytes is the host's total memory (0 when unknown).
	MemoryBytes int64  `json:"memory_bytes"`
	OS          string `json:"os"`
	Arch        string `json:"arch"`
}

// VariantProvenance is what one variant ran with: the embedder, the
// chunking, the server, the index DDL and every setting in effect.
type VariantProvenance struct {
	// Embedder is the spec's embedder; ModelID and Dims the fitted model.
	Embedder string `json:"embedder"`
	ModelID  string `json:"model_id"`
	Dims     int    `json:"dims"`
	// Normalization is measured on the loaded vectors: "l2" when every
	// nonzero sampled vector has norm 1 (±1e-3), else "none" with the
	// range of norms seen.
	Normalization string `json:"normalization"`
	// Chunking is absent for one chunk per document.
	Chunking *ChunkSpec `json:"chunking,omitempty"`
	Distance string     `json:"distance"`
	// Postgres is SELECT version(); PGVector the vector extension's
	// extversion.
	Postgres string `json:"postgres"`
	PGVector string `json:"pgvector"`
	// IndexDDL is the index's definition (pg_indexes.indexdef); absent
	// for exact search.
	IndexDDL string `json:"index_ddl,omitempty"`
	// Settings are the server settings the index was built and the
	// queries run with (maintenance_work_mem,
	// max_parallel_maintenance_workers, hnsw.ef_search, ivfflat.probes,
	// iterative scan when set).
	Settings map[string]string `json:"settings"`
}

// fingerprint accumulates a SetFingerprint. The zero value is empty.
type fingerprint struct {
	rows int
	sum  [4]uint64 // big-endian 256-bit sum of row digests
}

// add adds one row of fields.
func (f *fingerprint) add(fields ...string) {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, s := range fields {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		h.Write([]byte(s))
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	var carry uint64
	for i := 3; i >= 0; i-- {
		f.sum[i], carry = bits.Add64(f.sum[i], binary.BigEndian.Uint64(d[8*i:]), carry)
	}
	f.rows++
}

func (f *fingerprint) result() SetFingerprint {
	var b [8 + 32]byte
	binary.BigEndian.PutUint64(b[:8], uint64(f.rows))
	for i, x := range f.sum {
		binary.BigEndian.PutUint64(b[8+8*i:], x)
	}
	d := sha256.Sum256(b[:])
	return SetFingerprint{Rows: f.rows, SHA256: hex.EncodeToString(d[:])}
}

// fingerprintDataset fingerprints ds as read.
func fingerprintDataset(ctx context.Context, base BranchPoint, ds *evals.Dataset, docs corpus) (DataFingerprint, error) {
	cfp, err := corpusFingerprint(ctx, docs)
	if err != nil {
		return DataFingerprint{}, err
	}
	queries, qrels := judgmentsFingerprint(ds)
	return DataFingerprint{Base: base, Corpus: cfp, Queries: queries, Qrels: qrels}, nil
}

// judgmentsFingerprint fingerprints ds's queries and qrels, as
// DataFingerprint records them.
func judgmentsFingerprint(ds *evals.Dataset) (queries, qrels SetFingerprint) {
	var q, j fingerprint
	for _, x := range ds.Queries {
		q.add(x.ID, x.Text)
	}
	for qid, docs := range ds.Qrels {
		for doc, g := range docs {
			j.add(qid, doc, strconv.Itoa(g))
		}
	}
	return q.result(), j.result()
}

// corpusFingerprint is docs' fingerprint: the one its opening pass
// computed, or one more pass over the stream (it may not fit in memory).
func corpusFingerprint(ctx context.Context, docs corpus) (SetFingerprint, error) {
	if docs.fingerprint != nil {
		return *docs.fingerprint, nil
	}
	var c fingerprint
	if err := docs.each(ctx, func(d evals.Doc) error {
		c.add(d.ID, d.Title, d.Text)
		return nil
	}); err != nil {
		return SetFingerprint{}, fmt.Errorf("fingerprint the corpus: %w", err)
	}
	return c.result(), nil
}

// newProvenance is the run-level provenance of spec's run on base over ds.
func newProvenance(ctx context.Context, spec ExperimentSpec, base BranchPoint, ds *evals.Dataset, docs corpus) (*Provenance, error) {
	fp, err := fingerprintDataset(ctx, base, ds, docs)
	if err != nil {
		return nil, err
	}
	return &Provenance{Data: fp, K: spec.K,
		Metrics: MetricDefinitions{Version: MetricsVersion, Ties: MetricsTieRule}, Machine: thisMachine()}, nil
}

func thisMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			m.MemoryBytes = kb * 1024
			break
		}
	}
	return m
}

// normSample is how many loaded vectors variantProvenance reads to
// measure normalization.
const normSample = 1000

// variantProvenance reads what a loaded (and indexed, when index is not
// empty) fork of v runs with, on conn, which must not be in a transaction.
func variantProvenance(ctx context.Context, conn *pgx.Conn, tbl vectors.Table, v VariantSpec, emb vectors.Embedder,
	metric vectors.Metric, index string) (*VariantProvenance, error) {
	p := &VariantProvenance{Embedder: v.Embedder, ModelID: emb.ModelID(), Dims: emb.Dims(), Chunking: v.Chunking,
		Distance: string(metric), Settings: map[string]string{}}
	if err := conn.QueryRow(ctx, "SELECT version(), coalesce((SELECT extversion FROM pg_extension WHERE extname = 'vector'), '')").
		Scan(&p.Postgres, &p.PGVector); err != nil {
		return nil, fmt.Errorf("provenance: versions: %w", err)
	}
	var lo, hi *float64
	var n int
	// vector_norm takes vectors; halfvecs are cast to one, exactly.
	q := fmt.Sprintf("SELECT min(n), max(n), count(*) FROM (SELECT vector_norm(embedding::vector) AS n FROM %s LIMIT %d) s WHERE n > 0",
		pgx.Identifier{tbl.Name}.Sanitize(), normSample)
	if err := conn.QueryRow(ctx, q).Scan(&lo, &hi, &n); err != nil {
		return nil, fmt.Errorf("provenance: norms: %w", err)
	}
	switch {
	case n == 0:
		p.Normalization = "unknown (no nonzero vectors)"
	case *lo > 1-1e-3 && *hi < 1+1e-3:
		p.Normalization = "l2"
	default:
		p.Normalization = fmt.Sprintf("none (norms %.4g..%.4g in %d sampled vectors)", *lo, *hi, n)
	}
	if index != "" {
		if err := conn.QueryRow(ctx, "SELECT indexdef FROM pg_indexes WHERE indexname = $1", index).Scan(&p.IndexDDL); err != nil {
			return nil, fmt.Errorf("provenance: index %s: %w", index, err)
		}
	}
	for _, name := range []string{"maintenance_work_mem", "max_parallel_maintenance_workers"} {
		var val string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&val); err != nil {
			return nil, fmt.Errorf("provenance: %s: %w", name, err)
		}
		p.Settings[name] = val
	}
	return p, nil
}

// withSearch returns a copy of p (nil stays nil) with the search settings
// one evaluation point ran with; 0 and "" mean the setting was not set
// and are left out.
func (p *VariantProvenance) withSearch(efSearch, probes int, iterative string, rerank int) *VariantProvenance {
	if p == nil {
		return nil
	}
	cp := *p
	cp.Settings = make(map[string]string, len(p.Settings)+3)
	for k, v := range p.Settings {
		cp.Settings[k] = v
	}
	if efSearch > 0 {
		cp.Settings["hnsw.ef_search"] = strconv.Itoa(efSearch)
	}
	if probes > 0 {
		cp.Settings["ivfflat.probes"] = strconv.Itoa(probes)
	}
	if iterative != "" {
		cp.Settings["iterative_scan"] = iterative
	}
	if rerank > 0 {
		cp.Settings["rerank"] = strconv.Itoa(rerank)
	}
	return &cp
}

// SortedSettings returns p's settings as "name=value", by name.
func (p *VariantProvenance) SortedSettings() []string {
	out := make([]string, 0, len(p.Settings))
	for k, v := range p.Settings {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// DataDiff compares the data two runs read. Fingerprints that are
// unknown (runs recorded before provenance) compare as equal.
type DataDiff struct {
	Corpus  bool `json:"corpus_differs"`
	Queries bool `json:"queries_differ"`
	Qrels   bool `json:"qrels_differ"`
}

func diffData(a, b *Provenance) DataDiff {
	if a == nil || b == nil {
		return DataDiff{}
	}
	return DataDiff{Corpus: a.Data.Corpus != b.Data.Corpus, Queries: a.Data.Queries != b.Data.Queries,
		Qrels: a.Data.Qrels != b.Data.Qrels}
}

// Warnings says in words what differs.
func (d DataDiff) Warnings(a, b *Provenance) []string {
	var out []string
	if d.Queries {
		out = append(out, fmt.Sprintf("the queries differ: a read %d (sha256 %.12s), b %d (sha256 %.12s)",
			a.Data.Queries.Rows, a.Data.Queries.SHA256, b.Data.Queries.Rows, b.Data.Queries.SHA256))
	}
	if d.Qrels {
		out = append(out, fmt.Sprintf("the relevance judgments differ: a read %d (sha256 %.12s), b %d (sha256 %.12s)",
			a.Data.Qrels.Rows, a.Data.Qrels.SHA256, b.Data.Qrels.Rows, b.Data.Qrels.SHA256))
	}
	if d.Corpus {
		out = append(out, fmt.Sprintf("the corpora differ: a read %d documents (sha256 %.12s), b %d (sha256 %.12s)",
			a.Data.Corpus.Rows, a.Data.Corpus.SHA256, b.Data.Corpus.Rows, b.Data.Corpus.SHA256))
	}
	return out
}

// WriteProvenance writes r's provenance for people: the data fingerprint,
// k, measure definitions and machine, then per variant with provenance
// its embedder, chunking, server, index DDL and settings. Checksums are
// shortened to 12 hex digits. Writes nothing for a run without
// provenance.
func WriteProvenance(w io.Writer, r *Run) error {
	p := r.Provenance
	if p == nil {
		return nil
	}
	d := p.Data
	fmt.Fprintf(w, "provenance:\n  data: base %s@%d; corpus %d docs sha256 %.12s; queries %d sha256 %.12s; qrels %d judgments sha256 %.12s\n",
		d.Base.Branch, d.Base.Seq, d.Corpus.Rows, d.Corpus.SHA256, d.Queries.Rows, d.Queries.SHA256, d.Qrels.Rows, d.Qrels.SHA256)
	fmt.Fprintf(w, "  k %d; measures %s, ties %s\n", p.K, p.Metrics.Version, p.Metrics.Ties)
	fmt.Fprintf(w, "  machine: %d cores, %.1f GiB, %s/%s\n", p.Machine.Cores, float64(p.Machine.MemoryBytes)/(1<<30), p.Machine.OS, p.Machine.Arch)
	for _, v := range r.Variants {
		vp := v.Provenance
		if vp == nil {
			continue
		}
		chunking := "one chunk per document"
		if c := vp.Chunking; c != nil {
			chunking = fmt.Sprintf("size %d overlap %d", c.Size, c.Overlap)
		}
		switch {
		case vp.Settings[settingFusion] != "": // a hybrid: no fork
			fmt.Fprintf(w, "  %s: fusion of %s and %s\n", v.Name, vp.Settings[settingHybridDense], vp.Settings[settingHybridLexical])
		case vp.Settings[settingTextSearch] != "":
			fmt.Fprintf(w, "  %s: Postgres full-text search, text search configuration %s; chunking %s\n",
				v.Name, vp.Settings[settingTextSearch], chunking)
			fmt.Fprintf(w, "    %s\n", vp.Postgres)
		default:
			fmt.Fprintf(w, "  %s: embedder %s (model %s, %d dims, normalization %s); chunking %s; distance %s\n",
				v.Name, vp.Embedder, vp.ModelID, vp.Dims, vp.Normalization, chunking, vp.Distance)
			fmt.Fprintf(w, "    %s; pgvector %s\n", vp.Postgres, vp.PGVector)
		}
		if vp.IndexDDL != "" {
			fmt.Fprintf(w, "    index: %s\n", vp.IndexDDL)
		}
		if _, err := fmt.Fprintf(w, "    settings: %s\n", strings.Join(vp.SortedSettings(), " ")); err != nil {
			return err
		}
	}
	return nil
}
