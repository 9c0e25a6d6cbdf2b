package experiments

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/offshootdb/offshoot/experiments/internal/controldb"
)

// Role is what a scope permits.
type Role string

// Roles. Admin may do everything; write implies read.
const (
	RoleAdmin Role = "admin"
	RoleRead  Role = "read"
	RoleWrite Role = "write"
)

// Scope grants a role. Its text form is "admin", or "read:PROJECT" or
// "write:PROJECT", optionally followed by ":BRANCH-PATTERN" and then by
// ":masked". PROJECT "*" means every project. The pattern is a path.Match
// glob over branch names: "*" matches any run of characters except "/", so
// "feature/*" matches "feature/x" and "experiment-*" matches
// "experiment-42"; an empty pattern (only before ":masked", as in
// "read:demo::masked") means every branch.
//
// A masked scope ("read:demo::masked", "write:demo:agent/*:masked") grants
// its role only on branches whose masking is done (label LabelMasked ==
// MaskedDone), never project-wide, and lets its holder create only forks
// that will be masked (see CreateBranchRequest.Masked), so a key holding
// only masked scopes never reads an original value of a masked column.
type Scope struct {
	Role     Role
	Project  string // "" for admin; "*" for every project
	Branches string // "" for every branch
	// Masked limits the scope to masked branches.
	Masked bool
}

// ParseScope parses the text form of a scope.
func ParseScope(s string) (Scope, error) {
	parts := strings.SplitN(s, ":", 4)
	sc := Scope{Role: Role(parts[0])}
	switch sc.Role {
	case RoleAdmin:
		if len(parts) > 1 {
			return Scope{}, invalid("scopes", "%q: admin takes no project", s)
		}
		return sc, nil
	case RoleRead, RoleWrite:
	default:
		return Scope{}, invalid("scopes", "%q: want admin, read:PROJECT[:BRANCH-PATTERN][:masked] or write:PROJECT[:BRANCH-PATTERN][:masked]", s)
	}
	if len(parts) < 2 || parts[1] == "" {
		return Scope{}, invalid("scopes", "%q: name a project (or *) after %s:", s, sc.Role)
	}
	sc.Project = parts[1]
	if sc.Project != "*" {
		if err := validName("scopes", sc.Project); err != nil {
			return Scope{}, err
		}
	}
	if len(parts) == 4 {
		if parts[3] == "masked" {
			sc.Masked = true
			if parts[2] == "" {
				return sc, nil
			}
		} else {
			// A pattern with a colon (it matches no branch name, but older
			// keys may hold one).
			parts = []string{parts[0], parts[1], parts[2] + ":" + parts[3]}
		}
	}
	if len(parts) >= 3 {
		if parts[2] == "" {
			return Scope{}, invalid("scopes", "%q: empty branch pattern", s)
		}
		if _, err := path.Match(parts[2], ""); err != nil {
			return Scope{}, invalid("scopes", "%q: bad branch pattern: %v", s, err)
		}
		sc.Branches = parts[2]
	}
	return sc, nil
}

func (sc Scope) String() string {
	if sc.Role == RoleAdmin {
		return string(RoleAdmin)
	}
	s := string(sc.Role) + ":" + sc.Project
	if sc.Branches != "" || sc.Masked {
		s += ":" + sc.Branches
	}
	if sc.Masked {
		s += ":masked"
	}
	return s
}

// MarshalText encodes the text form.
func (sc Scope) MarshalText() ([]byte, error) { return []byte(sc.String()), nil }

// UnmarshalText decodes the text form.
func (sc *Scope) UnmarshalText(b []byte) error {
	p, err := ParseScope(string(b))
	if err != nil {
		return err
	}
	*sc = p
	return nil
}

// allows reports whether the scope grants role on branch of project;
// masked tells whether the branch's masking is done. branch "" asks for
// project-wide access, which a branch pattern or a masked scope does not
// grant.
func (sc Scope) allows(role Role, project, branch string, masked bool) bool {
	if sc.Role == RoleAdmin {
		return true
	}
	if role == RoleAdmin || (role == RoleWrite && sc.Role != RoleWrite) {
		return false
	}
	if sc.Project != "*" && sc.Project != project {
		return false
	}
	if sc.Masked && (branch == "" || !masked) {
		return false
	}
	if sc.Branches == "" {
		return true
	}
	ok, _ := path.Match(sc.Branches, branch)
	return ok && branch != ""
}

// Caller is who makes a call: a key, or the local operator when the
// server runs without keys on a loopback address.
type Caller struct {
	KeyID  string
	Scopes []Scope
}

// LocalCaller is the caller of a server that needs no key (loopback and no
// keys created yet): full rights, recorded as key "local".
var LocalCaller = Caller{KeyID: "local", Scopes: []Scope{{Role: RoleAdmin}}}

type callerKey struct{}

// WithCaller returns ctx carrying the caller that facade calls act for.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller in ctx.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// Allows reports whether one of the caller's scopes grants role on branch
// of project (branch "" for the whole project; project "" for admin-only
// calls). Masked scopes count only for branches the caller names as
// masked through AllowsBranch.
func (c Caller) Allows(role Role, project, branch string) bool {
	return c.AllowsBranch(role, project, branch, false)
}

