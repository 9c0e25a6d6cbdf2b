package experiments

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/offshootdb/offshoot/compute"
	"github.com/offshootdb/offshoot/experiments/internal/controldb"
	"github.com/offshootdb/offshoot/experiments/masking"
	"github.com/offshootdb/offshoot/storage"
)

// Values of LabelMasked (credentials.go). The facade sets it on a fork
// made with CreateBranchRequest.Masked: MaskedPending from its creation
// until its masking has committed, MaskedDone afterwards. A fork of a
// done branch's head inherits MaskedDone. Labels with the reserved prefix
// "offshoot." cannot be set by callers, so nobody can forge the marker.
// Credential and proxy code refuses branches that are pending.
const (
	MaskedPending = "pending"
	MaskedDone    = "done"

	reservedLabelPrefix = "offshoot."
)

// MaskPolicy is a project's masking policy as stored and shown. The
// project's masking secret, which salts hash and fake, is never shown.
type MaskPolicy struct {
	Project string `json:"project"`
	masking.Policy
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by"`
}

func maskPolicyKey(project string) []byte { return []byte("maskpolicy/" + project) }
func maskSecretKey(project string) []byte { return []byte("masksecret/" + project) }

// SetMaskPolicy validates and stores the masking policy of a project,
// replacing any previous one (admin only; audited). The first policy of a
// project also creates its masking secret, which later policies keep, so
// masked values stay the same across policy changes and in every masked
// fork. It does not touch existing branches.
func (s *Service) SetMaskPolicy(ctx context.Context, project string, p masking.Policy) (*MaskPolicy, error) {
	var out *MaskPolicy
	err := s.audited(ctx, "mask.set", project, fmt.Sprintf("rules=%d", len(p.Rules)), func() error {
		if err := s.authorize(ctx, RoleAdmin, "", ""); err != nil {
			return err
		}
		st, err := s.storeOr()
		if err != nil {
			return err
		}
		if _, err := st.Project(project); err != nil {
			return storeErr(err)
		}
		if err := p.Validate(); err != nil {
			return invalid("rules", "%v", err)
		}
		c, _ := CallerFrom(ctx)
		mp := MaskPolicy{Project: project, Policy: p, UpdatedAt: s.cfg.Now().UTC(), UpdatedBy: c.KeyID}
		if err := s.withDB(func(db *controldb.DB) error {
			var secret string
			if err := db.Get(maskSecretKey(project), &secret); errors.Is(err, controldb.ErrNotFound) {
				b := make([]byte, 32)
				if _, err := rand.Read(b); err != nil {
					return err
				}
				if err := db.Put(maskSecretKey(project), base64.RawStdEncoding.EncodeToString(b)); err != nil {
					return err
				}
			} else if err != nil {
				return err
			}
			return db.Put(maskPolicyKey(project), mp)
		}); err != nil {
			return fmt.Errorf("store mask policy: %w", err)
		}
		out = &mp
		return nil
	})
	return out, err
}

// GetMaskPolicy returns the masking policy of a project (admin only);
// ErrNotFound when it has none.
func (s *Service) GetMaskPolicy(ctx context.Context, project string) (*MaskPolicy, error) {
	if err := s.authorize(ctx, RoleAdmin, "", ""); err != nil {
		return nil, s.refused(ctx, "mask.get", project, err)
	}
	p, _, err := s.maskPolicy(project)
	return p, err
}

// DeleteMaskPolicy removes the masking policy of a project (admin only;
// audited); ErrNotFound when it has none. The secret stays, so a later
// policy masks values as before. Masked branches stay masked.
func (s *Service) DeleteMaskPolicy(ctx context.Context, project string) error {
	return s.audited(ctx, "mask.delete", project, "", func() error {
		if err := s.authorize(ctx, RoleAdmin, "", ""); err != nil {
			return err
		}
		if _, _, err := s.maskPolicy(project); err != nil {
			return err
		}
		return s.withDB(func(db *controldb.DB) error { return db.Delete(maskPolicyKey(project)) })
	})
}

