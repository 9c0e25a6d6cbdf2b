package storage

import (
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// fileWriteBuffer is how much of a new table or blob file pebble's
// writes collect in before they reach the file system.
const fileWriteBuffer = 256 << 10

// writeBufferFS gives the sstables and blob files pebble creates a write
// buffer of fileWriteBuffer bytes. Pebble writes them through a 4 KiB
// buffer, so every block larger than that (a 16 KiB blob block, an 8 KiB
// table block) took a write(2) of its own: one per two values a flush
// writes, each starting mid-page, each updating the file's times in the
// file system's journal. Other files (the WAL, the MANIFEST, OPTIONS) are
// written as pebble writes them.
type writeBufferFS struct{ vfs.FS }

// Create implements vfs.FS.
func (fs writeBufferFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	if err != nil || !(strings.HasSuffix(name, ".sst") || strings.HasSuffix(name, ".blob")) {
		return f, err
	}
	return &bufferedFile{File: f}, nil
}

// bufferedFile collects sequential writes and hands them to its file in
// pieces of fileWriteBuffer bytes. Everything that reads the file, asks
// its size or makes it durable writes the buffer out first, so callers
// see the file they wrote. Pebble uses a file being written from one
// goroutine at a time (vfs.File.Write is not safe for concurrent use).
type bufferedFile struct {
	vfs.File
	buf     []byte
	flushed int64 // bytes handed to File
}

func (f *bufferedFile) Write(p []byte) (int, error) {
	n := len(p)
	if len(f.buf)+len(p) > fileWriteBuffer {
		if err := f.flush(); err != nil {
			return 0, err
		}
		if len(p) >= fileWriteBuffer {
			if _, err := f.File.Write(p); err != nil {
				return 0, err
			}
			f.flushed += int64(n)
			return n, nil
		}
	}
	if f.buf == nil {
		f.buf = make([]byte, 0, fileWriteBuffer)
	}
	f.buf = append(f.buf, p...)
	return n, nil
}

// flush writes the buffer out.
func (f *bufferedFile) flush() error {
	if len(f.buf) == 0 {
		return nil
	}
	if _, err := f.File.Write(f.buf); err != nil {
		return err
	}
	f.flushed += int64(len(f.buf))
	f.buf = f.buf[:0]
	return nil
}

func (f *bufferedFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.flush(); err != nil {
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

func (f *bufferedFile) Read(p []byte) (int, error) {
	if err := f.flush(); err != nil {
		return 0, err
	}
	return f.File.Read(p)
}

func (f *bufferedFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.flush(); err != nil {
		return 0, err
	}
	return f.File.ReadAt(p, off)
}

func (f *bufferedFile) Stat() (vfs.FileInfo, error) {
	if err := f.flush(); err != nil {
		return nil, err
	}
	return f.File.Stat()
}

func (f *bufferedFile) Sync() error {
	if err := f.flush(); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *bufferedFile) SyncData() error {
	if err := f.flush(); err != nil {
		return err
	}
	return f.File.SyncData()
}

// SyncTo starts writeback of the file's first length bytes; a range still
// in the buffer is written out first so that it is covered.
func (f *bufferedFile) SyncTo(length int64) (bool, error) {
	if length > f.flushed {
		if err := f.flush(); err != nil {
			return false, err
		}
	}
	return f.File.SyncTo(length)
}

func (f *bufferedFile) Close() error {
	err := f.flush()
	f.buf = nil
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	return err
}
