package merge

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// A branch's heap pages reach storage only when Postgres writes them:
// at a checkpoint, or when the background writer or a backend evicts
// them. Every change to a heap page since the branch's last completed
// checkpoint is in its WAL, though, so storage's blocks as of that
// checkpoint and the WAL after its redo point together say where the
// branch changed, without a checkpoint that would write the dirty pages
// (and without the full-page images Postgres logs, on a checksummed
// cluster, for the first hint bit set on each page after a checkpoint).
//
// WALChanges reads that WAL as pg_waldump prints it (PostgreSQL 15's
// format, one record per line) and returns, per relation file, the heap
// tuples and blocks its records changed.

// RelFile names a relation's file as WAL block references do: tablespace,
// database and relfilenode (pg_relation_filepath's numbers).
type RelFile struct{ Spc, DB, Rel uint32 }

// Default tablespace OIDs: pg_default (base/<db>/<rel>) and pg_global
// (global/<rel>).
const (
	spcDefault = 1663
	spcGlobal  = 1664
)

// ParseRelPath returns the RelFile of a path pg_relation_filepath gives
// (base/D/R, global/R or pg_tblspc/S/<version>/D/R).
func ParseRelPath(p string) (RelFile, error) {
	parts := strings.Split(p, "/")
	num := func(s string) (uint32, error) {
		n, err := strconv.ParseUint(s, 10, 32)
		return uint32(n), err
	}
	var f RelFile
	var err1, err2, err3 error
	switch {
	case len(parts) == 3 && parts[0] == "base":
		f.Spc = spcDefault
		f.DB, err1 = num(parts[1])
		f.Rel, err2 = num(parts[2])
	case len(parts) == 2 && parts[0] == "global":
		f.Spc = spcGlobal
		f.Rel, err1 = num(parts[1])
	case len(parts) == 5 && parts[0] == "pg_tblspc":
		f.Spc, err1 = num(parts[1])
		f.DB, err2 = num(parts[3])
		f.Rel, err3 = num(parts[4])
	default:
		return RelFile{}, fmt.Errorf("relation path %q: not a main relation file", p)
	}
	if err1 != nil || err2 != nil || err3 != nil {
		return RelFile{}, fmt.Errorf("relation path %q: not a main relation file", p)
	}
	return f, nil
}

// WALChanges reads pg_waldump's output and returns the changes its
// records made to the main fork of every relation file: single tuples
// where a heap record names the line pointer it inserted, deleted or
// updated (both versions of an update), whole blocks for every other
// record that changes a page's tuples (multi-inserts, a page initialized
// by its first insert, full-page images that are not just hint bits, any
// record it does not know). Records that cannot change what a snapshot
// reads in a tuple (row locks, pruning, vacuuming, freezing, the
// visibility map, hint bits) are skipped. The regions are normalized.
func WALChanges(r io.Reader) (map[RelFile]Region, error) {
	out := map[RelFile]Region{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20) // commit records list their invalidations
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "rmgr: ") {
			continue
		}
		rmgr, rest, _ := strings.Cut(strings.TrimPrefix(line, "rmgr: "), " ")
		_, desc, ok := strings.Cut(rest, "desc: ")
		if !ok {
			return nil, fmt.Errorf("pg_waldump: no description in %q", line)
		}
		desc, refs, _ := strings.Cut(desc, ", blkref #")
		if refs == "" {
			continue // changes no page
		}
		blks, err := parseBlockRefs(refs)
		if err != nil {
			return nil, fmt.Errorf("pg_waldump: %w in %q", err, line)
		}
		recordChanges(out, rmgr, strings.TrimSpace(desc), blks)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for f, reg := range out {
		out[f] = reg.normalized()
	}
	return out, nil
}

// blockRef is one block reference of a record: its id (#0, #1, ...),
// file and block; main is false for the other forks (fsm, vm, init).
type blockRef struct {
	id   int
	file RelFile
	blk  uint64
	main bool
}

// parseBlockRefs parses what follows a record's first ", blkref #":
// "0: rel 1663/5/16384 blk 9 FPW, blkref #1: rel 1663/5/16384 fork vm blk 0".
func parseBlockRefs(s string) ([]blockRef, error) {
	var out []blockRef
	for _, part := range strings.Split(s, ", blkref #") {
		f := strings.Fields(part)
		// "0:", "rel", "S/D/R", ["fork", name,] "blk", N, [FPW...]
		if len(f) < 5 || f[1] != "rel" {
			return nil, fmt.Errorf("block reference %q", part)
		}
		var b blockRef
		id, err := strconv.Atoi(strings.TrimSuffix(f[0], ":"))
		if err != nil {
			return nil, fmt.Errorf("block reference %q", part)
		}
		b.id = id
		if _, err := fmt.Sscanf(f[2], "%d/%d/%d", &b.file.Spc, &b.file.DB, &b.file.Rel); err != nil {
			return nil, fmt.Errorf("block reference %q", part)
		}
		i := 3
		b.main = f[3] != "fork"
		if !b.main {
			i = 5
		}
		if len(f) < i+2 || f[i] != "blk" {
			return nil, fmt.Errorf("block reference %q", part)
		}
		if b.blk, err = strconv.ParseUint(f[i+1], 10, 32); err != nil {
			return nil, fmt.Errorf("block reference %q", part)
		}
		out = append(out, b)
	}
	return out, nil
}

