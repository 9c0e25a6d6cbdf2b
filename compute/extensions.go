package compute

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/compute/pg"
)

// vectorMarker is a file in PGDATA naming the pgvector version every
// database of the cluster was last brought to. It travels with forks, so a
// lineage is checked once per installed version, not on every wake.
const vectorMarker = "offshoot_vector_version"

// UpdateVector brings the vector extension of every database of the cluster
// behind conn (a superuser session in database postgres) to the installed
// pgvector's default version with ALTER EXTENSION vector UPDATE, connecting
// to each other database with connString(db). dataDir is PGDATA: a marker
// file there records the version reached, and a cluster whose marker names
// the installed version is left alone without a query per database. It
// returns the databases it updated, as "db from→to".
func UpdateVector(ctx context.Context, conn *pgx.Conn, connString func(db string) string, dataDir string) ([]string, error) {
	var want string
	err := conn.QueryRow(ctx, "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'").Scan(&want)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil // pgvector is not installed
	}
	if err != nil {
		return nil, fmt.Errorf("update vector: %w", err)
	}
	marker := filepath.Join(dataDir, vectorMarker)
	if b, err := os.ReadFile(marker); err == nil && strings.TrimSpace(string(b)) == want {
		return nil, nil
	}
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname")
	if err != nil {
		return nil, fmt.Errorf("update vector: %w", err)
	}
	dbs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("update vector: %w", err)
	}
	var updated []string
	for _, db := range dbs {
		from, err := updateVectorIn(ctx, conn, connString, db, want)
		if err != nil {
			return updated, fmt.Errorf("update vector in database %q: %w", db, err)
		}
		if from != "" {
			updated = append(updated, fmt.Sprintf("%s %s→%s", db, from, want))
		}
	}
	if err := writeMarker(dataDir, marker, want); err != nil {
		return updated, fmt.Errorf("update vector: %w", err)
	}
	return updated, nil
}

// updateVectorIn updates vector in db when it is there at another version
// than want, and returns the version it had ("" when nothing was done).
func updateVectorIn(ctx context.Context, conn *pgx.Conn, connString func(string) string, db, want string) (string, error) {
	if db != "postgres" {
		c, err := pgx.Connect(ctx, connString(db))
		if err != nil {
			return "", err
		}
		defer c.Close(context.WithoutCancel(ctx))
		conn = c
	}
	var have string
	err := conn.QueryRow(ctx, "SELECT extversion FROM pg_extension WHERE extname = 'vector'").Scan(&have)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && have == want) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, "ALTER EXTENSION vector UPDATE"); err != nil {
		return "", err
	}
	return have, nil
}

// writeMarker writes the marker owned like PGDATA itself.
func writeMarker(dataDir, marker, version string) error {
	if err := os.WriteFile(marker, []byte(version+"\n"), 0o600); err != nil {
		return err
	}
	fi, err := os.Stat(dataDir)
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return os.Chown(marker, int(st.Uid), int(st.Gid))
	}
	return nil
}

// provisionedMarker is a file in PGDATA saying that the cluster has the
// built-in roles and its vector extension at the version named in it
// (provisionKey). Like vectorMarker it travels with forks; an endpoint
// whose PGDATA has the current key starts without the provisioning queries
// and without a readiness probe (see Manager.start).
const provisionedMarker = "offshoot_provisioned"

// rolesVersion changes whenever ensureRolesSQL does, so that every lineage
// runs it once again.
const rolesVersion = "3"

// shareDir is pg_config --sharedir ("" when it cannot be run).
var shareDir = sync.OnceValue(func() string {
	out, err := exec.Command(pg.Bin("pg_config"), "--sharedir").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
})

// vectorControl is the path of pgvector's control file (a variable for
// tests).
var vectorControl = func() string {
	if shareDir() == "" {
		return ""
	}
	return filepath.Join(shareDir(), "extension", "vector.control")
}

// provisionKey is the marker's content for the installed pgvector: the
// roles version and the extension's default version, read from its control
// file at every call, so that a pgvector upgraded under a running server
// (scripts/setup) reaches the next start of every lineage ("" when it
// cannot be read: then every start provisions).
func provisionKey() string {
	b, err := os.ReadFile(vectorControl())
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if ok && strings.TrimSpace(k) == "default_version" {
			return "roles " + rolesVersion + ", vector " + strings.Trim(strings.TrimSpace(v), "'")
		}
	}
	return ""
}

// provisioned reports whether dataDir's cluster was provisioned for the
// current key.
func provisioned(dataDir string) bool {
	key := provisionKey()
	if key == "" {
		return false
	}
	b, err := pg.ReadDataFile(filepath.Join(dataDir, provisionedMarker))
	return err == nil && strings.TrimSpace(string(b)) == key
}

// markProvisioned records in dataDir that its cluster is provisioned for
// key, read before the provisioning (so that a pgvector upgraded meanwhile
// is provisioned again at the next start, never skipped).
func markProvisioned(dataDir, key string) error {
	if key == "" {
		return nil
	}
	return writeMarker(dataDir, filepath.Join(dataDir, provisionedMarker), key)
}
