package cowfs

import (
	"errors"
	"sort"
	"sync"
	"syscall"
	"time"
)

// memFS is a throwaway in-memory WritableFiles used while the store is
// being written.
type memFS struct {
	mu   sync.Mutex
	next uint64
	ino  map[uint64]*memNode
}

type memNode struct {
	attr Attr
	data []byte
	ents map[string]uint64
}

func newMemFS() *memFS {
	m := &memFS{next: 2, ino: map[uint64]*memNode{}}
	m.ino[1] = &memNode{attr: Attr{Ino: 1, Mode: syscall.S_IFDIR | 0o755, Nlink: 2, Mtime: time.Now()}, ents: map[string]uint64{}}
	return m
}

var errMem = errors.New("mem")

func (m *memFS) Lookup(dir uint64, name string) (Attr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.ino[dir]
	if d == nil || d.ents == nil {
		return Attr{}, syscall.ENOENT
	}
	c, ok := d.ents[name]
	if !ok {
		return Attr{}, syscall.ENOENT
	}
	return m.attr(c), nil
}

func (m *memFS) attr(ino uint64) Attr {
	n := m.ino[ino]
	a := n.attr
	a.Size = uint64(len(n.data))
	return a
}

func (m *memFS) GetAttr(ino uint64) (Attr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ino[ino] == nil {
		return Attr{}, syscall.ENOENT
	}
	return m.attr(ino), nil
}

func (m *memFS) ReadDir(dir uint64) ([]Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.ino[dir]
	if d == nil || d.ents == nil {
		return nil, syscall.ENOTDIR
	}
	var out []Entry
	for n, c := range d.ents {
		out = append(out, Entry{Name: n, Ino: c, Mode: m.ino[c].attr.Mode})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (m *memFS) ReadAt(ino uint64, p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.ino[ino]
	if n == nil {
		return 0, syscall.ENOENT
	}
	if off >= int64(len(n.data)) {
		return 0, nil
	}
	return copy(p, n.data[off:]), nil
}

func (m *memFS) SetAttr(ino uint64, s SetAttr) (Attr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.ino[ino]
	if n == nil {
		return Attr{}, syscall.ENOENT
	}
	if s.Mode != nil {
		n.attr.Mode = n.attr.Mode&syscall.S_IFMT | *s.Mode
	}
	if s.UID != nil {
		n.attr.UID = *s.UID
	}
	if s.GID != nil {
		n.attr.GID = *s.GID
	}
	if s.Size != nil {
		sz := int(*s.Size)
		if sz <= len(n.data) {
			n.data = n.data[:sz]
		} else {
			n.data = append(n.data, make([]byte, sz-len(n.data))...)
		}
	}
	if s.Mtime != nil {
		n.attr.Mtime = *s.Mtime
	}
	return m.attr(ino), nil
}

func (m *memFS) mk(dir uint64, name string, mode, uid, gid uint32) (Attr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.ino[dir]
	if d == nil || d.ents == nil {
		return Attr{}, syscall.ENOENT
	}
	if _, ok := d.ents[name]; ok {
		return Attr{}, syscall.EEXIST
	}
	ino := m.next
	m.next++
	n := &memNode{attr: Attr{Ino: ino, Mode: mode, Nlink: 1, UID: uid, GID: gid, Mtime: time.Now()}}
	if mode&syscall.S_IFMT == syscall.S_IFDIR {
		n.ents = map[string]uint64{}
		n.attr.Nlink = 2
	}
	m.ino[ino] = n
	d.ents[name] = ino
	return m.attr(ino), nil
}

func (m *memFS) Create(dir uint64, name string, mode, uid, gid uint32) (Attr, error) {
	return m.mk(dir, name, syscall.S_IFREG|mode, uid, gid)
}

func (m *memFS) Mkdir(dir uint64, name string, mode, uid, gid uint32) (Attr, error) {
	return m.mk(dir, name, syscall.S_IFDIR|mode, uid, gid)
}

func (m *memFS) Unlink(dir uint64, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.ino[dir]
	c, ok := d.ents[name]
	if !ok {
		return syscall.ENOENT
	}
	delete(d.ents, name)
	_ = c
	return nil
}

func (m *memFS) Rmdir(dir uint64, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.ino[dir]
	c, ok := d.ents[name]
	if !ok {
		return syscall.ENOENT
	}
	if len(m.ino[c].ents) > 0 {
		return syscall.ENOTEMPTY
	}
	delete(d.ents, name)
	return nil
}

func (m *memFS) Rename(dir uint64, name string, newDir uint64, newName string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.ino[dir]
	c, ok := d.ents[name]
	if !ok {
		return syscall.ENOENT
	}
	delete(d.ents, name)
	m.ino[newDir].ents[newName] = c
	return nil
}

func (m *memFS) WriteAt(ino uint64, p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.ino[ino]
	if end := int(off) + len(p); end > len(n.data) {
		n.data = append(n.data, make([]byte, end-len(n.data))...)
	}
	copy(n.data[off:], p)
	return len(p), nil
}

func (m *memFS) Fallocate(ino uint64, off, length int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.ino[ino]
	if end := int(off + length); end > len(n.data) {
		n.data = append(n.data, make([]byte, end-len(n.data))...)
	}
	return nil
}

func (m *memFS) Sync() error { return nil }

var _ = errMem
