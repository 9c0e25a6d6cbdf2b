package experiments

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/offshootdb/offshoot/experiments/internal/controldb"
	"github.com/offshootdb/offshoot/experiments/merge"
	"github.com/offshootdb/offshoot/storage"
)

// LabelMerge marks the temporary branch that holds a merge's base: its
// value is the merge's ID. The branch is deleted when the merge ends; the
// base of an open merge session expires after sessionBaseTTL and is forked
// again (from the same fork point, which the branches keep) when needed.
const LabelMerge = "offshoot.merge"

// sessionBaseTTL is how long an open merge session keeps its base branch
// (and the compute it may run) when nothing happens to the session.
const sessionBaseTTL = 24 * time.Hour

// Statuses of a Merge.
const (
	// MergePreview: a dry run; nothing changed.
	MergePreview = "preview"
	// MergeMerged: the changes are committed on the target.
	MergeMerged = "merged"
	// MergeConflicts: conflicts stayed open, so nothing changed.
	MergeConflicts = "conflicts"
	// MergeOpen: a manual merge session waiting for resolutions and Complete.
	MergeOpen = "open"
	// MergeAborted: a session discarded by Abort.
	MergeAborted = "aborted"
	// MergeUndone: a merged merge whose target was put back onto its
	// pre-merge snapshot by UndoMerge.
	MergeUndone = "undone"
)

// MergeRequest merges branch Source into branch Target of Project.
type MergeRequest struct {
	Project string `json:"-"`
	Source  string `json:"-"`
	// Target is the branch that receives the changes. Required.
	Target string `json:"target"`
	// Strategy is fail (default), ours, theirs or manual (see merge.Strategy).
	Strategy merge.Strategy `json:"strategy,omitempty"`
	// DryRun computes the merge (conflicts included) and changes nothing.
	DryRun bool `json:"dry_run,omitempty"`
	// FullCompare compares every row of every table of the base and the
	// source instead of only the heap blocks storage shows either wrote:
	// slower, in proportion to the database; for verification.
	FullCompare bool `json:"full_compare,omitempty"`
}

// Merge is a merge: its outcome, or a manual merge session.
type Merge struct {
	ID       string         `json:"id"`
	Project  string         `json:"project"`
	Source   string         `json:"source"`
	Target   string         `json:"target"`
	Strategy merge.Strategy `json:"strategy"`
	// FullCompare is MergeRequest.FullCompare.
	FullCompare bool `json:"full_compare,omitempty"`
	// Base describes the common ancestor: a branch as of a store seq.
	Base    string `json:"base"`
	BaseSeq uint64 `json:"base_seq"`
	// Status is preview, merged, conflicts, open or aborted.
	Status string `json:"status"`
	// Snapshot holds the target's state before the merge (merged only):
	// restore it onto the target to undo the merge.
	Snapshot string `json:"snapshot,omitempty"`
	// Schema, Tables and Sequences are what the merge replayed or would
	// replay: DDL, row counts per table, sequences advanced.
	Schema    []string            `json:"schema"`
	Tables    []merge.TableCounts `json:"tables"`
	Sequences int                 `json:"sequences"`
	// UnchangedTables counts the source's tables with no row change;
	// SkippedByBlocks those of them storage showed neither the base nor
	// the source wrote (never read), NarrowedByBlocks the tables read
	// only in the heap blocks either side wrote since the base.
	UnchangedTables  int `json:"unchanged_tables"`
	SkippedByBlocks  int `json:"skipped_by_blocks"`
	NarrowedByBlocks int `json:"narrowed_by_blocks"`
	// SourceChanges says where the block comparison found the source's
	// changes that storage did not hold yet: "wal" (its WAL since its last
	// checkpoint) or "checkpoint" (a checkpoint wrote them); empty when
	// every row was compared.
	SourceChanges string `json:"source_changes,omitempty"`
	// Conflicts lists every conflict with its resolution, if any;
	// OpenConflicts counts those without.
	Conflicts     []merge.Conflict `json:"conflicts"`
	OpenConflicts int              `json:"open_conflicts"`
	// Timings are where the merge's time went (the last run of it, for a
	// session: the preparation or the completion).
	Timings MergeTimings `json:"timings"`
	// Next says what to do next.
	Next      string    `json:"next"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`

	// Session state: the base branch and the resolutions given so far.
	BaseBranch  string                      `json:"base_branch,omitempty"`
	Resolutions map[string]merge.Resolution `json:"resolutions,omitempty"`
}

