package experiments

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/offshootdb/offshoot/compute"
	"github.com/offshootdb/offshoot/experiments/internal/controldb"
	"github.com/offshootdb/offshoot/storage"
)

// Replicas' background work: the followers that keep each replica's
// endpoint running, and the removal of what a failed create or an
// interrupted delete left behind.

// setCreating marks a replica project as being seeded by this process.
func (s *Service) setCreating(project string, on bool) {
	s.replMu.Lock()
	defer s.replMu.Unlock()
	if s.creating == nil {
		s.creating = map[string]bool{}
	}
	if on {
		s.creating[project] = true
	} else {
		delete(s.creating, project)
	}
}

// checkSeeded refuses a call on a replica CreateReplica has not finished.
func (s *Service) checkSeeded(project string, rec replicaRecord) error {
	if !rec.Seeding {
		return nil
	}
	s.replMu.Lock()
	inFlight := s.creating[project]
	s.replMu.Unlock()
	if inFlight {
		return fmt.Errorf("replica %s is still being created: %w", project, ErrConflict)
	}
	return nil
}

// undoReplica removes what an unfinished CreateReplica made: the
// project, the slot on the source and then the records. A slot that
// cannot be dropped yet (the source is down) leaves the record seeding,
// and a background task retries until it is dropped (or the next start
// does).
func (s *Service) undoReplica(ctx context.Context, project string, rec replicaRecord) {
	if err := s.removeReplica(ctx, project, rec); err != nil {
		s.log.Warn("create replica: undo; retrying in the background", "project", project, "warning", slotWarning(rec, err))
		s.keep(project, func(ctx context.Context) { s.retryRemoval(ctx, project, rec) })
	}
}

// removeReplica deletes a replica's project, drops its slot on the
// source and, once that succeeded, forgets its records. A copy of the
// source a killed server left running (it holds the slot) is killed
// first.
func (s *Service) removeReplica(ctx context.Context, project string, rec replicaRecord) error {
	if n := compute.KillBaseBackups(rec.Slot); n > 0 {
		s.log.Warn("killed a copy of a replica's source left by a crash", "project", project, "slot", rec.Slot, "processes", n)
	}
	st, err := s.storeOr()
	if err != nil {
		return err
	}
	if err := st.DeleteProject(project, storage.DeleteProjectOptions{Force: true}); err != nil && !errors.Is(err, storage.ErrProjectNotFound) {
		return err
	}
	if !rec.SlotDropped {
		if err := dropSourceSlot(ctx, rec); err != nil {
			return err
		}
	}
	return s.withDB(func(db *controldb.DB) error {
		if err := db.Delete(replicaKey(project)); err != nil {
			return err
		}
		return db.Delete(projectKey(project))
	})
}

// retryRemoval is removeReplica until it succeeds or ctx ends, backing
// off up to 5 min between tries.
func (s *Service) retryRemoval(ctx context.Context, project string, rec replicaRecord) {
	for backoff := 5 * time.Second; ; backoff = min(2*backoff, 5*time.Minute) {
		err := s.removeReplica(ctx, project, rec)
		if err == nil {
			s.log.Info("removed what a replica left behind", "project", project, "slot", rec.Slot)
			return
		}
		s.log.Warn("remove replica; retrying", "project", project, "in", backoff, "warning", slotWarning(rec, err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

// forgetReplica removes a deleted replica project's record and drops its
// slot on the source (a promoted replica dropped it already); it returns
// a warning when the slot could not be dropped.
func (s *Service) forgetReplica(ctx context.Context, project string, rec replicaRecord) string {
	if err := s.withDB(func(db *controldb.DB) error {
		if err := db.Delete(replicaKey(project)); err != nil {
			return err
		}
		return db.Delete(projectKey(project))
	}); err != nil {
		s.log.Warn("forget replica", "project", project, "err", err)
	}
	if rec.SlotDropped {
		return ""
	}
	if err := dropSourceSlot(context.WithoutCancel(ctx), rec); err != nil {
		w := slotWarning(rec, err)
		s.log.Warn("delete replica", "project", project, "warning", w)
		return w
	}
	return ""
}

// FollowReplicas starts following every replica that is not promoted
// (serve calls it once the compute manager can ask StandbyOf).
func (s *Service) FollowReplicas() {
	recs, err := s.replicaRecords()
	if err != nil {
		s.log.Error("follow replicas", "err", err)
		return
	}
	st, err := s.storeOr()
	if err != nil {
		s.log.Error("follow replicas", "err", err)
		return
	}
	for p, rec := range recs {
		_, err := st.Branch(p, replicaBranch)
		switch {
		case rec.Seeding, errors.Is(err, storage.ErrProjectNotFound):
			// A create a crash interrupted, or a delete after the project
			// went: finish removing it (its slot on the source too).
			s.keep(p, func(ctx context.Context) { s.retryRemoval(ctx, p, rec) })
		case rec.PromotedAt == nil:
			s.follow(p)
		}
	}
}

// follow keeps a replica's endpoint running: a follower holds a lease on
// it (so it neither suspends nor is evicted) and acquires it again when
// it stopped (a crash, a stop by hand), backing off up to 30 s while it
// cannot start.
func (s *Service) follow(project string) {
	s.keep(project, func(ctx context.Context) {
		backoff := time.Second
		for ctx.Err() == nil {
			l, err := s.cfg.Compute.Acquire(ctx, project, replicaBranch)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("replica endpoint did not start; retrying", "project", project, "in", backoff, "err", err)
				}
				select {
				case <-ctx.Done():
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 30*time.Second)
				continue
			}
			backoff = time.Second
			for ctx.Err() == nil {
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
				if st := s.cfg.Compute.Status(project, replicaBranch).State; st != compute.Running && st != compute.Idle {
					break
				}
			}
			l.Release()
		}
	})
}

// keep runs f in the background for a replica project until f returns or
// unfollow (or Stop) cancels it; one task per project at a time (a second
// is not started while one runs).
func (s *Service) keep(project string, f func(ctx context.Context)) {
	s.replMu.Lock()
	defer s.replMu.Unlock()
	if s.replTasks == nil {
		s.replTasks = map[string]*replTask{}
	}
	if _, ok := s.replTasks[project]; ok {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	fl := &replTask{cancel: cancel, done: make(chan struct{})}
	s.replTasks[project] = fl
	go func() {
		defer close(fl.done)
		defer func() {
			s.replMu.Lock()
			if s.replTasks[project] == fl {
				delete(s.replTasks, project)
			}
			s.replMu.Unlock()
		}()
		f(ctx)
	}()
}

// replTask is a replica project's background task: its follower, or the
// removal of what a failed create or an interrupted delete left.
type replTask struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// unfollow stops a replica project's task and waits for it to end (a
// follower releases its lease).
func (s *Service) unfollow(project string) {
	s.replMu.Lock()
	f := s.replTasks[project]
	delete(s.replTasks, project)
	s.replMu.Unlock()
	if f != nil {
		f.cancel()
		<-f.done
	}
}

// unfollowAll stops every replica task (Stop).
func (s *Service) unfollowAll() {
	s.replMu.Lock()
	ps := make([]string, 0, len(s.replTasks))
	for p := range s.replTasks {
		ps = append(ps, p)
	}
	s.replMu.Unlock()
	for _, p := range ps {
		s.unfollow(p)
	}
}
