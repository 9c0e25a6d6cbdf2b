package experiments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/offshootdb/offshoot/compute"
	"github.com/offshootdb/offshoot/experiments/internal/controldb"
	"github.com/offshootdb/offshoot/storage"
)

// Replicas.
//
// A replica is a read-only copy of a branch of another offshoot server
// (the source) that follows it with PostgreSQL's streaming replication.
// It lives in a project of its own on this server, as that project's main
// branch: a physical copy is a whole cluster, with the source's roles,
// databases and system identifier. CreateReplica seeds it with
// pg_basebackup through the source's proxy, as the source branch's
// replication role (compute.RoleReplication, whose password an admin of
// the source hands out), and creates a physical replication slot there so
// the source keeps the WAL the replica has not received. Its endpoint then
// runs as a hot standby (compute.Standby) that streams from the source
// through the same proxy; a follower holds a lease on it so it neither
// suspends nor is evicted, and starts it again after a crash or a restart
// of this server. Reads go through this server's proxy with this server's
// credentials. PromoteReplica ends the following (pg_promote) and makes
// the branch writable; forks of a replica start writable too. The source
// keeps its endpoint running while a replica streams from it.

// LabelReplica marks the main branch of a replica project: "following"
// until it is promoted, then "promoted".
const LabelReplica = "offshoot.replica"

// replicaRecord is what the control DB keeps per replica.
type replicaRecord struct {
	// Source is the libpq URI of the source without its password.
	Source string `json:"source"`
	// ConnInfo is Source as keyword/value parameters (compute.Standby).
	ConnInfo string `json:"conninfo"`
	Password string `json:"password"`
	RootCert []byte `json:"root_cert,omitempty"`
	Slot     string `json:"slot"`
	SystemID string `json:"system_id"`
	// SourceProject and SourceBranch are what the URI's options name.
	SourceProject string     `json:"source_project,omitempty"`
	SourceBranch  string     `json:"source_branch,omitempty"`
	BranchID      uint64     `json:"branch_id"`
	CreatedAt     time.Time  `json:"created_at"`
	PromotedAt    *time.Time `json:"promoted_at,omitempty"`
	// SlotDropped is set once the slot on the source is known dropped.
	SlotDropped bool `json:"slot_dropped,omitempty"`
	// Seeding is set while CreateReplica copies the source: a record
	// still seeding at start-up is what a crash left of a create, undone
	// by FollowReplicas (project, record and slot).
	Seeding bool `json:"seeding,omitempty"`
}

func replicaKey(project string) []byte { return []byte("replica/" + project) }

// replicaBranch is the branch of a replica project that follows the source.
const replicaBranch = "main"

// Replica describes a replica.
type Replica struct {
	Project string `json:"project"`
	Branch  string `json:"branch"`
	// Source is the connection URI of the source branch, without password.
	Source string `json:"source"`
	// SourceProject and SourceBranch are the source branch as the URI's
	// options name it ("" project: the source server's default project).
	SourceProject string `json:"source_project,omitempty"`
	SourceBranch  string `json:"source_branch,omitempty"`
	// SystemID is the source cluster's system identifier.
	SystemID string `json:"system_id"`
	// Slot is the replication slot on the source.
	Slot string `json:"slot"`
	// State is "streaming" (connected and following), "connecting" (its
	// WAL receiver is starting or reconnecting), "disconnected" (no WAL
	// receiver: the source is unreachable), the endpoint's state when it
	// does not run ("starting", "stopped", ...), "promoted", "seeding"
	// (CreateReplica copies the source), or "unknown" (its position could
	// not be read; Warnings says why).
	State      string     `json:"state"`
	CreatedAt  time.Time  `json:"created_at"`
	PromotedAt *time.Time `json:"promoted_at,omitempty"`
	// Lag is how far the replica is behind, read from its running
	// endpoint; nil when it does not run or is promoted.
	Lag      *ReplicaLag     `json:"lag,omitempty"`
	Endpoint *EndpointStatus `json:"endpoint,omitempty"`
	// Warnings says what a call could not finish on the source (a slot
	// that could not be dropped there).
	Warnings []string `json:"warnings,omitempty"`
}

