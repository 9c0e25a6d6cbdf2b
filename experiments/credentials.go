package experiments

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/offshootdb/offshoot/compute"
	"github.com/offshootdb/offshoot/compute/proxy/scram"
	"github.com/offshootdb/offshoot/experiments/internal/controldb"
	"github.com/offshootdb/offshoot/storage"
)

// Database roles and credentials.
//
// Every cluster has three built-in roles (compute.RoleSuperuser,
// RoleWrite, RoleRead). A caller gets the role its scope allows: admin the
// superuser, write scope offshoot_write, read scope offshoot_read; it may
// ask for a weaker one. Passwords of the built-in roles are per branch:
// each branch gets its own on first request, kept in the control DB keyed
// by the branch's catalog id (so a branch deleted and created again under
// the same name gets new ones), and the proxy authenticates against them,
// not against the cluster's pg_authid. A password of branch A therefore
// never opens branch B, nor A's parent. Roles users create themselves
// authenticate with the verifiers their cluster holds, captured by the
// compute manager whenever the endpoint runs (CaptureVerifiers) and
// inherited by forks until the fork's own endpoint has run.

// LabelMasked is the label of a masked fork: "pending" while its masking
// runs (no credentials are handed out and the proxy lets nobody in),
// "done" once the masking policy is applied.
const LabelMasked = "offshoot.masked"

// credential is a built-in role's password on one branch.
type credential struct {
	Password  string    `json:"password"`
	Verifier  string    `json:"verifier"`
	CreatedAt time.Time `json:"created_at"`
}

// captured is the verifiers of a branch's login roles, as its cluster had
// them when its endpoint last ran.
type captured struct {
	Verifiers  map[string]string `json:"verifiers"`
	CapturedAt time.Time         `json:"captured_at"`
}

func credKey(project string, branchID uint64, role string) []byte {
	return []byte("cred/" + project + "/" + strconv.FormatUint(branchID, 10) + "/" + role)
}

func capturedKey(project string, branchID uint64) []byte {
	return []byte("verifiers/" + project + "/" + strconv.FormatUint(branchID, 10))
}

// builtinRole reports whether role is one of the roles offshoot manages.
func builtinRole(role string) bool {
	return role == compute.RoleSuperuser || role == compute.RoleWrite || role == compute.RoleRead || role == compute.RoleReplication
}

// roleNeeds is the scope role a database role requires.
func roleNeeds(dbRole string) Role {
	switch dbRole {
	case compute.RoleSuperuser, compute.RoleReplication:
		return RoleAdmin
	case compute.RoleWrite:
		return RoleWrite
	}
	return RoleRead
}

// dbRoleFor picks the database role of a caller on a branch: the strongest
// its scopes allow (superuser only for admin), or the one asked for
// ("superuser", "write", "read" or a built-in role's name), which it must
// be allowed.
func (s *Service) dbRoleFor(ctx context.Context, project, branch, asked string) (string, error) {
	switch asked {
	case "superuser":
		asked = compute.RoleSuperuser
	case "write":
		asked = compute.RoleWrite
	case "read":
		asked = compute.RoleRead
	case "replication":
		asked = compute.RoleReplication
	case "", compute.RoleSuperuser, compute.RoleWrite, compute.RoleRead, compute.RoleReplication:
	default:
		return "", invalid("role", "want superuser, write, read or replication (%s, %s, %s, %s)", compute.RoleSuperuser, compute.RoleWrite, compute.RoleRead, compute.RoleReplication)
	}
	if asked != "" {
		if err := s.authorize(ctx, roleNeeds(asked), project, branch); err != nil {
			return "", err
		}
		return asked, nil
	}
	// authorize, not Caller.Allows: masked-only scopes count on masked
	// branches.
	switch {
	case s.authorize(ctx, RoleAdmin, project, branch) == nil:
		return compute.RoleSuperuser, nil
	case s.authorize(ctx, RoleWrite, project, branch) == nil:
		return compute.RoleWrite, nil
	}
	if err := s.authorize(ctx, RoleRead, project, branch); err != nil {
		return "", err
	}
	return compute.RoleRead, nil
}

