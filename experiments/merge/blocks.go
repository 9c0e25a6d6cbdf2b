package merge

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/experiments/internal/pgcat"
)

// Blocks tells the row merge where the base and the source can differ,
// from the storage both are forks of, so that a table the source did not
// write is skipped and a table it changed a little is compared only in
// the heap blocks it wrote: the cost of a merge follows the change, not
// the size of the database.
type Blocks interface {
	// Prepare runs once Run holds its snapshots of the base and the
	// source and before any Changed: storage must then hold every page
	// those snapshots read, or Changed know from elsewhere where the
	// source changed the pages storage does not hold (its WAL since its
	// last checkpoint; see WALChanges).
	Prepare(ctx context.Context) error
	// Changed returns the part of the relation whose files are at
	// relpath (pg_relation_filepath, all segments of a relation of
	// nblocks blocks) in which the base and the source may differ; ok
	// false when storage cannot tell.
	Changed(relpath string, nblocks uint64) (r Region, ok bool, err error)
}

// Region is where a table's heap may differ between the base and the
// source: whole blocks, and single tuples of blocks both sides have.
type Region struct {
	// Blocks are ranges [start, end) of heap blocks.
	Blocks [][2]uint64
	// Tuples are (block, offset) addresses of line pointers.
	Tuples [][2]uint64
}

// Empty reports whether the region holds nothing.
func (r Region) Empty() bool { return len(r.Blocks) == 0 && len(r.Tuples) == 0 }

// maxRanges bounds the block ranges of one table: ranges closer than a
// growing gap are read as one.
const maxRanges = 65536

// changedRegion returns the part of table n's heap in which the base
// and the source may differ, ok false when it must be compared whole (no
// Blocks, its file was rewritten on a side, storage cannot tell).
func (r *run) changedRegion(ctx context.Context, bt, st pgcat.Table) (reg Region, ok bool, err error) {
	if r.Blocks == nil {
		return Region{}, false, nil
	}
	if !r.prepared {
		t0 := time.Now()
		if err := r.Blocks.Prepare(ctx); err != nil {
			return Region{}, false, fmt.Errorf("prepare block comparison: %w", err)
		}
		r.prepared = true
		r.res.Timings.Prepare = ms(time.Since(t0))
	}
	pb, nb, err := relFile(ctx, r.Base, bt)
	if err != nil {
		return Region{}, false, err
	}
	ps, ns, err := relFile(ctx, r.Source, st)
	if err != nil || pb == "" || pb != ps {
		return Region{}, false, err
	}
	t0 := time.Now()
	reg, ok, err = r.Blocks.Changed(pb, max(nb, ns))
	r.res.Timings.Compare += ms(time.Since(t0))
	if err != nil || !ok {
		return Region{}, false, err
	}
	reg.Blocks = coalesce(reg.Blocks, maxRanges)
	return reg, true, nil
}

// relFile returns the path of a table's main file and its size in blocks.
func relFile(ctx context.Context, c *pgx.Conn, t pgcat.Table) (string, uint64, error) {
	var path *string
	var size int64
	err := c.QueryRow(ctx, "SELECT pg_relation_filepath(c.oid), pg_relation_size(c.oid) / current_setting('block_size')::int FROM pg_class c WHERE c.oid = $1::regclass",
		t.Ident).Scan(&path, &size)
	if err != nil || path == nil {
		return "", 0, err
	}
	return *path, uint64(size), nil
}

// coalesce joins ranges separated by the smallest gaps until at most n
// remain.
func coalesce(rs [][2]uint64, n int) [][2]uint64 {
	for gap := uint64(1); len(rs) > n; gap *= 2 {
		out := rs[:1]
		for _, r := range rs[1:] {
			if last := &out[len(out)-1]; r[0]-last[1] < gap {
				last[1] = r[1]
				continue
			}
			out = append(out, r)
		}
		rs = out
	}
	return rs
}
