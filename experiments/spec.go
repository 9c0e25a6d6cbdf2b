package experiments

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/offshootdb/offshoot/evals"
	"github.com/offshootdb/offshoot/vectors"
)

// ExperimentSpec describes an experiment: where its data comes from, the
// variants to compare and how to score them. It is read from YAML or JSON
// by ParseSpec and checked by Validate; errors are *FieldError naming the
// field by its JSON path, e.g. "variants[1].index.m".
type ExperimentSpec struct {
	// Name names the experiment; it is part of every fork's branch name.
	// Lowercase letters, digits, '-' and '_', at most 40 bytes.
	Name    string `json:"name"`
	Project string `json:"project"`
	// Base is the branch point the variants fork from.
	Base BranchPoint `json:"base"`
	// Dataset is the test collection.
	Dataset DatasetSpec `json:"dataset"`
	// Variants are the systems compared; each runs on its own fork.
	Variants []VariantSpec `json:"variants"`
	// Metrics are trec_eval measure names, optionally with cutoffs
	// ("ndcg_cut.10", "recall.10,100", "recip_rank"). Default
	// ndcg_cut.10, recall.10,100, P.10, recip_rank.
	Metrics []string `json:"metrics,omitempty"`
	// K is the number of documents retrieved per query. Default the
	// largest metric cutoff, at least 10.
	K int `json:"k,omitempty"`
	// KeepBranches keeps the forks after the run; by default they are
	// discarded (also when a variant fails).
	KeepBranches bool `json:"keep_branches,omitempty"`
	// Concurrency is the number of variants run at once. Default 1.
	Concurrency int `json:"concurrency,omitempty"`
	// Timing says how latency and QPS are measured (warm-up, repeated
	// passes, cache state, concurrent clients); see TimingSpec for the
	// defaults.
	Timing TimingSpec `json:"timing,omitempty"`
	// Reuse says whether variants may fork a materialization of the same
	// key instead of embedding, loading and indexing (see
	// Materialization): "auto" (the default) or "never", which rebuilds
	// every variant from the base (the CLI's --cold).
	Reuse string `json:"reuse,omitempty"`
}