// ReplicaLag is a replica's distance behind its source.
type ReplicaLag struct {
	// Bytes is the WAL the source reported as written that the replica
	// has not replayed yet.
	Bytes int64 `json:"bytes"`
	// Seconds is how old the last replayed transaction is when WAL is
	// waiting to be replayed, and 0 when the replica has replayed all it
	// received (so after a long quiet spell on the source the first new
	// transaction shows the quiet time until it is replayed).
	Seconds float64 `json:"seconds"`
	// SourceLSN is the end of WAL the source last reported; ReceivedLSN and
	// ReplayedLSN are the replica's.
	SourceLSN   string `json:"source_lsn,omitempty"`
	ReceivedLSN string `json:"received_lsn,omitempty"`
	ReplayedLSN string `json:"replayed_lsn,omitempty"`
	// LastMessageAt is when the replica last heard from the source.
	LastMessageAt *time.Time `json:"last_message_at,omitempty"`
}

// CreateReplicaRequest asks for a replica.
type CreateReplicaRequest struct {
	// Project is the new project on this server that holds the replica.
	Project string `json:"project"`
	// Source is the libpq URI of the source branch through the source
	// server's proxy, as role offshoot_replication with its password: on
	// the source, `offshoot branch connect BRANCH --role replication
	// --password` (admin) prints it. sslrootcert, when given, names a file
	// on this server; it is read once and kept.
	Source string `json:"source"`
	// MaxRate caps the rate of the initial copy so that it does not
	// saturate the source: kB/s, or with a k or M suffix ("20M"), between
	// 32k and 1024M as pg_basebackup --max-rate takes it; "": no cap.
	MaxRate string `json:"max_rate,omitempty"`
}

// CreateReplica creates a replica of a branch of another server in a new
// project: it copies the source with pg_basebackup (creating its slot),
// starts the copy as a hot standby and keeps it following. It returns
// once the replica serves reads. Admin only. A failure leaves neither the
// project nor the slot behind.
func (s *Service) CreateReplica(ctx context.Context, req CreateReplicaRequest) (*Replica, error) {
	var out *Replica
	shown := ""
	if u, err := url.Parse(req.Source); err == nil {
		if u.User != nil {
			u.User = url.User(u.User.Username())
		}
		q := u.Query()
		q.Del("password")
		q.Del("sslpassword")
		u.RawQuery = q.Encode()
		shown = u.String()
	}
	err := s.audited(ctx, "replica.create", req.Project, "source="+shown, func() error {
		if err := s.authorize(ctx, RoleAdmin, "", ""); err != nil {
			return err
		}
		st, err := s.storeOr()
		if err != nil {
			return err
		}
		if s.cfg.Compute == nil {
			return fmt.Errorf("replicas need compute: %w", ErrUnavailable)
		}
		if err := checkStoreName("project", req.Project); err != nil {
			return err
		}
		src, err := parseSource(req.Source, req.Project)
		if err != nil {
			return err
		}
		if err := checkMaxRate(req.MaxRate); err != nil {
			return err
		}
		sysID, err := identifySource(ctx, src.identify)
		if err != nil {
			return fmt.Errorf("source %s does not answer as a replication source: %w: %w", src.display, ErrUnavailable, err)
		}
		if _, err := s.replicaRecord(req.Project); err == nil {
			return fmt.Errorf("replica %s exists or is still being removed: %w", req.Project, ErrConflict)
		}
		p, _, err := st.CreateProject(req.Project)
		if err != nil {
			return storeErr(err)
		}
		s.setCreating(req.Project, true)
		defer s.setCreating(req.Project, false)
		rec := replicaRecord{Source: src.display, ConnInfo: src.standby.ConnInfo, Password: src.standby.Password,
			RootCert: src.standby.RootCert, Slot: src.standby.Slot, SystemID: sysID, CreatedAt: p.CreatedAt,
			SourceProject: src.project, SourceBranch: src.branch, Seeding: true}
		undo := func(cause error) error {
			s.undoReplica(context.WithoutCancel(ctx), req.Project, rec)
			return cause
		}
		// Recorded before the copy creates the slot on the source: a crash
		// from here on leaves a seeding record, which the next start undoes.
		if err := s.withDB(func(db *controldb.DB) error {
			if err := db.Put(projectKey(req.Project), projectRecord{CreatedAt: p.CreatedAt}); err != nil {
				return err
			}
			return db.Put(replicaKey(req.Project), rec)
		}); err != nil {
			return undo(err)
		}
		if err := s.seedReplica(ctx, st, req.Project, compute.BaseBackupOptions{Standby: src.standby, Project: req.Project, MaxRate: req.MaxRate}); err != nil {
			return undo(err)
		}
		b, err := st.UpdateBranch(req.Project, replicaBranch, storage.BranchUpdate{Labels: map[string]string{LabelReplica: "following"}})
		if err != nil {
			return undo(storeErr(err))
		}
		rec.BranchID, rec.Seeding = b.ID, false
		if err := s.withDB(func(db *controldb.DB) error { return db.Put(replicaKey(req.Project), rec) }); err != nil {
			return undo(err)
		}
		// The first start replays the backup's WAL and connects to the
		// source: the replica serves reads once it returns.
		l, err := s.cfg.Compute.Acquire(ctx, req.Project, replicaBranch)
		if err != nil {
			_ = s.stopEndpoint(context.WithoutCancel(ctx), req.Project, replicaBranch, true)
			return undo(fmt.Errorf("start the replica: %w", computeErr(err)))
		}
		l.Release()
		s.follow(req.Project)
		out = s.replicaView(ctx, req.Project, rec)
		return nil
	})
	return out, err
}