// maskPolicy loads a project's policy and secret.
func (s *Service) maskPolicy(project string) (*MaskPolicy, string, error) {
	var p MaskPolicy
	var secret string
	err := s.withDB(func(db *controldb.DB) error {
		if err := db.Get(maskPolicyKey(project), &p); err != nil {
			return err
		}
		return db.Get(maskSecretKey(project), &secret)
	})
	if errors.Is(err, controldb.ErrNotFound) {
		return nil, "", fmt.Errorf("project %s has no masking policy (an admin sets one with offshoot mask set): %w", project, ErrNotFound)
	}
	if err != nil {
		return nil, "", fmt.Errorf("load mask policy: %w", err)
	}
	return &p, secret, nil
}

// deleteMaskRecords forgets a deleted project's policy and secret.
func deleteMaskRecords(db *controldb.DB, project string) error {
	if err := db.Delete(maskPolicyKey(project)); err != nil {
		return err
	}
	return db.Delete(maskSecretKey(project))
}

// maskedBranch reports whether a branch exists and its masking is done.
func (s *Service) maskedBranch(project, branch string) bool {
	if s.cfg.Store == nil {
		return false
	}
	b, err := s.cfg.Store.Branch(project, branch)
	return err == nil && b.Labels[LabelMasked] == MaskedDone
}

// remask tells whether a masked fork of source (the branch whose data it
// holds, "" when unknown) runs the masking. Masking is deterministic per
// project, so masking again what a caller wrote on a masked branch would
// tell it the masked form of values it guessed, an oracle of the masked
// values there: for all but admin, the head of a masked branch is masked
// already (the fork is marked so, nothing runs) and a past point or
// snapshot of a masked branch is refused (it may predate the masking, and
// masking it again is the oracle).
func (s *Service) remask(ctx context.Context, project, source string, head bool) (bool, error) {
	c, _ := CallerFrom(ctx)
	b, err := s.cfg.Store.Branch(project, source)
	if source == "" || err != nil || b.Labels[LabelMasked] == "" || c.Allows(RoleAdmin, "", "") {
		return true, nil
	}
	if head && b.Labels[LabelMasked] == MaskedDone {
		return false, nil
	}
	return false, fmt.Errorf("branch %s is masked: a masked fork of it other than of its done head would mask again data written on it, which only admin may do; fork its head: %w", source, ErrForbidden)
}

// pastOfMasked refuses a fork of a past point (a seq or a time) of the
// masked branch source to a caller who may not read the branch it was
// forked from: its history begins with that branch's original values,
// before the masking, and a seq or a time does not say which side of
// the masking it falls on. Snapshots of a past time are checked the same
// way (CreateSnapshot); forks of its head and of snapshots of its head
// are masked data, as are those a masked-only key makes (CreateBranch
// refuses it other points anyway).
func (s *Service) pastOfMasked(ctx context.Context, project, source string, past bool) error {
	if !past || source == "" {
		return nil
	}
	b, err := s.cfg.Store.Branch(project, source)
	if err != nil || b.Labels[LabelMasked] == "" {
		return nil
	}
	from := s.branchName(b.Parent)
	if from == "" {
		return fmt.Errorf("branch %s is masked and its parent is gone: a fork of its past may hold original values: %w", source, ErrForbidden)
	}
	if err := s.authorize(ctx, RoleRead, project, from); err != nil {
		return fmt.Errorf("branch %s is masked, and a fork of a past point of it may hold the original values of %s from before the masking: fork its head or a snapshot of it instead (%w)", source, from, err)
	}
	return nil
}

// checkLabels refuses labels with the reserved prefix.
func checkLabels(labels map[string]string) error {
	for k := range labels {
		if strings.HasPrefix(k, reservedLabelPrefix) {
			return invalid("labels", "label %q: the prefix %s is reserved for offshoot", k, reservedLabelPrefix)
		}
	}
	return nil
}

