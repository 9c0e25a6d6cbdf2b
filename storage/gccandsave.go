package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"

	"github.com/offshootdb/offshoot/storage/internal/enc"
)

// GC candidates across a clean restart. Close, once no head, view or GC
// pass can change them, writes the candidates into the store
// (enc.KindGCCands records, synced with everything before them); Open
// reads them back and deletes them before anything runs, so the first
// pass after a clean restart is as incremental as any other. A store that
// was not closed (a crash) has none and starts with a full pass, as do
// stores whose candidates were incomplete at close (a full pass had not
// finished: Candidates.needFull). Parked candidates come back ripe: views
// do not survive a restart, and the snapshots and child branch points
// that still need a version park it again at the next pass.

// candChunkBytes bounds one saved chunk.
const candChunkBytes = 1 << 20

// Record types of a saved chunk.
const (
	candRecCand = 'c' // a candidate of a timeline
	candRecFull = 'f' // a timeline to visit whole
)

// save writes cs into db, replacing any saved set; nothing when cs is
// incomplete. The caller holds Store.mu with the store closed to every
// change (heads, views and passes are done).
func (cs *candidates) save(db *pebble.DB) error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.needFull {
		return nil
	}
	b := db.NewBatch()
	defer b.Close()
	_ = b.DeleteRange([]byte{enc.KindGCCands}, []byte{enc.KindGCCands + 1}, nil)
	var buf []byte
	chunks := uint64(0)
	flush := func(force bool) {
		if len(buf) == 0 || (!force && len(buf) < candChunkBytes) {
			return
		}
		chunks++
		_ = b.Set(enc.GCCandsKey(chunks), buf, nil) // Set copies
		buf = buf[:0]
	}
	for tl, t := range cs.tls {
		if t.full {
			buf = binary.BigEndian.AppendUint64(append(buf, candRecFull), tl)
		}
		put := func(k candKey, c *cand) {
			buf = appendCand(buf, tl, k, c)
			flush(false)
		}
		for k, c := range t.active {
			put(k, c)
		}
		for _, v := range t.named { // saved as what the write would have registered
			put(candKey{kind: enc.KindBlock, ino: v.ino, idx: v.blk / candBlocks},
				&cand{mask: 1 << (v.blk % candBlocks), blocksFrom: math.MaxUint64, tickDue: v.by, horizonDue: v.by})
		}
		for _, set := range t.pinned {
			for k, c := range set {
				ripe := *c
				ripe.tickDue, ripe.horizonDue = 0, 0
				put(k, &ripe)
			}
		}
	}
	flush(true)
	_ = b.Set(enc.GCCandsKey(0), enc.U64(chunks), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("save gc candidates: %w", err)
	}
	return nil
}

func appendCand(b []byte, tl uint64, k candKey, c *cand) []byte {
	b = append(b, candRecCand)
	for _, v := range []uint64{tl, uint64(k.kind), k.ino, k.idx, uint64(len(k.name))} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	b = append(b, k.name...)
	for _, v := range []uint64{c.mask, c.blocksFrom, c.tickDue, c.horizonDue} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return b
}

// errCandRecord reports a saved chunk that does not decode.
var errCandRecord = errors.New("gc candidates: bad record")

// load reads the candidates a clean close saved into cs, keeping those
// of the given timelines, and deletes them from db; without a complete
// saved set, cs stays as it is (needFull: the first pass is a full one).
func (cs *candidates) load(db *pebble.DB, timelines func(uint64) bool) error {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{enc.KindGCCands}, UpperBound: []byte{enc.KindGCCands + 1}})
	if err != nil {
		return err
	}
	loaded := &candidates{}
	want, chunks, header, seen := uint64(0), uint64(0), false, false
	for it.First(); it.Valid() && err == nil; it.Next() {
		seen = true
		var n uint64
		if _, n, err = enc.DecodeIDKey(it.Key()); err != nil {
			break
		}
		if n == 0 {
			want, err = enc.DecodeU64(it.Value())
			header = true
			continue
		}
		chunks++
		err = loaded.decodeChunk(it.Value(), timelines)
	}
	if err == nil {
		err = it.Error()
	}
	_ = it.Close()
	if !seen {
		return nil // nothing saved (a new store, or a crash): no write at start-up
	}
	// Deleted (and synced) before anything runs: candidates are only ever
	// complete in memory from here on, and a crash must find none.
	if derr := db.DeleteRange([]byte{enc.KindGCCands}, []byte{enc.KindGCCands + 1}, pebble.Sync); derr != nil {
		return fmt.Errorf("load gc candidates: %w", derr)
	}
	if err != nil || !header || chunks != want {
		return nil // a full pass rebuilds them
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.tls, cs.needFull = loaded.tls, false
	return nil
}

func (cs *candidates) decodeChunk(b []byte, timelines func(uint64) bool) error {
	u64 := func() (uint64, bool) {
		if len(b) < 8 {
			return 0, false
		}
		v := binary.BigEndian.Uint64(b)
		b = b[8:]
		return v, true
	}
	for len(b) > 0 {
		typ := b[0]
		b = b[1:]
		tl, ok := u64()
		if !ok {
			return errCandRecord
		}
		switch typ {
		case candRecFull:
			if timelines(tl) {
				cs.tlLocked(tl).full = true
			}
		case candRecCand:
			var f [4]uint64
			for i := range 4 {
				if f[i], ok = u64(); !ok {
					return errCandRecord
				}
			}
			if f[3] > uint64(len(b)) {
				return errCandRecord
			}
			k := candKey{kind: byte(f[0]), ino: f[1], idx: f[2], name: string(b[:f[3]])}
			b = b[f[3]:]
			var c cand
			for _, p := range []*uint64{&c.mask, &c.blocksFrom, &c.tickDue, &c.horizonDue} {
				if *p, ok = u64(); !ok {
					return errCandRecord
				}
			}
			if timelines(tl) {
				cs.tlLocked(tl).active.add(k, &c)
			}
		default:
			return errCandRecord
		}
	}
	return nil
}
