package storage

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/cockroachdb/pebble/v2"

	"github.com/offshootdb/offshoot/storage/internal/enc"
)

// BlockRange is the half-open range [Start, End) of a file's blocks.
type BlockRange struct{ Start, End uint64 }

// DiffBlocks returns the blocks of the file at path (slash-separated,
// relative to the branch's root) whose bytes differ between views a and
// b of the same project, and the blocks past the shorter end where the
// sizes differ. The candidates are the blocks either side wrote since the
// state the two share (and what a truncation cut); each is read on both
// sides. The cost follows the block versions written since the shared
// state, not the file's size.
//
// ok is false when the path does not name the same file in both views
// (missing in one, or created anew on one side): the views cannot be
// compared by blocks, and the caller compares contents instead.
//
// differ decides, for each candidate block whose bytes differ, whether it
// differs for the caller (a Postgres heap page whose only change is hint
// bits does not, say), and may note what differs in it; x or y is nil
// for a block past that side's end. nil counts every byte difference.
func (s *Store) DiffBlocks(a, b *View, path string, differ func(blk uint64, x, y []byte) bool) (ranges []BlockRange, ok bool, err error) {
	if err := a.check(); err != nil {
		return nil, false, err
	}
	if err := b.check(); err != nil {
		return nil, false, err
	}
	fa, errA := walkPath(&a.reader, path)
	fb, errB := walkPath(&b.reader, path)
	for _, e := range []error{errA, errB} {
		if e != nil && !errors.Is(e, ErrNotExist) {
			return nil, false, fmt.Errorf("diff blocks %s: %w", path, e)
		}
	}
	if errA != nil || errB != nil || fa.Ino != fb.Ino || fa.IsDir() || fb.IsDir() {
		return nil, false, nil
	}
	ino := fa.Ino
	attrA, err := a.attr(nil, ino)
	if err != nil {
		return nil, false, err
	}
	attrB, err := b.attr(nil, ino)
	if err != nil {
		return nil, false, err
	}
	// Where the chains part, and the seq range each side read past it.
	seqB := map[uint64]uint64{}
	for _, l := range b.chain {
		seqB[l.tl] = l.seq
	}
	seqA := map[uint64]uint64{}
	for _, l := range a.chain {
		seqA[l.tl] = l.seq
	}
	type span struct{ tl, lo, hi uint64 } // versions with lo < seq <= hi
	var spans []span
	shared := uint64(0) // the seq of the shared state, on the first shared timeline
	for _, l := range a.chain {
		if sb, in := seqB[l.tl]; in {
			lo, hi := min(l.seq, sb), max(l.seq, sb)
			if lo < hi {
				spans = append(spans, span{l.tl, lo, hi})
			}
			shared = lo
			break
		}
		spans = append(spans, span{l.tl, 0, l.seq})
	}
	for _, l := range b.chain {
		if _, in := seqA[l.tl]; in {
			break
		}
		spans = append(spans, span{l.tl, 0, l.seq})
	}
	var blks []uint64
	it, err := s.db.NewIter(&pebble.IterOptions{})
	if err != nil {
		return nil, false, err
	}
	defer it.Close()
	var lower, upper []byte
	for _, sp := range spans {
		lower = enc.BlockPrefix(lower, sp.tl, ino)
		upper = enc.BlockPrefix(upper, sp.tl, ino+1)
		for valid := it.SeekGE(lower); valid && string(it.Key()) < string(upper); valid = it.Next() {
			_, _, blk, seq, err := enc.DecodeBlockKey(it.Key())
			if err != nil {
				return nil, false, fmt.Errorf("%w: %w", ErrCorrupt, err)
			}
			if seq > sp.lo && seq <= sp.hi {
				blks = append(blks, blk)
			}
		}
		if err := it.Error(); err != nil {
			return nil, false, err
		}
	}
	// Blocks a truncation on either side since the shared state cut, and
	// the tail of the longer file.
	end := (max(attrA.Size, attrB.Size) + BlockSize - 1) / BlockSize
	from := min(attrA.Size, attrB.Size) / BlockSize
	for _, at := range []*enc.Attr{attrA, attrB} {
		for _, t := range at.Truncs {
			if t.Seq > shared {
				from = min(from, t.Blk)
			}
		}
	}
	for blk := from; blk < end; blk++ {
		blks = append(blks, blk)
	}
	// A block both sides wrote the same bytes to (the same WAL replayed by
	// each fork's recovery, say) does not differ.
	candidates := toRanges(blks)
	blks = blks[:0]
	ba, bb := make([]byte, BlockSize), make([]byte, BlockSize)
	for _, r := range candidates {
		for blk := r.Start; blk < r.End; blk++ {
			off := int64(blk * BlockSize)
			x, y := ba, bb
			if blk*BlockSize+BlockSize > attrA.Size {
				x = nil
			} else if _, err := a.readAt(ino, ba, off); err != nil {
				return nil, false, err
			}
			if blk*BlockSize+BlockSize > attrB.Size {
				y = nil
			} else if _, err := b.readAt(ino, bb, off); err != nil {
				return nil, false, err
			}
			switch {
			case x != nil && y != nil && bytes.Equal(x, y):
			case differ != nil:
				if differ(blk, x, y) {
					blks = append(blks, blk)
				}
			default:
				blks = append(blks, blk)
			}
		}
	}
	return toRanges(blks), true, nil
}

// toRanges sorts blks and folds them into ranges.
func toRanges(blks []uint64) []BlockRange {
	sort.Slice(blks, func(i, j int) bool { return blks[i] < blks[j] })
	var out []BlockRange
	for _, b := range blks {
		if n := len(out); n > 0 && b <= out[n-1].End {
			out[n-1].End = max(out[n-1].End, b+1)
			continue
		}
		out = append(out, BlockRange{b, b + 1})
	}
	return out
}

// walkPath looks up a slash-separated path from the root.
func walkPath(r *reader, path string) (Attr, error) {
	a, err := r.getAttr(RootIno)
	if err != nil {
		return Attr{}, err
	}
	for _, name := range strings.Split(strings.Trim(path, "/"), "/") {
		if name == "" {
			continue
		}
		if a, err = r.lookup(a.Ino, name); err != nil {
			return Attr{}, err
		}
	}
	return a, nil
}
