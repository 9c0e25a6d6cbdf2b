package vectors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Build sizing. pgvector builds an HNSW graph fastest when it fits in
// maintenance_work_mem; otherwise it writes the graph out and inserts the
// remaining tuples one by one, several times slower.
const (
	// ServerMaintenanceWorkMem is Postgres' default maintenance_work_mem,
	// the floor of a sized build.
	ServerMaintenanceWorkMem = 64 << 20
	// maxBuildWorkers caps parallel maintenance workers below Postgres'
	// default max_worker_processes (8).
	maxBuildWorkers = 7
	// defaultBuildWorkers is Postgres' default
	// max_parallel_maintenance_workers, the floor: on small machines
	// fewer workers than the default measured no faster (see
	// docs/benchmarks.md, bench-scale).
	defaultBuildWorkers = 2
	// hnswElementOverhead is the per-element memory of pgvector's HNSW
	// build besides the vector and the layer-0 neighbour list: element
	// header, heap TIDs, upper-layer neighbours (amortised) and palloc
	// chunk headers.
	hnswElementOverhead = 160
)

// BuildPlan is how an index build is sized (SizeBuild).
type BuildPlan struct {
	// EstimatedBytes is the estimated memory the build wants: for HNSW
	// the graph, for IVFFlat the k-means sample and centroids.
	EstimatedBytes int64 `json:"estimated_bytes"`
	// MaintenanceWorkMem is the chosen maintenance_work_mem in bytes:
	// EstimatedBytes plus 10%, at least ServerMaintenanceWorkMem, at
	// most the budget.
	MaintenanceWorkMem int64 `json:"maintenance_work_mem_bytes"`
	// ParallelWorkers is the chosen max_parallel_maintenance_workers.
	ParallelWorkers int `json:"parallel_workers"`
	// Fits is false when the estimate exceeds the budget (the build
	// will spill).
	Fits bool `json:"fits"`
}

// SizeBuild sizes the build of ix over rows rows of t within budget bytes
// of memory on a machine with cores cores: maintenance_work_mem from the
// estimated graph size rows × (vector bytes, Dims/8 for a Binary index,
// + 2·M neighbours × 16 bytes + overhead) for HNSW, or the k-means sample (50 vectors per list, at most
// the rows) for IVFFlat; parallel workers one per core besides the
// leader, at least Postgres' default 2 and at most 7. A budget below the
// server default is raised to it.
func SizeBuild(t Table, ix Index, rows int64, budget int64, cores int) BuildPlan {
	vec := int64(t.Dims) * 4
	switch {
	case ix.Binary:
		vec = (int64(t.Dims) + 7) / 8
	case t.vtype() == HalfVec:
		vec = int64(t.Dims) * 2
	}
	var est int64
	switch ix.Method {
	case IVFFlat:
		lists := int64(ix.Lists)
		if lists <= 0 {
			lists = 100
		}
		est = (min(lists*50, rows) + lists) * (vec + 8)
	default:
		m := int64(ix.M)
		if m <= 0 {
			m = 16
		}
		est = rows * (vec + 8 + 2*m*16 + hnswElementOverhead)
	}
	p := BuildPlan{EstimatedBytes: est, ParallelWorkers: min(max(cores-1, defaultBuildWorkers), maxBuildWorkers)}
	budget = max(budget, ServerMaintenanceWorkMem)
	want := est + est/10
	p.Fits = want <= budget
	p.MaintenanceWorkMem = min(max(want, ServerMaintenanceWorkMem), budget)
	// Postgres takes whole kB.
	p.MaintenanceWorkMem = (p.MaintenanceWorkMem + 1023) / 1024 * 1024
	return p
}

// Setting is the maintenance_work_mem value of p for Index.MaintenanceWorkMem.
func (p BuildPlan) Setting() string { return fmt.Sprintf("%dkB", p.MaintenanceWorkMem/1024) }

// BuildProgress is one reading of pg_stat_progress_create_index for a
// build: its phase name as Postgres reports it, and the heap blocks and
// tuples done out of the totals (zero when the phase does not count
// them).
type BuildProgress struct {
	Phase       string
	BlocksDone  int64
	BlocksTotal int64
	TuplesDone  int64
	TuplesTotal int64
}

// WatchBuild reads the progress of index builds on t every interval
// until ctx is done, calling fn with each reading while a build is in
// progress. db must be another connection than the building one, of the
// same role (other roles see the view's counters as NULL). Read errors
// end the watch quietly: progress is advisory.
func WatchBuild(ctx context.Context, db DB, t Table, every time.Duration, fn func(BuildProgress)) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var p BuildProgress
		err := db.QueryRow(ctx, `SELECT phase, coalesce(blocks_done, 0), coalesce(blocks_total, 0),
			coalesce(tuples_done, 0), coalesce(tuples_total, 0)
			FROM pg_stat_progress_create_index WHERE relid = to_regclass($1) LIMIT 1`, t.ident().Sanitize()).
			Scan(&p.Phase, &p.BlocksDone, &p.BlocksTotal, &p.TuplesDone, &p.TuplesTotal)
		if errors.Is(err, pgx.ErrNoRows) {
			continue // not started yet, or done
		}
		if err != nil {
			return
		}
		fn(p)
	}
}
