package experiments

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/offshootdb/offshoot/compute"
	"github.com/offshootdb/offshoot/compute/proxy"
)

// A replica's source: the URI it is created from, and the replication
// connections to the source server.

// checkMaxRate validates CreateReplicaRequest.MaxRate.
func checkMaxRate(v string) error {
	if v == "" {
		return nil
	}
	num, unit := v, uint64(1)
	switch {
	case strings.HasSuffix(v, "k"):
		num = v[:len(v)-1]
	case strings.HasSuffix(v, "M"):
		num, unit = v[:len(v)-1], 1024
	}
	n, err := strconv.ParseUint(num, 10, 32)
	if err != nil || n*unit < 32 || n*unit > 1024*1024 {
		return invalid("max_rate", "want kB/s between 32 and 1048576, or with a k or M suffix (\"500k\", \"20M\"); got %q", v)
	}
	return nil
}

// source is a parsed replica source.
type source struct {
	display  string // URI without password
	standby  compute.Standby
	project  string
	branch   string
	identify string // replication connection string for pgconn
}

// parseSource checks a source URI and turns it into the parameters the
// standby and pg_basebackup connect with.
func parseSource(raw, project string) (source, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return source{}, invalid("source", "want a postgresql://user:password@host:port/db?options=... URI of the source branch")
	}
	if strings.Contains(u.Host, ",") {
		return source{}, invalid("source", "names several hosts; a replica follows one source")
	}
	pw, ok := u.User.Password()
	if u.User == nil || u.User.Username() == "" || !ok || pw == "" {
		return source{}, invalid("source", "needs the user and password of role %s on the source branch: get them there with `offshoot branch connect BRANCH --role replication --password`", compute.RoleReplication)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "5432"
	}
	db := strings.TrimPrefix(u.Path, "/")
	if db == "" {
		db = "postgres"
	}
	kv := []string{"host=" + compute.QuoteConnValue(host), "port=" + compute.QuoteConnValue(port), "user=" + compute.QuoteConnValue(u.User.Username()), "dbname=" + compute.QuoteConnValue(db),
		"application_name=" + compute.QuoteConnValue("offshoot-replica-"+project)}
	var rootCert []byte
	q := u.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := q.Get(k)
		switch k {
		case "sslmode", "options", "connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout", "sslnegotiation":
			kv = append(kv, k+"="+compute.QuoteConnValue(v))
		case "sslrootcert":
			if rootCert, err = os.ReadFile(v); err != nil {
				return source{}, invalid("source", "sslrootcert: %v", err)
			}
		default:
			return source{}, invalid("source", "parameter %q is not supported for a replica source", k)
		}
	}
	r, _, err := proxy.ParseRoute(map[string]string{"options": q.Get("options")}, "-")
	if err != nil {
		return source{}, invalid("source", "options must name the source branch (endpoint=BRANCH, and project=PROJECT unless it is the source server's default): %v", err)
	}
	if r.Project == "-" {
		r.Project = ""
	}
	shown := *u
	shown.User = url.User(u.User.Username())
	slot := make([]byte, 8)
	if _, err := rand.Read(slot); err != nil {
		return source{}, err
	}
	identify := strings.Join(kv, " ")
	if len(rootCert) > 0 {
		identify += " sslrootcert=" + compute.QuoteConnValue(q.Get("sslrootcert"))
	}
	return source{display: shown.String(), project: r.Project, branch: r.Branch, identify: identify + " password=" + compute.QuoteConnValue(pw),
		standby: compute.Standby{ConnInfo: strings.Join(kv, " "), Password: pw, RootCert: rootCert, Slot: "offshoot_" + hex.EncodeToString(slot)}}, nil
}

// replicationConn opens a physical replication connection to a source.
func replicationConn(ctx context.Context, connString string) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(connString)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["replication"] = "true"
	return pgconn.ConnectConfig(ctx, cfg)
}

// identifySource checks that the source answers as a replication source
// and returns its system identifier.
func identifySource(ctx context.Context, connString string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := replicationConn(ctx, connString)
	if err != nil {
		return "", err
	}
	defer c.Close(context.WithoutCancel(ctx))
	res, err := c.Exec(ctx, "IDENTIFY_SYSTEM").ReadAll()
	if err != nil {
		return "", err
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) < 1 {
		return "", errors.New("IDENTIFY_SYSTEM returned no row")
	}
	return string(res[0].Rows[0][0]), nil
}

// dropSourceSlot drops a replica's slot on its source, waiting a little
// for a WAL sender that still holds it to notice its receiver is gone.
func dropSourceSlot(ctx context.Context, rec replicaRecord) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, done, err := rec.standby().WithRootCert()
	if err != nil {
		return err
	}
	defer done()
	c, err := replicationConn(ctx, conn+" password="+compute.QuoteConnValue(rec.Password))
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	for {
		_, err = c.Exec(ctx, "DROP_REPLICATION_SLOT "+rec.Slot).ReadAll()
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &pgErr) && pgErr.Code == "42704": // undefined_object: gone already
			return nil
		case errors.As(err, &pgErr) && pgErr.Code == "55006" && ctx.Err() == nil: // object_in_use
			time.Sleep(200 * time.Millisecond)
		default:
			return err
		}
	}
}

func slotWarning(rec replicaRecord, err error) string {
	return fmt.Sprintf("replication slot %s on the source was not dropped (%v): the source keeps WAL for it until it is; drop it there with SELECT pg_drop_replication_slot('%s')", rec.Slot, err, rec.Slot)
}