// MergeTimings are a merge's phases in milliseconds: forking the base,
// starting the computes of the base (a new fork: its Postgres recovers to
// the fork point) and of the source and target, then merge.Run's phases.
type MergeTimings struct {
	BaseFork   float64 `json:"base_fork_ms"`
	BaseStart  float64 `json:"base_start_ms"`
	SidesStart float64 `json:"sides_start_ms"`
	merge.Timings
	Total float64 `json:"total_ms"`
}

// ResolveRequest resolves one conflict of a merge session.
type ResolveRequest struct {
	Project  string `json:"-"`
	Merge    string `json:"-"`
	Conflict string `json:"-"`
	// Choice is ours, theirs or custom.
	Choice string `json:"choice"`
	// Values, for custom, is a JSON object of column values written over
	// the target's row (or the source's when the target has none); the
	// JSON null deletes the row.
	Values json.RawMessage `json:"values,omitempty"`
}

func mergeKey(project, id string) []byte { return []byte("merge/" + project + "/" + id) }

// MergeBranch merges Source into Target three-way: the base is their
// nearest common ancestor as the store's history has it (the parent as
// of the fork point for a fork merged back, the ancestor as of the lower
// fork point for siblings), forked as a temporary branch that pins it
// while the merge runs. The changes apply in one transaction on the
// target, which may be running; the target's prior state is kept as
// snapshot pre-merge.<id>. Needs read scope on the source and write scope
// on the target (admin for a protected target). Merging a branch into
// itself is ErrInvalid; unknown branches are ErrNotFound. See merge for
// the model and the strategies.
func (s *Service) MergeBranch(ctx context.Context, req MergeRequest) (*Merge, error) {
	var out *Merge
	detail := fmt.Sprintf("into=%s strategy=%s dry_run=%t", req.Target, req.Strategy, req.DryRun)
	err := s.audited(ctx, "branch.merge", req.Project+"/"+req.Source, detail, func() error {
		if !req.Strategy.Valid() {
			return invalid("strategy", "want fail, ours, theirs or manual")
		}
		if req.Strategy == "" {
			req.Strategy = merge.Fail
		}
		if err := checkStoreName("target", req.Target); err != nil {
			return err
		}
		if req.Target == req.Source {
			return invalid("target", "is the source branch %s: merge a branch into another one", req.Source)
		}
		st, err := s.storeOr()
		if err != nil {
			return err
		}
		if err := s.authorize(ctx, RoleRead, req.Project, req.Source); err != nil {
			return err
		}
		src, err := st.Branch(req.Project, req.Source)
		if err != nil {
			return storeErr(err)
		}
		if err := s.authorize(ctx, RoleWrite, req.Project, req.Target); err != nil {
			return err
		}
		dst, err := st.Branch(req.Project, req.Target)
		if err != nil {
			return storeErr(err)
		}
		if dst.Protected {
			if err := s.authorize(ctx, RoleAdmin, "", ""); err != nil {
				return fmt.Errorf("branch %s is protected: merging into it needs the admin scope: %w", req.Target, ErrForbidden)
			}
		}
		if s.maskedBranch(req.Project, req.Target) && src.Labels[LabelMasked] != MaskedDone {
			return fmt.Errorf("branch %s is masked and %s is not: a merge would bring original values into it: %w", req.Target, req.Source, ErrConflict)
		}
		b := make([]byte, 5)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		now := s.cfg.Now().UTC()
		m := &Merge{ID: hex.EncodeToString(b), Project: req.Project, Source: req.Source, Target: req.Target,
			Strategy: req.Strategy, FullCompare: req.FullCompare, CreatedAt: now, UpdatedAt: now}
		var expires time.Time
		if req.Strategy == merge.Manual && !req.DryRun {
			expires = now.Add(sessionBaseTTL)
		}
		start := time.Now()
		if err := s.mergeBase(ctx, m, src, dst, expires); err != nil {
			return err
		}
		m.Timings.BaseFork = ms(time.Since(start))
		keep := req.Strategy == merge.Manual && !req.DryRun
		defer func() {
			if !keep {
				s.dropBase(ctx, m)
			}
		}()
		apply := !req.DryRun && req.Strategy != merge.Manual
		if err := s.runMerge(ctx, m, merge.Resolve(req.Strategy, nil), apply); err != nil {
			return err
		}
		m.Timings.Total = ms(time.Since(start))
		switch {
		case req.DryRun:
			m.Status = MergePreview
		case req.Strategy == merge.Manual:
			m.Status = MergeOpen
		}
		m.Next = m.next()
		out = m
		if req.DryRun {
			return nil
		}
		return s.saveMerge(m)
	})
	return out, err
}