// applyMask masks a fresh fork in place: in one transaction, with
// triggers and foreign-key checks off (session_replication_role =
// replica), one UPDATE per table of the policy; then it refreshes and
// analyzes materialized views (each gets a new file), rewrites the masked
// tables, their indexes and statistics (VACUUM FULL, ANALYZE) so no old
// row version or statistic keeps an original value, and checkpoints. A table or column of the
// policy that the branch lacks is an error (ErrConflict), as is any SQL
// error (its message, never its detail, which may quote row values).
func (s *Service) applyMask(ctx context.Context, project, branch string, p masking.Policy, secret string) error {
	if s.cfg.Compute == nil {
		return fmt.Errorf("masking needs compute: %w", ErrUnavailable)
	}
	l, err := s.cfg.Compute.Acquire(ctx, project, branch)
	if err != nil {
		return computeErr(err)
	}
	defer l.Release()
	conn, err := pgx.Connect(ctx, l.ConnString(compute.RoleSuperuser, "", "postgres"))
	if err != nil {
		return fmt.Errorf("mask: %w: %w", ErrUnavailable, err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		return maskSQLErr("begin", err)
	}
	defer tx.Rollback(context.Background())
	// This session is the superuser's, on data a write key may have
	// shaped: resolve nothing through schemas users own, and run none of
	// their code. Triggers that fire in replica mode (ENABLE ALWAYS or
	// REPLICA) would run as the superuser, so a table with one is refused.
	if _, err := tx.Exec(ctx, "SET LOCAL search_path = pg_catalog, pg_temp; SET LOCAL session_replication_role = replica"); err != nil {
		return maskSQLErr("set search_path and session_replication_role", err)
	}
	cols := make([]masking.Column, len(p.Rules))
	for i, r := range p.Rules {
		var builtinType bool
		err := tx.QueryRow(ctx, masking.ColumnQuery, masking.QuotedTable(r.Table), r.Column).Scan(&cols[i].Type, &cols[i].TypName, &cols[i].Category, &builtinType)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("masking policy rule %d: branch %s has no column %s in table %s: %w", i, branch, r.Column, r.Table, ErrConflict)
		}
		if err != nil {
			return maskSQLErr("read column types", err)
		}
		if !builtinType {
			return fmt.Errorf("masking policy rule %d: column %s of %s has type %s, which a user owns; only built-in and extension types are masked: %w", i, r.Column, r.Table, cols[i].Type, ErrConflict)
		}
		var trigger string
		err = tx.QueryRow(ctx, `SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass($1) AND NOT tgisinternal AND tgenabled IN ('A', 'R') LIMIT 1`,
			masking.QuotedTable(r.Table)).Scan(&trigger)
		if err == nil {
			return fmt.Errorf("masking policy rule %d: table %s has trigger %s enabled in replica mode, which masking would fire as the superuser; disable it first: %w", i, r.Table, trigger, ErrConflict)
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return maskSQLErr("read triggers", err)
		}
		var code string
		err = tx.QueryRow(ctx, userCodeQuery, masking.QuotedTable(r.Table)).Scan(&code)
		if err == nil {
			return fmt.Errorf("masking policy rule %d: an update of table %s runs %s, which a user owns, and masking would run it as the superuser; drop it first: %w", i, r.Table, code, ErrConflict)
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return maskSQLErr("read what an update runs", err)
		}
	}
	stmts, err := p.Update(cols)
	if err != nil {
		return invalid("rules", "%v", err)
	}
	for _, q := range stmts {
		var args []any
		if q.Secret {
			args = []any{secret}
		}
		if _, err := tx.Exec(ctx, q.SQL, args...); err != nil {
			return maskSQLErr(q.SQL[:strings.Index(q.SQL, " SET ")], err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return maskSQLErr("commit", err)
	}
	// Outside the transaction the session's search_path is the
	// database's again (REFRESH and VACUUM run the views' and indexes'
	// code as their owners, and SQL functions in them may rely on it), so
	// what this session calls itself is schema-qualified.
	var views []string
	rows, _ := conn.Query(ctx, "SELECT pg_catalog.format('%I.%I', schemaname, matviewname) FROM pg_catalog.pg_matviews WHERE ispopulated")
	views, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return maskSQLErr("list materialized views", err)
	}
	for _, v := range views {
		if _, err := conn.Exec(ctx, "REFRESH MATERIALIZED VIEW "+v+"; ANALYZE "+v); err != nil {
			return maskSQLErr("refresh "+v, err)
		}
	}
	for _, t := range p.Tables() {
		if _, err := conn.Exec(ctx, "VACUUM (FULL, ANALYZE) "+masking.QuotedTable(t)); err != nil {
			return maskSQLErr("vacuum "+t, err)
		}
	}
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		return maskSQLErr("checkpoint", err)
	}
	return nil
}

