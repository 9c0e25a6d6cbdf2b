package experiments

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/offshootdb/offshoot/compute"
	"github.com/offshootdb/offshoot/storage"
)

// superuser is the role every project's cluster is created with.
const superuser = "postgres"

// Branch is a branch as listed and described. Endpoint and Usage are set
// by GetBranch only.
type Branch struct {
	Name    string `json:"name"`
	Project string `json:"project"`
	// ParentID is the parent branch's name, "" for the main branch.
	ParentID string `json:"parent_id,omitempty"`
	// ParentLSN is the store seq the branch forked at; ParentTimestamp the
	// wall-clock time the store knows that seq was reached by.
	ParentLSN       uint64     `json:"parent_lsn,omitempty"`
	ParentTimestamp *time.Time `json:"parent_timestamp,omitempty"`
	CreatedAt       time.Time  `json:"created_at"`
	ExpiresAt       *time.Time `json:"expires_at,omitempty"`
	// ExpiryBlocked says why an expired branch is still there (the TTL
	// sweeper could not delete it, e.g. it has child branches, or it is
	// the main branch, which never expires).
	ExpiryBlocked string            `json:"expiry_blocked,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Protected     bool              `json:"protected"`
	// Depth is the distance from the main branch (0) in ListBranches' tree order.
	Depth    int             `json:"depth"`
	Endpoint *EndpointStatus `json:"endpoint,omitempty"`
	Usage    *BranchUsage    `json:"usage,omitempty"`
	// Snapshot is set in the answer of a reset or a restore onto the
	// branch: the snapshot that keeps its old head ("" when discarded).
	Snapshot string `json:"snapshot,omitempty"`
}

// Snapshot is a named, fixed point of a branch.
type Snapshot struct {
	Name      string     `json:"name"`
	Project   string     `json:"project"`
	Branch    string     `json:"branch,omitempty"` // "" once the branch is gone
	LSN       uint64     `json:"lsn"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// CreateBranchRequest forks a branch. At most one of Snapshot, LSN and
// Timestamp picks the fork point; none means the parent's head.
type CreateBranchRequest struct {
	Project string `json:"-"`
	Name    string `json:"name"`
	// ParentID is the parent branch. Default the project's main branch;
	// with Snapshot, the snapshot's branch.
	ParentID  string            `json:"parent_id,omitempty"`
	Snapshot  string            `json:"snapshot,omitempty"`
	LSN       uint64            `json:"parent_lsn,omitempty"`
	Timestamp *time.Time        `json:"parent_timestamp,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	Protected bool              `json:"protected,omitempty"`
	// ExpiresAt or TTL (a Go duration such as "1h" or "30s") makes the
	// branch expire; the TTL sweeper deletes it then.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	TTL       string     `json:"ttl,omitempty"`
	// Masked applies the project's masking policy to the fork before
	// anyone can connect: the branch carries LabelMasked = MaskedPending
	// until the masked data is committed, then MaskedDone. Without a
	// policy the call fails (ErrNotFound); if masking fails the fork is
	// deleted and the error returned. Keys whose scopes are masked may
	// create only masked forks or forks of a masked branch's head.
	Masked bool `json:"masked,omitempty"`
}

// UpdateBranchRequest changes a branch; nil fields stay as they are.
type UpdateBranchRequest struct {
	Project string `json:"-"`
	Branch  string `json:"-"`
	// Name renames the branch (see rename for the limits).
	Name      *string           `json:"name,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	Protected *bool             `json:"protected,omitempty"`
	// ExpiresAt sets the expiry (a zero time clears it); TTL sets it to now
	// plus a Go duration ("0s" clears it).
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	TTL       *string    `json:"ttl,omitempty"`
}

// ListBranchesRequest selects branches. The result is in tree order
// (depth-first from main, children by name).
type ListBranchesRequest struct {
	Project string
	// Prefix keeps branches whose name starts with it.
	Prefix string
	// Labels keeps branches carrying every given label with that value.
	Labels map[string]string
	// Limit caps the page (default 100, at most 1000); Cursor continues
	// from the Next of a previous page.
	Limit  int
	Cursor string
	// Endpoints fills each listed branch's Endpoint from compute in the
	// same call (nil without compute), so a caller showing states needs
	// no call per branch.
	Endpoints bool
	// Usage fills each listed branch's Usage (storage accounting and
	// compute) in the same call; it reads each branch's storage, so a page
	// costs its branches' sizes.
	Usage bool
}

// BranchPage is a page of branches.
type BranchPage struct {
	Branches []Branch `json:"branches"`
	Next     string   `json:"next,omitempty"`
	// Total counts the project's branches when the list is not filtered
	// (no prefix or labels, and the caller sees every branch).
	Total *int `json:"total,omitempty"`
}

func (s *Service) storeOr() (*storage.Store, error) {
	if s.cfg.Store == nil {
		return nil, fmt.Errorf("no branch store is configured: %w", ErrUnavailable)
	}
	return s.cfg.Store, nil
}

// storeErr maps storage errors onto the facade's sentinels.
func storeErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrProjectNotFound), errors.Is(err, storage.ErrBranchNotFound), errors.Is(err, storage.ErrSnapshotNotFound):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, storage.ErrProjectExists), errors.Is(err, storage.ErrBranchExists), errors.Is(err, storage.ErrSnapshotExists),
		errors.Is(err, storage.ErrProtected), errors.Is(err, storage.ErrHasChildren), errors.Is(err, storage.ErrNoParent), errors.Is(err, storage.ErrBusy),
		errors.Is(err, storage.ErrProjectNotEmpty):
		return fmt.Errorf("%w: %w", ErrConflict, err)
	case errors.Is(err, storage.ErrInvalidName), errors.Is(err, storage.ErrInvalidArgument):
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	case errors.Is(err, storage.ErrFuture), errors.Is(err, storage.ErrBeforeHorizon):
		return &FieldError{Field: "parent_timestamp", Reason: err.Error()}
	case errors.Is(err, storage.ErrClosed):
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// computeErr maps compute errors onto the facade's sentinels; a failed
// start keeps the Postgres log tail in the message.
func computeErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, compute.ErrBranchNotFound):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, compute.ErrCapacity):
		return fmt.Errorf("%w: %w", ErrCapacity, err)
	case errors.Is(err, compute.ErrInvalidName):
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	case errors.Is(err, compute.ErrStartFailed), errors.Is(err, compute.ErrCrashLoop), errors.Is(err, compute.ErrClosed):
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

