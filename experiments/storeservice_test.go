package experiments

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/offshootdb/offshoot/compute"
	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/offshootdb/offshoot/evals/evalstest"
	"github.com/offshootdb/offshoot/storage"
)

// storeService is a Service over the real stack, as offshoot serve wires
// it: a copy-on-write store, a compute manager running one Postgres per
// branch on its FUSE mount, and project (initdb + pgvector on the store),
// all in a temporary directory and closed when the test ends. settings are
// extra Postgres settings of every endpoint.
func storeService(tb testing.TB, project string, settings map[string]string) *Service {
	tb.Helper()
	svc, _ := storeServiceOn(tb, pgtest.Dir(tb), "", nil, project, settings)
	return svc
}

// storeServiceOn is storeService with its run directories in dir and its
// store in storeDir (default dir/store) opened with opts; it returns the
// store too.
func storeServiceOn(tb testing.TB, dir, storeDir string, opts *storage.Options, project string, settings map[string]string) (*Service, *storage.Store) {
	tb.Helper()
	return storeServiceWAL(tb, dir, storeDir, opts, project, settings, "")
}

// storeServiceWAL is storeServiceOn with endpoints' WAL in localWAL
// (StoreVolumes.LocalWALDir; "" for through the mount).
func storeServiceWAL(tb testing.TB, dir, storeDir string, opts *storage.Options, project string, settings map[string]string, localWAL string) (*Service, *storage.Store) {
	tb.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if storeDir == "" {
		storeDir = filepath.Join(dir, "store")
	}
	st, err := storage.Open(storeDir, opts)
	if err != nil {
		tb.Fatal(err)
	}
	var svc *Service // set below; no endpoint runs before
	m, err := compute.New(compute.Config{Volumes: compute.StoreVolumes{Store: st, MountDir: filepath.Join(dir, "mnt"), LocalWALDir: localWAL},
		RunDir: filepath.Join(dir, "compute"), Settings: settings, Logger: quiet,
		Verifiers: func(project, branch string, v map[string]string) { svc.CaptureVerifiers(project, branch, v) }})
	if err != nil {
		st.Close()
		tb.Fatal(err)
	}
	if err := m.Open(ctx); err != nil {
		st.Close()
		tb.Fatal(err)
	}
	init := filepath.Join(dir, "init")
	if err := os.MkdirAll(init, 0o755); err != nil {
		tb.Fatal(err)
	}
	svc, err = New(Config{ControlDir: filepath.Join(dir, "control"), Store: st, Compute: m, InitDir: init,
		DefaultProject: project, SweepInterval: -1, Logger: quiet, DatasetsDir: evalstest.DatasetsDir(tb)})
	if err == nil {
		err = svc.Open(ctx)
	}
	if err != nil {
		m.Close()
		st.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := svc.Close(); err != nil {
			tb.Error(err)
		}
		if err := m.Close(); err != nil {
			tb.Error(err)
		}
		if err := st.Check(); err != nil {
			tb.Error(err)
		}
		st.Close()
	})
	if _, err := svc.CreateProject(WithCaller(ctx, LocalCaller), project); err != nil {
		tb.Fatal(err)
	}
	return svc, st
}

// forkHook is a RunBranches that calls before (when set) ahead of every
// Fork, so tests can act at an exact point of a run.
type forkHook struct {
	RunBranches
	before func(ctx context.Context, name string)
}

func (h forkHook) Fork(ctx context.Context, project string, from BranchPoint, name string) (ForkInfo, error) {
	if h.before != nil {
		h.before(ctx, name)
	}
	return h.RunBranches.Fork(ctx, project, from, name)
}

// ForkUsage forwards to the wrapped RunBranches when it reports usage.
func (h forkHook) ForkUsage(ctx context.Context, project, branch string) (ForkBytes, error) {
	u, ok := h.RunBranches.(ForkUsage)
	if !ok {
		return ForkBytes{}, ErrUnavailable
	}
	return u.ForkUsage(ctx, project, branch)
}
