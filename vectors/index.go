package vectors

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// Metric is the distance an index and a search use.
type Metric string

// Distance metrics and their pgvector operators.
const (
	// Cosine is cosine distance, 1 − cos (operator <=>).
	Cosine Metric = "cosine"
	// L2 is Euclidean distance (operator <->).
	L2 Metric = "l2"
	// InnerProduct is the negative inner product (operator <#>), so that
	// smaller is closer like the other metrics.
	InnerProduct Metric = "ip"
)

func (m Metric) operator() (string, error) {
	switch m {
	case Cosine:
		return "<=>", nil
	case L2:
		return "<->", nil
	case InnerProduct:
		return "<#>", nil
	}
	return "", fmt.Errorf("metric %q: %w", m, ErrBadQuery)
}

func (m Metric) opsSuffix() string {
	switch m {
	case L2:
		return "l2_ops"
	case InnerProduct:
		return "ip_ops"
	}
	return "cosine_ops"
}

// Method is an approximate index method.
type Method string

// Index methods.
const (
	HNSW    Method = "hnsw"
	IVFFlat Method = "ivfflat"
)

// Index describes an ANN index on a table's embedding column. Zero
// parameters mean pgvector's defaults: M 16, EfConstruction 64, Lists 100.
type Index struct {
	Method Method
	Metric Metric
	// M is the HNSW maximum number of connections per layer (2..100).
	M int
	// EfConstruction is the HNSW build candidate list size (4..1000, ≥ 2·M).
	EfConstruction int
	// Lists is the number of IVFFlat lists (1..32768). Build IVFFlat after
	// loading: its centroids come from the rows present at build time.
	Lists int
	// MaintenanceWorkMem, if set (e.g. "256MB"), is used for the build.
	MaintenanceWorkMem string
	// ParallelWorkers, if positive, sets max_parallel_maintenance_workers
	// for the build; zero leaves the server's setting (2 by default).
	ParallelWorkers int
	// Binary indexes binary_quantize(embedding)::bit(Dims), one bit per
	// dimension (its sign), with bit_hamming_ops instead of the
	// embedding: an index of Dims/8 bytes per row, searched by Hamming
	// distance for candidates that Query.Rerank re-ranks by Metric on the
	// full embedding. Metric is then only the re-rank's.
	Binary bool
}

// Index dimension limits of pgvector 0.8 (HNSW and IVFFlat alike).
const (
	MaxIndexDimsVector  = 2000
	MaxIndexDimsHalfVec = 4000
	MaxIndexDimsBit     = 64000
)

// Parameter ranges of pgvector 0.8 indexes and searches, and the defaults
// a zero Index parameter stands for.
const (
	// HNSW m: MinM..MaxM, default DefaultM.
	MinM     = 2
	MaxM     = 100
	DefaultM = 16
	// HNSW ef_construction: MinEfConstruction..MaxEfConstruction and at
	// least 2·m, default DefaultEfConstruction.
	MinEfConstruction     = 4
	MaxEfConstruction     = 1000
	DefaultEfConstruction = 64
	// hnsw.ef_search: 1..MaxEfSearch (the server's default is 40).
	MaxEfSearch = 1000
	// IVFFlat lists: 1..MaxLists, default DefaultLists; ivfflat.probes:
	// 1..MaxProbes (probes beyond an index's lists probe them all).
	MaxLists     = 32768
	DefaultLists = 100
	MaxProbes    = MaxLists
)

// MaxIndexDims is the most dimensions an index on a column of type vt can
// have: of the column itself, or of its binary quantization.
func MaxIndexDims(vt VectorType, binary bool) int {
	switch {
	case binary:
		return MaxIndexDimsBit
	case vt == HalfVec:
		return MaxIndexDimsHalfVec
	}
	return MaxIndexDimsVector
}

