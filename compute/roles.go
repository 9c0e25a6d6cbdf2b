package compute

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5"
	"github.com/offshootdb/offshoot/compute/pg"
)

// The database roles every offshoot cluster has. The bootstrap superuser
// belongs to the server and to admin keys only; scoped keys and agents get
// one of the two others, neither of which can run programs, read or write
// server files, signal backends or change roles.
const (
	// RoleSuperuser is the bootstrap superuser of initdb.
	RoleSuperuser = "postgres"
	// RoleWrite owns the user's objects: it owns the schema public of
	// database postgres and may create schemas and temporary tables there
	// (the database itself is the bootstrap superuser's, so that its
	// defaults, search_path above all, are not this role's to set for
	// every session), reads and writes every table (pg_read_all_data,
	// pg_write_all_data) and may create databases. NOSUPERUSER,
	// NOCREATEROLE, NOREPLICATION, NOBYPASSRLS.
	RoleWrite = "offshoot_write"
	// RoleRead reads every table (pg_read_all_data); its sessions default
	// to read-only transactions.
	RoleRead = "offshoot_read"
	// RoleReplication streams the cluster's WAL to replicas on other
	// nodes (LOGIN REPLICATION) and has no other privilege: its queries
	// read no table. What it streams is every database, so its per-branch
	// password is for admins only.
	RoleReplication = "offshoot_replication"
)

// ensureRolesSQL creates RoleReplication, RoleRead and RoleWrite in a
// cluster that lacks them, and on the first run of the latter two hands the user objects the bootstrap
// superuser owned in database postgres (outside the system schemas and
// extensions) to RoleWrite, so clusters made before the roles existed get
// the same model. Database postgres goes (back) to the bootstrap
// superuser, with CREATE and TEMPORARY granted to RoleWrite: until roles
// version 3 RoleWrite owned it, and with it could set a search_path for
// every session, the server's superuser sessions included. It changes
// nothing when all that holds.
const ensureRolesSQL = `
DO $ensure$
DECLARE r record; fresh boolean;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'offshoot_replication') THEN
    CREATE ROLE offshoot_replication LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
  END IF;
  fresh := NOT (EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'offshoot_write')
     AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'offshoot_read'));
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'offshoot_read') THEN
    CREATE ROLE offshoot_read LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'offshoot_write') THEN
    CREATE ROLE offshoot_write LOGIN NOSUPERUSER CREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
  END IF;
  IF (SELECT datdba FROM pg_database WHERE datname = 'postgres') <> 10 THEN
    EXECUTE format('ALTER DATABASE postgres OWNER TO %I', (SELECT rolname FROM pg_roles WHERE oid = 10));
    GRANT CREATE, TEMPORARY ON DATABASE postgres TO offshoot_write;
    -- What its former owner set applies to every session (a search_path
    -- with public first above all): gone with the ownership.
    ALTER DATABASE postgres RESET ALL;
  END IF;
  IF NOT fresh THEN
    RETURN;
  END IF;
  GRANT CREATE, TEMPORARY ON DATABASE postgres TO offshoot_write;
  GRANT pg_read_all_data TO offshoot_read;
  ALTER ROLE offshoot_read SET default_transaction_read_only = on;
  GRANT pg_read_all_data, pg_write_all_data TO offshoot_write;
  ALTER SCHEMA public OWNER TO offshoot_write;
  FOR r IN
    SELECT n.nspname FROM pg_namespace n
    WHERE n.nspowner = 10 AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'public')
      AND n.nspname NOT LIKE 'pg\_%'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass AND d.objid = n.oid AND d.deptype = 'e')
  LOOP
    EXECUTE format('ALTER SCHEMA %I OWNER TO offshoot_write', r.nspname);
  END LOOP;
  FOR r IN
    SELECT c.oid::regclass AS rel, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relowner = 10 AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('e', 'a', 'i'))
  LOOP
    EXECUTE format('ALTER %s %s OWNER TO offshoot_write',
      CASE r.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, r.rel);
  END LOOP;
END
$ensure$`

// EnsureRoles gives the cluster behind conn (a superuser session in
// database postgres) the roles RoleRead and RoleWrite; see ensureRolesSQL.
// Idempotent; a cluster that has them is only read.
func EnsureRoles(ctx context.Context, conn *pgx.Conn) error {
	if _, err := conn.Exec(ctx, ensureRolesSQL); err != nil {
		return fmt.Errorf("ensure roles: %w", err)
	}
	return nil
}

// Verifiers reads the SCRAM-SHA-256 verifiers of the login roles of the
// cluster behind conn (a superuser session): role name → pg_authid's
// rolpassword ("SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>").
// Roles without a SCRAM password (none, or MD5) are left out.
func Verifiers(ctx context.Context, conn *pgx.Conn) (map[string]string, error) {
	rows, err := conn.Query(ctx, `SELECT rolname, rolpassword FROM pg_authid
		WHERE rolcanlogin AND rolpassword LIKE 'SCRAM-SHA-256$%'
		  AND (rolvaliduntil IS NULL OR rolvaliduntil > now())`)
	if err != nil {
		return nil, fmt.Errorf("read verifiers: %w", err)
	}
	out := map[string]string{}
	for rows.Next() {
		var name, v string
		if err := rows.Scan(&name, &v); err != nil {
			return nil, fmt.Errorf("read verifiers: %w", err)
		}
		out[name] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read verifiers: %w", err)
	}
	return out, nil
}

// hbaConf is the pg_hba.conf every endpoint runs with (passed as hba_file
// on the command line, so the one in PGDATA, which travels with the
// branch, is not used). Local connections are trusted: the socket
// directory is private to the endpoint (0700, unix_socket_permissions
// 0700), reached only by the server itself, which authenticates clients at
// the proxy before it connects on their behalf. (Config.LocalAuth changes
// that for a proxy that leaves authentication to Postgres.) TCP on loopback (Config.TCP)
// takes the method Config.TCPAuth names.
const hbaConf = `# written by offshoot for this endpoint; PGDATA's pg_hba.conf is not used
local all all %[1]s
local replication all %[1]s
host all all 127.0.0.1/32 %[2]s
host all all ::1/128 %[2]s
host replication all 127.0.0.1/32 %[2]s
host replication all ::1/128 %[2]s
`

// writeHBA writes hbaConf with the local and TCP methods into dir, owned
// by root and readable (not writable) by the group of u, the endpoint's OS
// user, and returns its path.
func writeHBA(dir, localAuth, tcpAuth string, u pg.OSUser) (string, error) {
	p := filepath.Join(dir, "pg_hba.conf")
	if err := os.WriteFile(p, fmt.Appendf(nil, hbaConf, localAuth, tcpAuth), 0o640); err != nil {
		return "", fmt.Errorf("write pg_hba.conf: %w", err)
	}
	if err := os.Chown(p, 0, int(u.GID)); err != nil {
		return "", fmt.Errorf("write pg_hba.conf: %w", err)
	}
	if err := os.Chmod(p, 0o640); err != nil {
		return "", fmt.Errorf("write pg_hba.conf: %w", err)
	}
	return p, nil
}