func checkStoreName(field, name string) error {
	if name == "" {
		return invalid(field, "is required")
	}
	if !storage.ValidName(name) {
		return invalid(field, "%q is not a valid name (want [a-z0-9][a-z0-9._/-]{0,62}, e.g. feature/x or experiment-42)", name)
	}
	return nil
}

// view turns a storage branch into a facade branch; nameOf names branch
// ids.
func (s *Service) view(project string, b storage.Branch, nameOf func(id uint64) string) Branch {
	out := Branch{Name: b.Name, Project: project, ParentID: nameOf(b.Parent), ParentLSN: b.ParentSeq,
		CreatedAt: b.CreatedAt, Labels: b.Labels, Protected: b.Protected}
	if !b.ParentTime.IsZero() {
		t := b.ParentTime
		out.ParentTimestamp = &t
	}
	if !b.ExpiresAt.IsZero() {
		t := b.ExpiresAt
		out.ExpiresAt = &t
		out.ExpiryBlocked = s.expiryBlocked(project, b)
	}
	return out
}

// isMain reports whether b is the main branch of project. A branch
// without a parent is not always main: a fork of a snapshot whose branch
// has since been deleted has none.
func (s *Service) isMain(project string, b storage.Branch) bool {
	p, err := s.cfg.Store.Project(project)
	return err == nil && p.Main == b.ID
}