// credential returns the password of a built-in role on a branch, making
// one on first use (or always, with rotate).
func (s *Service) credential(b storage.Branch, project, role string, rotate bool) (credential, error) {
	if b.Labels[LabelMasked] == "pending" {
		return credential{}, fmt.Errorf("branch %s is being masked; retry when its masking is done: %w", b.Name, ErrConflict)
	}
	s.credMu.Lock()
	defer s.credMu.Unlock()
	var c credential
	err := s.withDB(func(db *controldb.DB) error { return db.Get(credKey(project, b.ID, role), &c) })
	if err == nil && !rotate {
		return c, nil
	}
	if err != nil && !errors.Is(err, controldb.ErrNotFound) {
		return credential{}, err
	}
	pw, err := randomPassword()
	if err != nil {
		return credential{}, fmt.Errorf("new password: %w", err)
	}
	v, err := scram.NewVerifier(pw)
	if err != nil {
		return credential{}, fmt.Errorf("new password: %w", err)
	}
	c = credential{Password: pw, Verifier: v, CreatedAt: s.cfg.Now().UTC()}
	if err := s.withDB(func(db *controldb.DB) error { return db.Put(credKey(project, b.ID, role), c) }); err != nil {
		return credential{}, fmt.Errorf("store credential: %w", err)
	}
	return c, nil
}

// RotateRequest asks for new passwords of a branch.
type RotateRequest struct {
	Project, Branch string
	// Role is the role to rotate ("superuser", "write", "read" or a
	// built-in role's name); "" rotates every built-in role the caller may
	// rotate: all three for admin, write and read for write scope.
	Role string
}

// RotatedRole names a role whose password changed.
type RotatedRole struct {
	Role string `json:"role"`
}

// RotateCredentials gives a branch new passwords for its built-in roles:
// the old ones stop authenticating at once (open sessions stay). It needs
// write scope on the branch (admin for the superuser). Audited.
func (s *Service) RotateCredentials(ctx context.Context, req RotateRequest) ([]RotatedRole, error) {
	var out []RotatedRole
	err := s.audited(ctx, "branch.credentials.rotate", req.Project+"/"+req.Branch, req.Role, func() error {
		if err := s.authorize(ctx, RoleWrite, req.Project, req.Branch); err != nil {
			return err
		}
		st, err := s.storeOr()
		if err != nil {
			return err
		}
		b, err := st.Branch(req.Project, req.Branch)
		if err != nil {
			return storeErr(err)
		}
		roles := []string{compute.RoleWrite, compute.RoleRead}
		if c, _ := CallerFrom(ctx); c.Allows(RoleAdmin, req.Project, req.Branch) {
			roles = append([]string{compute.RoleSuperuser}, roles...)
		}
		if req.Role != "" {
			r, err := s.dbRoleFor(ctx, req.Project, req.Branch, req.Role)
			if err != nil {
				return err
			}
			roles = []string{r}
		}
		for _, r := range roles {
			if _, err := s.credential(b, req.Project, r, true); err != nil {
				return err
			}
			out = append(out, RotatedRole{Role: r})
		}
		return nil
	})
	return out, err
}

// CaptureVerifiers records the verifiers of a branch's login roles as its
// running cluster has them (compute.Config.Verifiers calls it). Unknown
// branches are ignored.
func (s *Service) CaptureVerifiers(project, branch string, verifiers map[string]string) {
	st, err := s.storeOr()
	if err != nil {
		return
	}
	b, err := st.Branch(project, branch)
	if err != nil {
		return
	}
	c := captured{Verifiers: verifiers, CapturedAt: s.cfg.Now().UTC()}
	if err := s.withDB(func(db *controldb.DB) error { return db.Put(capturedKey(project, b.ID), c) }); err != nil {
		s.log.Warn("capture verifiers", "project", project, "branch", branch, "err", err)
	}
}

// Verifier returns the SCRAM verifier that authenticates role on branch of
// project at the proxy, and false when there is none: unknown project,
// branch or role, a built-in role whose password was never handed out, or
// a masked fork whose masking is not done. It wakes nothing. It implements
// the proxy's Authenticator.
func (s *Service) Verifier(_ context.Context, project, branch, role string) (string, bool) {
	st, err := s.storeOr()
	if err != nil {
		return "", false
	}
	b, err := st.Branch(project, branch)
	if err != nil || b.Labels[LabelMasked] == "pending" {
		return "", false
	}
	if builtinRole(role) {
		var c credential
		if err := s.withDB(func(db *controldb.DB) error { return db.Get(credKey(project, b.ID, role), &c) }); err != nil {
			return "", false
		}
		return c.Verifier, c.Verifier != ""
	}
	// A role of the user's own: the verifiers captured on this branch, or
	// on the nearest ancestor that has some.
	var byID map[uint64]storage.Branch
	for id := b.ID; id != 0; {
		var c captured
		err := s.withDB(func(db *controldb.DB) error { return db.Get(capturedKey(project, id), &c) })
		if err == nil {
			v, ok := c.Verifiers[role]
			return v, ok
		}
		if byID == nil {
			bs, err := st.Branches(project)
			if err != nil {
				return "", false
			}
			byID = make(map[uint64]storage.Branch, len(bs))
			for _, x := range bs {
				byID[x.ID] = x
			}
		}
		cur, ok := byID[id]
		if !ok {
			return "", false
		}
		id = cur.Parent
	}
	return "", false
}