// seedReplica copies the source into the empty main branch of project.
func (s *Service) seedReplica(ctx context.Context, st *storage.Store, project string, o compute.BaseBackupOptions) error {
	h, err := st.OpenHead(project, replicaBranch)
	if err != nil {
		return storeErr(err)
	}
	mnt, err := os.MkdirTemp(s.cfg.InitDir, "replica-")
	if err == nil {
		err = os.Chmod(mnt, 0o755)
	}
	if err != nil {
		h.Close()
		return fmt.Errorf("create replica: %w", err)
	}
	defer os.Remove(mnt)
	berr := compute.BaseBackup(ctx, h, mnt, o)
	if cerr := h.Close(); berr == nil && cerr != nil {
		berr = cerr
	}
	if berr != nil {
		return fmt.Errorf("copy the source: %w: %w", ErrUnavailable, berr)
	}
	return nil
}

// StandbyOf tells compute whether a branch is a following replica
// (compute.Config.Standby): only the branch the replica was seeded into,
// until it is promoted; its forks start writable.
func (s *Service) StandbyOf(project, branch string) (*compute.Standby, error) {
	var rec replicaRecord
	err := s.withDB(func(db *controldb.DB) error { return db.Get(replicaKey(project), &rec) })
	if errors.Is(err, controldb.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if rec.PromotedAt != nil {
		return nil, nil
	}
	st, err := s.storeOr()
	if err != nil {
		return nil, err
	}
	b, err := st.Branch(project, branch)
	if err != nil {
		return nil, err
	}
	if b.ID != rec.BranchID {
		return nil, nil
	}
	sb := rec.standby()
	return &sb, nil
}

// standby is how the replica reaches its source.
func (rec replicaRecord) standby() compute.Standby {
	return compute.Standby{ConnInfo: rec.ConnInfo, Password: rec.Password, RootCert: rec.RootCert, Slot: rec.Slot}
}

// replicaRecords lists the replicas, by project.
func (s *Service) replicaRecords() (map[string]replicaRecord, error) {
	out := map[string]replicaRecord{}
	err := s.withDB(func(db *controldb.DB) error {
		return db.Scan([]byte("replica/"), []byte("replica0"), func(k, v []byte) (bool, error) {
			var rec replicaRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return false, fmt.Errorf("replica %s: %w", k, err)
			}
			out[strings.TrimPrefix(string(k), "replica/")] = rec
			return true, nil
		})
	})
	return out, err
}

