package experiments

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"time"

	"github.com/offshootdb/offshoot/storage"
)

// CreateSnapshotRequest names the head of a branch (or a past point of
// it, Timestamp inside the history window).
type CreateSnapshotRequest struct {
	Project   string     `json:"-"`
	Branch    string     `json:"-"`
	Name      string     `json:"name"`
	Timestamp *time.Time `json:"timestamp,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// RestoreRequest restores a snapshot: into a new branch named NewBranch,
// or onto the existing Branch (its old head kept as snapshot
// "<branch>.pre-restore.<unix-nanoseconds>").
type RestoreRequest struct {
	Project   string `json:"-"`
	Snapshot  string `json:"-"`
	NewBranch string `json:"new_branch,omitempty"`
	Branch    string `json:"branch,omitempty"`
}

func (s *Service) snapView(project string, sn storage.Snapshot, nameOf func(id uint64) string) Snapshot {
	out := Snapshot{Name: sn.Name, Project: project, Branch: nameOf(sn.Branch), LSN: sn.Seq, CreatedAt: sn.CreatedAt}
	if !sn.ExpiresAt.IsZero() {
		t := sn.ExpiresAt
		out.ExpiresAt = &t
	}
	return out
}

// CreateSnapshot records a snapshot of a branch (write scope).
func (s *Service) CreateSnapshot(ctx context.Context, req CreateSnapshotRequest) (*Snapshot, error) {
	var out *Snapshot
	err := s.audited(ctx, "snapshot.create", req.Project+"/"+req.Branch, "name="+req.Name, func() error {
		if err := s.authorize(ctx, RoleWrite, req.Project, req.Branch); err != nil {
			return err
		}
		// A snapshot of a past time is a past point like a fork's.
		if err := s.pastOfMasked(ctx, req.Project, req.Branch, req.Timestamp != nil); err != nil {
			return err
		}
		st, err := s.storeOr()
		if err != nil {
			return err
		}
		if err := checkStoreName("name", req.Name); err != nil {
			return err
		}
		opts := storage.SnapshotOptions{}
		if req.ExpiresAt != nil {
			opts.ExpiresAt = *req.ExpiresAt
		}
		var sn storage.Snapshot
		if req.Timestamp != nil {
			sn, err = st.SnapshotAt(req.Project, req.Branch, req.Name, storage.AtTime(*req.Timestamp), opts)
		} else {
			s.checkpointForFork(ctx, req.Project, req.Branch)
			sn, err = st.Snapshot(req.Project, req.Branch, req.Name, opts)
		}
		if err != nil {
			return storeErr(err)
		}
		v := s.snapView(req.Project, sn, s.branchName)
		out = &v
		return nil
	})
	return out, err
}

// ListSnapshots lists, by creation, the project's snapshots whose data
// the caller may read (see readSnapshot): all of them for a caller who
// reads the whole project, none of deleted branches otherwise.
func (s *Service) ListSnapshots(ctx context.Context, project string) ([]Snapshot, error) {
	c, err := s.projectCaller(ctx, project)
	if err != nil {
		return nil, s.refused(ctx, "snapshot.list", project, err)
	}
	st, err := s.storeOr()
	if err != nil {
		return nil, err
	}
	sns, err := st.Snapshots(project)
	if err != nil {
		return nil, storeErr(err)
	}
	out := []Snapshot{}
	for _, sn := range sns {
		v := s.snapView(project, sn, s.branchName)
		if !c.Allows(RoleRead, project, "") && (v.Branch == "" || !c.AllowsBranch(RoleRead, project, v.Branch, s.maskedBranch(project, v.Branch))) {
			continue
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LSN < out[j].LSN })
	return out, nil
}

// DeleteSnapshot deletes a snapshot (write scope on the project).
func (s *Service) DeleteSnapshot(ctx context.Context, project, name string) error {
	return s.audited(ctx, "snapshot.delete", project+"/"+name, "", func() error {
		if err := s.authorize(ctx, RoleWrite, project, ""); err != nil {
			return err
		}
		st, err := s.storeOr()
		if err != nil {
			return err
		}
		return storeErr(st.DeleteSnapshot(project, name))
	})
}

// readSnapshot checks that the caller may read what snapshot name of
// project holds, and returns the branch it was taken of ("" when gone): read scope on the branch it was taken of (masked as in
// authorizeAs, nil to look the branch's label up), or on the whole
// project when that branch is gone. A caller without project-wide read
// gets the same error for a snapshot that does not exist as for one it
// may not read, so that names of others' snapshots do not leak.
func (s *Service) readSnapshot(ctx context.Context, project, name string, masked *bool) (string, error) {
	c, ok := CallerFrom(ctx)
	if !ok {
		return "", fmt.Errorf("no caller: %w", ErrUnauthenticated)
	}
	st, err := s.storeOr()
	if err != nil {
		return "", err
	}
	sns, err := st.Snapshots(project)
	if err != nil {
		return "", storeErr(err)
	}
	wide := c.Allows(RoleRead, project, "")
	for _, sn := range sns {
		if sn.Name != name {
			continue
		}
		b := s.branchName(sn.Branch)
		if wide || b != "" && s.authorizeAs(ctx, RoleRead, project, b, masked) == nil {
			return b, nil
		}
		break
	}
	if wide {
		return "", fmt.Errorf("snapshot %s of project %s: %w", name, project, ErrNotFound)
	}
	return "", fmt.Errorf("key %s has no read scope on snapshot %s of project %s, or there is none: %w", c.KeyID, name, project, ErrForbidden)
}

// RestoreSnapshot forks a new branch from a snapshot, or puts an existing
// branch onto it. The latter resets the branch onto the snapshot: it keeps
// its name, ID, creation time, children and fork point, so a merge back
// into its parent applies what the snapshot holds; it is refused for
// protected branches and the main branch (ErrConflict).
func (s *Service) RestoreSnapshot(ctx context.Context, req RestoreRequest) (*Branch, error) {
	var out *Branch
	err := s.audited(ctx, "snapshot.restore", req.Project+"/"+req.Snapshot, "new_branch="+req.NewBranch+" branch="+req.Branch, func() error {
		if (req.NewBranch == "") == (req.Branch == "") {
			return invalid("new_branch", "give new_branch (fork a new branch) or branch (reset an existing one), exactly one")
		}
		st, err := s.storeOr()
		if err != nil {
			return err
		}
		name := req.NewBranch
		if req.Branch != "" {
			name = req.Branch
		}
		// What a snapshot holds may predate masking: never a masked branch.
		unmasked := false
		if err := s.authorizeAs(ctx, RoleWrite, req.Project, name, &unmasked); err != nil {
			return err
		}
		if err := checkStoreName("new_branch", name); err != nil {
			return err
		}
		if _, err := s.readSnapshot(ctx, req.Project, req.Snapshot, nil); err != nil {
			return err
		}
		var b storage.Branch
		var keep string
		if req.Branch != "" {
			old, err := st.Branch(req.Project, req.Branch)
			if err != nil {
				return storeErr(err)
			}
			if s.isMain(req.Project, old) {
				return fmt.Errorf("the main branch cannot be restored onto a snapshot; restore into a new branch: %w", ErrConflict)
			}
			if old.Protected {
				return fmt.Errorf("branch %s is protected; unprotect it first: %w", req.Branch, ErrConflict)
			}
			if sb, err := s.StandbyOf(req.Project, req.Branch); err != nil {
				return err
			} else if sb != nil {
				return fmt.Errorf("branch %s is a replica that follows its source; promote it first (or restore into a new branch): %w", req.Branch, ErrConflict)
			}
			keep = keepName(req.Branch, "pre-restore", s.cfg.Now())
			if err := s.stopEndpoint(ctx, req.Project, old.Name, false); err != nil {
				return err
			}
			b, err = st.Reset(req.Project, old.Name, storage.ResetOptions{Snapshot: keep, To: storage.AtSnapshot(req.Snapshot)})
			if err != nil {
				return storeErr(err)
			}
			if _, ok := b.Labels[LabelMasked]; ok {
				labels := maps.Clone(b.Labels)
				delete(labels, LabelMasked)
				if b, err = st.UpdateBranch(req.Project, old.Name, storage.BranchUpdate{Labels: labels}); err != nil {
					return storeErr(err)
				}
			}
		} else if b, err = st.Fork(req.Project, "", name, storage.AtSnapshot(req.Snapshot), storage.BranchOptions{}); err != nil {
			return storeErr(err)
		}
		v := s.view(req.Project, b, s.branchName)
		v.Depth = s.depth(req.Project, b)
		v.Snapshot = keep
		out = &v
		return nil
	})
	return out, err
}

// sweep deletes up to SweepBatch expired, unprotected branches, each as an
// audited call of the "ttl-sweeper" caller, and warns about branches about
// to expire (warnExpiring). It returns how many it deleted.
func (s *Service) sweep(ctx context.Context) int {
	st := s.cfg.Store
	ctx = WithCaller(ctx, Caller{KeyID: "ttl-sweeper", Scopes: []Scope{{Role: RoleAdmin}}})
	now := s.cfg.Now()
	n := 0
	seen := map[string]bool{}
	defer s.pruneWarned(seen)
	for _, p := range st.Projects() {
		bs, err := st.Branches(p.Name)
		if err != nil {
			continue
		}
		for _, b := range bs {
			seen[p.Name+"/"+b.Name] = true
			s.warnExpiring(ctx, p.Name, b, now)
			if n >= s.cfg.SweepBatch || b.ExpiresAt.IsZero() || b.ExpiresAt.After(now) || b.Protected || s.isMain(p.Name, b) {
				continue
			}
			k := p.Name + "/" + b.Name
			blk := sweepBlock{id: b.ID, expires: b.ExpiresAt, descendants: s.descendants(p.Name, b.Name)}
			if s.sweepBlocked(k, blk) {
				continue // tried, refused, and nothing changed since
			}
			if err := s.DeleteBranch(ctx, p.Name, b.Name, false); err != nil {
				s.log.Warn("ttl sweeper: branch not deleted", slog.String("project", p.Name), slog.String("branch", b.Name), slog.String("err", err.Error()))
				if errors.Is(err, ErrConflict) {
					// Logged and audited once; tried again when the
					// branch's expiry or subtree changes.
					blk.reason = err.Error()
					s.warnMu.Lock()
					if s.blocked == nil {
						s.blocked = map[string]sweepBlock{}
					}
					s.blocked[k] = blk
					s.warnMu.Unlock()
				}
				continue
			}
			n++
		}
	}
	return n
}

// sweepBlock is why the sweeper left an expired branch, and the branch's
// state then: while it stays the same the sweeper does not try (log,
// audit) again.
type sweepBlock struct {
	id          uint64
	expires     time.Time
	descendants int
	reason      string
}

// sweepBlocked reports whether the sweeper was refused on branch k in
// state blk already; a changed state forgets the refusal.
func (s *Service) sweepBlocked(k string, blk sweepBlock) bool {
	s.warnMu.Lock()
	defer s.warnMu.Unlock()
	old, ok := s.blocked[k]
	if !ok {
		return false
	}
	if old.id == blk.id && old.expires.Equal(blk.expires) && old.descendants == blk.descendants {
		return true
	}
	delete(s.blocked, k)
	return false
}

// descendants counts a branch's descendant branches (-1 if unknown).
func (s *Service) descendants(project, branch string) int {
	sub, err := s.cfg.Store.Subtree(project, branch)
	if err != nil {
		return -1
	}
	return len(sub) - 1
}

// expiryBlocked says why expired branch b is still there: the sweeper's
// refusal, or "" when it was not refused (yet).
func (s *Service) expiryBlocked(project string, b storage.Branch) string {
	if s.isMain(project, b) {
		return "the main branch never expires"
	}
	if b.ExpiresAt.After(s.cfg.Now()) {
		return ""
	}
	if b.Protected {
		return "protected branches are not deleted when they expire"
	}
	s.warnMu.Lock()
	defer s.warnMu.Unlock()
	if blk, ok := s.blocked[project+"/"+b.Name]; ok && blk.id == b.ID && blk.expires.Equal(b.ExpiresAt) {
		return "not deleted: " + blk.reason
	}
	return ""
}

// sweeper runs sweep every SweepInterval until stop is closed.
func (s *Service) sweeper(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			s.sweep(context.Background())
			s.expireMaterializations(context.Background())
		}
	}
}
