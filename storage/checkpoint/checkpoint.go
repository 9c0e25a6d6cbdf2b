// Package checkpoint takes the checkpoints of pebble databases that the
// object storage tier (storage/objstore) uploads: sstables and blob files
// only, with a version number that tells a round whether anything was
// committed since the last one.
package checkpoint

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cockroachdb/pebble/v2"
)

// MaxManifestFileSize is the pebble.Options.MaxManifestFileSize of the
// databases checkpointed here: a round with changes uploads the MANIFEST
// whole (it grows by an edit per flush and compaction), and at pebble's
// default of 128 MiB it would grow that large before pebble starts a new
// one. Pebble still starts one only once the edits since the last outnumber
// the live files, so this costs a small snapshot now and then.
const MaxManifestFileSize = 1 << 20

// Pebble writes a checkpoint of db into dir (which must not
// exist) for upload: every write committed before the call, in sstables
// and blob files only. It flushes the memtable first and leaves the WAL out
// of the copy: pebble copies the WAL whole (a recycled one at its old
// physical size), and its content changes with every write, so a round
// that shipped it re-sent up to a memtable's worth of bytes under a new key
// even when only a few bytes were committed. Writes committed after the
// flush are in the next round. A flush of an empty memtable still writes
// a MANIFEST edit, so call it only when Version changed.
//
// The copy is consistent as long as db takes no sstable ingests (neither
// the store nor the control database does): flushed memtables hold a
// prefix of the commit order.
func Pebble(db *pebble.DB, dir string) error {
	if err := db.Flush(); err != nil {
		return fmt.Errorf("checkpoint: flush: %w", err)
	}
	if err := db.Checkpoint(dir); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".log") {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("checkpoint: %w", err)
			}
		}
	}
	return nil
}

// Version returns a number that grows with every write committed to
// db (the bytes its WAL has taken in): equal numbers before two
// checkpoints mean the second holds nothing new. Empty log records (a
// WAL sync) count too, so it may change when the state did not.
func Version(db *pebble.DB) uint64 {
	return db.Metrics().WAL.BytesIn
}