// mergeBase finds the nearest common ancestor of src and dst and forks
// the temporary branch holding its state at the lower fork point. When
// either side is masked and the ancestor is not, the base is masked with
// the project's policy as a masked fork is: the merge compares masked
// sides with it, and shows its rows in conflicts, to callers whose keys
// may see masked values only.
func (s *Service) mergeBase(ctx context.Context, m *Merge, src, dst storage.Branch, expires time.Time) error {
	st := s.cfg.Store
	bs, err := st.Branches(m.Project)
	if err != nil {
		return storeErr(err)
	}
	byID := map[uint64]storage.Branch{}
	for _, b := range bs {
		byID[b.ID] = b
	}
	chain := func(b storage.Branch) []storage.Branch {
		out := []storage.Branch{b}
		for len(out) <= len(bs) {
			p, ok := byID[out[len(out)-1].Parent]
			if !ok {
				break
			}
			out = append(out, p)
		}
		return out
	}
	sc, dc := chain(src), chain(dst)
	inDst := map[uint64]int{}
	for i, b := range dc {
		inDst[b.ID] = i
	}
	var child *storage.Branch // the child of the ancestor whose fork point is the base
	var anc storage.Branch
	found := false
	for i, b := range sc {
		j, ok := inDst[b.ID]
		if !ok {
			continue
		}
		anc, found = b, true
		for _, c := range []*storage.Branch{at(sc, i-1), at(dc, j-1)} {
			if c != nil && (child == nil || c.ParentSeq < child.ParentSeq) {
				child = c
			}
		}
		break
	}
	if !found || child == nil {
		return fmt.Errorf("branches %s and %s have no common ancestor in the catalog (a parent was deleted): merge needs one: %w", m.Source, m.Target, ErrConflict)
	}
	m.BaseBranch = "merge-base." + m.ID
	base, err := st.Fork(m.Project, anc.Name, m.BaseBranch, storage.AtForkPoint(child.Name), storage.BranchOptions{Labels: map[string]string{LabelMerge: m.ID}, ExpiresAt: expires})
	if errors.Is(err, storage.ErrBeforeHorizon) {
		return fmt.Errorf("the merge base (%s as of seq %d) is no longer retained: %w", anc.Name, child.ParentSeq, ErrConflict)
	}
	if err != nil {
		return storeErr(err)
	}
	if (src.Labels[LabelMasked] != "" || dst.Labels[LabelMasked] != "") && anc.Labels[LabelMasked] == "" {
		policy, secret, err := s.maskPolicy(m.Project)
		if err == nil {
			err = s.applyMask(ctx, m.Project, base.Name, policy.Policy, secret)
		}
		if err != nil {
			s.dropBase(context.WithoutCancel(ctx), m)
			return fmt.Errorf("mask the merge base of masked branches: %w", err)
		}
	}
	m.Base, m.BaseSeq = anc.Name, base.ParentSeq
	return nil
}

