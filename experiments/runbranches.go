package experiments

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/offshootdb/offshoot/storage"
)

// storeBranches is the RunBranches of the Service's own branch store:
// experiment runs fork real copy-on-write branches through the facade's
// branch calls, so they are authorized, audited and counted like any fork.
type storeBranches struct{ s *Service }

// Resolve pins the base of a run. A snapshot or an explicit seq is exact
// already; a branch head, or the branch at a time, is pinned by a
// snapshot named "run-base.<unix-nanoseconds>", which keeps the base's
// data forkable at that point for Config.RunBaseRetention.
func (b storeBranches) Resolve(ctx context.Context, project string, at BranchPoint) (BranchPoint, error) {
	if err := b.CheckBase(ctx, project, at); err != nil { // what is missing, not the pinning snapshot
		return BranchPoint{}, err
	}
	if at.Snapshot != "" {
		snaps, err := b.s.ListSnapshots(ctx, project)
		if err != nil {
			return BranchPoint{}, err
		}
		for _, sn := range snaps {
			if sn.Name == at.Snapshot {
				return BranchPoint{Branch: sn.Branch, Seq: sn.LSN, Snapshot: sn.Name}, nil
			}
		}
		return BranchPoint{}, fmt.Errorf("snapshot %q of project %q: %w", at.Snapshot, project, ErrNotFound)
	}
	if at.Seq != 0 { // CheckBase found it in the branch's history
		if _, err := b.s.GetBranch(ctx, project, at.Branch); err != nil {
			return BranchPoint{}, err
		}
		return at, nil
	}
	now := b.s.cfg.Now()
	req := CreateSnapshotRequest{Project: project, Branch: at.Branch, Name: fmt.Sprintf("run-base.%d", now.UnixNano()), Timestamp: at.At}
	if r := b.s.cfg.RunBaseRetention; r > 0 {
		exp := now.Add(r)
		req.ExpiresAt = &exp
	}
	sn, err := b.s.CreateSnapshot(ctx, req)
	if err != nil {
		return BranchPoint{}, err
	}
	return BranchPoint{Branch: at.Branch, Seq: sn.LSN, Snapshot: sn.Name}, nil
}

// CheckBase implements BaseChecker from the store's catalog; an explicit
// seq or time must lie in the branch's retained history. It pins nothing
// (Resolve does, when the run executes).
func (b storeBranches) CheckBase(ctx context.Context, project string, at BranchPoint) error {
	st, err := b.s.storeOr()
	if err != nil {
		return err
	}
	if _, err := st.Project(project); errors.Is(err, storage.ErrProjectNotFound) {
		return fmt.Errorf("project %q: %w", project, ErrNotFound)
	} else if err != nil {
		return storeErr(err)
	}
	if at.Snapshot != "" { // Resolve forks the snapshot alone, whatever its branch
		snaps, err := st.Snapshots(project)
		if err != nil {
			return storeErr(err)
		}
		for _, sn := range snaps {
			if sn.Name == at.Snapshot {
				return nil
			}
		}
		return fmt.Errorf("base snapshot %q of project %q: %w", at.Snapshot, project, ErrNotFound)
	}
	if _, err := st.Branch(project, at.Branch); errors.Is(err, storage.ErrBranchNotFound) {
		return fmt.Errorf("base branch %q of project %q: %w", at.Branch, project, ErrNotFound)
	} else if err != nil {
		return storeErr(err)
	}
	if at.Seq == 0 && at.At == nil {
		return nil
	}
	// A view of the point resolves it as a fork of it would, and pins
	// it only until closed.
	point, field, what := storage.AtSeq(at.Seq), "base.seq", strconv.FormatUint(at.Seq, 10)
	if at.At != nil {
		point, field, what = storage.AtTime(*at.At), "base.at", at.At.UTC().Format(time.RFC3339Nano)
	}
	v, err := st.OpenView(project, at.Branch, point)
	switch {
	case err == nil:
		return v.Close()
	case errors.Is(err, storage.ErrFuture):
		newest := "its head"
		if h, err := st.OpenView(project, at.Branch, storage.AtHead()); err == nil {
			newest = fmt.Sprintf("its newest seq, %d", h.Seq())
			h.Close()
		}
		return invalid(field, "%s is later than %s of branch %q", what, newest, at.Branch)
	case errors.Is(err, storage.ErrBeforeHorizon):
		return invalid(field, "%s is older than the history the store keeps of branch %q", what, at.Branch)
	}
	return storeErr(err)
}

// Fork creates branch name at the pinned point. A point pinned by a
// snapshot is forked from the snapshot alone, so a run goes on (and its
// base can be forked again) after the base branch itself is deleted.
func (b storeBranches) Fork(ctx context.Context, project string, from BranchPoint, name string) (ForkInfo, error) {
	req := CreateBranchRequest{Project: project, Name: name, Snapshot: from.Snapshot}
	if from.Snapshot == "" {
		req.ParentID, req.LSN = from.Branch, from.Seq
	}
	br, err := b.s.CreateBranch(ctx, req)
	if err != nil {
		return ForkInfo{}, err
	}
	return ForkInfo{Branch: br.Name, Seq: br.ParentLSN}, nil
}

// Discard deletes a run's fork.
func (b storeBranches) Discard(ctx context.Context, project, branch string) error {
	// A run's fork has no children; its endpoint is stopped by DeleteBranch.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	return b.s.DeleteBranch(ctx, project, branch, false)
}

// ForkUsage is the fork's own storage (its copy-on-write delta) and the
// part of it its head reads, from the store's usage counters.
func (b storeBranches) ForkUsage(ctx context.Context, project, branch string) (ForkBytes, error) {
	br, err := b.s.GetBranch(ctx, project, branch)
	if err != nil {
		return ForkBytes{}, err
	}
	if br.Usage == nil {
		return ForkBytes{}, fmt.Errorf("usage of %s/%s: %w", project, branch, ErrUnavailable)
	}
	return ForkBytes{Delta: int64(br.Usage.DeltaBytes), Current: int64(br.Usage.CurrentBytes)}, nil
}

// Keep implements Materializer: a snapshot of the fork's head, which
// keeps its data forkable after the fork is discarded and never expires
// by itself (materializations expire by their own rules).
func (b storeBranches) Keep(ctx context.Context, project, branch, name string) (BranchPoint, error) {
	sn, err := b.s.CreateSnapshot(ctx, CreateSnapshotRequest{Project: project, Branch: branch, Name: name})
	if err != nil {
		return BranchPoint{}, err
	}
	return BranchPoint{Branch: branch, Seq: sn.LSN, Snapshot: sn.Name}, nil
}

// Drop implements Materializer: it deletes the snapshot Keep made.
func (b storeBranches) Drop(ctx context.Context, project string, at BranchPoint) error {
	return b.s.DeleteSnapshot(ctx, project, at.Snapshot)
}
