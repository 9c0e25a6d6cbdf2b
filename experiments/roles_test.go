package experiments

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/compute"
)

// TestScopedRolesCannotEscape: queries of read and write keys run as
// roles that cannot run programs, read server files, import large objects,
// signal superuser backends, change the server's configuration or create
// untrusted extensions; admin queries still run as the superuser.
func TestScopedRolesCannotEscape(t *testing.T) {
	svc := storeService(t, "p", nil)
	ctx := context.Background()
	admin := WithCaller(ctx, LocalCaller)
	if _, err := svc.Query(admin, QueryRequest{Project: "p", Branch: "main",
		SQL: "CREATE TABLE admin_made (id int primary key, v text); INSERT INTO admin_made VALUES (1, 'a')"}); err != nil {
		t.Fatal(err)
	}
	// A superuser session whose backend the scoped roles must not signal.
	l, err := svc.cfg.Compute.Acquire(ctx, "p", "main")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	su, err := pgx.Connect(ctx, l.ConnString(compute.RoleSuperuser, "", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer su.Close(ctx)
	var suPid int
	if err := su.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&suPid); err != nil {
		t.Fatal(err)
	}
	attacks := []string{
		"COPY (SELECT 1) TO PROGRAM 'id > /tmp/offshoot-roles-test'",
		"SELECT pg_read_file('/etc/hostname')",
		"SELECT pg_read_binary_file('/etc/hostname')",
		"SELECT lo_import('/etc/hostname')",
		fmt.Sprintf("SELECT pg_terminate_backend(%d)", suPid),
		"ALTER ROLE current_user SUPERUSER",
		"CREATE EXTENSION file_fdw",
		"SELECT pg_ls_dir('.')",
		"CREATE ROLE sneaky SUPERUSER",
		"SET session_replication_role = replica",
	}
	for _, tc := range []struct {
		name     string
		scope    string
		readOnly bool
		role     string
	}{
		{"read", "read:p", true, compute.RoleRead},
		{"write", "write:p", false, compute.RoleWrite},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kctx := WithCaller(ctx, Caller{KeyID: tc.name, Scopes: []Scope{mustScope(t, tc.scope)}})
			res, err := svc.Query(kctx, QueryRequest{Project: "p", Branch: "main", ReadOnly: tc.readOnly,
				SQL: "SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), (SELECT count(*) FROM admin_made)"})
			if err != nil {
				t.Fatal(err)
			}
			row := res.Results[0].Rows[0]
			if row[0] != tc.role || row[1] != false || fmt.Sprint(row[2]) != "1" {
				t.Fatalf("session = %v, want role %s, no superuser, reading the admin's table", row, tc.role)
			}
			for _, sql := range attacks {
				_, err := svc.Query(kctx, QueryRequest{Project: "p", Branch: "main", ReadOnly: tc.readOnly, SQL: sql})
				var qe *QueryError
				if !errors.As(err, &qe) {
					t.Errorf("%s: err = %v, want a query error", sql, err)
					continue
				}
				// 42501 insufficient_privilege; a read-only transaction
				// may refuse first (25006) where the statement writes.
				if qe.SQLState != "42501" && !(tc.readOnly && qe.SQLState == "25006") {
					t.Errorf("%s: SQLSTATE %s (%s), want 42501", sql, qe.SQLState, qe.Message)
				}
			}
			if err := su.Ping(ctx); err != nil {
				t.Fatalf("the superuser session was terminated: %v", err)
			}
		})
	}
	// The write role owns what it creates and may change the admin's data.
	wctx := WithCaller(ctx, Caller{KeyID: "w", Scopes: []Scope{mustScope(t, "write:p")}})
	if _, err := svc.Query(wctx, QueryRequest{Project: "p", Branch: "main",
		SQL: "CREATE TABLE mine (id int); UPDATE admin_made SET v = 'b'; DROP TABLE mine"}); err != nil {
		t.Fatal(err)
	}
	// Admin still runs as the superuser.
	res, err := svc.Query(admin, QueryRequest{Project: "p", Branch: "main", SQL: "SELECT current_user, length(pg_read_file('PG_VERSION')) > 0"})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Results[0].Rows[0]; got[0] != compute.RoleSuperuser || got[1] != true {
		t.Fatalf("admin session = %v, want the superuser reading a server file", got)
	}
	if _, err := svc.Query(WithCaller(ctx, Caller{KeyID: "r", Scopes: []Scope{mustScope(t, "read:p")}}),
		QueryRequest{Project: "p", Branch: "main", SQL: "SELECT 1"}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("read key without read_only: %v, want forbidden", err)
	}
}

