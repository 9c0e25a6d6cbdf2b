package cowfs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/compute/pg"
	"github.com/offshootdb/offshoot/compute/pg/pgtest"
)

func TestMemQuickBench(t *testing.T) {
	if os.Getenv("MEMQUICK") == "" {
		t.Skip()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := pgtest.Dir(t)
	run := func(name string, data string) {
		if err := pg.InitDB(ctx, pg.InitOptions{DataDir: data}); err != nil {
			t.Fatal(err)
		}
		s := startPG(t, data, dir, "", map[string]string{"shared_buffers": "128MB"})
		s.pgbench(ctx, "-i", "-q", "-s", "5")
		tps := s.pgbench(ctx, "-c", "4", "-j", "2", "-T", "15")
		stps := s.pgbench(ctx, "-S", "-c", "4", "-j", "2", "-T", "10")
		t.Logf("%s: tpcb %.0f select %.0f", name, tps, stps)
		s.stop(pg.Fast)
	}
	run("native", filepath.Join(dir, "native"))
	for _, wb := range []bool{false, true} {
		mnt := filepath.Join(dir, "mnt"+map[bool]string{false: "", true: "wb"}[wb])
		os.Mkdir(mnt, 0o700)
		m, err := Mount(mnt, newMemFS(), MountOptions{WritebackCache: wb})
		if err != nil {
			t.Fatal(err)
		}
		run(mnt, mnt)
		m.Unmount(ctx)
	}
}
