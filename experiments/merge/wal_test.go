package merge

import (
	"fmt"
	"strings"
	"testing"
)

// walDump is pg_waldump's output (PostgreSQL 15) for a table
// 1663/5/16384 and its index 16389: a checkpoint, hint-bit images,
// pruning, HOT and non-HOT updates, an insert, a delete, multi-inserts
// (one initializing its page), vacuum and the visibility map.
const walDump = `rmgr: XLOG        len (rec/tot):    114/   114, tx:          0, lsn: 0/017C6B30, prev 0/017C6AF8, desc: CHECKPOINT_ONLINE redo 0/17C6AF8; tli 1; prev tli 1; fpw true; xid 0:726; oid 24576; multi 1; offset 0; oldest xid 716 in DB 1; oldest multi 1 in DB 1; oldest/newest commit timestamp xid: 0/0; oldest running xid 726; online
rmgr: XLOG        len (rec/tot):     49/  8205, tx:          0, lsn: 0/017C6BA8, prev 0/017C6B30, desc: FPI_FOR_HINT , blkref #0: rel 1663/5/16384 blk 0 FPW
rmgr: Heap2       len (rec/tot):     60/    60, tx:          0, lsn: 0/017C8BD0, prev 0/017C6BA8, desc: PRUNE latestRemovedXid 725 nredirected 0 ndead 3, blkref #0: rel 1663/5/16384 blk 0
rmgr: Heap        len (rec/tot):    105/   105, tx:        726, lsn: 0/017D9DC8, prev 0/017D8F10, desc: HOT_UPDATE off 38 xmax 726 flags 0x60 ; new off 50 xmax 0, blkref #0: rel 1663/5/16384 blk 9
rmgr: Heap        len (rec/tot):     79/    79, tx:        727, lsn: 0/017DA2B8, prev 0/017DA290, desc: UPDATE off 4 xmax 727 flags 0x00 ; new off 2 xmax 0, blkref #0: rel 1663/5/16384 blk 12, blkref #1: rel 1663/5/16384 blk 3
rmgr: Heap        len (rec/tot):     79/    79, tx:        727, lsn: 0/017DA308, prev 0/017DA2B8, desc: UPDATE+INIT off 5 xmax 727 flags 0x00 ; new off 1 xmax 0, blkref #0: rel 1663/5/16384 blk 13, blkref #1: rel 1663/5/16384 blk 3
rmgr: Btree       len (rec/tot):     64/    64, tx:        727, lsn: 0/017DA358, prev 0/017DA308, desc: INSERT_LEAF off 7, blkref #0: rel 1663/5/16389 blk 1
rmgr: XLOG        len (rec/tot):     49/  7509, tx:        727, lsn: 0/017DA398, prev 0/017DA358, desc: FPI_FOR_HINT , blkref #0: rel 1663/5/16389 blk 1 FPW
rmgr: Transaction len (rec/tot):     34/    34, tx:        727, lsn: 0/017DC070, prev 0/017DA398, desc: COMMIT 2026-12-05 19:52:28.578495 UTC
rmgr: Heap        len (rec/tot):     67/    67, tx:        728, lsn: 0/017DC098, prev 0/017DC070, desc: INSERT off 62 flags 0x00, blkref #0: rel 1663/5/16384 blk 9
rmgr: Heap        len (rec/tot):     54/    54, tx:        728, lsn: 0/017DC0E0, prev 0/017DC098, desc: DELETE off 7 flags 0x00 KEYS_UPDATED , blkref #0: rel 1663/5/16384 blk 1
rmgr: Heap        len (rec/tot):     54/    54, tx:        728, lsn: 0/017DC118, prev 0/017DC0E0, desc: LOCK off 8: xid 728: flags 0x00 LOCK_ONLY EXCL_LOCK , blkref #0: rel 1663/5/16384 blk 1
rmgr: Heap2       len (rec/tot):   1810/  1810, tx:        729, lsn: 0/017DC108, prev 0/017DC0E0, desc: MULTI_INSERT 80 tuples flags 0x00, blkref #0: rel 1663/5/16384 blk 9
rmgr: Heap2       len (rec/tot):    470/   470, tx:        729, lsn: 0/017DC820, prev 0/017DC108, desc: MULTI_INSERT+INIT 21 tuples flags 0x02, blkref #0: rel 1663/5/16384 blk 10
rmgr: Heap2       len (rec/tot):     64/  8256, tx:          0, lsn: 0/017DF948, prev 0/017DF8D8, desc: VISIBLE cutoff xid 729 flags 0x01, blkref #0: rel 1663/5/16384 fork vm blk 0 FPW, blkref #1: rel 1663/5/16384 blk 10
rmgr: XLOG        len (rec/tot):     49/  8241, tx:          0, lsn: 0/017E19A0, prev 0/017DF948, desc: FPI_FOR_HINT , blkref #0: rel 1663/5/16384 fork fsm blk 2 FPW
rmgr: Heap2       len (rec/tot):     54/    54, tx:          0, lsn: 0/017E5790, prev 0/017E5758, desc: VACUUM nunused 3, blkref #0: rel 1663/5/16384 blk 0
rmgr: XLOG        len (rec/tot):     49/  8205, tx:          0, lsn: 0/017E5800, prev 0/017E5790, desc: FPI , blkref #0: rel 1663/5/16384 blk 20 FPW
rmgr: Heap        len (rec/tot):     54/    54, tx:        730, lsn: 0/017E5900, prev 0/017E5800, desc: INSERT off 1 flags 0x00, blkref #0: rel 1663/5/24576 blk 0
`

