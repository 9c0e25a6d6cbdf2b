package experiments

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/offshootdb/offshoot/experiments/internal/controldb"
)

// AuditEntry is one audited call.
type AuditEntry struct {
	// ID orders entries: it increases with Time.
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	// KeyID is the caller's key, "local" for the keyless local operator,
	// "" when no key was presented or it matched none.
	KeyID  string `json:"key_id"`
	Action string `json:"action"` // e.g. "query", "key.create", "key.revoke"
	Target string `json:"target"` // e.g. "main/feature-x", "key/<id>"
	// Result is "ok", "denied" (authentication or authorization refused)
	// or "error".
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
	Detail string `json:"detail,omitempty"`
	// SQL is the SQL of a query, explain or migration: its statements
	// (separated by ";\n", clipped at 64 KiB), or "sha256:<hex>" of that
	// text in full when Config.AuditSQL is "hash".
	SQL       string `json:"sql,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	Remote    string `json:"remote,omitempty"`
}

// Values of Config.AuditSQL.
const (
	AuditSQLText = "text"
	AuditSQLHash = "hash"
)

// maxAuditSQL caps the SQL text an audit entry keeps.
const maxAuditSQL = 64 << 10

// auditSQL is what audit entries record of statements: the text, clipped,
// or its SHA-256 when the operator asked for hashes.
func (s *Service) auditSQL(stmts ...string) string {
	text := strings.Join(stmts, ";\n")
	if text == "" {
		return ""
	}
	if s.cfg.AuditSQL == AuditSQLHash {
		h := sha256.Sum256([]byte(text))
		return "sha256:" + hex.EncodeToString(h[:])
	}
	return clip(text, maxAuditSQL)
}

// RecordRefusal audits a call an adapter refused before it reached the
// facade (an MCP tool a key may not use, an unknown tool): result
// "denied", action and target as given, reason as the error. Safe for
// concurrent use.
func (s *Service) RecordRefusal(ctx context.Context, action, target, reason string) {
	s.Audit(ctx, AuditEntry{Action: action, Target: target, Result: "denied", Error: reason})
}

// RequestInfo describes the request a call serves, for the audit log.
type RequestInfo struct {
	ID     string
	Remote string
}

type requestKey struct{}

// WithRequest returns ctx carrying request information for audit entries.
func WithRequest(ctx context.Context, ri RequestInfo) context.Context {
	return context.WithValue(ctx, requestKey{}, ri)
}

// auditClock hands out strictly increasing audit keys.
type auditClock struct {
	mu   sync.Mutex
	last int64
}

func (c *auditClock) next(t time.Time) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := t.UnixNano()
	if n <= c.last {
		n = c.last + 1
	}
	c.last = n
	return n
}

var auditPrefix = []byte("audit/")

func auditKey(n int64) []byte {
	k := append([]byte(nil), auditPrefix...)
	return binary.BigEndian.AppendUint64(k, uint64(n))
}

// Audit records an entry: persisted in the control database and logged
// with slog. Time, ID, KeyID (from the caller) and request fields are
// filled in when empty. Surfaces call it for attempts refused before a
// facade call (bad credentials); facade calls audit themselves.
func (s *Service) Audit(ctx context.Context, e AuditEntry) {
	if e.Time.IsZero() {
		e.Time = s.cfg.Now().UTC()
	}
	n := s.lastAu.next(e.Time)
	e.ID = hex.EncodeToString(auditKey(n)[len(auditPrefix):])
	if e.KeyID == "" {
		if c, ok := CallerFrom(ctx); ok {
			e.KeyID = c.KeyID
		}
	}
	if ri, ok := ctx.Value(requestKey{}).(RequestInfo); ok {
		if e.RequestID == "" {
			e.RequestID = ri.ID
		}
		if e.Remote == "" {
			e.Remote = ri.Remote
		}
	}
	s.log.LogAttrs(ctx, auditLevel(e.Result), "audit",
		slogAttrs(e)...)
	err := s.withDB(func(db *controldb.DB) error { return db.Put(auditKey(n), e) })
	if err != nil {
		s.log.Error("audit entry not persisted", "id", e.ID, "err", err)
	}
}

// record audits the outcome of a call.
func (s *Service) record(ctx context.Context, action, target, detail string, err error) {
	s.recordEntry(ctx, AuditEntry{Action: action, Target: target, Detail: detail}, err)
}

// recordEntry audits e with the outcome err.
func (s *Service) recordEntry(ctx context.Context, e AuditEntry, err error) {
	e.Result = "ok"
	switch {
	case err == nil:
	case errors.Is(err, ErrForbidden), errors.Is(err, ErrUnauthenticated):
		e.Result, e.Error = "denied", err.Error()
	default:
		e.Result, e.Error = "error", err.Error()
	}
	s.Audit(ctx, e)
}

// refused audits err as a denied call of action on target when it is a
// refusal (ErrForbidden, ErrUnauthenticated), and returns err: the one
// path by which calls that audit only their refusals (reads) record them.
func (s *Service) refused(ctx context.Context, action, target string, err error) error {
	if errors.Is(err, ErrForbidden) || errors.Is(err, ErrUnauthenticated) {
		s.record(ctx, action, target, "", err)
	}
	return err
}

// audited runs fn and records its outcome.
func (s *Service) audited(ctx context.Context, action, target, detail string, fn func() error) error {
	err := fn()
	s.record(ctx, action, target, detail, err)
	return err
}

// AuditQuery selects audit entries.
type AuditQuery struct {
	// Since returns entries at or after this time. Zero: from the start.
	Since time.Time
	// Limit caps the entries returned, oldest first. Default 100, at most 1000.
	Limit int
}

// AuditPage is a page of audit entries; Next, when set, is the Since of
// the following page.
type AuditPage struct {
	Entries []AuditEntry `json:"entries"`
	Next    *time.Time   `json:"next,omitempty"`
}

// AuditLog lists audit entries, oldest first (admin only).
func (s *Service) AuditLog(ctx context.Context, q AuditQuery) (*AuditPage, error) {
	if err := s.authorize(ctx, RoleAdmin, "", ""); err != nil {
		return nil, s.refused(ctx, "audit.list", "audit", err)
	}
	if q.Limit < 0 || q.Limit > 1000 {
		return nil, invalid("limit", "must be between 1 and 1000")
	}
	if q.Limit == 0 {
		q.Limit = 100
	}
	var lower []byte
	if q.Since.IsZero() {
		lower = auditPrefix
	} else {
		lower = auditKey(q.Since.UnixNano())
	}
	upper := append([]byte(nil), auditPrefix...)
	upper[len(upper)-1]++
	page := &AuditPage{Entries: []AuditEntry{}}
	err := s.withDB(func(db *controldb.DB) error {
		return db.Scan(lower, upper, func(k, v []byte) (bool, error) {
			var e AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return false, fmt.Errorf("audit entry %x: %w", k, err)
			}
			if len(page.Entries) == q.Limit {
				next := time.Unix(0, int64(binary.BigEndian.Uint64(k[len(auditPrefix):]))).UTC()
				page.Next = &next
				return false, nil
			}
			page.Entries = append(page.Entries, e)
			return true, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return page, nil
}

func auditLevel(result string) slog.Level {
	if result == "ok" {
		return slog.LevelInfo
	}
	return slog.LevelWarn
}

func slogAttrs(e AuditEntry) []slog.Attr {
	attrs := []slog.Attr{
		slog.String("audit_id", e.ID), slog.String("key_id", e.KeyID), slog.String("action", e.Action),
		slog.String("target", e.Target), slog.String("result", e.Result),
	}
	if e.Error != "" {
		attrs = append(attrs, slog.String("error", e.Error))
	}
	if e.SQL != "" {
		attrs = append(attrs, slog.String("sql", e.SQL))
	}
	if e.RequestID != "" {
		attrs = append(attrs, slog.String("request_id", e.RequestID))
	}
	return attrs
}