// ListBranches lists the branches the caller may read, in tree order.
func (s *Service) ListBranches(ctx context.Context, req ListBranchesRequest) (*BranchPage, error) {
	c, err := s.projectCaller(ctx, req.Project)
	if err != nil {
		return nil, s.refused(ctx, "branch.list", req.Project, err)
	}
	if req.Limit == 0 {
		req.Limit = 100
	}
	if req.Limit < 0 || req.Limit > 1000 {
		return nil, invalid("limit", "want 1..1000")
	}
	var after []string
	if req.Cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(req.Cursor)
		if err != nil || len(raw) == 0 {
			return nil, invalid("cursor", "use the next value of a previous page")
		}
		after = strings.Split(string(raw), "\n")
	}
	st, err := s.storeOr()
	if err != nil {
		return nil, err
	}
	var keep func(name string, labels map[string]string) bool
	if req.Prefix != "" || len(req.Labels) > 0 || !c.seesAllBranches(req.Project) {
		keep = func(name string, labels map[string]string) bool {
			if !strings.HasPrefix(name, req.Prefix) || !c.AllowsBranch(RoleRead, req.Project, name, labels[LabelMasked] == MaskedDone) {
				return false
			}
			for k, v := range req.Labels {
				if labels[k] != v {
					return false
				}
			}
			return true
		}
	}
	// A page visits at most scanLimit branches, so that a selective
	// filter does not walk a whole large project in one call: a short
	// page with a next cursor means "more may follow".
	scanLimit := max(10*req.Limit, 1000)
	bs, next, err := st.TreePage(req.Project, after, req.Limit, scanLimit, keep)
	if err != nil {
		return nil, storeErr(err)
	}
	page := &BranchPage{Branches: make([]Branch, 0, len(bs))}
	if keep == nil {
		if n, err := st.BranchCount(req.Project); err == nil {
			page.Total = &n
		}
	}
	for _, b := range bs {
		v := s.view(req.Project, b.Branch, s.branchName)
		v.Depth = b.Depth
		if req.Endpoints || req.Usage {
			v.Endpoint = s.endpointStatus(req.Project, b.Name)
		}
		if req.Usage {
			u, err := st.Usage(req.Project, b.Name)
			if errors.Is(err, storage.ErrBranchNotFound) {
				continue // deleted meanwhile
			}
			if err != nil {
				return nil, storeErr(err)
			}
			bu := branchUsage(b.Name, u)
			if v.Endpoint != nil {
				bu.ComputeSeconds, bu.Wakes = v.Endpoint.ComputeSeconds, v.Endpoint.Wakes
			}
			bu.Cost = s.cost(bu, v.CreatedAt)
			v.Usage = &bu
			if !req.Endpoints {
				v.Endpoint = nil
			}
		}
		page.Branches = append(page.Branches, v)
	}
	if next != nil {
		page.Next = base64.RawURLEncoding.EncodeToString([]byte(strings.Join(next, "\n")))
	}
	return page, nil
}

// GetBranch describes a branch: catalog fields, its endpoint's state and
// its storage accounting.
func (s *Service) GetBranch(ctx context.Context, project, branch string) (*Branch, error) {
	if err := s.authorize(ctx, RoleRead, project, branch); err != nil {
		return nil, s.refused(ctx, "branch.get", project+"/"+branch, err)
	}
	st, err := s.storeOr()
	if err != nil {
		return nil, err
	}
	raw, err := st.Branch(project, branch)
	if err != nil && !errors.Is(err, storage.ErrBranchNotFound) && !errors.Is(err, storage.ErrInvalidName) {
		return nil, storeErr(err)
	}
	if err == nil {
		b := s.view(project, raw, s.branchName)
		b.Depth = s.depth(project, raw)
		b.Endpoint = s.endpointStatus(project, branch)
		u, err := s.cfg.Store.Usage(project, branch)
		if err != nil {
			return nil, storeErr(err)
		}
		bu := branchUsage(branch, u)
		if b.Endpoint != nil {
			bu.ComputeSeconds, bu.Wakes = b.Endpoint.ComputeSeconds, b.Endpoint.Wakes
		}
		bu.Cost = s.cost(bu, b.CreatedAt)
		b.Usage = &bu
		return &b, nil
	}
	return nil, fmt.Errorf("branch %s of project %s: %w", branch, project, ErrNotFound)
}