// IndexInfo reports a built index.
type IndexInfo struct {
	Name      string
	BuildTime time.Duration // wall time of CREATE INDEX
	SizeBytes int64         // pg_relation_size of the index
}

// IndexName is the name CreateIndex gives ix on t:
// "<table>_<method>_<metric>_idx", or "<table>_<method>_hamming_idx" for
// a Binary index (in the table's schema).
func (t Table) IndexName(ix Index) string {
	id := t.ident()
	op := string(ix.Metric)
	if ix.Binary {
		op = "hamming"
	}
	return fmt.Sprintf("%s_%s_%s_idx", id[len(id)-1], ix.Method, op)
}

// indexed is the indexed expression and operator class of ix on t.
func (t Table) indexed(ix Index) string {
	if ix.Binary {
		return fmt.Sprintf("(%s) bit_hamming_ops", t.bitExpr("embedding"))
	}
	return fmt.Sprintf("embedding %s_%s", t.vtype(), ix.Metric.opsSuffix())
}

// bitExpr is the binary quantization of expr, as a Binary index holds it.
func (t Table) bitExpr(expr string) string {
	return fmt.Sprintf("binary_quantize(%s)::bit(%d)", expr, t.Dims)
}

func (t Table) indexIdent(ix Index) pgx.Identifier {
	id := t.ident()
	out := append(pgx.Identifier{}, id[:len(id)-1]...)
	return append(out, t.IndexName(ix))
}

func (ix Index) with() (string, error) {
	if _, err := ix.Metric.operator(); err != nil {
		return "", fmt.Errorf("index: %w", ErrBadIndex)
	}
	switch ix.Method {
	case HNSW:
		if ix.Lists != 0 {
			return "", fmt.Errorf("hnsw index takes no lists: %w", ErrBadIndex)
		}
		m, ef := ix.M, ix.EfConstruction
		if m == 0 {
			m = DefaultM
		}
		if ef == 0 {
			ef = DefaultEfConstruction
		}
		if m < MinM || m > MaxM || ef < MinEfConstruction || ef > MaxEfConstruction || ef < 2*m {
			return "", fmt.Errorf("hnsw m %d ef_construction %d: %w", m, ef, ErrBadIndex)
		}
		return fmt.Sprintf("(m = %d, ef_construction = %d)", m, ef), nil
	case IVFFlat:
		if ix.M != 0 || ix.EfConstruction != 0 {
			return "", fmt.Errorf("ivfflat index takes no m or ef_construction: %w", ErrBadIndex)
		}
		lists := ix.Lists
		if lists == 0 {
			lists = DefaultLists
		}
		if lists < 1 || lists > MaxLists {
			return "", fmt.Errorf("ivfflat lists %d: %w", lists, ErrBadIndex)
		}
		return fmt.Sprintf("(lists = %d)", lists), nil
	}
	return "", fmt.Errorf("index method %q: %w", ix.Method, ErrBadIndex)
}

// CreateIndex builds ix on t's embedding column in one transaction and
// reports its build time and size. It fails if the index exists.
func CreateIndex(ctx context.Context, db DB, t Table, ix Index) (IndexInfo, error) {
	if err := t.validate(); err != nil {
		return IndexInfo{}, err
	}
	with, err := ix.with()
	if err != nil {
		return IndexInfo{}, err
	}
	info := IndexInfo{Name: t.IndexName(ix)}
	if n := MaxIndexDims(t.vtype(), ix.Binary); t.Dims > n {
		return IndexInfo{}, fmt.Errorf("index on %s: %d dims, at most %d: %w", t.Name, t.Dims, n, ErrBadIndex)
	}
	sql := fmt.Sprintf("CREATE INDEX %s ON %s USING %s (%s) WITH %s",
		pgx.Identifier{info.Name}.Sanitize(), t.ident().Sanitize(), ix.Method, t.indexed(ix), with)
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if ix.MaintenanceWorkMem != "" {
			if _, err := tx.Exec(ctx, "SELECT set_config('maintenance_work_mem', $1, true)", ix.MaintenanceWorkMem); err != nil {
				return err
			}
		}
		if ix.ParallelWorkers > 0 {
			if _, err := tx.Exec(ctx, "SELECT set_config('max_parallel_maintenance_workers', $1, true)", strconv.Itoa(ix.ParallelWorkers)); err != nil {
				return err
			}
		}
		start := time.Now()
		if _, err := tx.Exec(ctx, sql); err != nil {
			return err
		}
		info.BuildTime = time.Since(start)
		return tx.QueryRow(ctx, "SELECT pg_relation_size($1::regclass)", t.indexIdent(ix).Sanitize()).Scan(&info.SizeBytes)
	})
	if err != nil {
		return IndexInfo{}, fmt.Errorf("create index %s: %w", info.Name, err)
	}
	return info, nil
}

