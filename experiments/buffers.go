package experiments

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
)

// Shared buffers for run forks. An endpoint starts with shared_buffers
// 128MB, which holds the HNSW graph of about 60k vectors of 384 dims:
// past that, every search and every insert of a delta reads part of the
// graph through the operating system's cache, page by page (on a 200 MB
// graph, 750 inserts read 520,000 pages and took 5.0 s instead of 3.3 s,
// and a search 2.6 ms instead of 1.8 ms, native Postgres on this
// machine). A run fork is started with shared_buffers that hold its
// index, within the memory budget of index builds, so the evaluation and
// the delta measure the index, not the page cache in front of it.

// evalBuffers is the shared_buffers (bytes, whole MiB) for a fork whose
// index has indexBytes: the index, a quarter more for a delta's growth,
// and 64 MiB for the heap pages and catalogs the queries touch; within
// Config.IndexMemoryBudget and what compute can start. 0 when the
// endpoints' default (compute.Manager.SharedBuffers) holds it, or nothing
// larger fits.
func (s *Service) evalBuffers(indexBytes int64) int64 {
	if indexBytes <= 0 || s.cfg.Compute == nil {
		return 0
	}
	n := min(indexBytes+indexBytes/4+64<<20, s.cfg.IndexMemoryBudget, s.cfg.Compute.MaxSharedBuffers())
	if n = n >> 20 << 20; n <= s.cfg.Compute.SharedBuffers() {
		return 0
	}
	return n
}

// sizeForkBuffers gives run fork branch of project the shared_buffers of
// evalBuffers from its next start and reports whether that differs from
// the default. Deleting the branch drops the setting (stopEndpoint).
func (s *Service) sizeForkBuffers(project, branch string, indexBytes int64) bool {
	n := s.evalBuffers(indexBytes)
	if n == 0 {
		return false
	}
	s.cfg.Compute.SetSettings(project, branch, map[string]string{"shared_buffers": fmt.Sprintf("%dMB", n>>20)})
	return true
}

// dropSizedBuffers gives run fork branch of project the endpoints'
// default shared_buffers again, after it did not start with the sized ones
// (err: a host that refuses that much shared memory, or compute's memory
// budget taken by other endpoints). The caller starts it again.
func (s *Service) dropSizedBuffers(project, branch string, err error) {
	s.log.Warn("run fork did not start with shared_buffers sized to its index; starting it with the default",
		slog.String("project", project), slog.String("branch", branch), slog.String("err", err.Error()))
	s.cfg.Compute.SetSettings(project, branch, nil)
}

// connectFork connects to run fork branch of project, whose shared_buffers
// were sized (sized) or not: a fork that does not start with sized ones
// starts with the default.
func (s *Service) connectFork(ctx context.Context, project, branch string, sized bool) (*pgx.Conn, func(), error) {
	conn, release, err := s.connect(ctx, project, branch, ReadWrite)
	if err == nil || !sized || ctx.Err() != nil {
		return conn, release, err
	}
	s.dropSizedBuffers(project, branch, err)
	return s.connect(ctx, project, branch, ReadWrite)
}

// resizeForkBuffers restarts the built fork fk with the shared_buffers
// evalBuffers sizes for its index of indexBytes, when they differ from the
// default and the branches can restart a fork; a fork that does not start
// with them restarts with the default.
func (s *Service) resizeForkBuffers(ctx context.Context, fk *evalFork, indexBytes int64) error {
	if _, ok := s.cfg.Branches.(ForkRestarter); !ok || !s.sizeForkBuffers(fk.project, fk.branch, indexBytes) {
		return nil
	}
	err := fk.restart(ctx)
	if err == nil || ctx.Err() != nil {
		return err
	}
	s.dropSizedBuffers(fk.project, fk.branch, err)
	if err := fk.restart(ctx); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	return nil
}

// recordBuffers adds the fork's shared_buffers to the settings p records
// (when there is a p) and returns them in bytes.
func recordBuffers(ctx context.Context, conn *pgx.Conn, p *VariantProvenance) (int64, error) {
	var sb string
	var n int64
	if err := conn.QueryRow(ctx, "SELECT current_setting('shared_buffers'), setting::bigint * current_setting('block_size')::bigint FROM pg_settings WHERE name = 'shared_buffers'").Scan(&sb, &n); err != nil {
		return 0, fmt.Errorf("shared_buffers: %w", err)
	}
	if p != nil {
		if p.Settings == nil {
			p.Settings = map[string]string{}
		}
		p.Settings["shared_buffers"] = sb
	}
	return n, nil
}
