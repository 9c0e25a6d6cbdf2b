package experiments

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ExplainRequest asks for the executed plan of one statement on a branch.
type ExplainRequest struct {
	Project string `json:"-"`
	Branch  string `json:"-"`
	// SQL is one statement; it is run (EXPLAIN ANALYZE executes it), but
	// on a throwaway fork, so the branch is never changed.
	SQL    string `json:"sql"`
	Params []any  `json:"params,omitempty"`
	// TimeoutMS is the statement timeout, as in QueryRequest.
	TimeoutMS int `json:"timeout_ms,omitempty"`
}

// Explain is the plan of a statement as EXPLAIN (ANALYZE, BUFFERS) prints it.
type Explain struct {
	Project string `json:"project"`
	Branch  string `json:"branch"`
	// Fork is the throwaway branch the statement ran on; it is discarded
	// before Explain returns (and expires in an hour should that fail).
	Fork string `json:"fork"`
	// Plan is the text plan, one line per plan row.
	Plan       string  `json:"plan"`
	DurationMS float64 `json:"duration_ms"`
}

// explainForkTTL bounds the life of an explain fork whose discard failed.
const explainForkTTL = "1h"

// Explain runs EXPLAIN (ANALYZE, BUFFERS) of one statement on a throwaway
// fork of the branch and discards the fork: the statement really executes
// (writes included), with real timings, and the branch stays untouched.
// It needs write scope for the fork's name ("explain/<random>") in the
// project and read scope on the branch. Costs a fork (O(1)) and starting
// its compute. Safe for concurrent use.
func (s *Service) Explain(ctx context.Context, req ExplainRequest) (*Explain, error) {
	if strings.TrimSpace(req.SQL) == "" {
		return nil, invalid("sql", "is empty")
	}
	if err := s.authorize(ctx, RoleRead, req.Project, req.Branch); err != nil {
		s.recordEntry(ctx, AuditEntry{Action: "explain", Target: req.Project + "/" + req.Branch, SQL: s.auditSQL(req.SQL)}, err)
		return nil, err
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	fork := "explain/" + hex.EncodeToString(rnd[:])
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: req.Project, Name: fork, ParentID: req.Branch, TTL: explainForkTTL,
		Labels: map[string]string{"purpose": "explain"}}); err != nil {
		return nil, fmt.Errorf("explain: fork %s: %w", req.Branch, err)
	}
	defer func() {
		// Discard even when ctx is done: the fork must not outlive the call.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := s.DeleteBranch(dctx, req.Project, fork, true); err != nil && !errors.Is(err, ErrNotFound) {
			s.log.Warn("explain: discard fork", "project", req.Project, "fork", fork, "err", err)
		}
	}()
	res, err := s.Query(ctx, QueryRequest{Project: req.Project, Branch: fork, SQL: "EXPLAIN (ANALYZE, BUFFERS) " + req.SQL,
		Params: req.Params, TimeoutMS: req.TimeoutMS, MaxRows: maxMaxRows})
	if err != nil {
		return nil, err
	}
	out := &Explain{Project: req.Project, Branch: req.Branch, Fork: fork, DurationMS: res.DurationMS}
	var lines []string
	for _, r := range res.Results {
		for _, row := range r.Rows {
			if len(row) > 0 {
				lines = append(lines, fmt.Sprint(row[0]))
			}
		}
	}
	out.Plan = strings.Join(lines, "\n")
	return out, nil
}
