package experiments

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/offshootdb/offshoot/experiments/internal/controldb"
)

// MigrationRequest is a schema change to try on a fork of Branch.
type MigrationRequest struct {
	Project string `json:"-"`
	Branch  string `json:"-"`
	// SQL is the migration: one or more statements (DDL and any data
	// changes that go with it), run in one transaction.
	SQL string `json:"sql"`
	// TimeoutMS is the statement timeout, as in QueryRequest.
	TimeoutMS int `json:"timeout_ms,omitempty"`
}

// Migration is a prepared (and possibly completed) migration.
type Migration struct {
	// ID names the migration; CompleteMigration takes it.
	ID      string `json:"id"`
	Project string `json:"project"`
	Branch  string `json:"branch"`
	// Fork is the branch the migration was tried on, discarded when the
	// migration completes (it expires after 24 h otherwise).
	Fork string `json:"fork"`
	SQL  string `json:"sql"`
	// TimeoutMS is the statement timeout used on the fork and the branch.
	TimeoutMS int `json:"timeout_ms,omitempty"`
	// Schema is the schema diff of the fork against the branch right after
	// the migration ran on the fork.
	Schema SchemaDiff `json:"schema"`
	// DurationMS is how long the migration took on the fork.
	DurationMS  float64    `json:"duration_ms"`
	PreparedAt  time.Time  `json:"prepared_at"`
	CompletedAt *time.Time `json:"completed_at,omitempty"`
}

const migrationForkTTL = "24h"

func migrationKey(id string) []byte { return []byte("migration/" + id) }

// PrepareMigration forks Branch, runs the migration on the fork and
// records it with the schema diff it causes and its duration; Branch is
// not touched. Needs write scope on Branch (which CompleteMigration
// changes) and on the fork's name "migration/<id>". A migration that
// fails on the fork returns its *QueryError and leaves nothing behind.
func (s *Service) PrepareMigration(ctx context.Context, req MigrationRequest) (*Migration, error) {
	if strings.TrimSpace(req.SQL) == "" {
		return nil, invalid("sql", "is empty")
	}
	if err := s.authorize(ctx, RoleWrite, req.Project, req.Branch); err != nil {
		s.recordEntry(ctx, AuditEntry{Action: "migration.prepare", Target: req.Project + "/" + req.Branch, SQL: s.auditSQL(req.SQL)}, err)
		return nil, err
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	id := hex.EncodeToString(rnd[:])
	m := &Migration{ID: id, Project: req.Project, Branch: req.Branch, Fork: "migration/" + id, SQL: req.SQL, TimeoutMS: req.TimeoutMS, PreparedAt: s.cfg.Now().UTC()}
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: req.Project, Name: m.Fork, ParentID: req.Branch, TTL: migrationForkTTL,
		Labels: map[string]string{"purpose": "migration"}}); err != nil {
		return nil, fmt.Errorf("prepare migration: fork %s: %w", req.Branch, err)
	}
	discard := func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := s.DeleteBranch(dctx, req.Project, m.Fork, true); err != nil && !errors.Is(err, ErrNotFound) {
			s.log.Warn("migration: discard fork", "project", req.Project, "fork", m.Fork, "err", err)
		}
	}
	res, err := s.Query(ctx, QueryRequest{Project: req.Project, Branch: m.Fork, SQL: req.SQL, TimeoutMS: req.TimeoutMS})
	if err != nil {
		discard()
		return nil, err
	}
	m.DurationMS = res.DurationMS
	d, err := s.Diff(ctx, DiffRequest{Project: req.Project, Branch: m.Fork, Against: req.Branch, SampleRows: 1})
	if err != nil {
		discard()
		return nil, fmt.Errorf("prepare migration: diff: %w", err)
	}
	m.Schema = d.Schema
	if err := s.withDB(func(db *controldb.DB) error { return db.Put(migrationKey(id), m) }); err != nil {
		discard()
		return nil, fmt.Errorf("prepare migration: %w", err)
	}
	s.recordEntry(ctx, AuditEntry{Action: "migration.prepare", Target: req.Project + "/" + req.Branch, Detail: "id=" + id, SQL: s.auditSQL(req.SQL)}, nil)
	return m, nil
}

// CompleteMigration applies a prepared migration to its branch, in one
// transaction, then discards the fork it was tried on. The branch may
// have changed since the migration was prepared; the same SQL runs
// anyway, and if it fails nothing changes and the fork is kept.
// ErrNotFound for an unknown id (or one of another project), ErrConflict
// when it already completed. Needs write scope on the branch.
func (s *Service) CompleteMigration(ctx context.Context, project, id string) (*Migration, error) {
	var m Migration
	err := s.audited(ctx, "migration.complete", project+"/migration/"+id, "", func() error {
		if id == "" {
			return invalid("id", "is required")
		}
		err := s.withDB(func(db *controldb.DB) error { return db.Get(migrationKey(id), &m) })
		if errors.Is(err, controldb.ErrNotFound) || (err == nil && m.Project != project) {
			return fmt.Errorf("migration %q of project %s: %w", id, project, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if err := s.authorize(ctx, RoleWrite, project, m.Branch); err != nil {
			return err
		}
		if m.CompletedAt != nil {
			return fmt.Errorf("migration %s completed at %s: %w", id, m.CompletedAt.Format(time.RFC3339), ErrConflict)
		}
		if _, err := s.Query(ctx, QueryRequest{Project: project, Branch: m.Branch, SQL: m.SQL, TimeoutMS: m.TimeoutMS}); err != nil {
			return err
		}
		now := s.cfg.Now().UTC()
		m.CompletedAt = &now
		if err := s.withDB(func(db *controldb.DB) error { return db.Put(migrationKey(id), m) }); err != nil {
			return err
		}
		if err := s.DeleteBranch(ctx, project, m.Fork, true); err != nil && !errors.Is(err, ErrNotFound) {
			s.log.Warn("migration: discard fork", "project", project, "fork", m.Fork, "err", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &m, nil
}