// AllowsBranch is Allows for a branch whose masking is done (masked) or
// not: masked scopes grant their role only on masked branches.
func (c Caller) AllowsBranch(role Role, project, branch string, masked bool) bool {
	for _, sc := range c.Scopes {
		if sc.allows(role, project, branch, masked) {
			return true
		}
	}
	return false
}

// seesAllBranches reports whether the caller may read every branch of
// project, whatever its name or masking (AllowsBranch is true for all).
func (c Caller) seesAllBranches(project string) bool {
	for _, sc := range c.Scopes {
		if sc.Role == RoleAdmin || (sc.Project == "*" || sc.Project == project) && !sc.Masked && sc.Branches == "" {
			return true
		}
	}
	return false
}

// hasMasked reports whether one of the caller's scopes is masked.
func (c Caller) hasMasked() bool {
	for _, sc := range c.Scopes {
		if sc.Masked {
			return true
		}
	}
	return false
}

// authorize checks that the caller may act with role on branch of
// project (branch "" for the project, project "" for the server). For a
// caller with masked scopes it reads the branch's masking label from the
// store; a branch that does not exist counts as unmasked.
func (s *Service) authorize(ctx context.Context, role Role, project, branch string) error {
	return s.authorizeAs(ctx, role, project, branch, nil)
}

// authorizeAs is authorize with the branch's masking given: masked nil
// looks it up; non-nil says whether the branch is (or, for a branch
// about to be created, will be) masked.
func (s *Service) authorizeAs(ctx context.Context, role Role, project, branch string, masked *bool) error {
	c, ok := CallerFrom(ctx)
	if !ok {
		return fmt.Errorf("no caller: %w", ErrUnauthenticated)
	}
	if c.Allows(role, project, branch) {
		return nil
	}
	note := ""
	if c.hasMasked() && project != "" && branch != "" {
		m := masked != nil && *masked
		if masked == nil {
			m = s.maskedBranch(project, branch)
		}
		if c.AllowsBranch(role, project, branch, m) {
			return nil
		}
		if !m {
			note = " (its masked scopes cover masked branches only, and this one is not masked)"
		}
	}
	target := "this server"
	if project != "" {
		target = "project " + project
		if branch != "" {
			target = "branch " + branch + " of " + target
		}
	}
	return fmt.Errorf("key %s has no %s scope on %s%s: %w", c.KeyID, role, target, note, ErrForbidden)
}

