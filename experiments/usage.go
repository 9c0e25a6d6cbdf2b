package experiments

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"time"

	"github.com/offshootdb/offshoot/storage"
)

// Prices is a price table that turns usage into an estimated cost. All
// prices are in Currency and must be finite and non-negative.
type Prices struct {
	// ComputeHour is the price of one hour of a running endpoint.
	ComputeHour float64 `json:"compute_hour"`
	// StorageGiBMonth is the price of one GiB of a branch's own storage
	// (its copy-on-write delta) kept for a 30-day month.
	StorageGiBMonth float64 `json:"storage_gib_month"`
	// Currency labels the amounts, e.g. "USD". Default "USD".
	Currency string `json:"currency,omitempty"`
}

// Cost is an estimated cost: Compute + Storage = Total, in Currency.
type Cost struct {
	Compute  float64 `json:"compute"`
	Storage  float64 `json:"storage"`
	Total    float64 `json:"total"`
	Currency string  `json:"currency"`
}

// month is the billing month of StorageGiBMonth.
const month = 30 * 24 * time.Hour

func (p *Prices) validate() error {
	for _, f := range []struct {
		name string
		v    float64
	}{{"prices.compute_hour", p.ComputeHour}, {"prices.storage_gib_month", p.StorageGiBMonth}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) || f.v < 0 {
			return invalid(f.name, "must be a non-negative number, got %v", f.v)
		}
	}
	return nil
}

// Estimate is the cost of computeSeconds of compute plus deltaBytes of
// storage kept for age: ComputeHour × hours + StorageGiBMonth × GiB ×
// (age / 30 days). A negative age counts as zero.
func (p Prices) Estimate(computeSeconds float64, deltaBytes uint64, age time.Duration) Cost {
	cur := p.Currency
	if cur == "" {
		cur = "USD"
	}
	age = max(age, 0)
	c := Cost{Currency: cur,
		Compute: p.ComputeHour * computeSeconds / 3600,
		Storage: p.StorageGiBMonth * float64(deltaBytes) / (1 << 30) * (float64(age) / float64(month)),
	}
	c.Total = c.Compute + c.Storage
	return c
}

// cost estimates a branch's cost so far, nil without a price table.
func (s *Service) cost(u BranchUsage, created time.Time) *Cost {
	if s.cfg.Prices == nil {
		return nil
	}
	c := s.cfg.Prices.Estimate(u.ComputeSeconds, u.DeltaBytes, s.cfg.Now().Sub(created))
	return &c
}

// add returns the sum of c and d; either may be nil.
func (c *Cost) add(d *Cost) *Cost {
	switch {
	case d == nil:
		return c
	case c == nil:
		cp := *d
		return &cp
	}
	return &Cost{Compute: c.Compute + d.Compute, Storage: c.Storage + d.Storage, Total: c.Total + d.Total, Currency: c.Currency}
}

// warnLead is how long before its expiry a branch is warned about:
// min(ExpiryWarning, 10% of its TTL).
func (s *Service) warnLead(b storage.Branch) time.Duration {
	lead := s.cfg.ExpiryWarning
	if ttl := b.ExpiresAt.Sub(b.CreatedAt); ttl > 0 {
		lead = min(lead, ttl/10)
	}
	return lead
}

// warnExpiring emits the expiry warning for b (audit entry
// "branch.expiring" and a log line) when it expires within its lead time
// and was not warned about for this expiry yet. Expired, protected and
// main branches get none.
func (s *Service) warnExpiring(ctx context.Context, project string, b storage.Branch, now time.Time) {
	if s.cfg.ExpiryWarning < 0 || b.ExpiresAt.IsZero() || b.Protected || s.isMain(project, b) || !b.ExpiresAt.After(now) || b.Labels[LabelMerge] != "" {
		return
	}
	left := b.ExpiresAt.Sub(now)
	if left > s.warnLead(b) {
		return
	}
	k := project + "/" + b.Name
	s.warnMu.Lock()
	if s.warned == nil {
		s.warned = map[string]time.Time{}
	}
	done := s.warned[k].Equal(b.ExpiresAt)
	s.warned[k] = b.ExpiresAt
	s.warnMu.Unlock()
	if done {
		return
	}
	s.log.LogAttrs(ctx, slog.LevelWarn, "branch expiring",
		slog.String("project", project), slog.String("branch", b.Name),
		slog.Time("expires_at", b.ExpiresAt), slog.Duration("left", left.Round(time.Millisecond)))
	s.Audit(ctx, AuditEntry{Action: "branch.expiring", Target: k, Result: "ok",
		Detail: fmt.Sprintf("expires at %s (in %s)", b.ExpiresAt.UTC().Format(time.RFC3339), left.Round(time.Second))})
}

// pruneWarned forgets warnings and refusals about branches a complete
// sweep no longer saw.
func (s *Service) pruneWarned(seen map[string]bool) {
	s.warnMu.Lock()
	defer s.warnMu.Unlock()
	for k := range s.warned {
		if !seen[k] {
			delete(s.warned, k)
		}
	}
	for k := range s.blocked {
		if !seen[k] {
			delete(s.blocked, k)
		}
	}
}

// EndpointLog returns the last lines (default 50, at most 1000) of the
// Postgres log of a branch's endpoint, oldest first; empty when the
// endpoint never started. It needs read access to the branch.
func (s *Service) EndpointLog(ctx context.Context, project, branch string, lines int) ([]string, error) {
	if err := s.authorize(ctx, RoleRead, project, branch); err != nil {
		return nil, s.refused(ctx, "endpoint.log", project+"/"+branch, err)
	}
	switch {
	case lines == 0:
		lines = 50
	case lines < 0 || lines > 1000:
		return nil, invalid("lines", "want 1..1000, got %d", lines)
	}
	st, err := s.storeOr()
	if err != nil {
		return nil, err
	}
	if _, err := st.Branch(project, branch); err != nil {
		return nil, storeErr(err)
	}
	if s.cfg.Compute == nil {
		return nil, fmt.Errorf("no compute is configured: %w", ErrUnavailable)
	}
	out, err := s.cfg.Compute.LogTail(project, branch, lines)
	if err != nil {
		return nil, fmt.Errorf("endpoint log of %s/%s: %w", project, branch, err)
	}
	return out, nil
}

// BranchUsage is a branch's storage accounting and compute use.
type BranchUsage struct {
	Branch string `json:"branch"`
	// LogicalBytes is what a full copy of the branch would occupy.
	LogicalBytes uint64 `json:"logical_bytes"`
	// DeltaBytes is what the branch's own timeline stores (its
	// copy-on-write delta, history included).
	DeltaBytes uint64 `json:"delta_bytes"`
	// SharedBytes is the part of LogicalBytes the branch does not store
	// itself: read from ancestors (or sparse, reading as zeros).
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

// ProjectUsage reports storage and compute use per branch and in total.
func (s *Service) ProjectUsage(ctx context.Context, project string) (*Usage, error) {
	if err := s.authorize(ctx, RoleRead, project, ""); err != nil {
		return nil, s.refused(ctx, "usage", project, err)
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
