package storage

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
)

// TestConcurrentHead runs readers, a writer, concurrent Syncs and forks of
// the running head at once. Every block is written whole with one byte
// value, so a torn or mixed read shows up as a non-uniform block; each fork
// must also read only whole blocks. Run with -race to check the locking.
func TestConcurrentHead(t *testing.T) {
	s := openTest(t, nil)
	_, _, err := s.CreateProject("p")
	ok(t, err)
	h := must[*Head](t)(s.OpenHead("p", "main"))
	defer h.Close()
	f := must[Attr](t)(h.Create(RootIno, "rel", 0o600, 0, 0))
	const blocks = 32
	must[int](t)(h.WriteAt(f.Ino, make([]byte, blocks*BlockSize), 0))
	uniform := func(b []byte) bool { return bytes.Count(b, b[:1]) == len(b) }
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	stop := make(chan struct{})
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, BlockSize)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := h.ReadAt(f.Ino, buf, int64((i*7+r)%blocks)*BlockSize); err != nil {
					errs <- err
					return
				}
				if !uniform(buf) {
					errs <- fmt.Errorf("reader %d: torn block", r)
					return
				}
			}
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := h.Sync(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range 400 {
		must[int](t)(h.WriteAt(f.Ino, bytes.Repeat([]byte{byte(i)}, BlockSize), int64(i%blocks)*BlockSize))
		if i%100 == 50 {
			name := fmt.Sprintf("c%d", i)
			must[Branch](t)(s.Fork("p", "main", name, AtHead(), BranchOptions{}))
			v := must[*View](t)(s.OpenView("p", name, AtHead()))
			buf := make([]byte, blocks*BlockSize)
			if _, err := v.ReadAt(f.Ino, buf, 0); err != nil {
				t.Fatal(err)
			}
			for b := range blocks {
				if !uniform(buf[b*BlockSize : (b+1)*BlockSize]) {
					t.Fatalf("fork %s: block %d torn", name, b)
				}
			}
			if buf[(i%blocks)*BlockSize] != byte(i) {
				t.Fatalf("fork %s misses the write before it", name)
			}
			ok(t, v.Close())
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