func at(bs []storage.Branch, i int) *storage.Branch {
	if i < 0 {
		return nil
	}
	return &bs[i]
}

// dropBase deletes a merge's base branch; a failure is logged (the
// branch carries LabelMerge, so it can be found and deleted by hand).
func (s *Service) dropBase(ctx context.Context, m *Merge) {
	if m.BaseBranch == "" {
		return
	}
	if err := s.deleteBranch(ctx, m.Project, m.BaseBranch, false); err != nil && !errors.Is(err, ErrNotFound) {
		s.log.Warn("merge: delete base branch", slog.String("branch", m.BaseBranch), slog.String("err", err.Error()))
		return
	}
	m.BaseBranch = ""
}

// runMerge runs the merge in a transaction on the target and commits it
// when apply and no conflict is open (after keeping the target's head as
// snapshot pre-merge.<id>); otherwise it rolls back. A serialization
// failure (the target's rows changed under the merge) retries.
func (s *Service) runMerge(ctx context.Context, m *Merge, resolve merge.Resolver, apply bool) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = s.runMergeOnce(ctx, m, resolve, apply); err == nil {
			return nil
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || (pe.Code != "40001" && pe.Code != "40P01") {
			break
		}
	}
	return err
}

func (s *Service) runMergeOnce(ctx context.Context, m *Merge, resolve merge.Resolver, apply bool) error {
	t0 := time.Now()
	base, releaseBase, err := s.connect(ctx, m.Project, m.BaseBranch, ReadOnly)
	if err != nil {
		return err
	}
	defer releaseBase()
	m.Timings.BaseStart = ms(time.Since(t0))
	t0 = time.Now()
	src, releaseSrc, err := s.connect(ctx, m.Project, m.Source, ReadOnly)
	if err != nil {
		return err
	}
	defer releaseSrc()
	// A merge writes with the caller's database role: the write role for a
	// write key, so that none of the source's objects (a SECURITY DEFINER
	// function, a trigger, a check constraint's function) is created or
	// run as the superuser on a write key's request; the superuser only
	// for an admin, whose objects a write role may not alter.
	access := ReadWrite
	if c, _ := CallerFrom(ctx); c.Allows(RoleAdmin, m.Project, m.Target) {
		access = Superuser
	}
	dst, releaseDst, err := s.connect(ctx, m.Project, m.Target, access)
	if err != nil {
		return err
	}
	defer releaseDst()
	m.Timings.SidesStart = ms(time.Since(t0))
	snapshot := ""
	if apply {
		snapshot = "pre-merge." + m.ID
		if _, err := s.cfg.Store.Snapshot(m.Project, m.Target, snapshot, storage.SnapshotOptions{}); err != nil {
			return storeErr(err)
		}
	}
	committed := false
	defer func() {
		if snapshot != "" && !committed {
			_ = s.cfg.Store.DeleteSnapshot(m.Project, snapshot)
		}
	}()
	if _, err := dst.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ"); err != nil {
		return fmt.Errorf("merge: begin: %w", err)
	}
	defer dst.Exec(context.Background(), "ROLLBACK")
	sides := merge.Sides{Base: base, Source: src, Target: dst, BaseName: "the base", SourceName: m.Source, TargetName: m.Target}
	var blocks *storeBlocks
	if !m.FullCompare {
		blocks = &storeBlocks{s: s, project: m.Project, base: m.BaseBranch, source: m.Source}
		defer blocks.close()
		sides.Blocks = blocks
	}
	res, err := merge.Run(ctx, sides, resolve)
	if err != nil {
		return err
	}
	m.Timings.Timings = res.Timings
	m.Schema, m.Tables, m.Sequences, m.Conflicts = res.Schema, res.Tables, res.Sequences, res.Conflicts
	m.UnchangedTables, m.SkippedByBlocks, m.NarrowedByBlocks = res.Unchanged, res.SkippedByBlocks, res.NarrowedByBlocks
	if blocks != nil {
		m.SourceChanges = blocks.from
	}
	m.OpenConflicts = len(res.Open())
	m.UpdatedAt = s.cfg.Now().UTC()
	if !apply || m.OpenConflicts > 0 {
		m.Status = MergeConflicts
		return nil
	}
	if _, err := dst.Exec(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("merge: commit: %w", err)
	}
	committed = true
	m.Status, m.Snapshot = MergeMerged, snapshot
	return nil
}

