package storage

// EngineStats are cumulative counters of the storage engine (pebble)
// under the store: what a workload costs below the file system, for
// profiles and benchmarks (take two and subtract).
type EngineStats struct {
	// WALBytesIn is what was logged; WALBytesWritten what the WAL files
	// took, with their framing and padding.
	WALBytesIn, WALBytesWritten uint64
	// Flushes counts memtable flushes; FlushTableBytes and FlushBlobBytes
	// are what they wrote to sstables and to blob files (values).
	Flushes                         int64
	FlushTableBytes, FlushBlobBytes uint64
	// Compactions counts compactions; CompactTableBytes and
	// CompactBlobBytes what they wrote.
	Compactions                         int64
	CompactTableBytes, CompactBlobBytes uint64
	// IngestedBytes were ingested as whole sstables.
	IngestedBytes uint64
}

// EngineStats returns the engine's counters now.
func (s *Store) EngineStats() EngineStats {
	m := s.db.Metrics()
	e := EngineStats{WALBytesIn: m.WAL.BytesIn, WALBytesWritten: m.WAL.BytesWritten,
		Flushes: m.Flush.Count, Compactions: m.Compact.Count}
	for _, l := range m.Levels {
		e.FlushTableBytes += l.TableBytesFlushed
		e.FlushBlobBytes += l.BlobBytesFlushed
		e.CompactTableBytes += l.TableBytesCompacted
		// pebble counts a flush's blob bytes as compacted too.
		e.CompactBlobBytes += l.BlobBytesCompacted - l.BlobBytesFlushed
		e.IngestedBytes += l.TableBytesIngested
	}
	return e
}

// Sub returns the counters of e since earlier.
func (e EngineStats) Sub(earlier EngineStats) EngineStats {
	return EngineStats{WALBytesIn: e.WALBytesIn - earlier.WALBytesIn, WALBytesWritten: e.WALBytesWritten - earlier.WALBytesWritten,
		Flushes: e.Flushes - earlier.Flushes, FlushTableBytes: e.FlushTableBytes - earlier.FlushTableBytes,
		FlushBlobBytes: e.FlushBlobBytes - earlier.FlushBlobBytes, Compactions: e.Compactions - earlier.Compactions,
		CompactTableBytes: e.CompactTableBytes - earlier.CompactTableBytes, CompactBlobBytes: e.CompactBlobBytes - earlier.CompactBlobBytes,
		IngestedBytes: e.IngestedBytes - earlier.IngestedBytes}
}
