package experiments

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/compute"
	"github.com/offshootdb/offshoot/experiments/internal/controldb"
	"github.com/offshootdb/offshoot/storage"
)

// superuser is the role every project's cluster is created with.
const superuser = "postgres"

// Project is a project as listed and described.
type Project struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	// Branches is the number of branches (main included).
	Branches int `json:"branches"`
	// Default is true for the project the proxy assumes when a connection
	// names none.
	Default bool `json:"default"`
}

// projectRecord is what the control DB keeps per project: the superuser
// password, which the storage catalog has no field for.
type projectRecord struct {
	Password  string    `json:"password"`
	CreatedAt time.Time `json:"created_at"`
}

func projectKey(name string) []byte { return []byte("project/" + name) }

// Branch is a branch as listed and described. Endpoint and Usage are set
// by GetBranch only.
type Branch struct {
	Name    string `json:"name"`
	Project string `json:"project"`
	// ParentID is the parent branch's name, "" for the main branch.
	ParentID string `json:"parent_id,omitempty"`
	// ParentLSN is the store seq the branch forked at; ParentTimestamp the
	// wall-clock time the store knows that seq was reached by.
	ParentLSN       uint64            `json:"parent_lsn,omitempty"`
	ParentTimestamp *time.Time        `json:"parent_timestamp,omitempty"`
	CreatedAt       time.Time         `json:"created_at"`
	ExpiresAt       *time.Time        `json:"expires_at,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	Protected       bool              `json:"protected"`
	// Depth is the distance from the main branch (0) in ListBranches' tree order.
	Depth    int             `json:"depth"`
	Endpoint *EndpointStatus `json:"endpoint,omitempty"`
	Usage    *BranchUsage    `json:"usage,omitempty"`
}

// EndpointStatus is the state of a branch's compute endpoint.
type EndpointStatus struct {
	State          string     `json:"state"`
	Since          *time.Time `json:"since,omitempty"`
	LastActive     *time.Time `json:"last_active,omitempty"`
	Connections    int        `json:"connections"`
	Wakes          int64      `json:"wakes"`
	Crashes        int64      `json:"crashes"`
	ComputeSeconds float64    `json:"compute_seconds"`
	LastError      string     `json:"last_error,omitempty"`
}

// BranchUsage is a branch's storage accounting and compute use.
type BranchUsage struct {
	Branch string `json:"branch"`
	// LogicalBytes is what a full copy of the branch would occupy.
	LogicalBytes uint64 `json:"logical_bytes"`
	// DeltaBytes is what the branch's own timeline stores (its
	// copy-on-write delta, history included).
	DeltaBytes uint64 `json:"delta_bytes"`
	// SharedBytes is the part of LogicalBytes read from ancestors.
	SharedBytes uint64 `json:"shared_bytes"`
	// CurrentBytes and HistoryBytes split DeltaBytes: what the branch
	// holds now on its own, and the versions it no longer reads, kept for
	// the point-in-time window, snapshots and children until GC drops
	// them (plus file metadata).
	CurrentBytes   uint64  `json:"current_bytes"`
	HistoryBytes   uint64  `json:"history_bytes"`
	ComputeSeconds float64 `json:"compute_seconds"`
	Wakes          int64   `json:"wakes"`
	// Cost is the estimated cost so far; set when Config.Prices is.
	Cost *Cost `json:"cost,omitempty"`
}

// Usage is a project's usage: per branch and totals.
type Usage struct {
	Project        string        `json:"project"`
	Branches       []BranchUsage `json:"branches"`
	LogicalBytes   uint64        `json:"logical_bytes"`
	DeltaBytes     uint64        `json:"delta_bytes"`
	CurrentBytes   uint64        `json:"current_bytes"`
	HistoryBytes   uint64        `json:"history_bytes"`
	ComputeSeconds float64       `json:"compute_seconds"`
	Wakes          int64         `json:"wakes"`
	// Cost sums the branches' costs; set when Config.Prices is.
	Cost *Cost `json:"cost,omitempty"`
	// Materializations counts the project's materializations and the
	// storage they hold of their own (not in the branches' totals).
	Materializations MaterializationUsage `json:"materializations"`
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
	// Name renames the branch (see RenameBranch for the limits).
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
}

// BranchPage is a page of branches.
type BranchPage struct {
	Branches []Branch `json:"branches"`
	Next     string   `json:"next,omitempty"`
}

// ConnectionRequest asks for a branch's connection string.
type ConnectionRequest struct {
	Project, Branch string
	// Password includes the password of the role, which is the branch's
	// own: it opens this branch only. Handing it out is audited.
	Password bool
	// Role is the database role: "superuser" (admin only), "write" (write
	// scope) or "read"; default the strongest the caller's scope allows.
	Role string
}

// Connection is how to reach a branch through the proxy.
type Connection struct {
	URI      string `json:"uri"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	User     string `json:"user"`
	Database string `json:"database"`
	Options  string `json:"options"`
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

func randomPassword() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// CreateProject creates a project: a storage project whose main branch
// gets a fresh Postgres cluster with pgvector (compute.InitProject) and a
// generated superuser password, kept in the control DB. Admin only.
func (s *Service) CreateProject(ctx context.Context, name string) (*Project, error) {
	var out *Project
	err := s.audited(ctx, "project.create", name, "", func() error {
		if err := s.authorize(ctx, RoleAdmin, "", ""); err != nil {
			return err
		}
		st, err := s.storeOr()
		if err != nil {
			return err
		}
		if err := checkStoreName("name", name); err != nil {
			return err
		}
		p, _, err := st.CreateProject(name)
		if err != nil {
			return storeErr(err)
		}
		pw, err := randomPassword()
		if err != nil {
			return fmt.Errorf("create project: %w", err)
		}
		h, err := st.OpenHead(name, "main")
		if err != nil {
			return storeErr(err)
		}
		mnt, err := os.MkdirTemp(s.cfg.InitDir, "init-")
		if err == nil {
			err = os.Chmod(mnt, 0o755)
		}
		if err != nil {
			h.Close()
			return fmt.Errorf("create project: %w", err)
		}
		defer os.Remove(mnt)
		_, ierr := compute.InitProject(ctx, h, mnt, compute.InitOptions{Superuser: superuser, Password: pw, Project: name,
			LogFile: filepath.Join(s.cfg.InitDir, "init-"+strings.ReplaceAll(name, "/", "_")+".log")})
		if cerr := h.Close(); ierr == nil && cerr != nil {
			ierr = cerr
		}
		if ierr != nil {
			return fmt.Errorf("create project %s: %w: %w", name, ErrUnavailable, ierr)
		}
		if err := s.withDB(func(db *controldb.DB) error {
			return db.Put(projectKey(name), projectRecord{Password: pw, CreatedAt: p.CreatedAt})
		}); err != nil {
			return err
		}
		out = &Project{Name: name, CreatedAt: p.CreatedAt, Branches: 1, Default: name == s.cfg.DefaultProject}
		return nil
	})
	return out, err
}

// EnsureDefaultProject creates the default project when the store has no
// project at all (the first start on an empty data directory).
func (s *Service) EnsureDefaultProject(ctx context.Context) (created bool, err error) {
	st, err := s.storeOr()
	if err != nil {
		return false, err
	}
	if len(st.Projects()) > 0 {
		return false, nil
	}
	ctx = WithCaller(ctx, Caller{KeyID: "server", Scopes: []Scope{{Role: RoleAdmin}}})
	if _, err := s.CreateProject(ctx, s.cfg.DefaultProject); err != nil {
		return false, err
	}
	return true, nil
}

// canSeeProject reports whether the caller has any scope on project.
func canSeeProject(c Caller, project string) bool {
	for _, sc := range c.Scopes {
		if sc.Role == RoleAdmin || sc.Project == "*" || sc.Project == project {
			return true
		}
	}
	return false
}

// ListProjects lists the projects the caller has a scope on, by name.
func (s *Service) ListProjects(ctx context.Context) ([]Project, error) {
	c, ok := CallerFrom(ctx)
	if !ok {
		return nil, fmt.Errorf("no caller: %w", ErrUnauthenticated)
	}
	st, err := s.storeOr()
	if err != nil {
		return nil, err
	}
	out := []Project{}
	for _, p := range st.Projects() {
		if !canSeeProject(c, p.Name) {
			continue
		}
		bs, err := st.Branches(p.Name)
		if err != nil {
			return nil, storeErr(err)
		}
		out = append(out, Project{Name: p.Name, CreatedAt: p.CreatedAt, Branches: len(bs), Default: p.Name == s.cfg.DefaultProject})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// GetProject describes a project.
func (s *Service) GetProject(ctx context.Context, name string) (*Project, error) {
	c, ok := CallerFrom(ctx)
	if !ok {
		return nil, fmt.Errorf("no caller: %w", ErrUnauthenticated)
	}
	if !canSeeProject(c, name) {
		return nil, fmt.Errorf("key %s has no scope on project %s: %w", c.KeyID, name, ErrForbidden)
	}
	st, err := s.storeOr()
	if err != nil {
		return nil, err
	}
	p, err := st.Project(name)
	if err != nil {
		return nil, storeErr(err)
	}
	bs, err := st.Branches(name)
	if err != nil {
		return nil, storeErr(err)
	}
	return &Project{Name: p.Name, CreatedAt: p.CreatedAt, Branches: len(bs), Default: p.Name == s.cfg.DefaultProject}, nil
}

// DeleteProject deletes a project: its endpoints are stopped, then storage
// drops every branch, snapshot and timeline of it in one step, and its
// stored superuser password is removed from the control DB. Without force
// it is refused (ErrConflict) when the project has branches other than
// main, a protected branch, or is the server's default project; with force
// all of them go. A branch whose endpoint is restarted by a connection
// between the stop and the deletion makes the call fail with ErrConflict
// (busy); nothing is deleted then. Unknown project: ErrNotFound. Admin only.
func (s *Service) DeleteProject(ctx context.Context, name string, force bool) error {
	return s.audited(ctx, "project.delete", name, fmt.Sprintf("force=%t", force), func() error {
		if err := s.authorize(ctx, RoleAdmin, "", ""); err != nil {
			return err
		}
		st, err := s.storeOr()
		if err != nil {
			return err
		}
		if err := checkStoreName("name", name); err != nil {
			return err
		}
		bs, err := st.Branches(name)
		if err != nil {
			return storeErr(err)
		}
		if !force {
			if name == s.cfg.DefaultProject {
				return fmt.Errorf("project %s is the default project; pass force to delete it: %w", name, ErrConflict)
			}
			for _, b := range bs {
				if !s.isMain(name, b) {
					return fmt.Errorf("project %s has %d branches besides main; pass force to delete them all: %w", name, len(bs)-1, ErrConflict)
				}
				if b.Protected {
					return fmt.Errorf("branch %s of project %s is protected; pass force or unprotect it: %w", b.Name, name, ErrConflict)
				}
			}
		}
		for _, b := range bs {
			if err := s.stopEndpoint(ctx, name, b.Name, true); err != nil {
				return err
			}
		}
		if err := st.DeleteProject(name, storage.DeleteProjectOptions{Force: force}); err != nil {
			return storeErr(err)
		}
		return s.withDB(func(db *controldb.DB) error {
			if err := deleteMaskRecords(db, name); err != nil {
				return err
			}
			if err := deleteMatRecords(db, name); err != nil {
				return err
			}
			return db.Delete(projectKey(name))
		})
	})
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
	c, ok := CallerFrom(ctx)
	if !ok {
		return nil, fmt.Errorf("no caller: %w", ErrUnauthenticated)
	}
	if !canSeeProject(c, req.Project) {
		return nil, fmt.Errorf("key %s has no scope on project %s: %w", c.KeyID, req.Project, ErrForbidden)
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
	for _, b := range bs {
		v := s.view(req.Project, b.Branch, s.branchName)
		v.Depth = b.Depth
		if req.Endpoints {
			v.Endpoint = s.endpointStatus(req.Project, b.Name)
		}
		page.Branches = append(page.Branches, v)
	}
	if next != nil {
		page.Next = base64.RawURLEncoding.EncodeToString([]byte(strings.Join(next, "\n")))
	}
	return page, nil
}

// endpointStatus reads a branch's endpoint from compute.
func (s *Service) endpointStatus(project, branch string) *EndpointStatus {
	if s.cfg.Compute == nil {
		return nil
	}
	st := s.cfg.Compute.Status(project, branch)
	e := &EndpointStatus{State: string(st.State), Connections: st.Connections, Wakes: st.Wakes, Crashes: st.Crashes,
		ComputeSeconds: st.ComputeSeconds, LastError: st.LastError}
	if !st.Since.IsZero() {
		e.Since = &st.Since
	}
	if !st.LastActive.IsZero() {
		e.LastActive = &st.LastActive
	}
	return e
}

// GetBranch describes a branch: catalog fields, its endpoint's state and
// its storage accounting.
func (s *Service) GetBranch(ctx context.Context, project, branch string) (*Branch, error) {
	if err := s.authorize(ctx, RoleRead, project, branch); err != nil {
		return nil, err
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
		labels := maps.Clone(req.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		var policy *MaskPolicy
		var secret string
		if req.Masked {
			if policy, secret, err = s.maskPolicy(req.Project); err != nil {
				return err
			}
			labels[LabelMasked] = MaskedPending
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
		b, err := st.Fork(req.Project, parent, req.Name, at, storage.BranchOptions{ExpiresAt: exp, Labels: labels, Protected: req.Protected})
		if err != nil {
			return storeErr(err)
		}
		if req.Masked {
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

// UpdateBranch changes labels, protection, expiry and (last) the name.
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
		}
		b, err := st.UpdateBranch(req.Project, req.Branch, u)
		if err != nil {
			return storeErr(err)
		}
		if req.Name != nil && *req.Name != req.Branch {
			if b, err = s.rename(ctx, req.Project, req.Branch, *req.Name); err != nil {
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

// rename gives a branch a new name. The catalog has no rename, so the
// branch's head is pinned by a temporary snapshot, the branch deleted and
// re-forked under the new name from that snapshot with the same parent
// (all O(1)). Its endpoint stops; protected branches, branches with
// children and the main branch cannot be renamed (ErrConflict).
func (s *Service) rename(ctx context.Context, project, from, to string) (storage.Branch, error) {
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
	if old.Protected {
		return storage.Branch{}, fmt.Errorf("branch %s is protected; unprotect it to rename: %w", from, ErrConflict)
	}
	if _, err := st.Branch(project, to); err == nil {
		return storage.Branch{}, fmt.Errorf("branch %s already exists: %w", to, ErrConflict)
	}
	return s.recreate(ctx, project, old, to, "", "", storage.BranchOptions{ExpiresAt: old.ExpiresAt, Labels: old.Labels})
}

// recreate replaces branch old by a branch named to, forked with old's
// parent from snapshot source (or, if source is "", from old's own head).
// Old's head is kept as snapshot keep unless keep is "".
func (s *Service) recreate(ctx context.Context, project string, old storage.Branch, to, source, keep string, opts storage.BranchOptions) (storage.Branch, error) {
	st := s.cfg.Store
	parent := s.branchName(old.Parent)
	if err := s.stopEndpoint(ctx, project, old.Name, false); err != nil {
		return storage.Branch{}, err
	}
	pin := keep
	if pin == "" {
		pin = fmt.Sprintf("tmp.%d", s.cfg.Now().UnixNano())
	}
	if _, err := st.Snapshot(project, old.Name, pin, storage.SnapshotOptions{}); err != nil {
		return storage.Branch{}, storeErr(err)
	}
	from := pin
	if source != "" {
		from = source
	}
	if err := s.deleteBranch(ctx, project, old.Name, false); err != nil {
		_ = st.DeleteSnapshot(project, pin)
		return storage.Branch{}, err
	}
	nb, err := st.Fork(project, parent, to, storage.AtSnapshot(from), opts)
	if err != nil {
		// Put the old branch back where it was.
		if _, rerr := st.Fork(project, parent, old.Name, storage.AtSnapshot(pin), storage.BranchOptions{ExpiresAt: old.ExpiresAt, Labels: old.Labels}); rerr != nil {
			s.log.Error("recreate: old branch lost; its head is kept as a snapshot", slog.String("branch", old.Name), slog.String("snapshot", pin), slog.String("err", rerr.Error()))
			return storage.Branch{}, storeErr(err)
		}
		if keep == "" {
			_ = st.DeleteSnapshot(project, pin)
		}
		return storage.Branch{}, storeErr(err)
	}
	if keep == "" {
		if err := st.DeleteSnapshot(project, pin); err != nil {
			return storage.Branch{}, storeErr(err)
		}
	}
	return nb, nil
}

// stopEndpoint stops a branch's endpoint so that its volume (the storage
// head) is released before a catalog change that needs it closed. With
// discard, for a branch about to be deleted, Postgres skips the shutdown
// checkpoint (compute.Manager.Discard).
func (s *Service) stopEndpoint(ctx context.Context, project, branch string, discard bool) error {
	if s.cfg.Compute == nil {
		return nil
	}
	stop := s.cfg.Compute.Stop
	if discard {
		stop = s.cfg.Compute.Discard
	}
	if err := stop(ctx, project, branch); err != nil {
		return fmt.Errorf("stop endpoint of %s: %w", branch, computeErr(err))
	}
	return nil
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
	return storeErr(st.DeleteBranch(project, branch, storage.DeleteOptions{Cascade: cascade}))
}

// ResetBranch points a branch at its parent's current head. The old head
// is kept as a snapshot (named snapshot, default auto-named) unless discard.
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
		if cur.Labels[LabelMasked] != "" {
			if !s.maskedBranch(project, s.branchName(cur.Parent)) {
				return fmt.Errorf("branch %s is masked and its parent is not: a reset would bring back original values; fork the parent with masked instead: %w", branch, ErrConflict)
			}
		}
		if err := s.stopEndpoint(ctx, project, branch, false); err != nil {
			return err
		}
		b, err := st.Reset(project, branch, storage.ResetOptions{Snapshot: snapshot, Discard: discard})
		if err != nil {
			return storeErr(err)
		}
		v := s.view(project, b, s.branchName)
		v.Depth = s.depth(project, b)
		out = &v
		return nil
	})
	return out, err
}

// Connection returns the libpq URI of a branch through the proxy, for the
// database role the caller's scope allows (see ConnectionRequest.Role).
// With Password it carries the role's password on this branch (made on
// first request); every such grant is audited as branch.credential.
func (s *Service) Connection(ctx context.Context, req ConnectionRequest) (*Connection, error) {
	if !req.Password {
		return s.connection(ctx, req)
	}
	var out *Connection
	err := s.audited(ctx, "branch.credential", req.Project+"/"+req.Branch, "role="+req.Role, func() error {
		var err error
		out, err = s.connection(ctx, req)
		return err
	})
	return out, err
}

func (s *Service) connection(ctx context.Context, req ConnectionRequest) (*Connection, error) {
	role, err := s.dbRoleFor(ctx, req.Project, req.Branch, req.Role)
	if err != nil {
		return nil, err
	}
	st, err := s.storeOr()
	if err != nil {
		return nil, err
	}
	b, err := st.Branch(req.Project, req.Branch)
	if err != nil {
		return nil, storeErr(err)
	}
	host, portS, err := net.SplitHostPort(s.cfg.ProxyAddr)
	if err != nil {
		return nil, fmt.Errorf("proxy address %q: %w", s.cfg.ProxyAddr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	port, _ := strconv.Atoi(portS)
	opts := "endpoint=" + req.Branch
	if req.Project != s.cfg.DefaultProject {
		opts += " project=" + req.Project
	}
	user := url.User(role)
	if req.Password {
		c, err := s.credential(b, req.Project, role, false)
		if err != nil {
			return nil, err
		}
		user = url.UserPassword(role, c.Password)
	}
	u := url.URL{Scheme: "postgresql", User: user, Host: net.JoinHostPort(host, portS), Path: "/postgres",
		RawQuery: s.sslParams() + "&options=" + strings.ReplaceAll(url.QueryEscape(opts), "+", "%20")}
	return &Connection{URI: u.String(), Host: host, Port: port, User: role, Database: "postgres", Options: opts}, nil
}

// Endpoint returns the state of a branch's endpoint.
func (s *Service) Endpoint(ctx context.Context, project, branch string) (*EndpointStatus, error) {
	if err := s.authorize(ctx, RoleRead, project, branch); err != nil {
		return nil, err
	}
	if s.cfg.Compute == nil {
		return nil, fmt.Errorf("no compute is configured: %w", ErrUnavailable)
	}
	if _, err := s.cfg.Store.Branch(project, branch); err != nil {
		return nil, storeErr(err)
	}
	return s.endpointStatus(project, branch), nil
}

// EndpointAction starts ("start") or suspends ("suspend") a branch's endpoint.
func (s *Service) EndpointAction(ctx context.Context, project, branch, action string) (*EndpointStatus, error) {
	var out *EndpointStatus
	err := s.audited(ctx, "endpoint."+action, project+"/"+branch, "", func() error {
		if err := s.authorize(ctx, RoleWrite, project, branch); err != nil {
			return err
		}
		if s.cfg.Compute == nil {
			return fmt.Errorf("no compute is configured: %w", ErrUnavailable)
		}
		switch action {
		case "start":
			l, err := s.cfg.Compute.Acquire(ctx, project, branch)
			if err != nil {
				return computeErr(err)
			}
			l.Release()
		case "suspend":
			if err := s.cfg.Compute.Suspend(ctx, project, branch); err != nil {
				return computeErr(err)
			}
		default:
			return invalid("action", "want start or suspend")
		}
		out = s.endpointStatus(project, branch)
		return nil
	})
	return out, err
}

// ProjectUsage reports storage and compute use per branch and in total.
func (s *Service) ProjectUsage(ctx context.Context, project string) (*Usage, error) {
	if err := s.authorize(ctx, RoleRead, project, ""); err != nil {
		return nil, err
	}
	st, err := s.storeOr()
	if err != nil {
		return nil, err
	}
	bs, err := st.Branches(project)
	if err != nil {
		return nil, storeErr(err)
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].Name < bs[j].Name })
	out := &Usage{Project: project, Branches: []BranchUsage{}}
	for _, b := range bs {
		u, err := st.Usage(project, b.Name)
		if err != nil {
			if errors.Is(err, storage.ErrBranchNotFound) {
				continue // deleted meanwhile
			}
			return nil, storeErr(err)
		}
		bu := branchUsage(b.Name, u)
		if e := s.endpointStatus(project, b.Name); e != nil {
			bu.ComputeSeconds, bu.Wakes = e.ComputeSeconds, e.Wakes
		}
		bu.Cost = s.cost(bu, b.CreatedAt)
		out.Cost = out.Cost.add(bu.Cost)
		out.Branches = append(out.Branches, bu)
		out.LogicalBytes += bu.LogicalBytes
		out.DeltaBytes += bu.DeltaBytes
		out.CurrentBytes += bu.CurrentBytes
		out.HistoryBytes += bu.HistoryBytes
		out.ComputeSeconds += bu.ComputeSeconds
		out.Wakes += bu.Wakes
	}
	if out.Materializations, err = s.materializationUsage(project); err != nil {
		return nil, err
	}
	return out, nil
}

// branchUsage is the storage part of a branch's usage.
func branchUsage(branch string, u storage.BranchUsage) BranchUsage {
	return BranchUsage{Branch: branch, LogicalBytes: u.LogicalBytes, DeltaBytes: u.ExclusiveBytes, SharedBytes: u.SharedBytes,
		CurrentBytes: u.CurrentBytes, HistoryBytes: u.HistoryBytes}
}

// computeConn is the Connector over compute: a lease on the branch's
// endpoint and a connection over its private Unix socket (trusted, see
// compute's pg_hba) as the role access calls for: compute.RoleRead,
// compute.RoleWrite or, for Superuser, the bootstrap superuser.
func (s *Service) computeConn(ctx context.Context, project, branch string, access Access) (*pgx.Conn, func(), error) {
	role := compute.RoleWrite
	switch access {
	case ReadOnly:
		role = compute.RoleRead
	case Superuser:
		role = compute.RoleSuperuser
	}
	l, err := s.cfg.Compute.Acquire(ctx, project, branch)
	if err != nil {
		return nil, nil, computeErr(err)
	}
	conn, err := pgx.Connect(ctx, l.ConnString(role, "", "postgres"))
	if err != nil {
		l.Release()
		return nil, nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return conn, func() {
		conn.Close(context.Background())
		l.Release()
	}, nil
}

type connectorFunc func(ctx context.Context, project, branch string, access Access) (*pgx.Conn, func(), error)

func (f connectorFunc) Conn(ctx context.Context, project, branch string, access Access) (*pgx.Conn, func(), error) {
	return f(ctx, project, branch, access)
}
