package experiments

import (
	"context"
	"time"

	"github.com/offshootdb/offshoot/compute"
)

// A fork or snapshot of a running branch's head is a crash-consistent
// copy: Postgres on it starts with crash recovery, which replays the WAL
// written since the branch's last checkpoint. After a bulk load that is
// hundreds of megabytes, and every fork pays it at its first start (a
// fork taken after `pgbench -i -s 20` answered its first query after
// 13.7 s; with a checkpoint first, 0.28 s, the checkpoint taking 0.68 s).
// So a fork or snapshot of a running head checkpoints the branch first
// when more than checkpointBeforeFork bytes of WAL wait; a smaller
// backlog replays in a moment and costs the fork nothing. A suspended or
// stopped branch was shut down with a checkpoint; it is not woken.

// checkpointBeforeFork is the WAL backlog above which a fork or snapshot
// of a running head checkpoints the branch first.
const checkpointBeforeFork = 16 << 20

// checkpointForFork checkpoints a running branch whose WAL since its last
// checkpoint exceeds checkpointBeforeFork, so that forks of its head
// start without a long recovery. A failure only costs the fork a slower
// first start: it is logged, not returned.
func (s *Service) checkpointForFork(ctx context.Context, project, branch string) {
	if s.cfg.Compute == nil || s.cfg.Connector == nil {
		return
	}
	if st := s.cfg.Compute.Status(project, branch).State; st != compute.Running && st != compute.Idle {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, release, err := s.cfg.Connector.Conn(ctx, project, branch, Maintenance)
	if err != nil {
		s.log.Warn("checkpoint before a fork", "project", project, "branch", branch, "err", err)
		return
	}
	defer release()
	// A standby (a following replica) has no WAL of its own to bound.
	var backlog int64
	err = conn.QueryRow(ctx, `SELECT CASE WHEN pg_is_in_recovery() THEN 0
		ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), redo_lsn)::bigint END FROM pg_control_checkpoint()`).Scan(&backlog)
	if err != nil || backlog <= checkpointBeforeFork {
		if err != nil {
			s.log.Warn("checkpoint before a fork", "project", project, "branch", branch, "err", err)
		}
		return
	}
	t := time.Now()
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		s.log.Warn("checkpoint before a fork", "project", project, "branch", branch, "err", err)
		return
	}
	s.log.Info("checkpointed before a fork", "project", project, "branch", branch, "wal_backlog_bytes", backlog, "took", time.Since(t))
}