// userCodeQuery names ($1 the quoted table) one piece of code a user may
// have put where an UPDATE of the table (and of its inheritance or
// partition children, which an UPDATE without ONLY changes too) would run
// it, or none: a rule, a trigger enabled in replica mode, or a function,
// operator or operator class that a check or exclusion constraint, an
// index (expressions, predicate, operator classes), a generated column, a
// partition key of the table or an ancestor, or a domain reached through
// the columns' types (arrays, composites, domains over domains) uses,
// when a user owns it, or when it is volatile or one of the *_to_xml
// functions (built-in, but they run SQL given as text or read views
// whose functions would run as the superuser). The bootstrap superuser's
// objects (built-in, extensions', the admin's) are not a user's; plain
// column defaults do not run in an UPDATE. No row: the update runs no
// user's code.
const userCodeQuery = `WITH RECURSIVE rel(oid) AS (
  SELECT to_regclass($1)::oid
  UNION
  SELECT i.inhrelid FROM pg_inherits i JOIN rel r ON i.inhparent = r.oid
), anc(oid) AS (
  SELECT to_regclass($1)::oid
  UNION
  SELECT i.inhparent FROM pg_inherits i JOIN anc a ON i.inhrelid = a.oid
), parts(classid, objid) AS (
  SELECT 'pg_class'::regclass::oid, oid FROM rel
  UNION
  SELECT 'pg_class'::regclass::oid, oid FROM anc
  UNION
  SELECT d.classid, d.objid FROM pg_depend d JOIN rel r ON d.refclassid = 'pg_class'::regclass AND d.refobjid = r.oid
  WHERE d.classid IN ('pg_class'::regclass, 'pg_constraint'::regclass)
     OR (d.classid = 'pg_attrdef'::regclass AND EXISTS (SELECT 1 FROM pg_attrdef ad
         JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum WHERE ad.oid = d.objid AND a.attgenerated <> ''))
), uses0(classid, objid) AS (
  SELECT d.refclassid, d.refobjid FROM pg_depend d JOIN parts p ON d.classid = p.classid AND d.objid = p.objid
), types(oid) AS (
  SELECT objid FROM uses0 WHERE classid = 'pg_type'::regclass
  UNION
  SELECT x.t FROM types t0 JOIN pg_type ty ON ty.oid = t0.oid,
    LATERAL (SELECT ty.typelem UNION ALL SELECT ty.typbasetype
      UNION ALL SELECT a.atttypid FROM pg_attribute a WHERE ty.typrelid <> 0 AND a.attrelid = ty.typrelid AND a.attnum > 0) x(t)
  WHERE x.t <> 0
), trees(t) AS (
  -- The expressions themselves: pg_depend records no dependency on a
  -- built-in function, so those are read from the node trees.
  SELECT c.conbin::text FROM pg_constraint c JOIN rel ON c.conrelid = rel.oid WHERE c.conbin IS NOT NULL
  UNION ALL
  SELECT c.conbin::text FROM pg_constraint c JOIN types t ON c.contypid = t.oid WHERE c.conbin IS NOT NULL
  UNION ALL
  SELECT concat(x.indexprs::text, x.indpred::text) FROM pg_index x JOIN rel ON x.indrelid = rel.oid
  UNION ALL
  SELECT ad.adbin::text FROM pg_attrdef ad JOIN rel ON ad.adrelid = rel.oid
    JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum WHERE a.attgenerated <> ''
  UNION ALL
  SELECT pt.partexprs::text FROM pg_partitioned_table pt JOIN anc ON pt.partrelid = anc.oid WHERE pt.partexprs IS NOT NULL
), uses(classid, objid) AS (
  SELECT classid, objid FROM uses0
  UNION
  SELECT 'pg_type'::regclass::oid, oid FROM types
  UNION
  SELECT d.refclassid, d.refobjid FROM pg_constraint c JOIN types t ON c.contypid = t.oid
    JOIN pg_depend d ON d.classid = 'pg_constraint'::regclass AND d.objid = c.oid
  UNION
  SELECT 'pg_proc'::regclass::oid, m[2]::oid FROM trees, regexp_matches(trees.t, ':(funcid|opfuncid) ([0-9]+)', 'g') m
)
SELECT pg_describe_object(classid, objid, 0) FROM (
  SELECT 'pg_rewrite'::regclass::oid AS classid, r.oid AS objid FROM pg_rewrite r JOIN rel ON r.ev_class = rel.oid
  UNION ALL
  SELECT 'pg_trigger'::regclass::oid, tg.oid FROM pg_trigger tg JOIN rel ON tg.tgrelid = rel.oid
  WHERE NOT tg.tgisinternal AND tg.tgenabled IN ('A', 'R')
  UNION ALL
  SELECT u.classid, u.objid FROM uses u
  WHERE (u.classid = 'pg_proc'::regclass AND (SELECT proowner <> 10 OR provolatile = 'v' OR proname ~ '_to_xml' FROM pg_proc WHERE oid = u.objid))
     OR (u.classid = 'pg_operator'::regclass AND (SELECT o.oprowner <> 10 OR p.provolatile = 'v'
         FROM pg_operator o JOIN pg_proc p ON p.oid = o.oprcode WHERE o.oid = u.objid))
     OR (u.classid = 'pg_opclass'::regclass AND (SELECT opcowner <> 10 FROM pg_opclass WHERE oid = u.objid))
     OR (u.classid = 'pg_type'::regclass AND (SELECT typowner <> 10 AND typtype IN ('d', 'r', 'm') FROM pg_type WHERE oid = u.objid))
) code LIMIT 1`

