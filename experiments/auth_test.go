package experiments_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/experiments"
)

func TestParseScope(t *testing.T) {
	for _, tc := range []struct {
		in, out string // out "" means invalid
	}{
		{"admin", "admin"},
		{"read:main", "read:main"},
		{"write:main:feature/*", "write:main:feature/*"},
		{"read:*", "read:*"},
		{"write:p:a:b", "write:p:a:b"},
		{"read:p::masked", "read:p::masked"},
		{"write:p:agent/*:masked", "write:p:agent/*:masked"},
		{"read:*::masked", "read:*::masked"},
		{"admin::masked", ""},
		{"admin:main", ""},
		{"read", ""},
		{"read:", ""},
		{"write:main:", ""},
		{"write:main:[", ""},
		{"owner:main", ""},
		{"", ""},
	} {
		sc, err := experiments.ParseScope(tc.in)
		if tc.out == "" {
			if !errors.Is(err, experiments.ErrInvalid) {
				t.Errorf("ParseScope(%q) = %v, %v; want ErrInvalid", tc.in, sc, err)
			}
			continue
		}
		if err != nil || sc.String() != tc.out {
			t.Errorf("ParseScope(%q) = %v, %v; want %s", tc.in, sc, err, tc.out)
		}
	}
}

func TestCallerAllows(t *testing.T) {
	scopes := func(ss ...string) experiments.Caller {
		var c experiments.Caller
		for _, s := range ss {
			sc, err := experiments.ParseScope(s)
			if err != nil {
				t.Fatal(err)
			}
			c.Scopes = append(c.Scopes, sc)
		}
		return c
	}
	for _, tc := range []struct {
		caller          experiments.Caller
		role            experiments.Role
		project, branch string
		want            bool
	}{
		{scopes("admin"), experiments.RoleAdmin, "", "", true},
		{scopes("admin"), experiments.RoleWrite, "p", "b", true},
		{scopes("write:p"), experiments.RoleAdmin, "", "", false},
		{scopes("write:p"), experiments.RoleWrite, "p", "b", true},
		{scopes("write:p"), experiments.RoleRead, "p", "b", true},
		{scopes("write:p"), experiments.RoleWrite, "q", "b", false},
		{scopes("read:p"), experiments.RoleWrite, "p", "b", false},
		{scopes("read:p"), experiments.RoleRead, "p", "b", true},
		{scopes("read:*"), experiments.RoleRead, "any", "b", true},
		{scopes("write:p:feature/*"), experiments.RoleWrite, "p", "feature/x", true},
		{scopes("write:p:feature/*"), experiments.RoleWrite, "p", "feature/x/y", false},
		{scopes("write:p:feature/*"), experiments.RoleWrite, "p", "main", false},
		{scopes("write:p:feature/*"), experiments.RoleRead, "p", "", false},
		{scopes("read:p:main", "write:p:experiment-*"), experiments.RoleWrite, "p", "experiment-42", true},
		{scopes("read:p:main", "write:p:experiment-*"), experiments.RoleWrite, "p", "main", false},
		{scopes(), experiments.RoleRead, "p", "b", false},
	} {
		if got := tc.caller.Allows(tc.role, tc.project, tc.branch); got != tc.want {
			t.Errorf("%v allows %s on %s/%s = %v, want %v", tc.caller.Scopes, tc.role, tc.project, tc.branch, got, tc.want)
		}
	}
	// Masked scopes grant only masked branches, never the whole project;
	// other scopes do not care.
	for _, tc := range []struct {
		caller          experiments.Caller
		role            experiments.Role
		project, branch string
		masked, want    bool
	}{
		{scopes("read:p::masked"), experiments.RoleRead, "p", "b", true, true},
		{scopes("read:p::masked"), experiments.RoleRead, "p", "b", false, false},
		{scopes("read:p::masked"), experiments.RoleRead, "p", "", true, false},
		{scopes("read:p::masked"), experiments.RoleWrite, "p", "b", true, false},
		{scopes("read:p::masked"), experiments.RoleRead, "q", "b", true, false},
		{scopes("write:p:agent/*:masked"), experiments.RoleWrite, "p", "agent/x", true, true},
		{scopes("write:p:agent/*:masked"), experiments.RoleWrite, "p", "main", true, false},
		{scopes("write:p:agent/*:masked"), experiments.RoleWrite, "p", "agent/x", false, false},
		{scopes("read:p"), experiments.RoleRead, "p", "b", false, true},
		{scopes("read:p"), experiments.RoleRead, "p", "b", true, true},
	} {
		if got := tc.caller.AllowsBranch(tc.role, tc.project, tc.branch, tc.masked); got != tc.want {
			t.Errorf("%v allows %s on %s/%s (masked %t) = %v, want %v", tc.caller.Scopes, tc.role, tc.project, tc.branch, tc.masked, got, tc.want)
		}
	}
	if scopes("read:p::masked").Allows(experiments.RoleRead, "p", "b") {
		t.Error("Allows treats a branch as masked")
	}
}

