package experiments

import (
	"context"
	"testing"
	"time"
)

// TestForkBuffersFallBack: a run fork whose Postgres does not start with
// the shared_buffers it was given (here 1TB, which this host refuses to
// map) starts with the endpoints' default instead, and keeps it.
func TestForkBuffersFallBack(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres and FUSE")
	}
	t.Parallel()
	svc := storeService(t, "p", nil)
	ctx, cancel := context.WithTimeout(WithCaller(context.Background(), LocalCaller), 5*time.Minute)
	defer cancel()
	for _, b := range []string{"plain", "fallback"} {
		if _, err := svc.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: b}); err != nil {
			t.Fatal(err)
		}
		svc.cfg.Compute.SetSettings("p", b, map[string]string{"shared_buffers": "1TB"})
	}
	// Without the fallback the start fails: the test's premise, which a
	// host that overcommits memory without limit does not give.
	if _, release, err := svc.connectFork(ctx, "p", "plain", false); err == nil {
		release()
		t.Skip("a fork with shared_buffers 1TB started: this host maps that much shared memory")
	}
	conn, release, err := svc.connectFork(ctx, "p", "fallback", true)
	if err != nil {
		t.Fatalf("the fallback to the default shared_buffers: %v", err)
	}
	defer release()
	var sb string
	if err := conn.QueryRow(ctx, "SHOW shared_buffers").Scan(&sb); err != nil || sb != "128MB" {
		t.Fatalf("shared_buffers after the fallback: %q (%v), want the default 128MB", sb, err)
	}

	// A built fork restarted for its evaluation with buffers sized to a
	// 1TB index (within a budget raised to allow it) comes back with the
	// default too.
	if _, err := svc.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "built"}); err != nil {
		t.Fatal(err)
	}
	c, rel, err := svc.connectFork(ctx, "p", "built", false)
	if err != nil {
		t.Fatal(err)
	}
	fk := &evalFork{s: svc, project: "p", branch: "built", conn: c, release: rel}
	defer fk.close()
	svc.cfg.IndexMemoryBudget = 1 << 41
	if err := svc.resizeForkBuffers(ctx, fk, 1<<40); err != nil {
		t.Fatalf("the restart's fallback to the default shared_buffers: %v", err)
	}
	if err := fk.conn.QueryRow(ctx, "SHOW shared_buffers").Scan(&sb); err != nil || sb != "128MB" {
		t.Fatalf("shared_buffers after the restart's fallback: %q (%v), want the default 128MB", sb, err)
	}
}