// maskSQLErr reports a failed masking statement without the Postgres
// detail, which can quote original values.
func maskSQLErr(what string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Errorf("mask: %s: %s (SQLSTATE %s): %w", what, pe.Message, pe.Code, ErrConflict)
	}
	return fmt.Errorf("mask: %s: %w", what, err)
}

// maskFork masks the fresh fork b and marks it done; on failure it
// deletes the fork, so nothing half-masked survives.
func (s *Service) maskFork(ctx context.Context, project string, b storage.Branch, p *MaskPolicy, secret string) (storage.Branch, error) {
	err := s.applyMask(ctx, project, b.Name, p.Policy, secret)
	if err == nil {
		labels := maps.Clone(b.Labels)
		labels[LabelMasked] = MaskedDone
		var nb storage.Branch
		if nb, err = s.cfg.Store.UpdateBranch(project, b.Name, storage.BranchUpdate{Labels: labels}); err == nil {
			return nb, nil
		}
		err = storeErr(err)
	}
	if derr := s.deleteBranch(context.WithoutCancel(ctx), project, b.Name, false); derr != nil {
		s.log.Error("masked fork: delete after failed masking", slog.String("branch", project+"/"+b.Name), slog.String("err", derr.Error()))
		return storage.Branch{}, fmt.Errorf("%w (the fork %s is left with label %s=%s; delete it)", err, b.Name, LabelMasked, MaskedPending)
	}
	return storage.Branch{}, err
}

// keepReserved returns labels plus the reserved labels branch has now,
// which an update that replaces the labels must not drop.
func (s *Service) keepReserved(project, branch string, labels map[string]string) (map[string]string, error) {
	b, err := s.cfg.Store.Branch(project, branch)
	if err != nil {
		return nil, storeErr(err)
	}
	out := maps.Clone(labels)
	for k, v := range b.Labels {
		if strings.HasPrefix(k, reservedLabelPrefix) {
			out[k] = v
		}
	}
	return out, nil
}
