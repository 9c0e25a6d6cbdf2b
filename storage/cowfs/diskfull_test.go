package cowfs

import (
	"context"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/offshootdb/offshoot/compute/pg"
	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/offshootdb/offshoot/internal/tmpfs"
	"github.com/offshootdb/offshoot/storage"
)

// TestDiskFull runs a branch on a store whose disk (a small tmpfs) fills
// up: Postgres gets ENOSPC, nothing committed is lost, and once space is
// freed the branch works again.
func TestDiskFull(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := pgtest.Dir(t)
	small := filepath.Join(dir, "small")
	tmpfs.Mount(t, small, "512m")
	f := &fixture{t: t, dir: dir, storeDir: filepath.Join(small, "store"), opts: &storage.Options{MinFreeBytes: 64 << 20}}
	f.open()
	pw := f.initProject("p")
	m := f.mount("main", f.head("p", "main"), MountOptions{})
	s := startPG(t, m.Dir(), dir, pw, nil)
	s.exec(ctx, "CREATE TABLE fill (id int, pad bytea)")
	// Ballast leaves ~24 MiB above the reserve; it is freed later.
	var st syscall.Statfs_t
	if err := syscall.Statfs(small, &st); err != nil {
		t.Fatal(err)
	}
	ballast := filepath.Join(small, "ballast")
	size := int64(st.Bavail)*st.Bsize - 64<<20 - 24<<20
	if size <= 0 {
		t.Fatalf("tmpfs too small: %d bytes available", int64(st.Bavail)*st.Bsize)
	}
	if err := os.WriteFile(ballast, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	conn := s.connect(ctx)
	committed := 0
	var fillErr error
	rng := rand.New(rand.NewSource(1))
	start := time.Now()
	for i := 0; i < 1000 && fillErr == nil; i++ {
		// 1 MB of incompressible bytes per transaction
		rows := make([][]any, 1000)
		for j := range rows {
			pad := make([]byte, 1024)
			rng.Read(pad)
			rows[j] = []any{int32(i*1000 + j), pad}
		}
		if _, fillErr = conn.CopyFrom(ctx, pgx.Identifier{"fill"}, []string{"id", "pad"}, pgx.CopyFromRows(rows)); fillErr == nil {
			committed++
		}
	}
	t.Logf("filled in %v", time.Since(start))
	t.Logf("%d batches committed, then: %v", committed, fillErr)
	if fillErr == nil {
		t.Fatal("the disk never filled up")
	}
	if !strings.Contains(fillErr.Error(), "No space left on device") && !strings.Contains(s.log(50), "No space left on device") {
		t.Fatalf("want ENOSPC, got %v\n%s", fillErr, s.log(20))
	}
	s.stop(pg.Immediate)

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	s = startPG(t, m.Dir(), dir, pw, nil)
	if n := s.queryInt(ctx, "SELECT count(*) FROM fill"); n < int64(committed)*1000 {
		t.Fatalf("%d rows after freeing space, want at least the %d committed", n, committed*1000)
	}
	s.exec(ctx, "DELETE FROM fill WHERE id >= 10000", "VACUUM fill", "INSERT INTO fill VALUES (-1, 'after')", "CHECKPOINT")
	s.amcheck(ctx)
}