// TestConnectionRoles: connection strings carry the role the scope allows
// and a password of the branch's own, made once and audited.
func TestConnectionRoles(t *testing.T) {
	svc := storeService(t, "p", nil)
	ctx := context.Background()
	admin := WithCaller(ctx, LocalCaller)
	if _, err := svc.CreateBranch(admin, CreateBranchRequest{Project: "p", Name: "a"}); err != nil {
		t.Fatal(err)
	}
	read := WithCaller(ctx, Caller{KeyID: "r", Scopes: []Scope{mustScope(t, "read:p")}})
	write := WithCaller(ctx, Caller{KeyID: "w", Scopes: []Scope{mustScope(t, "write:p:a")}})
	for _, tc := range []struct {
		ctx    context.Context
		branch string
		role   string
		want   string
		err    error
	}{
		{admin, "main", "", compute.RoleSuperuser, nil},
		{admin, "main", "write", compute.RoleWrite, nil},
		{read, "main", "", compute.RoleRead, nil},
		{read, "main", "write", "", ErrForbidden},
		{read, "main", "superuser", "", ErrForbidden},
		{write, "a", "", compute.RoleWrite, nil},
		{write, "a", "superuser", "", ErrForbidden},
		{write, "main", "", "", ErrForbidden},
		{admin, "main", "nobody", "", ErrInvalid},
		{admin, "main", "replication", compute.RoleReplication, nil},
		{write, "a", "replication", "", ErrForbidden},
	} {
		c, err := svc.Connection(tc.ctx, ConnectionRequest{Project: "p", Branch: tc.branch, Role: tc.role, Password: true})
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%s role %q: err = %v, want %v", tc.branch, tc.role, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s role %q: %v", tc.branch, tc.role, err)
		}
		if c.User != tc.want || !strings.Contains(c.URI, "postgresql://"+tc.want+":") {
			t.Errorf("%s role %q: user %s uri %s, want role %s with a password", tc.branch, tc.role, c.User, c.URI, tc.want)
		}
	}
	// One password per branch and role, stable until rotated, different
	// between branches.
	pw := func(ctx context.Context, branch, role string) string {
		c, err := svc.Connection(ctx, ConnectionRequest{Project: "p", Branch: branch, Role: role, Password: true})
		if err != nil {
			t.Fatal(err)
		}
		v, ok := svc.Verifier(ctx, "p", branch, c.User)
		if !ok || !strings.HasPrefix(v, "SCRAM-SHA-256$4096:") {
			t.Fatalf("no verifier for %s on %s after handing out its password: %q", c.User, branch, v)
		}
		return strings.SplitN(strings.TrimPrefix(c.URI, "postgresql://"), "@", 2)[0]
	}
	a1, a2, m1 := pw(admin, "a", "write"), pw(write, "a", ""), pw(admin, "main", "write")
	if a1 != a2 || a1 == m1 {
		t.Fatalf("passwords: a %q then %q, main %q: want stable per branch and distinct across branches", a1, a2, m1)
	}
	if _, ok := svc.Verifier(ctx, "p", "a", compute.RoleRead); ok {
		t.Fatal("a verifier for a role whose password was never handed out")
	}
	if _, err := svc.RotateCredentials(write, RotateRequest{Project: "p", Branch: "a", Role: "write"}); err != nil {
		t.Fatal(err)
	}
	if a3 := pw(write, "a", ""); a3 == a1 {
		t.Fatal("rotation kept the password")
	}
	if _, err := svc.RotateCredentials(write, RotateRequest{Project: "p", Branch: "main"}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("rotate outside the scope: %v, want forbidden", err)
	}
	page, err := svc.AuditLog(admin, AuditQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	results := map[string]int{}
	for _, e := range page.Entries {
		if e.Action == "branch.credential" {
			results[e.Result]++
		}
	}
	if results["ok"] != 9 || results["denied"] != 5 || results["error"] != 1 {
		t.Fatalf("audited credential requests %v, want 9 ok, 5 denied, 1 error", results)
	}
	// Verifiers of the user's own roles come from the cluster, and forks
	// inherit them until their own endpoint has run.
	if _, err := svc.Query(admin, QueryRequest{Project: "p", Branch: "main", SQL: "CREATE ROLE alice LOGIN PASSWORD 'secret-alice'"}); err != nil {
		t.Fatal(err)
	}
	if err := svc.cfg.Compute.Suspend(ctx, "p", "main"); err != nil {
		t.Fatal(err)
	}
	if v, ok := svc.Verifier(ctx, "p", "main", "alice"); !ok || !strings.HasPrefix(v, "SCRAM-SHA-256$") {
		t.Fatalf("alice's verifier after suspend: %q %v", v, ok)
	}
	if _, err := svc.CreateBranch(admin, CreateBranchRequest{Project: "p", Name: "child"}); err != nil {
		t.Fatal(err)
	}
	// A fork's create response and its GET agree on its depth.
	grand, err := svc.CreateBranch(admin, CreateBranchRequest{Project: "p", Name: "grand", ParentID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := svc.GetBranch(admin, "p", "grand")
	if err != nil {
		t.Fatal(err)
	}
	if grand.Depth != 2 || got.Depth != 2 {
		t.Errorf("depth of grand: created %d, get %d, want 2", grand.Depth, got.Depth)
	}
	if _, ok := svc.Verifier(ctx, "p", "child", "alice"); !ok {
		t.Fatal("a fork does not inherit its parent's captured verifiers")
	}
	if _, ok := svc.Verifier(ctx, "p", "nosuch", "alice"); ok {
		t.Fatal("a verifier for an unknown branch")
	}
}

func mustScope(t *testing.T, s string) Scope {
	t.Helper()
	sc, err := ParseScope(s)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}