// Key is an API key as listed; its secret is shown only once, at creation.
type Key struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Scopes    []Scope    `json:"scopes"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// storedKey is a Key with the SHA-256 of its token.
type storedKey struct {
	Key
	Hash string `json:"hash"`
}

// KeyRequest asks for a new key.
type KeyRequest struct {
	// Name is a label for people, e.g. "ci" or "agent-7". Required.
	Name string `json:"name"`
	// Scopes granted; at least one.
	Scopes []Scope `json:"scopes"`
}

// NewKey is a created key and its bearer token, which is not stored.
type NewKey struct {
	Key
	Token string `json:"token"`
}

const tokenPrefix = "osk_"

var (
	keyPrefix = []byte("key/")
	keyEnd    = []byte("key0") // '0' follows '/'
)

func loadKeys(db *controldb.DB) (map[string]storedKey, error) {
	keys := map[string]storedKey{}
	err := db.Scan(keyPrefix, keyEnd, func(_, v []byte) (bool, error) {
		var k storedKey
		if err := json.Unmarshal(v, &k); err != nil {
			return false, fmt.Errorf("load keys: %w", err)
		}
		keys[k.ID] = k
		return true, nil
	})
	return keys, err
}

func hashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// CreateKey creates an API key (admin only) and returns it with its token
// osk_<id>_<secret>, 256 bits of randomness stored only as a SHA-256 hash.
// A key without admin scope is refused with ErrConflict while no live
// admin key exists: once any key is live, loopback callers need one too
// (KeysRequired), and nobody could manage keys. Audited.
func (s *Service) CreateKey(ctx context.Context, req KeyRequest) (*NewKey, error) {
	var nk *NewKey
	err := s.audited(ctx, "key.create", "key/"+req.Name, "", func() error {
		if err := s.authorize(ctx, RoleAdmin, "", ""); err != nil {
			return err
		}
		if strings.TrimSpace(req.Name) == "" || len(req.Name) > 100 {
			return invalid("name", "want 1 to 100 characters")
		}
		if len(req.Scopes) == 0 {
			return invalid("scopes", "give at least one scope")
		}
		admin := false
		for _, sc := range req.Scopes {
			if sc.Role == "" {
				return invalid("scopes", "empty scope")
			}
			admin = admin || sc.Role == RoleAdmin
		}
		if !admin && !s.liveAdminKey("") {
			return fmt.Errorf("no live admin key exists, and once this key exists loopback callers need a key too, so nobody could manage keys: create an admin key first (offshoot key create NAME --scope admin): %w", ErrConflict)
		}
		var idb [8]byte
		var secret [32]byte
		rand.Read(idb[:])
		rand.Read(secret[:])
		id := hex.EncodeToString(idb[:])
		token := tokenPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(secret[:])
		c, _ := CallerFrom(ctx)
		k := storedKey{Key: Key{ID: id, Name: req.Name, Scopes: req.Scopes, CreatedAt: s.cfg.Now().UTC(), CreatedBy: c.KeyID}, Hash: hashToken(token)}
		if err := s.putKey(k); err != nil {
			return err
		}
		nk = &NewKey{Key: k.Key, Token: token}
		return nil
	})
	return nk, err
}

func (s *Service) putKey(k storedKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return fmt.Errorf("control db closed: %w", ErrUnavailable)
	}
	if err := s.db.Put(append(keyPrefix[:len(keyPrefix):len(keyPrefix)], k.ID...), k); err != nil {
		return fmt.Errorf("store key: %w", err)
	}
	s.keys[k.ID] = k
	return nil
}

// ListKeys lists all keys, revoked ones included, oldest first (admin only).
func (s *Service) ListKeys(ctx context.Context) ([]Key, error) {
	if err := s.authorize(ctx, RoleAdmin, "", ""); err != nil {
		return nil, s.refused(ctx, "key.list", "keys", err)
	}
	s.mu.RLock()
	out := make([]Key, 0, len(s.keys))
	for _, k := range s.keys {
		out = append(out, k.Key)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// RevokeKey revokes a key (admin only): ErrNotFound for an unknown id,
// ErrConflict when already revoked, or when it is the last live admin key
// while other keys stay live (that would lock admin out). Audited.
func (s *Service) RevokeKey(ctx context.Context, id string) (*Key, error) {
	var out *Key
	err := s.audited(ctx, "key.revoke", "key/"+id, "", func() error {
		if err := s.authorize(ctx, RoleAdmin, "", ""); err != nil {
			return err
		}
		s.mu.RLock()
		k, ok := s.keys[id]
		s.mu.RUnlock()
		if !ok {
			return fmt.Errorf("key %q: %w", id, ErrNotFound)
		}
		if k.RevokedAt != nil {
			return fmt.Errorf("key %s was revoked at %s: %w", id, k.RevokedAt.Format(time.RFC3339), ErrConflict)
		}
		if isAdminKey(k.Key) && !s.liveAdminKey(id) && s.liveKeyOtherThan(id) {
			return fmt.Errorf("key %s is the last live admin key and other keys are live, so nobody could manage keys: create another admin key or revoke the others first: %w", id, ErrConflict)
		}
		now := s.cfg.Now().UTC()
		k.RevokedAt = &now
		if err := s.putKey(k); err != nil {
			return err
		}
		out = &k.Key
		return nil
	})
	return out, err
}

func isAdminKey(k Key) bool {
	for _, sc := range k.Scopes {
		if sc.Role == RoleAdmin {
			return true
		}
	}
	return false
}

// liveAdminKey reports whether an unrevoked admin key other than except exists.
func (s *Service) liveAdminKey(except string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, k := range s.keys {
		if k.RevokedAt == nil && k.ID != except && isAdminKey(k.Key) {
			return true
		}
	}
	return false
}

// liveKeyOtherThan reports whether an unrevoked key other than id exists.
func (s *Service) liveKeyOtherThan(id string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, k := range s.keys {
		if k.RevokedAt == nil && k.ID != id {
			return true
		}
	}
	return false
}

// KeysRequired reports whether any live (unrevoked) key exists; servers
// then demand a key even on loopback.
func (s *Service) KeysRequired() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, k := range s.keys {
		if k.RevokedAt == nil {
			return true
		}
	}
	return false
}

// keyLive returns ErrUnauthenticated when id names a key that is
// revoked; an id that names no key (the local operator, the admin socket,
// the server's own callers) passes.
func (s *Service) keyLive(id string) error {
	s.mu.RLock()
	k, found := s.keys[id]
	s.mu.RUnlock()
	if found && k.RevokedAt != nil {
		return fmt.Errorf("key %s was revoked at %s: %w", id, k.RevokedAt.Format(time.RFC3339), ErrUnauthenticated)
	}
	return nil
}

// Authenticate returns the caller a bearer token stands for, or
// ErrUnauthenticated for a malformed, unknown or revoked token.
func (s *Service) Authenticate(_ context.Context, token string) (Caller, error) {
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	id, _, ok2 := strings.Cut(rest, "_")
	if !ok || !ok2 {
		return Caller{}, fmt.Errorf("malformed token (want %s...): %w", tokenPrefix, ErrUnauthenticated)
	}
	s.mu.RLock()
	k, found := s.keys[id]
	s.mu.RUnlock()
	h := hashToken(token)
	if !found || subtle.ConstantTimeCompare([]byte(h), []byte(k.Hash)) != 1 {
		return Caller{}, fmt.Errorf("unknown key: %w", ErrUnauthenticated)
	}
	if k.RevokedAt != nil {
		return Caller{}, fmt.Errorf("key %s is revoked: %w", id, ErrUnauthenticated)
	}
	return Caller{KeyID: k.ID, Scopes: k.Scopes}, nil
}