// next is the guidance for what to do after m.
func (m *Merge) next() string {
	switch m.Status {
	case MergePreview:
		if m.OpenConflicts == 0 {
			return "no conflicts: merge again without dry_run to apply"
		}
		return fmt.Sprintf("%d conflicts: merge with strategy ours (keep the target's side) or theirs (take the source's), or manual to resolve each one", m.OpenConflicts)
	case MergeConflicts:
		return fmt.Sprintf("nothing was changed: %d conflicts are open. Merge again with strategy ours or theirs, or manual to resolve each one; or change the branches and merge again", m.OpenConflicts)
	case MergeOpen:
		if m.OpenConflicts == 0 {
			return "every conflict is resolved: complete the merge to apply it (or abort it)"
		}
		return fmt.Sprintf("%d conflicts are open: resolve each (ours, theirs or custom values), then complete the merge; abort discards it", m.OpenConflicts)
	case MergeMerged:
		return fmt.Sprintf("merged into %s; to undo it, undo merge %s (puts %s back onto snapshot %s)", m.Target, m.ID, m.Target, m.Snapshot)
	case MergeUndone:
		return fmt.Sprintf("undone: %s is back as it was before the merge; its merged state is kept as snapshot %s", m.Target, m.Snapshot)
	}
	return ""
}

func (s *Service) saveMerge(m *Merge) error {
	return s.withDB(func(db *controldb.DB) error { return db.Put(mergeKey(m.Project, m.ID), m) })
}