func (s *Service) replicaRecord(project string) (replicaRecord, error) {
	var rec replicaRecord
	err := s.withDB(func(db *controldb.DB) error { return db.Get(replicaKey(project), &rec) })
	if errors.Is(err, controldb.ErrNotFound) {
		return rec, fmt.Errorf("project %s is not a replica: %w", project, ErrNotFound)
	}
	return rec, err
}

// ListReplicas lists the replicas the caller can see, with their lag.
func (s *Service) ListReplicas(ctx context.Context) ([]Replica, error) {
	c, ok := CallerFrom(ctx)
	if !ok {
		return nil, fmt.Errorf("no caller: %w", ErrUnauthenticated)
	}
	recs, err := s.replicaRecords()
	if err != nil {
		return nil, err
	}
	out := []Replica{}
	for p, rec := range recs {
		if !canSeeProject(c, p) {
			continue
		}
		out = append(out, *s.replicaView(ctx, p, rec))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Project < out[j].Project })
	return out, nil
}

// GetReplica describes one replica, with its lag.
func (s *Service) GetReplica(ctx context.Context, project string) (*Replica, error) {
	if err := s.authorize(ctx, RoleRead, project, replicaBranch); err != nil {
		return nil, err
	}
	rec, err := s.replicaRecord(project)
	if err != nil {
		return nil, err
	}
	return s.replicaView(ctx, project, rec), nil
}

// replicaView describes a replica; the lag is read only from a running
// endpoint (a look does not wake it).
func (s *Service) replicaView(ctx context.Context, project string, rec replicaRecord) *Replica {
	r := &Replica{Project: project, Branch: replicaBranch, Source: rec.Source, SourceProject: rec.SourceProject, SourceBranch: rec.SourceBranch,
		SystemID: rec.SystemID, Slot: rec.Slot, CreatedAt: rec.CreatedAt, PromotedAt: rec.PromotedAt,
		Endpoint: s.endpointStatus(project, replicaBranch)}
	if rec.PromotedAt != nil {
		r.State = "promoted"
		return r
	}
	if rec.Seeding {
		r.State = "seeding"
		if s.checkSeeded(project, rec) == nil {
			r.State = "removing" // a create that failed or a crash cut
		}
		return r
	}
	r.State = string(compute.Stopped)
	if r.Endpoint != nil {
		r.State = r.Endpoint.State
	}
	if r.State != string(compute.Running) && r.State != string(compute.Idle) {
		return r
	}
	lag, status, err := s.replicaLag(ctx, project)
	if err != nil {
		// One replica that cannot answer does not hide the others.
		r.State = "unknown"
		r.Warnings = append(r.Warnings, err.Error())
		return r
	}
	r.Lag = lag
	switch status {
	case "streaming":
		r.State = "streaming"
	case "":
		r.State = "disconnected"
	default:
		r.State = "connecting"
	}
	return r
}

// replicaLagSQL reads a standby's position against what its source last
// reported (pg_stat_wal_receiver.latest_end_lsn is the source's end of
// WAL as of its last message).
const replicaLagSQL = `SELECT
  r.status,
  r.latest_end_lsn::text, pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,
  r.last_msg_receipt_time,
  greatest(coalesce(pg_wal_lsn_diff(greatest(r.latest_end_lsn, pg_last_wal_receive_lsn()), pg_last_wal_replay_lsn()), 0), 0)::bigint,
  CASE WHEN pg_last_wal_receive_lsn() IS NULL
         OR greatest(r.latest_end_lsn, pg_last_wal_receive_lsn()) <= pg_last_wal_replay_lsn() THEN 0
       ELSE greatest(coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0), 0) END::float8
FROM (SELECT 1) one LEFT JOIN pg_stat_wal_receiver r ON true`

func (s *Service) replicaLag(ctx context.Context, project string) (*ReplicaLag, string, error) {
	conn, done, err := s.cfg.Connector.Conn(ctx, project, replicaBranch, Maintenance)
	if err != nil {
		return nil, "", err
	}
	defer done()
	var status, srcLSN, recvLSN, replayLSN *string
	var lastMsg *time.Time
	lag := &ReplicaLag{}
	if err := conn.QueryRow(ctx, replicaLagSQL).Scan(&status, &srcLSN, &recvLSN, &replayLSN, &lastMsg, &lag.Bytes, &lag.Seconds); err != nil {
		return nil, "", fmt.Errorf("read the replica's lag: %w: %w", ErrUnavailable, err)
	}
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	lag.SourceLSN, lag.ReceivedLSN, lag.ReplayedLSN, lag.LastMessageAt = str(srcLSN), str(recvLSN), str(replayLSN), lastMsg
	return lag, str(status), nil
}

