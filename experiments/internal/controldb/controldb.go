// Package controldb is the control plane's small persistent store: JSON
// records under byte keys in a pebble database. Every write is synced. It
// is safe for concurrent use.
package controldb

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/cockroachdb/pebble/v2"

	"github.com/offshootdb/offshoot/storage/checkpoint"
)

// Errors returned by this package.
var (
	// ErrNotFound means no record is stored under the key.
	ErrNotFound = errors.New("record not found")
)

// DB is an open control database.
type DB struct {
	db *pebble.DB
}

// Open opens (creating if needed) the database in dir. log receives
// pebble's messages (informational ones at debug level).
func Open(dir string, log *slog.Logger) (*DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("control db: %w", err)
	}
	db, err := pebble.Open(dir, &pebble.Options{Logger: logger{log},
		// The object storage tier uploads the MANIFEST whole.
		MaxManifestFileSize: checkpoint.MaxManifestFileSize})
	if err != nil {
		return nil, fmt.Errorf("control db: %w", err)
	}
	return &DB{db: db}, nil
}

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

// Get decodes the record under key into v.
func (d *DB) Get(key []byte, v any) error {
	b, closer, err := d.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	defer closer.Close()
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %q: %w", key, err)
	}
	return nil
}

// Put stores v as JSON under key, durably.
func (d *DB) Put(key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	if err := d.db.Set(key, b, pebble.Sync); err != nil {
		return fmt.Errorf("put: %w", err)
	}
	return nil
}

// Scan calls fn with each record whose key is in [lower, upper), in key
// order, until fn returns false or an error. The value slice is only valid
// during the call.
func (d *DB) Scan(lower, upper []byte, fn func(key, value []byte) (bool, error)) error {
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		more, err := fn(it.Key(), it.Value())
		if err != nil {
			it.Close()
			return err
		}
		if !more {
			break
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	return nil
}

// logger adapts slog to pebble.Logger.
type logger struct{ log *slog.Logger }

func (l logger) Infof(format string, args ...any) {
	l.log.Debug("pebble: " + fmt.Sprintf(format, args...))
}

func (l logger) Errorf(format string, args ...any) {
	l.log.Error("pebble: " + fmt.Sprintf(format, args...))
}

func (l logger) Fatalf(format string, args ...any) {
	l.log.Error("pebble: " + fmt.Sprintf(format, args...))
	os.Exit(1)
}

// Delete removes the record under key, durably; a missing key is no error.
func (d *DB) Delete(key []byte) error {
	if err := d.db.Delete(key, pebble.Sync); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	return nil
}

// KV is one record of a PutAll.
type KV struct {
	Key   []byte
	Value any
}

// PutAll stores every record as JSON in one durable (synced) batch: all
// or none of them.
func (d *DB) PutAll(kvs []KV) error {
	if len(kvs) == 0 {
		return nil
	}
	b := d.db.NewBatch()
	defer b.Close()
	for _, kv := range kvs {
		v, err := json.Marshal(kv.Value)
		if err != nil {
			return fmt.Errorf("encode %q: %w", kv.Key, err)
		}
		if err := b.Set(kv.Key, v, nil); err != nil {
			return fmt.Errorf("put: %w", err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("put: %w", err)
	}
	return nil
}

// Checkpoint writes a consistent copy of the database, with every write
// made before the call, into dir, which must not exist
// (checkpoint.Pebble: sstables only, the memtable flushed first).
func (d *DB) Checkpoint(dir string) error {
	if err := checkpoint.Pebble(d.db, dir); err != nil {
		return fmt.Errorf("control db %w", err)
	}
	return nil
}

// Version returns a number that changes whenever a write is committed
// (checkpoint.Version).
func (d *DB) Version() uint64 { return checkpoint.Version(d.db) }