func TestWALChanges(t *testing.T) {
	got, err := WALChanges(strings.NewReader(walDump))
	if err != nil {
		t.Fatal(err)
	}
	tbl, idx, other := RelFile{1663, 5, 16384}, RelFile{1663, 5, 16389}, RelFile{1663, 5, 24576}
	// Blocks 9 (a multi-insert), 10 (an initialized page), 13 (an update
	// initializing it) and 20 (a full-page image) whole; single tuples of
	// the updates' old and new versions, the delete; nothing for hint
	// bits, pruning, vacuum, the lock, the visibility map or the fsm.
	want := "{[[9 11] [13 14] [20 21]] [[1 7] [3 4] [3 5] [12 2]]}"
	if s := fmt.Sprint(got[tbl]); s != want {
		t.Errorf("table: %s, want %s", s, want)
	}
	if s := fmt.Sprint(got[idx]); s != "{[[1 2]] []}" {
		t.Errorf("index: %s, want block 1 whole", s)
	}
	if s := fmt.Sprint(got[other]); s != "{[] [[0 1]]}" {
		t.Errorf("other table: %s", s)
	}
	if _, err := WALChanges(strings.NewReader("rmgr: Heap  len: 1, desc: INSERT off 1, blkref #0: rel x blk 0\n")); err == nil {
		t.Error("a block reference without a relation parsed")
	}
}

func TestParseRelPath(t *testing.T) {
	for p, want := range map[string]RelFile{
		"base/5/16384": {1663, 5, 16384},
		"global/1262":  {1664, 0, 1262},
		"pg_tblspc/16390/PG_15_202209061/5/16391": {16390, 5, 16391},
	} {
		if got, err := ParseRelPath(p); err != nil || got != want {
			t.Errorf("%s: %v %v, want %v", p, got, err, want)
		}
	}
	for _, p := range []string{"base/5", "base/x/1", "pg_wal/000000010000000000000001"} {
		if _, err := ParseRelPath(p); err == nil {
			t.Errorf("%s parsed", p)
		}
	}
}

func TestRegionUnion(t *testing.T) {
	a := Region{Blocks: [][2]uint64{{10, 12}}, Tuples: [][2]uint64{{3, 1}, {11, 4}}}
	b := Region{Blocks: [][2]uint64{{12, 13}, {1, 2}}, Tuples: [][2]uint64{{3, 1}, {2, 7}, {20, 1}}}
	// Ranges that touch join, tuples inside a range or repeated go.
	if got := fmt.Sprint(a.Union(b)); got != "{[[1 2] [10 13]] [[2 7] [3 1] [20 1]]}" {
		t.Errorf("union: %s", got)
	}
}