// loadMerge reads a merge after checking the caller's read scope on
// its target.
func (s *Service) loadMerge(ctx context.Context, project, id string, role Role) (*Merge, error) {
	if err := validName("project", project); err != nil {
		return nil, err
	}
	if id == "" {
		return nil, invalid("merge", "is required")
	}
	var m Merge
	err := s.withDB(func(db *controldb.DB) error { return db.Get(mergeKey(project, id), &m) })
	if errors.Is(err, controldb.ErrNotFound) {
		return nil, fmt.Errorf("merge %s of project %s: %w", id, project, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, role, project, m.Target); err != nil {
		return nil, err
	}
	m.Next = m.next()
	return &m, nil
}

// GetMerge returns a merge or merge session (read scope on its target).
func (s *Service) GetMerge(ctx context.Context, project, id string) (*Merge, error) {
	return s.loadMerge(ctx, project, id, RoleRead)
}

// ListMerges returns the merges and merge sessions of a project whose
// target the caller can read, newest first, without their conflicts
// (GetMerge has them). An unknown project is ErrNotFound.
func (s *Service) ListMerges(ctx context.Context, project string) ([]Merge, error) {
	if err := validName("project", project); err != nil {
		return nil, err
	}
	caller, ok := CallerFrom(ctx)
	if !ok {
		return nil, fmt.Errorf("no caller: %w", ErrUnauthenticated)
	}
	st, err := s.storeOr()
	if err != nil {
		return nil, err
	}
	if _, err := st.Project(project); err != nil {
		return nil, storeErr(err)
	}
	lower := mergeKey(project, "")
	upper := append(bytes.Clone(lower[:len(lower)-1]), '/'+1)
	out := []Merge{}
	err = s.withDB(func(db *controldb.DB) error {
		return db.Scan(lower, upper, func(_, v []byte) (bool, error) {
			var m Merge
			if err := json.Unmarshal(v, &m); err != nil {
				return false, err
			}
			if caller.Allows(RoleRead, project, m.Target) {
				m.Conflicts, m.Resolutions = nil, nil
				m.Next = m.next()
				out = append(out, m)
			}
			return true, nil
		})
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out, nil
}

// openSession loads an open merge session for a change (write scope on
// its target).
func (s *Service) openSession(ctx context.Context, project, id string) (*Merge, error) {
	m, err := s.loadMerge(ctx, project, id, RoleWrite)
	if err != nil {
		return nil, err
	}
	if m.Status != MergeOpen {
		return nil, fmt.Errorf("merge %s is %s, not an open session: %w", id, m.Status, ErrConflict)
	}
	return m, nil
}

// ResolveConflict resolves one conflict of an open merge session (write
// scope on the target); a later resolution of the same conflict replaces
// it. Nothing changes on the branches until CompleteMerge.
func (s *Service) ResolveConflict(ctx context.Context, req ResolveRequest) (*Merge, error) {
	var out *Merge
	detail := "conflict=" + req.Conflict + " choice=" + req.Choice
	err := s.audited(ctx, "merge.resolve", req.Project+"/"+req.Merge, detail, func() error {
		m, err := s.openSession(ctx, req.Project, req.Merge)
		if err != nil {
			return err
		}
		var c *merge.Conflict
		for i := range m.Conflicts {
			if m.Conflicts[i].ID == req.Conflict {
				c = &m.Conflicts[i]
			}
		}
		if c == nil {
			return fmt.Errorf("conflict %s of merge %s: %w", req.Conflict, req.Merge, ErrNotFound)
		}
		r := merge.Resolution{Choice: req.Choice}
		switch req.Choice {
		case merge.ChoiceOurs, merge.ChoiceTheirs:
			if len(req.Values) > 0 {
				return invalid("values", "only for choice custom")
			}
		case merge.ChoiceCustom:
			if c.Kind != merge.KindRow && c.Kind != merge.KindConstraint {
				return invalid("choice", "custom values resolve row and constraint conflicts only; this one is a %s conflict: choose ours or theirs", c.Kind)
			}
			if err := c.CheckValues(req.Values); err != nil {
				return invalid("values", "%v", err)
			}
			r.Values = req.Values
		default:
			return invalid("choice", "want ours, theirs or custom")
		}
		if m.Resolutions == nil {
			m.Resolutions = map[string]merge.Resolution{}
		}
		if c.Resolution == nil {
			m.OpenConflicts--
		}
		m.Resolutions[c.ID] = r
		c.Resolution = &r
		m.UpdatedAt = s.cfg.Now().UTC()
		m.Next = m.next()
		out = m
		return s.saveMerge(m)
	})
	return out, err
}

// CompleteMerge applies an open merge session atomically (write scope
// on the target): the merge runs again from the same base with the
// session's resolutions, so changes made on either branch since it was
// prepared are merged too. If conflicts are open (new ones included),
// nothing changes and the session stays open with them listed.
func (s *Service) CompleteMerge(ctx context.Context, project, id string) (*Merge, error) {
	var out *Merge
	err := s.audited(ctx, "merge.complete", project+"/"+id, "", func() error {
		m, err := s.openSession(ctx, project, id)
		if err != nil {
			return err
		}
		m.Timings = MergeTimings{}
		start := time.Now()
		if err := s.sessionBase(ctx, m); err != nil {
			return err
		}
		m.Timings.BaseFork = ms(time.Since(start))
		if err := s.runMerge(ctx, m, merge.Resolve(merge.Fail, m.Resolutions), true); err != nil {
			return err
		}
		m.Timings.Total = ms(time.Since(start))
		if m.Status == MergeMerged {
			s.dropBase(ctx, m)
		} else {
			m.Status = MergeOpen
		}
		m.Next = m.next()
		out = m
		return s.saveMerge(m)
	})
	return out, err
}

// sessionBase makes sure an open session's base branch exists: when it
// expired, it is forked again from the same fork point.
func (s *Service) sessionBase(ctx context.Context, m *Merge) error {
	st := s.cfg.Store
	if m.BaseBranch != "" {
		if _, err := st.Branch(m.Project, m.BaseBranch); err == nil {
			return nil
		} else if !errors.Is(err, storage.ErrBranchNotFound) {
			return storeErr(err)
		}
	}
	src, err := st.Branch(m.Project, m.Source)
	if err != nil {
		return storeErr(err)
	}
	dst, err := st.Branch(m.Project, m.Target)
	if err != nil {
		return storeErr(err)
	}
	return s.mergeBase(ctx, m, src, dst, s.cfg.Now().Add(sessionBaseTTL))
}

// AbortMerge discards an open merge session and its base branch (write
// scope on the target). The branches are untouched.
func (s *Service) AbortMerge(ctx context.Context, project, id string) (*Merge, error) {
	var out *Merge
	err := s.audited(ctx, "merge.abort", project+"/"+id, "", func() error {
		m, err := s.openSession(ctx, project, id)
		if err != nil {
			return err
		}
		s.dropBase(ctx, m)
		m.Status, m.UpdatedAt = MergeAborted, s.cfg.Now().UTC()
		m.Next = m.next()
		out = m
		return s.saveMerge(m)
	})
	return out, err
}

// UndoMerge puts the target of a merged merge back onto its pre-merge
// snapshot, in place: the branch keeps its name, settings and children
// (which keep what they were forked from), and everything written on it
// since the merge, the merge included, is kept as snapshot
// post-merge.<id>. Needs write scope on the target; refused for a
// protected target (unprotect it first) and for a merge not in status
// merged (ErrConflict).
func (s *Service) UndoMerge(ctx context.Context, project, id string) (*Merge, error) {
	var out *Merge
	err := s.audited(ctx, "merge.undo", project+"/"+id, "", func() error {
		m, err := s.loadMerge(ctx, project, id, RoleWrite)
		if err != nil {
			return err
		}
		if m.Status != MergeMerged {
			return fmt.Errorf("merge %s is %s: only a merged merge can be undone: %w", id, m.Status, ErrConflict)
		}
		st, err := s.storeOr()
		if err != nil {
			return err
		}
		dst, err := st.Branch(project, m.Target)
		if err != nil {
			return storeErr(err)
		}
		if dst.Protected {
			return fmt.Errorf("branch %s is protected; unprotect it first: %w", m.Target, ErrConflict)
		}
		if err := s.stopEndpoint(ctx, project, m.Target, false); err != nil {
			return err
		}
		post := "post-merge." + m.ID
		if _, err := st.Reset(project, m.Target, storage.ResetOptions{To: storage.AtSnapshot(m.Snapshot), Snapshot: post}); err != nil {
			return storeErr(err)
		}
		if err := st.DeleteSnapshot(project, m.Snapshot); err != nil {
			s.log.Warn("merge undo: delete pre-merge snapshot", slog.String("snapshot", m.Snapshot), slog.String("err", err.Error()))
		}
		m.Status, m.Snapshot, m.UpdatedAt = MergeUndone, post, s.cfg.Now().UTC()
		m.Next = m.next()
		out = m
		return s.saveMerge(m)
	})
	return out, err
}
