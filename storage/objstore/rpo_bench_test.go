package objstore_test

import (
	"context"
	"path/filepath"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/storage"
	"github.com/offshootdb/offshoot/storage/objstore"
	"github.com/offshootdb/offshoot/storage/objstore/s3test"
)

// BenchmarkRecoveryPoint measures the object storage tier's recovery
// point: while a writer commits 1 MiB every 20 ms (a write plus a store
// Sync, as an fsync through FUSE does), the age of the state last complete
// in the bucket (Uploader.Lag: what a lost machine would lose) is sampled
// every 50 ms for 20 s, with rounds every 2 s. Reports its median, p95 and
// maximum in ms and the maximum against the interval (the design bound is
// the interval plus a round's duration).
func BenchmarkRecoveryPoint(b *testing.B) {
	const interval = 2 * time.Second
	ctx := context.Background()
	srv := s3test.Start(b, "bkt")
	data := b.TempDir()
	st, err := storage.Open(filepath.Join(data, "store"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if _, _, err := st.CreateProject("p"); err != nil {
		b.Fatal(err)
	}
	h, err := st.OpenHead("p", "main")
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	f, err := h.Create(storage.RootIno, "data", 0o600, 0, 0)
	if err != nil {
		b.Fatal(err)
	}
	cfg := config(srv, "bkt")
	cfg.Interval = interval
	u, err := objstore.New(ctx, cfg, []objstore.Source{{Name: "store", Checkpoint: st.Checkpoint}}, filepath.Join(data, "objstore"), nil)
	if err != nil {
		b.Fatal(err)
	}
	var stop atomic.Bool
	done := make(chan error, 1)
	go func() {
		chunk := make([]byte, 1<<20)
		var off int64
		for !stop.Load() {
			chunk[0]++
			if _, err := h.WriteAt(f.Ino, chunk, off); err != nil {
				done <- err
				return
			}
			if err := h.Sync(); err != nil {
				done <- err
				return
			}
			off = (off + int64(len(chunk))) % (256 << 20)
			time.Sleep(20 * time.Millisecond)
		}
		done <- nil
	}()
	u.Start()
	for u.Generation() == 0 {
		time.Sleep(50 * time.Millisecond)
	}
	var lags []time.Duration
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		lags = append(lags, u.Lag())
	}
	stop.Store(true)
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	rounds := u.Generation()
	if err := u.Close(); err != nil {
		b.Fatal(err)
	}
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lags[len(lags)/2]), "lag-p50-ms")
	b.ReportMetric(ms(lags[len(lags)*95/100]), "lag-p95-ms")
	b.ReportMetric(ms(lags[len(lags)-1]), "lag-max-ms")
	b.ReportMetric(ms(lags[len(lags)-1])/ms(interval), "max/interval")
	b.Logf("%d rounds in about 20 s of 1 MiB commits every 20 ms; interval %v; %d samples", rounds, interval, len(lags))
}
