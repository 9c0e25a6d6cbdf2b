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

// Changed maps the relation's segment files to their differing blocks.
func (b *storeBlocks) Changed(relpath string, nblocks uint64) ([][2]uint64, bool, error) {
	var out [][2]uint64
	for seg := uint64(0); seg == 0 || seg*relSegBlocks < nblocks; seg++ {
		p := relpath
		if seg > 0 {
			p = fmt.Sprintf("%s.%d", relpath, seg)
		}
		rs, ok, err := b.s.cfg.Store.DiffBlocks(b.vb, b.vs, p, merge.SameHeapPage)
		if err != nil || !ok {
			return nil, false, err
		}
		for _, r := range rs {
			out = append(out, [2]uint64{seg*relSegBlocks + r.Start, seg*relSegBlocks + min(r.End, relSegBlocks)})
		}
	}
	return out, true, nil
}

func (b *storeBlocks) close() {
	for _, v := range []*storage.View{b.vb, b.vs} {
		if v != nil {
			v.Close()
		}
	}
}
