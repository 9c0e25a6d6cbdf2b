package experiments

import (
	"context"
	"fmt"

	"github.com/offshootdb/offshoot/experiments/merge"
	"github.com/offshootdb/offshoot/storage"
)

// relSegBlocks is Postgres's RELSEG_SIZE: the blocks of one 1 GiB
// segment file of a relation (base/<db>/<relfilenode>, then .1, .2, ...).
const relSegBlocks = 131072

// storeBlocks is merge.Blocks over the store the base and the source
// branches are forks in: after a checkpoint on both, storage's block
// versions say which heap blocks either wrote since their shared state.
type storeBlocks struct {
	s                     *Service
	project, base, source string
	vb, vs                *storage.View
}

// Prepare checkpoints the base and the source, so that every page their
// merge snapshots read is in the store, then fixes a view of each.
func (b *storeBlocks) Prepare(ctx context.Context) error {
	for _, br := range []string{b.base, b.source} {
		c, release, err := b.s.connect(ctx, b.project, br, Superuser)
		if err != nil {
			return err
		}
		_, err = c.Exec(ctx, "CHECKPOINT")
		release()
		if err != nil {
			return fmt.Errorf("checkpoint %s: %w", br, err)
		}
	}
	st := b.s.cfg.Store
	var err error
	if b.vb, err = st.OpenView(b.project, b.base, storage.AtHead()); err != nil {
		return storeErr(err)
	}
	if b.vs, err = st.OpenView(b.project, b.source, storage.AtHead()); err != nil {
		return storeErr(err)
	}
	return nil
}

// Changed maps the relation's segment files to the blocks and tuples
// in which they differ (merge.HeapChanges).
func (b *storeBlocks) Changed(relpath string, nblocks uint64) (merge.Region, bool, error) {
	var reg merge.Region
	for seg := uint64(0); seg == 0 || seg*relSegBlocks < nblocks; seg++ {
		p := relpath
		if seg > 0 {
			p = fmt.Sprintf("%s.%d", relpath, seg)
		}
		first := seg * relSegBlocks
		_, ok, err := b.s.cfg.Store.DiffBlocks(b.vb, b.vs, p, func(blk uint64, x, y []byte) bool {
			offs, whole := merge.HeapChanges(x, y)
			switch {
			case whole:
				if n := len(reg.Blocks); n > 0 && reg.Blocks[n-1][1] == first+blk {
					reg.Blocks[n-1][1]++
				} else {
					reg.Blocks = append(reg.Blocks, [2]uint64{first + blk, first + blk + 1})
				}
			case len(offs) > 0:
				for _, o := range offs {
					reg.Tuples = append(reg.Tuples, [2]uint64{first + blk, uint64(o)})
				}
			}
			return whole || len(offs) > 0
		})
		if err != nil || !ok {
			return merge.Region{}, false, err
		}
	}
	return reg, true, nil
}

func (b *storeBlocks) close() {
	for _, v := range []*storage.View{b.vb, b.vs} {
		if v != nil {
			v.Close()
		}
	}
}