// skipRecords are the records that change no tuple a snapshot reads:
// row locks and speculative-insert confirmations (the insert is logged
// itself), pruning, vacuuming, freezing, the visibility map, logical
// decoding's catalog bookkeeping, and full-page images taken for a hint
// bit.
var skipRecords = map[string]bool{
	"Heap LOCK": true, "Heap CONFIRM": true,
	"Heap2 PRUNE": true, "Heap2 VACUUM": true, "Heap2 FREEZE_PAGE": true, "Heap2 VISIBLE": true,
	"Heap2 LOCK_UPDATED": true, "Heap2 NEW_CID": true, "Heap2 REWRITE": true,
	"XLOG FPI_FOR_HINT": true,
}

// recordChanges adds one record's changes to out.
func recordChanges(out map[RelFile]Region, rmgr, desc string, blks []blockRef) {
	op, args, _ := strings.Cut(desc, " ")
	op, init := strings.CutSuffix(op, "+INIT")
	if skipRecords[rmgr+" "+op] {
		return
	}
	ref := func(id int) (blockRef, bool) {
		for _, b := range blks {
			if b.id == id && b.main {
				return b, true
			}
		}
		return blockRef{}, false
	}
	whole := func(b blockRef) {
		reg := out[b.file]
		reg.Blocks = append(reg.Blocks, [2]uint64{b.blk, b.blk + 1})
		out[b.file] = reg
	}
	tuple := func(b blockRef, off uint64) {
		reg := out[b.file]
		reg.Tuples = append(reg.Tuples, [2]uint64{b.blk, off})
		out[b.file] = reg
	}
	if rmgr == "Heap" {
		// INSERT off N ...; DELETE off N ...; [HOT_]UPDATE off N ... ;
		// new off M ... (block #0 the new version's, #1 the old one's
		// when it is another).
		b0, ok0 := ref(0)
		old, errOld := wordAfter(args, "off")
		switch op {
		case "INSERT", "DELETE":
			if !ok0 {
				return
			}
			if init || errOld != nil {
				whole(b0)
				return
			}
			tuple(b0, old)
			return
		case "UPDATE", "HOT_UPDATE":
			_, tail, _ := strings.Cut(args, ";")
			nw, errNew := wordAfter(tail, "new off")
			b1, ok1 := ref(1)
			if !ok1 {
				b1, ok1 = b0, ok0
			}
			if ok1 {
				if errOld != nil {
					whole(b1)
				} else {
					tuple(b1, old)
				}
			}
			if ok0 {
				if init || errNew != nil {
					whole(b0)
				} else {
					tuple(b0, nw)
				}
			}
			return
		}
	}
	for _, b := range blks {
		if b.main {
			whole(b)
		}
	}
}

// wordAfter returns the number following key in s ("off 38 xmax ...").
func wordAfter(s, key string) (uint64, error) {
	i := strings.Index(s, key+" ")
	if i < 0 {
		return 0, fmt.Errorf("no %q in %q", key, s)
	}
	f := strings.Fields(s[i+len(key)+1:])
	if len(f) == 0 {
		return 0, fmt.Errorf("no %q in %q", key, s)
	}
	return strconv.ParseUint(f[0], 10, 16)
}

// Union returns the region of r and o together, normalized.
func (r Region) Union(o Region) Region {
	return Region{
		Blocks: append(append([][2]uint64(nil), r.Blocks...), o.Blocks...),
		Tuples: append(append([][2]uint64(nil), r.Tuples...), o.Tuples...),
	}.normalized()
}

// normalized sorts a region's block ranges and joins those that overlap
// or touch, and sorts its tuples, dropping repeats and those inside a
// block range: every tuple is then read once.
func (r Region) normalized() Region {
	sort.Slice(r.Blocks, func(i, j int) bool { return r.Blocks[i][0] < r.Blocks[j][0] })
	var bs [][2]uint64
	for _, b := range r.Blocks {
		if n := len(bs); n > 0 && b[0] <= bs[n-1][1] {
			bs[n-1][1] = max(bs[n-1][1], b[1])
			continue
		}
		bs = append(bs, b)
	}
	sort.Slice(r.Tuples, func(i, j int) bool {
		a, b := r.Tuples[i], r.Tuples[j]
		return a[0] < b[0] || a[0] == b[0] && a[1] < b[1]
	})
	var ts [][2]uint64
	k := 0
	for _, t := range r.Tuples {
		if n := len(ts); n > 0 && ts[n-1] == t {
			continue
		}
		for k < len(bs) && bs[k][1] <= t[0] {
			k++
		}
		if k < len(bs) && bs[k][0] <= t[0] {
			continue
		}
		ts = append(ts, t)
	}
	return Region{Blocks: bs, Tuples: ts}
}