// DropIndex drops ix on t if it exists.
func DropIndex(ctx context.Context, db DB, t Table, ix Index) error {
	if err := t.validate(); err != nil {
		return err
	}
	if _, err := ix.with(); err != nil {
		return err
	}
	if _, err := db.Exec(ctx, "DROP INDEX IF EXISTS "+t.indexIdent(ix).Sanitize()); err != nil {
		return fmt.Errorf("drop index %s: %w", t.IndexName(ix), err)
	}
	return nil
}

// IterativeScan is pgvector 0.8's iterative index scan mode.
type IterativeScan string

// Iterative scan modes; the empty value leaves the server setting (off).
const (
	ScanOff     IterativeScan = "off"
	ScanStrict  IterativeScan = "strict_order"  // HNSW only
	ScanRelaxed IterativeScan = "relaxed_order" // HNSW and IVFFlat
)

// settings are the SET LOCAL statements for a query.
func (q Query) settings() ([]string, error) {
	var out []string
	if q.Exact {
		if q.EfSearch != 0 || q.Probes != 0 || q.IterativeScan != "" || q.ForceIndex || q.Rerank != 0 {
			return nil, fmt.Errorf("exact search takes no index settings: %w", ErrBadQuery)
		}
		if q.IDs != nil {
			// Rows by id: the primary key's bitmap scan (an ANN index
			// has none, so it cannot order the rows).
			return []string{"SET LOCAL enable_indexscan = off"}, nil
		}
		return []string{"SET LOCAL enable_indexscan = off", "SET LOCAL enable_bitmapscan = off"}, nil
	}
	if q.EfSearch != 0 {
		if q.EfSearch < 1 || q.EfSearch > MaxEfSearch {
			return nil, fmt.Errorf("ef_search %d not in 1..%d: %w", q.EfSearch, MaxEfSearch, ErrBadQuery)
		}
		out = append(out, "SET LOCAL hnsw.ef_search = "+strconv.Itoa(q.EfSearch))
	}
	if q.Probes != 0 {
		if q.Probes < 1 || q.Probes > MaxProbes {
			return nil, fmt.Errorf("probes %d not in 1..%d: %w", q.Probes, MaxProbes, ErrBadQuery)
		}
		out = append(out, "SET LOCAL ivfflat.probes = "+strconv.Itoa(q.Probes))
	}
	if q.ForceIndex {
		out = append(out, "SET LOCAL enable_seqscan = off")
	}
	switch q.IterativeScan {
	case "":
	case ScanOff, ScanRelaxed:
		out = append(out, "SET LOCAL hnsw.iterative_scan = "+string(q.IterativeScan),
			"SET LOCAL ivfflat.iterative_scan = "+string(q.IterativeScan))
	case ScanStrict:
		out = append(out, "SET LOCAL hnsw.iterative_scan = strict_order")
	default:
		return nil, fmt.Errorf("iterative scan %q: %w", q.IterativeScan, ErrBadQuery)
	}
	return out, nil
}