// BranchPoint names data to fork: a branch's head, or the branch at a
// recorded sequence number (Seq > 0), or as it was at a time (At, within
// the store's history window), or a named snapshot. A run resolves it to
// an exact, pinned point (Branch, Seq and Snapshot set).
type BranchPoint struct {
	Branch   string     `json:"branch"`
	Seq      uint64     `json:"seq,omitempty"`
	At       *time.Time `json:"at,omitempty"`
	Snapshot string     `json:"snapshot,omitempty"`
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// String names the point: "main", "main@1234" (a seq), "main@2026-12-02T10:00:00Z"
// (a time) or "main@1234 (snapshot run-base.1)".
func (p BranchPoint) String() string {
	s := p.Branch
	if p.Seq != 0 {
		s += "@" + strconv.FormatUint(p.Seq, 10)
	} else if p.At != nil {
		s += "@" + p.At.UTC().Format(time.RFC3339Nano)
	}
	if p.Snapshot != "" {
		s += " (snapshot " + p.Snapshot + ")"
	}
	return s
}

// DatasetSpec is a BEIR directory, or SQL run on the base branch.
type DatasetSpec struct {
	// BEIR is a directory in the BEIR layout (corpus.jsonl, queries.jsonl,
	// qrels/<split>.tsv) on the server, inside its datasets directory
	// (Config.DatasetsDir; a relative path is relative to it). Anything
	// else, symbolic links out of it included, is refused.
	BEIR string `json:"beir,omitempty"`
	// Split is the qrels split, the name of a file qrels/<split>.tsv in
	// the BEIR directory: 1-64 of letters, digits, '.', '_' and '-',
	// starting with a letter or digit. Default "test".
	Split string `json:"split,omitempty"`
	// CorpusSQL yields (id text, text text) rows of the corpus.
	CorpusSQL string `json:"corpus_sql,omitempty"`
	// QueriesSQL yields (id text, text text) rows of the queries.
	QueriesSQL string `json:"queries_sql,omitempty"`
	// QrelsSQL yields (query_id text, doc_id text, grade int) rows.
	QrelsSQL string `json:"qrels_sql,omitempty"`
}

// VariantSpec is one system under test. Sweep lists expand it into one
// concrete variant per grid point (see Expand).
type VariantSpec struct {
	// Name is unique in the experiment; same character rules as the
	// experiment name.
	Name string `json:"name"`
	// Type is empty for a dense system run on its own fork;
	// VariantRunFile ("run_file") for an external system's TREC run read
	// from RunFile (or imported by ImportRun), which has no embedder,
	// index, search or sweep fields; VariantLexical ("lexical") for
	// Postgres full-text search on its own fork (see Lexical); or
	// VariantHybrid ("hybrid") for the fusion of a dense and a lexical
	// variant of the experiment (see Hybrid).
	Type string `json:"type,omitempty"`
	// RunFile is the TREC run file of a run_file variant: a path inside
	// the server's datasets directory, as dataset.beir. On an imported
	// variant it only records where the file came from.
	RunFile string `json:"run_file,omitempty"`
	// Embedder is a vectors.Spec string, e.g. "hash-bow?dims=256".
	Embedder string `json:"embedder"`
	// Chunking splits documents; absent: one chunk per document.
	Chunking *ChunkSpec `json:"chunking,omitempty"`
	// Distance is "cosine" (default), "l2" or "ip". A text without
	// tokens embeds as the zero vector, which has no cosine distance:
	// under cosine such a query ranks nothing (it counts as a judged
	// query that retrieved nothing) and such a document is never ranked,
	// as with a lexical variant.
	Distance string `json:"distance,omitempty"`
	// VectorType is the embedding column's type: "vector" (the default,
	// 4-byte floats) or "halfvec" (2-byte floats: half the table and
	// index, indexable up to 4,000 dimensions instead of 2,000).
	VectorType string `json:"vector_type,omitempty"`
	// Quantization is "none" (the default) or "binary": the table keeps
	// the full embeddings, the index (hnsw or ivfflat, required) holds
	// binary_quantize(embedding)::bit(dims) by Hamming distance, and a
	// query re-ranks the index's Search.Rerank nearest candidates by
	// Distance on the full embeddings. The sign bits approximate the
	// angle between vectors: faithful to cosine, and to l2 and ip for
	// unit vectors (Provenance.Normalization says whether they are).
	Quantization string `json:"quantization,omitempty"`
	// Index is the ANN index; absent or type "none": exact search.
	Index *IndexSpec `json:"index,omitempty"`
	// Search holds per-query search parameters.
	Search SearchSpec `json:"search,omitempty"`
	// Lexical configures a lexical variant (optional: its fields have
	// defaults); only with type lexical.
	Lexical *LexicalSpec `json:"lexical,omitempty"`
	// Hybrid names the variants a hybrid variant fuses and how; required
	// with type hybrid, and only with it.
	Hybrid *HybridSpec `json:"hybrid,omitempty"`
	// Sweep lists values to grid over; each combination becomes a
	// variant named "<name>-m16-ef40" and so on. Points that differ only
	// in search parameters are evaluated on one shared fork (named after
	// the first); index parameters get a fork each.
	Sweep *SweepSpec `json:"sweep,omitempty"`
}

// ChunkSpec configures vectors.Chunker (sizes in runes).
type ChunkSpec struct {
	Size    int `json:"size"`
	Overlap int `json:"overlap,omitempty"`
}

// IndexSpec configures vectors.Index. Zero parameters take pgvector's
// defaults; set ones must be in pgvector's ranges, and an index takes
// only its own method's: hnsw m 2..100 (default 16) and ef_construction
// 4..1000 and at least 2·m (default 64), ivfflat lists 1..32768 (default
// 100).
type IndexSpec struct {
	Type           string `json:"type"` // "hnsw", "ivfflat" or "none"
	M              int    `json:"m,omitempty"`
	EfConstruction int    `json:"ef_construction,omitempty"`
	Lists          int    `json:"lists,omitempty"`
}

// SearchSpec holds search-time parameters.
type SearchSpec struct {
	// EfSearch sets hnsw.ef_search, 1..1000. It also caps the hits an
	// HNSW scan returns, so 0 means max(40, the hits a query fetches), up
	// to 1000.
	EfSearch int `json:"ef_search,omitempty"`
	// Probes sets ivfflat.probes: 1..the index's lists (more would probe
	// them all); 0 means pgvector's default, 1.
	Probes int `json:"probes,omitempty"`
	// IterativeScan is pgvector's iterative index scan for the point:
	// "auto" (the default) turns relaxed_order on for HNSW when ef_search
	// is below the rows a query fetches (k, or more with chunking), and
	// always for IVFFlat; "off" rejects an HNSW spec whose ef_search
	// would cap the hits below k (and fails an IVFFlat point whose probes
	// return fewer rows than fetched); "relaxed_order" and
	// "strict_order" (HNSW only) set it. A run records the mode used.
	// With binary quantization, the rows the index scan fetches are the
	// Rerank candidates.
	IterativeScan string `json:"iterative_scan,omitempty"`
	// Rerank is, with quantization "binary", the number of candidates
	// fetched by Hamming distance and re-ranked by the full embeddings:
	// at least the rows a query fetches (k, 4k with chunking), at most
	// 10000. Default 4 times those rows (at most 10000).
	Rerank int `json:"rerank,omitempty"`
}

// SweepSpec is a parameter grid. Every value is checked as the field it
// sets would be (ef_search as SearchSpec.EfSearch, m as IndexSpec.M, ...).
type SweepSpec struct {
	EfSearch []int `json:"ef_search,omitempty"`
	Probes   []int `json:"probes,omitempty"`
	M        []int `json:"m,omitempty"`
	Lists    []int `json:"lists,omitempty"`
	// RRFK (fusion rrf) and Alpha (fusion weighted) grid a hybrid
	// variant's hybrid.k and hybrid.alpha; points are named "-k60" and
	// "-alpha0.3".
	RRFK  []int     `json:"rrf_k,omitempty"`
	Alpha []float64 `json:"alpha,omitempty"`
	// Rerank sweeps Search.Rerank (quantization binary); a search
	// parameter, so its points share one fork.
	Rerank []int `json:"rerank,omitempty"`
}

var (
	identRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,39}$`)
	splitRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

// validSplit checks a dataset's split: the name of a file in its qrels
// directory, never a path.
func validSplit(split string) error {
	if !splitRE.MatchString(split) {
		return invalid("dataset.split", "must name a qrels file (qrels/<split>.tsv) in the dataset: 1-64 of letters, digits, '.', '_', '-', starting with a letter or digit, not %q", split)
	}
	return nil
}

// ParseSpec reads a spec from YAML or JSON (JSON is YAML). Unknown fields
// are errors naming the field.
func ParseSpec(data []byte) (*ExperimentSpec, error) { return ParseSpecIn(data, "") }

// ParseSpecIn is ParseSpec for a spec that runs in project when it names
// none (project "" leaves it to the spec).
func ParseSpecIn(data []byte, project string) (*ExperimentSpec, error) {
	var generic any
	if err := yaml.Unmarshal(data, &generic); err != nil {
		return nil, invalid("spec", "not valid YAML or JSON: %v", err)
	}
	if m, ok := generic.(map[string]any); ok && project != "" && (m["project"] == nil || m["project"] == "") {
		m["project"] = project
	}
	j, err := json.Marshal(generic)
	if err != nil {
		return nil, invalid("spec", "not representable as JSON: %v", err)
	}
	return DecodeSpec(j)
}

// DecodeSpec reads a spec from JSON, refusing unknown fields, and
// validates it.
func DecodeSpec(j []byte) (*ExperimentSpec, error) {
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	var sp ExperimentSpec
	if err := dec.Decode(&sp); err != nil {
		var te *json.UnmarshalTypeError
		var pe *time.ParseError
		switch {
		case errors.As(err, &te):
			return nil, invalid(te.Field, "want %s, got %s", te.Type, te.Value)
		case errors.As(err, &pe): // base.at is the spec's only time
			return nil, invalid("base.at", "want an RFC 3339 time such as 2026-12-01T10:00:00Z, got %q", pe.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return nil, invalid(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), "unknown field")
		}
		return nil, invalid("spec", "%v", err)
	}
	if err := sp.Validate(); err != nil {
		return nil, err
	}
	return &sp, nil
}

// Validate checks the spec and fills defaults (Metrics, K, Concurrency,
// Dataset.Split). Errors are *FieldError.
func (sp *ExperimentSpec) Validate() error {
	if !identRE.MatchString(sp.Name) {
		return invalid("name", "must be 1-40 of a-z, 0-9, '-', '_', starting with a letter or digit")
	}
	if err := validName("project", sp.Project); err != nil {
		return err
	}
	if err := validName("base.branch", sp.Base.Branch); err != nil {
		return err
	}
	if n := btoi(sp.Base.Seq > 0) + btoi(sp.Base.At != nil) + btoi(sp.Base.Snapshot != ""); n > 1 {
		return invalid("base", "give at most one of seq, at and snapshot")
	}
	if sp.Base.At != nil && sp.Base.At.IsZero() {
		return invalid("base.at", "want an RFC 3339 time")
	}
	d := &sp.Dataset
	if d.Split == "" {
		d.Split = "test"
	}
	if err := validSplit(d.Split); err != nil {
		return err
	}
	switch {
	case d.BEIR != "" && (d.CorpusSQL != "" || d.QueriesSQL != "" || d.QrelsSQL != ""):
		return invalid("dataset", "give beir or the *_sql queries, not both")
	case d.BEIR == "" && d.CorpusSQL == "":
		return invalid("dataset", "give beir (a directory) or corpus_sql, queries_sql and qrels_sql")
	case d.BEIR == "" && d.QueriesSQL == "":
		return invalid("dataset.queries_sql", "is required with corpus_sql")
	case d.BEIR == "" && d.QrelsSQL == "":
		return invalid("dataset.qrels_sql", "is required with corpus_sql")
	}
	switch sp.Reuse {
	case "", ReuseAuto, ReuseNever:
	default:
		return invalid("reuse", "want %q or %q, not %q", ReuseAuto, ReuseNever, sp.Reuse)
	}
	if len(sp.Metrics) == 0 {
		sp.Metrics = []string{"ndcg_cut.10", "recall.10,100", "P.10", "recip_rank"}
	}
	ms, err := evals.ParseMeasures(sp.Metrics...)
	if err != nil {
		return invalid("metrics", "%v", err)
	}
	maxCut := 10
	for _, m := range ms {
		maxCut = max(maxCut, m.Depth())
	}
	if sp.K == 0 {
		sp.K = maxCut
	}
	if sp.K < 1 || sp.K > 1000 {
		return invalid("k", "must be in 1..1000")
	}
	if sp.Concurrency == 0 {
		sp.Concurrency = 1
	}
	if sp.Concurrency < 1 || sp.Concurrency > 16 {
		return invalid("concurrency", "must be in 1..16")
	}
	if err := sp.Timing.validate(); err != nil {
		return err
	}
	if len(sp.Variants) == 0 {
		return invalid("variants", "at least one variant is required")
	}
	for i, v := range sp.Variants {
		f := fmt.Sprintf("variants[%d]", i)
		if err := v.validate(f); err != nil {
			return err
		}
		if v.Type == "" {
			if err := v.validateSearch(f, fetchRows(sp.K, v.Chunking != nil)); err != nil {
				return err
			}
		}
	}
	// Counted before anything is expanded: a few bytes of sweep lists
	// can name a grid of millions of points.
	if n := sp.points(); n > maxVariants {
		count := strconv.Itoa(n)
		if n == math.MaxInt {
			count = "more than " + count
		}
		return invalid("variants", "%s variants after sweeps; at most %d", count, maxVariants)
	}
	seen := map[string]string{} // concrete variant name → type
	for i, v := range sp.Variants {
		for _, x := range v.Expand() {
			if _, ok := seen[x.Name]; ok {
				return invalid(fmt.Sprintf("variants[%d].name", i), "variant %q appears twice", x.Name)
			}
			seen[x.Name] = x.Type
		}
	}
	for i, v := range sp.Variants {
		if v.Type == VariantHybrid {
			if err := v.Hybrid.validateParts(fmt.Sprintf("variants[%d].hybrid", i), seen); err != nil {
				return err
			}
		}
	}
	return nil
}

func (v *VariantSpec) validate(f string) error {
	if !identRE.MatchString(v.Name) {
		return invalid(f+".name", "must be 1-40 of a-z, 0-9, '-', '_'")
	}
	switch v.Type {
	case "":
		if v.RunFile != "" {
			return invalid(f+".run_file", "needs type %s", VariantRunFile)
		}
		if v.Lexical != nil {
			return invalid(f+".lexical", "needs type %s", VariantLexical)
		}
		if v.Hybrid != nil {
			return invalid(f+".hybrid", "needs type %s", VariantHybrid)
		}
		if s := v.Sweep; s != nil && (len(s.RRFK) > 0 || len(s.Alpha) > 0) {
			return invalid(f+".sweep", "rrf_k and alpha sweeps need type %s", VariantHybrid)
		}
	case VariantRunFile:
		if v.RunFile == "" {
			return invalid(f+".run_file", "is required with type %s: a TREC run file in the datasets directory", VariantRunFile)
		}
		if v.Embedder != "" || v.Chunking != nil || v.Distance != "" || v.VectorType != "" || v.Quantization != "" || v.Index != nil ||
			v.Search != (SearchSpec{}) || v.Sweep != nil || v.Lexical != nil || v.Hybrid != nil {
			return invalid(f, "a %s variant takes only name and run_file", VariantRunFile)
		}
		return nil
	case VariantLexical:
		return v.validateLexical(f)
	case VariantHybrid:
		return v.validateHybrid(f)
	default:
		return invalid(f+".type", "must be empty (dense), %s, %s or %s", VariantLexical, VariantHybrid, VariantRunFile)
	}
	es, err := vectors.ParseSpec(v.Embedder)
	if err != nil {
		return invalid(f+".embedder", "%v", err)
	}
	if es.APIKey != "" {
		return invalid(f+".embedder", "must not carry an API key")
	}
	if c := v.Chunking; c != nil && (c.Size < 1 || c.Overlap < 0 || c.Overlap >= c.Size) {
		return invalid(f+".chunking", "need size ≥ 1 and 0 ≤ overlap < size")
	}
	switch vectors.Metric(v.Distance) {
	case "", vectors.Cosine, vectors.L2, vectors.InnerProduct:
	case "hamming", "jaccard":
		return invalid(f+".distance", "must be cosine, l2 or ip: the distance results are ranked by; %s search over bits is quantization %s, which re-ranks its candidates by one of them", v.Distance, QuantizationBinary)
	default:
		return invalid(f+".distance", "must be cosine, l2 or ip")
	}
	if err := v.validateStorage(f, es); err != nil {
		return err
	}
	return v.validateParams(f)
}

// maxVariants is the most concrete variants a spec may expand to.
const maxVariants = 64

// points is the number of concrete variants the spec expands to (the
// length of Concrete), computed from the sweeps' lengths without
// expanding them; math.MaxInt when the count overflows.
func (sp *ExperimentSpec) points() int {
	n := 0
	for _, v := range sp.Variants {
		p := v.points()
		if p > math.MaxInt-n {
			return math.MaxInt
		}
		n += p
	}
	return n
}

// points is the number of concrete variants v expands to (the length of
// Expand), math.MaxInt when the product of its sweep axes overflows.
func (v VariantSpec) points() int {
	s := v.Sweep
	switch {
	case s == nil:
		return 1
	case v.Type == VariantHybrid:
		return max(1, len(s.RRFK)+len(s.Alpha))
	}
	n := 1
	for _, l := range []int{len(s.M), len(s.Lists), len(s.EfSearch), len(s.Probes), len(s.Rerank)} {
		if l == 0 {
			continue
		}
		if n > math.MaxInt/l {
			return math.MaxInt
		}
		n *= l
	}
	return n
}

// Expand returns the concrete variants of v: v itself without a sweep, or
// one per grid point of its sweep, named
// "<name>-m<M>-lists<L>-ef<E>-probes<P>-rerank<R>" for the swept fields,
// in grid order (index parameters outermost). It builds the whole grid:
// call it on a spec Validate accepted, which bounds the grid first.
func (v VariantSpec) Expand() []VariantSpec {
	if v.Sweep == nil {
		return []VariantSpec{v}
	}
	axis := func(xs []int) []int {
		if len(xs) == 0 {
			return []int{0}
		}
		return xs
	}
	if v.Type == VariantHybrid {
		return v.expandHybrid()
	}
	var out []VariantSpec
	for _, m := range axis(v.Sweep.M) {
		for _, l := range axis(v.Sweep.Lists) {
			for _, ef := range axis(v.Sweep.EfSearch) {
				for _, p := range axis(v.Sweep.Probes) {
					for _, r := range axis(v.Sweep.Rerank) {
						x := v
						x.Sweep = nil
						name := v.Name
						if v.Index != nil {
							ix := *v.Index
							if m > 0 {
								ix.M = m
								name += "-m" + strconv.Itoa(m)
							}
							if l > 0 {
								ix.Lists = l
								name += "-lists" + strconv.Itoa(l)
							}
							x.Index = &ix
						}
						if ef > 0 {
							x.Search.EfSearch = ef
							name += "-ef" + strconv.Itoa(ef)
						}
						if p > 0 {
							x.Search.Probes = p
							name += "-probes" + strconv.Itoa(p)
						}
						if r > 0 {
							x.Search.Rerank = r
							name += "-rerank" + strconv.Itoa(r)
						}
						x.Name = name
						out = append(out, x)
					}
				}
			}
		}
	}
	return out
}

// Concrete returns every concrete variant of the spec, in order; like
// Expand, only for a spec Validate accepted.
func (sp *ExperimentSpec) Concrete() []VariantSpec {
	var out []VariantSpec
	for _, v := range sp.Variants {
		out = append(out, v.Expand()...)
	}
	return out
}