// PromoteReplica ends a replica's following and makes its branch writable
// (pg_promote), then drops its slot on the source; a slot that cannot be
// dropped there (the source is down) is reported in Warnings. Admin only.
func (s *Service) PromoteReplica(ctx context.Context, project string) (*Replica, error) {
	var out *Replica
	err := s.audited(ctx, "replica.promote", project, "", func() error {
		if err := s.authorize(ctx, RoleAdmin, project, replicaBranch); err != nil {
			return err
		}
		rec, err := s.replicaRecord(project)
		if err != nil {
			return err
		}
		if rec.PromotedAt != nil {
			return fmt.Errorf("replica %s was promoted at %s: %w", project, rec.PromotedAt.Format(time.RFC3339), ErrConflict)
		}
		if rec.Seeding {
			return fmt.Errorf("replica %s was not created to the end; delete it: %w", project, ErrConflict)
		}
		st, err := s.storeOr()
		if err != nil {
			return err
		}
		s.unfollow(project)
		// Recorded first: should the server stop between here and the
		// end of the promotion, the next start ends the recovery itself
		// (compute removes standby.signal) instead of following again.
		now := s.cfg.Now().UTC()
		rec.PromotedAt = &now
		if err := s.withDB(func(db *controldb.DB) error { return db.Put(replicaKey(project), rec) }); err != nil {
			return err
		}
		if _, err := st.UpdateBranch(project, replicaBranch, storage.BranchUpdate{Labels: map[string]string{LabelReplica: "promoted"}}); err != nil {
			return storeErr(err)
		}
		conn, done, err := s.cfg.Connector.Conn(ctx, project, replicaBranch, Maintenance)
		if err != nil {
			return err
		}
		var promoted, inRecovery bool
		err = conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery)
		if err == nil && inRecovery {
			err = conn.QueryRow(ctx, "SELECT pg_promote(true, 60)").Scan(&promoted)
			if err == nil && !promoted {
				err = errors.New("the promotion did not finish within 60 s")
			}
		}
		done()
		if err != nil {
			return fmt.Errorf("promote %s: %w: %w", project, ErrUnavailable, err)
		}
		if s.cfg.Compute != nil {
			s.cfg.Compute.ForgetPrimary(project, replicaBranch)
		}
		out = s.replicaView(ctx, project, rec)
		if err := dropSourceSlot(context.WithoutCancel(ctx), rec); err != nil {
			out.Warnings = append(out.Warnings, slotWarning(rec, err))
		} else {
			rec.SlotDropped = true
			if err := s.withDB(func(db *controldb.DB) error { return db.Put(replicaKey(project), rec) }); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// DeleteReplica deletes a replica's project (every branch of it) and its
// slot on the source; a slot that cannot be dropped there is reported in
// Warnings. Admin only.
func (s *Service) DeleteReplica(ctx context.Context, project string) (*Replica, error) {
	var out *Replica
	err := s.audited(ctx, "replica.delete", project, "", func() error {
		if err := s.authorize(ctx, RoleAdmin, "", ""); err != nil {
			return err
		}
		rec, err := s.replicaRecord(project)
		if err != nil {
			return err
		}
		if err := s.checkSeeded(project, rec); err != nil {
			return err
		}
		out = &Replica{Project: project, Branch: replicaBranch, Source: rec.Source, SystemID: rec.SystemID, Slot: rec.Slot,
			CreatedAt: rec.CreatedAt, PromotedAt: rec.PromotedAt, State: "deleted"}
		// ErrNotFound: a delete a crash interrupted after the project
		// went; forgetting the replica finishes it.
		if err := s.deleteProject(ctx, project, true); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if w := s.forgetReplica(ctx, project, rec); w != "" {
			out.Warnings = append(out.Warnings, w)
		}
		return nil
	})
	return out, err
}
