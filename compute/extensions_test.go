package compute_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/offshootdb/offshoot/compute"
)

// undo080 turns a vector extension created at 0.8.0 into what 0.7.4 left:
// it undoes vector--0.7.4--0.8.0.sql (four casts to sparsevec and their
// functions) and records 0.7.4.
const undo080 = `
DO $$
DECLARE t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['integer[]', 'real[]', 'double precision[]', 'numeric[]'] LOOP
		EXECUTE format('ALTER EXTENSION vector DROP CAST (%s AS sparsevec)', t);
		EXECUTE format('DROP CAST (%s AS sparsevec)', t);
		EXECUTE format('ALTER EXTENSION vector DROP FUNCTION array_to_sparsevec(%s, integer, boolean)', t);
		EXECUTE format('DROP FUNCTION array_to_sparsevec(%s, integer, boolean)', t);
	END LOOP;
END $$;
UPDATE pg_extension SET extversion = '0.7.4' WHERE extname = 'vector';`

// TestUpdateVectorOnStart: a branch whose databases have an older vector
// extension than the installed pgvector gets ALTER EXTENSION vector UPDATE
// in each of them when its endpoint starts, and the result works.
func TestUpdateVectorOnStart(t *testing.T) {
	e := newEnv(t, compute.Config{})
	e.branch(t, "p", "b")
	l := acquire(t, e.m, "p", "b")
	want := query(t, l, "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
	run(t, l, "CREATE DATABASE app")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	old := map[string]string{}
	for _, db := range []string{"postgres", "app"} {
		conn, err := pgx.Connect(ctx, l.ConnString("postgres", "", db))
		if err != nil {
			t.Fatal(err)
		}
		sql := []string{"CREATE EXTENSION vector", undo080}
		if want != "0.8.0" {
			// An upgraded install keeps 0.8.0's install script.
			sql = []string{"CREATE EXTENSION vector VERSION '0.8.0'"}
		}
		for _, s := range sql {
			if _, err := conn.Exec(ctx, s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
		var v string
		if err := conn.QueryRow(ctx, "SELECT extversion FROM pg_extension WHERE extname = 'vector'").Scan(&v); err != nil {
			t.Fatal(err)
		}
		old[db] = v
		conn.Close(ctx)
	}
	l.Release()
	p, err := e.vols.Path("p", "b")
	if err != nil {
		t.Fatal(err)
	}
	// A branch made before the upgrade has no markers, or older ones.
	if err := os.WriteFile(filepath.Join(p, "offshoot_vector_version"), []byte("0.0.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "offshoot_provisioned"), []byte("roles 2, vector 0.0.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Stop(ctx, "p", "b"); err != nil {
		t.Fatal(err)
	}

	l = acquire(t, e.m, "p", "b")
	defer l.Release()
	for _, db := range []string{"postgres", "app"} {
		conn, err := pgx.Connect(ctx, l.ConnString("postgres", "", db))
		if err != nil {
			t.Fatal(err)
		}
		var got, dist string
		if err := conn.QueryRow(ctx, "SELECT extversion FROM pg_extension WHERE extname = 'vector'").Scan(&got); err != nil {
			t.Fatal(err)
		}
		// 0.8.0 added the casts to sparsevec that undo080 removed.
		if err := conn.QueryRow(ctx, "SELECT (ARRAY[1,0,2]::int[]::sparsevec <-> '{}/3'::sparsevec)::text").Scan(&dist); err != nil {
			t.Fatalf("%s: %v", db, err)
		}
		conn.Close(ctx)
		if got != want || old[db] == want || dist != "2.23606797749979" {
			t.Fatalf("database %s: vector %s before, %s after the start (want %s), distance %s", db, old[db], got, want, dist)
		}
	}
	b, err := os.ReadFile(filepath.Join(p, "offshoot_vector_version"))
	if err != nil || strings.TrimSpace(string(b)) != want {
		t.Fatalf("marker: %q, %v; want %s", b, err, want)
	}
}

// TestProvisionOnce: the first start of a lineage provisions its cluster
// (roles, vector) and records it in PGDATA; later wakes start without the
// provisioning queries (a role dropped by hand stays dropped), and a
// marker of another key provisions again.
func TestProvisionOnce(t *testing.T) {
	e := newEnv(t, compute.Config{})
	e.branch(t, "p", "b")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l := acquire(t, e.m, "p", "b")
	p, err := e.vols.Path("p", "b")
	if err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(p, "offshoot_provisioned")
	b, err := os.ReadFile(marker)
	if err != nil || !strings.HasPrefix(string(b), "roles ") {
		t.Fatalf("marker after the first start: %q, %v", b, err)
	}
	run(t, l, "DROP ROLE "+compute.RoleReplication)
	l.Release()
	if err := e.m.Suspend(ctx, "p", "b"); err != nil {
		t.Fatal(err)
	}
	l = acquire(t, e.m, "p", "b")
	if got := query(t, l, "SELECT count(*) FROM pg_roles WHERE rolname = '"+compute.RoleReplication+"'"); got != "0" {
		t.Fatalf("a wake of a provisioned cluster ran the provisioning: %s", got)
	}
	l.Release()
	if err := os.WriteFile(marker, []byte("roles 1, vector 0.0.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Suspend(ctx, "p", "b"); err != nil {
		t.Fatal(err)
	}
	l = acquire(t, e.m, "p", "b")
	defer l.Release()
	if got := query(t, l, "SELECT count(*) FROM pg_roles WHERE rolname = '"+compute.RoleReplication+"'"); got != "1" {
		t.Fatalf("a stale marker did not provision again: %s roles", got)
	}
	if b2, _ := os.ReadFile(marker); string(b2) != string(b) {
		t.Fatalf("marker after provisioning again: %q, want %q", b2, b)
	}
}
