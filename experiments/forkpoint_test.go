package experiments

import (
	"context"
	"testing"

	"github.com/offshootdb/offshoot/compute"
)

// TestCheckpointBeforeFork checks that a fork or snapshot of a running
// head with a large WAL backlog checkpoints the branch first (so forks
// start without replaying it), that a small backlog does not, and that a
// stopped branch is not woken for it.
func TestCheckpointBeforeFork(t *testing.T) {
	t.Parallel()
	s := storeService(t, "p", nil)
	ctx := WithCaller(context.Background(), LocalCaller)
	conn, release, err := s.connect(ctx, "p", "main", Superuser)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { release() }()
	type walState struct{ redo, now, backlog int64 }
	wal := func() walState {
		t.Helper()
		var w walState
		if err := conn.QueryRow(ctx, `SELECT pg_wal_lsn_diff(redo_lsn, '0/0')::bigint, pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint,
			pg_wal_lsn_diff(pg_current_wal_lsn(), redo_lsn)::bigint FROM pg_control_checkpoint()`).Scan(&w.redo, &w.now, &w.backlog); err != nil {
			t.Fatal(err)
		}
		return w
	}
	exec := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	exec("CHECKPOINT")
	exec("CREATE TABLE big AS SELECT g, repeat(md5(g::text), 8) AS pad FROM generate_series(1, 100000) g")
	before := wal()
	if before.backlog <= checkpointBeforeFork {
		t.Fatalf("the load left a WAL backlog of %d bytes, want more than %d", before.backlog, checkpointBeforeFork)
	}
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "f1"}); err != nil {
		t.Fatal(err)
	}
	if after := wal(); after.redo < before.now {
		t.Fatalf("fork with a %d-byte backlog: redo point %d, want at least %d (a checkpoint before the fork)", before.backlog, after.redo, before.now)
	}
	// The fork has the data.
	fc, frel, err := s.connect(ctx, "p", "f1", Superuser)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	err = fc.QueryRow(ctx, "SELECT count(*) FROM big").Scan(&n)
	frel()
	if err != nil || n != 100000 {
		t.Fatalf("fork reads %d rows (%v), want 100000", n, err)
	}

	// A small backlog: no checkpoint.
	exec("INSERT INTO big SELECT g, 'x' FROM generate_series(1, 100) g")
	small := wal()
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "f2"}); err != nil {
		t.Fatal(err)
	}
	if after := wal(); after.redo != small.redo {
		t.Fatalf("fork with a %d-byte backlog checkpointed (redo %d -> %d)", small.backlog, small.redo, after.redo)
	}

	// A snapshot of the head checkpoints like a fork.
	exec("CREATE TABLE big2 AS SELECT * FROM big")
	before = wal()
	if _, err := s.CreateSnapshot(ctx, CreateSnapshotRequest{Project: "p", Branch: "main", Name: "s1"}); err != nil {
		t.Fatal(err)
	}
	if after := wal(); after.redo < before.now {
		t.Fatalf("snapshot with a %d-byte backlog: redo point %d, want at least %d", before.backlog, after.redo, before.now)
	}

	// A stopped branch is not woken by a fork.
	release()
	release = func() {}
	if err := s.stopEndpoint(ctx, "p", "main", false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "f3"}); err != nil {
		t.Fatal(err)
	}
	if st := s.cfg.Compute.Status("p", "main").State; st == compute.Running || st == compute.Idle || st == compute.Starting {
		t.Fatalf("a fork woke the stopped parent: %s", st)
	}
}