func TestKeysAndAudit(t *testing.T) {
	dir := t.TempDir()
	open := func() *experiments.Service {
		s, err := experiments.New(experiments.Config{ControlDir: dir, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	ctx := admin()
	start := time.Now()
	if s.KeysRequired() {
		t.Fatal("keys required before any key exists")
	}
	if _, err := s.CreateKey(ctx, experiments.KeyRequest{Name: "ci"}); !errors.Is(err, experiments.ErrInvalid) {
		t.Errorf("key without scopes: %v", err)
	}
	w, _ := experiments.ParseScope("write:p:feature/*")
	// A first key without admin scope would lock admin out: once a key is
	// live, loopback callers need one too.
	if _, err := s.CreateKey(ctx, experiments.KeyRequest{Name: "agent", Scopes: []experiments.Scope{w}}); !errors.Is(err, experiments.ErrConflict) {
		t.Errorf("non-admin key first: %v, want ErrConflict", err)
	}
	if s.KeysRequired() {
		t.Fatal("keys required after a refused key")
	}
	root, err := s.CreateKey(ctx, experiments.KeyRequest{Name: "root", Scopes: []experiments.Scope{{Role: experiments.RoleAdmin}}})
	if err != nil {
		t.Fatal(err)
	}
	nk, err := s.CreateKey(ctx, experiments.KeyRequest{Name: "agent", Scopes: []experiments.Scope{w}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(nk.Token, "osk_"+nk.ID+"_") || len(nk.Token) < 50 {
		t.Errorf("token %q", nk.Token)
	}
	if !s.KeysRequired() {
		t.Error("a live key exists but keys are not required")
	}
	caller, err := s.Authenticate(ctx, nk.Token)
	if err != nil || caller.KeyID != nk.ID || len(caller.Scopes) != 1 || caller.Scopes[0] != w {
		t.Fatalf("Authenticate = %+v, %v", caller, err)
	}
	for _, bad := range []string{"", "nope", "osk_" + nk.ID + "_wrong", nk.Token + "x", "osk_ffff_" + strings.SplitN(nk.Token, "_", 3)[2]} {
		if _, err := s.Authenticate(ctx, bad); !errors.Is(err, experiments.ErrUnauthenticated) {
			t.Errorf("Authenticate(%q) = %v, want ErrUnauthenticated", bad, err)
		}
	}
	// The agent key may not manage keys.
	agent := experiments.WithCaller(context.Background(), caller)
	if _, err := s.CreateKey(agent, experiments.KeyRequest{Name: "x", Scopes: []experiments.Scope{w}}); !errors.Is(err, experiments.ErrForbidden) {
		t.Errorf("agent creates a key: %v", err)
	}
	if _, err := s.ListKeys(agent); !errors.Is(err, experiments.ErrForbidden) {
		t.Errorf("agent lists keys: %v", err)
	}

	// Keys survive a restart; revocation is durable.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AuditLog(ctx, experiments.AuditQuery{}); !errors.Is(err, experiments.ErrUnavailable) {
		t.Errorf("audit log after Close: %v, want ErrUnavailable", err)
	}
	s = open()
	defer s.Close()
	keys, err := s.ListKeys(ctx)
	if err != nil || len(keys) != 2 || keys[0].ID != root.ID || keys[1].ID != nk.ID || keys[1].Name != "agent" || keys[1].CreatedBy != "local" {
		t.Fatalf("keys after reopen: %+v %v", keys, err)
	}
	if _, err := s.RevokeKey(ctx, "nosuch"); !errors.Is(err, experiments.ErrNotFound) {
		t.Errorf("revoke unknown: %v", err)
	}
	// Revoking the last admin key while the agent's is live would lock
	// admin out too.
	if _, err := s.RevokeKey(ctx, root.ID); !errors.Is(err, experiments.ErrConflict) {
		t.Errorf("revoke the last admin key: %v, want ErrConflict", err)
	}
	if _, err := s.RevokeKey(ctx, nk.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeKey(ctx, nk.ID); !errors.Is(err, experiments.ErrConflict) {
		t.Errorf("revoke twice: %v", err)
	}
	if _, err := s.Authenticate(ctx, nk.Token); !errors.Is(err, experiments.ErrUnauthenticated) {
		t.Errorf("revoked key authenticates: %v", err)
	}
	if !s.KeysRequired() {
		t.Error("the admin key is live but keys are not required")
	}
	if _, err := s.RevokeKey(ctx, root.ID); err != nil {
		t.Fatal(err)
	}
	if s.KeysRequired() {
		t.Error("keys required with only a revoked key")
	}

	page, err := s.AuditLog(ctx, experiments.AuditQuery{Since: start})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range page.Entries {
		got = append(got, e.KeyID+" "+e.Action+" "+e.Result)
		if e.Time.Before(start.Add(-time.Second)) || e.ID == "" {
			t.Errorf("entry %+v", e)
		}
	}
	want := []string{
		"local key.create error", "local key.create error", "local key.create ok", "local key.create ok",
		nk.ID + " key.create denied", nk.ID + " key.list denied",
		"local key.revoke error", "local key.revoke error", "local key.revoke ok", "local key.revoke error", "local key.revoke ok",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Paging and since.
	p1, err := s.AuditLog(ctx, experiments.AuditQuery{Limit: 3})
	if err != nil || len(p1.Entries) != 3 || p1.Next == nil {
		t.Fatalf("page 1: %+v %v", p1, err)
	}
	p2, err := s.AuditLog(ctx, experiments.AuditQuery{Since: *p1.Next, Limit: 100})
	if err != nil || len(p2.Entries) != len(want)-3 || p2.Next != nil || p2.Entries[0].ID != page.Entries[3].ID {
		t.Fatalf("page 2: %+v %v", p2, err)
	}
	if p, err := s.AuditLog(ctx, experiments.AuditQuery{Since: time.Now().Add(time.Hour)}); err != nil || len(p.Entries) != 0 {
		t.Errorf("future since: %+v %v", p, err)
	}
	if _, err := s.AuditLog(ctx, experiments.AuditQuery{Limit: 5000}); !errors.Is(err, experiments.ErrInvalid) {
		t.Errorf("limit 5000: %v", err)
	}
}