// expiry resolves expires_at / ttl; ok false when neither is given.
func (s *Service) expiry(expiresAt *time.Time, ttl *string) (t time.Time, ok bool, err error) {
	switch {
	case expiresAt != nil && ttl != nil:
		return time.Time{}, false, invalid("ttl", "give expires_at or ttl, not both")
	case expiresAt != nil:
		return *expiresAt, true, nil
	case ttl != nil:
		d, err := time.ParseDuration(*ttl)
		if err != nil || d < 0 {
			return time.Time{}, false, invalid("ttl", "want a positive Go duration such as 30s, 2h or 168h")
		}
		if d == 0 {
			return time.Time{}, true, nil
		}
		return s.cfg.Now().Add(d), true, nil
	}
	return time.Time{}, false, nil
}

// CreateBranch forks a branch (write scope on the new name). The fork point
// is resolved and pinned atomically by storage.
func (s *Service) CreateBranch(ctx context.Context, req CreateBranchRequest) (*Branch, error) {
	var out *Branch
	detail := "parent=" + req.ParentID
	if req.Masked {
		detail += " masked=true"
	}
	err := s.audited(ctx, "branch.create", req.Project+"/"+req.Name, detail, func() error {
		// A masked scope may create the branch only if it will be masked;
		// checked again below once the parent is known.
		yes := true
		if err := s.authorizeAs(ctx, RoleWrite, req.Project, req.Name, &yes); err != nil {
			return err
		}
		if err := checkLabels(req.Labels); err != nil {
			return err
		}
		st, err := s.storeOr()
		if err != nil {
			return err
		}
		if err := checkStoreName("name", req.Name); err != nil {
			return err
		}
		p, err := st.Project(req.Project)
		if err != nil {
			return storeErr(err)
		}
		points := 0
		at := storage.AtHead()
		if req.Snapshot != "" {
			points++
			at = storage.AtSnapshot(req.Snapshot)
		}
		if req.LSN != 0 {
			points++
			at = storage.AtSeq(req.LSN)
		}
		if req.Timestamp != nil {
			points++
			at = storage.AtTime(*req.Timestamp)
		}
		if points > 1 {
			return invalid("parent_timestamp", "give at most one of snapshot, parent_lsn and parent_timestamp")
		}
		parent := req.ParentID
		if parent == "" && req.Snapshot == "" {
			parent = s.branchName(p.Main)
		}
		var parentMasked *bool // nil: look it up
		if req.Masked {
			parentMasked = &yes // the caller will see only masked data
		}
		if parent != "" {
			if err := s.authorizeAs(ctx, RoleRead, req.Project, parent, parentMasked); err != nil {
				return err
			}
		}
		source := parent // the branch whose data the fork holds
		if req.Snapshot != "" {
			if source, err = s.readSnapshot(ctx, req.Project, req.Snapshot, parentMasked); err != nil {
				return err
			}
		}
		if err := s.pastOfMasked(ctx, req.Project, source, req.LSN != 0 || req.Timestamp != nil); err != nil {
			return err
		}
		labels := maps.Clone(req.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		var policy *MaskPolicy
		var secret string
		if req.Masked {
			run, err := s.remask(ctx, req.Project, source, points == 0)
			if err != nil {
				return err
			}
			labels[LabelMasked] = MaskedDone
			if run {
				if policy, secret, err = s.maskPolicy(req.Project); err != nil {
					return err
				}
				labels[LabelMasked] = MaskedPending
			}
		} else if points == 0 && parent != "" && s.maskedBranch(req.Project, parent) {
			labels[LabelMasked] = MaskedDone // the head of a masked branch is masked
		}
		inherits := labels[LabelMasked] != ""
		if err := s.authorizeAs(ctx, RoleWrite, req.Project, req.Name, &inherits); err != nil {
			return err
		}
		exp, _, err := s.expiry(req.ExpiresAt, ptrIf(req.TTL))
		if err != nil {
			return err
		}
		if _, err := st.Branch(req.Project, req.Name); err == nil {
			return fmt.Errorf("branch %s already exists: %w", req.Name, ErrConflict)
		}
		if parent != "" {
			if _, err := st.Branch(req.Project, parent); err != nil {
				return storeErr(err)
			}
		}
		if s.cfg.MaxBranches > 0 {
			n, err := st.BranchCount(req.Project)
			if err != nil {
				return storeErr(err)
			}
			if n >= s.cfg.MaxBranches {
				return fmt.Errorf("project %s has %d branches, the maximum (max_branches): delete some first: %w", req.Project, n, ErrCapacity)
			}
		}
		if points == 0 && parent != "" {
			s.checkpointForFork(ctx, req.Project, parent)
		}
		b, err := st.Fork(req.Project, parent, req.Name, at, storage.BranchOptions{ExpiresAt: exp, Labels: labels, Protected: req.Protected})
		if err != nil {
			return storeErr(err)
		}
		if policy != nil {
			if b, err = s.maskFork(ctx, req.Project, b, policy, secret); err != nil {
				return err
			}
		}
		v := s.view(req.Project, b, s.branchName)
		v.Depth = s.depth(req.Project, b)
		out = &v
		return nil
	})
	return out, err
}

func ptrIf(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// depth is b's depth in its project's tree: its ancestors still there
// (a parent deleted since makes a root, as in ListBranches).
func (s *Service) depth(project string, b storage.Branch) int {
	d := 0
	for id := b.Parent; id != 0; d++ {
		p, err := s.cfg.Store.BranchByID(id)
		if err != nil {
			break
		}
		id = p.Parent
	}
	return d
}

// branchName is the name of branch id, "" when it is gone.
func (s *Service) branchName(id uint64) string {
	if id == 0 {
		return ""
	}
	b, err := s.cfg.Store.BranchByID(id)
	if err != nil {
		return ""
	}
	return b.Name
}

// UpdateBranch changes labels, protection, expiry and the name, all or
// nothing: every field is checked before any is applied, so a refused
// request changes nothing. A protected branch can be renamed in the
// request that unprotects it.
func (s *Service) UpdateBranch(ctx context.Context, req UpdateBranchRequest) (*Branch, error) {
	var out *Branch
	err := s.audited(ctx, "branch.update", req.Project+"/"+req.Branch, "", func() error {
		if err := s.authorize(ctx, RoleWrite, req.Project, req.Branch); err != nil {
			return err
		}
		st, err := s.storeOr()
		if err != nil {
			return err
		}
		if err := checkLabels(req.Labels); err != nil {
			return err
		}
		u := storage.BranchUpdate{Protected: req.Protected, Labels: req.Labels}
		if req.Labels != nil {
			if u.Labels, err = s.keepReserved(req.Project, req.Branch, req.Labels); err != nil {
				return err
			}
		}
		exp, set, err := s.expiry(req.ExpiresAt, req.TTL)
		if err != nil {
			return err
		}
		if set {
			u.ExpiresAt = &exp
			if !exp.IsZero() {
				if cur, err := st.Branch(req.Project, req.Branch); err == nil && s.isMain(req.Project, cur) {
					return invalid("ttl", "the main branch of project %s never expires (it cannot be deleted)", req.Project)
				}
			}
		}
		// Everything is checked before anything changes; the rename goes
		// first, and is undone should the other fields then fail.
		name := req.Branch
		if req.Name != nil && *req.Name != req.Branch {
			unprotect := req.Protected != nil && !*req.Protected
			if _, err := s.checkRename(ctx, req.Project, req.Branch, *req.Name, unprotect); err != nil {
				return err
			}
			old, err := st.Branch(req.Project, req.Branch)
			if err != nil {
				return storeErr(err)
			}
			if unprotect && old.Protected {
				no, yes := false, true
				if _, err := st.UpdateBranch(req.Project, req.Branch, storage.BranchUpdate{Protected: &no}); err != nil {
					return storeErr(err)
				}
				defer func() {
					if name == req.Branch { // not renamed: protected again
						_, _ = st.UpdateBranch(req.Project, req.Branch, storage.BranchUpdate{Protected: &yes})
					}
				}()
			}
			if _, err := s.rename(ctx, req.Project, req.Branch, *req.Name); err != nil {
				return err
			}
			name = *req.Name
		}
		b, err := st.UpdateBranch(req.Project, name, u)
		if err != nil {
			if name != req.Branch {
				if _, rerr := st.RenameBranch(req.Project, name, req.Branch); rerr == nil {
					name = req.Branch
				} else {
					s.log.Error("update branch: renamed, but its other fields failed and the rename could not be undone",
						"branch", req.Branch, "name", name, "err", rerr)
				}
			}
			return storeErr(err)
		}
		v := s.view(req.Project, b, s.branchName)
		v.Depth = s.depth(req.Project, b)
		out = &v
		return nil
	})
	return out, err
}

// rename gives a branch a new name: a catalog rename in storage, so the
// branch keeps its timeline and history, its fork point (the base of a
// merge back), creation time, snapshots, children and per-branch
// passwords (keyed by its ID). Its endpoint stops (endpoints, mounts and
// proxy routes go by name) and starts under the new name on the next
// connection, with the postmaster settings it had. Protected branches and
// the main branch cannot be renamed (ErrConflict).
func (s *Service) rename(ctx context.Context, project, from, to string) (storage.Branch, error) {
	old, err := s.checkRename(ctx, project, from, to, false)
	if err != nil {
		return storage.Branch{}, err
	}
	if err := s.stopEndpoint(ctx, project, old.Name, false); err != nil {
		return storage.Branch{}, err
	}
	b, err := s.cfg.Store.RenameBranch(project, from, to)
	if err != nil {
		return storage.Branch{}, storeErr(err)
	}
	if c := s.cfg.Compute; c != nil {
		if set := c.Settings(project, from); set != nil {
			c.SetSettings(project, to, set)
			c.SetSettings(project, from, nil)
		}
	}
	return b, nil
}

// checkRename is rename's checks, done before anything changes;
// unprotecting means the caller unprotects the branch first.
func (s *Service) checkRename(ctx context.Context, project, from, to string, unprotecting bool) (storage.Branch, error) {
	masked := s.maskedBranch(project, from) // the name changes, the data does not
	if err := s.authorizeAs(ctx, RoleWrite, project, to, &masked); err != nil {
		return storage.Branch{}, err
	}
	if err := checkStoreName("name", to); err != nil {
		return storage.Branch{}, err
	}
	st := s.cfg.Store
	old, err := st.Branch(project, from)
	if err != nil {
		return storage.Branch{}, storeErr(err)
	}
	if s.isMain(project, old) {
		return storage.Branch{}, fmt.Errorf("the main branch cannot be renamed: %w", ErrConflict)
	}
	if old.Protected && !unprotecting {
		return storage.Branch{}, fmt.Errorf("branch %s is protected; unprotect it to rename: %w", from, ErrConflict)
	}
	if _, err := st.Branch(project, to); err == nil {
		return storage.Branch{}, fmt.Errorf("branch %s already exists: %w", to, ErrConflict)
	}
	return old, nil
}

// DeleteBranch discards a branch: protected branches and the main branch
// are refused, branches with children too unless cascade. Endpoints of
// the deleted branches are stopped first.
func (s *Service) DeleteBranch(ctx context.Context, project, branch string, cascade bool) error {
	return s.audited(ctx, "branch.delete", project+"/"+branch, fmt.Sprintf("cascade=%t", cascade), func() error {
		if err := s.authorize(ctx, RoleWrite, project, branch); err != nil {
			return err
		}
		return s.deleteBranch(ctx, project, branch, cascade)
	})
}

func (s *Service) deleteBranch(ctx context.Context, project, branch string, cascade bool) error {
	st, err := s.storeOr()
	if err != nil {
		return err
	}
	sub, err := st.Subtree(project, branch)
	if errors.Is(err, storage.ErrBranchNotFound) {
		return fmt.Errorf("branch %s of project %s: %w", branch, project, ErrNotFound)
	}
	if err != nil {
		return storeErr(err)
	}
	if s.isMain(project, sub[0].Branch) {
		return fmt.Errorf("branch %s is the project's main branch and cannot be deleted: %w", branch, ErrConflict)
	}
	// The branch and its descendants, in tree order.
	var victims []string
	for _, b := range sub {
		if b.Protected {
			return fmt.Errorf("branch %s is protected; unprotect it first: %w", b.Name, ErrConflict)
		}
		victims = append(victims, b.Name)
	}
	if len(victims) > 1 && !cascade {
		return fmt.Errorf("branch %s has %d descendant branches; delete them or pass cascade: %w", branch, len(victims)-1, ErrConflict)
	}
	for _, v := range victims {
		if err := s.stopEndpoint(ctx, project, v, true); err != nil {
			return err
		}
	}
	if err := st.DeleteBranch(project, branch, storage.DeleteOptions{Cascade: cascade}); err != nil {
		return storeErr(err)
	}
	if s.cfg.Compute != nil {
		// What compute kept of the branches beside the store (a local WAL
		// a full disk would not take in) goes with them.
		if err := s.cfg.Compute.SweepVolumes(ctx, project); err != nil {
			s.log.Warn("delete branch: sweep volumes", "project", project, "branch", branch, "err", err)
		}
	}
	return nil
}

// ResetBranch points a branch at its parent's current head. The old head
// is kept as a snapshot unless discard: named snapshot, default
// "<branch>.reset.<unix-nanoseconds>" (or "reset.<unix-nanoseconds>" when
// that is too long), so resets in a row never collide; the answer's
// Snapshot names it.
func (s *Service) ResetBranch(ctx context.Context, project, branch, snapshot string, discard bool) (*Branch, error) {
	var out *Branch
	err := s.audited(ctx, "branch.reset", project+"/"+branch, "snapshot="+snapshot, func() error {
		if err := s.authorize(ctx, RoleWrite, project, branch); err != nil {
			return err
		}
		st, err := s.storeOr()
		if err != nil {
			return err
		}
		if snapshot != "" {
			if err := checkStoreName("snapshot", snapshot); err != nil {
				return err
			}
		}
		cur, err := st.Branch(project, branch)
		if err != nil {
			return storeErr(err)
		}
		// The reset brings the parent's current head: the caller must
		// read the parent (project-wide once it is gone).
		if err := s.authorize(ctx, RoleRead, project, s.branchName(cur.Parent)); err != nil {
			return err
		}
		if sb, err := s.StandbyOf(project, branch); err != nil {
			return err
		} else if sb != nil {
			return fmt.Errorf("branch %s is a replica that follows its source; promote it first (or fork it): %w", branch, ErrConflict)
		}
		if cur.Labels[LabelMasked] != "" {
			if !s.maskedBranch(project, s.branchName(cur.Parent)) {
				return fmt.Errorf("branch %s is masked and its parent is not: a reset would bring back original values; fork the parent with masked instead: %w", branch, ErrConflict)
			}
		}
		if err := s.stopEndpoint(ctx, project, branch, false); err != nil {
			return err
		}
		if snapshot == "" && !discard {
			snapshot = keepName(branch, "reset", s.cfg.Now())
		}
		b, err := st.Reset(project, branch, storage.ResetOptions{Snapshot: snapshot, Discard: discard})
		if err != nil {
			return storeErr(err)
		}
		v := s.view(project, b, s.branchName)
		v.Depth = s.depth(project, b)
		if !discard {
			v.Snapshot = snapshot
		}
		out = &v
		return nil
	})
	return out, err
}

// keepName names the snapshot that keeps a branch's old head:
// "<branch>.<what>.<unix-nanoseconds>", or "<what>.<unix-nanoseconds>"
// when that would not be a valid name.
func keepName(branch, what string, now time.Time) string {
	if n := fmt.Sprintf("%s.%s.%d", branch, what, now.UnixNano()); storage.ValidName(n) {
		return n
	}
	return fmt.Sprintf("%s.%d", what, now.UnixNano())
}
