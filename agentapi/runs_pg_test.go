package agentapi

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/offshootdb/offshoot/experiments"
)

// templateBranches is experiments.RunBranches and Connector over one
// cluster: a branch is a database, a fork CREATE DATABASE ... TEMPLATE.
type templateBranches struct{ c *pgtest.Cluster }

func (b templateBranches) db(branch string) string {
	if branch == "main" {
		return "main"
	}
	h := sha1.Sum([]byte(branch))
	return "b_" + hex.EncodeToString(h[:10])
}

func (b templateBranches) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, b.c.ConnString)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func (b templateBranches) Resolve(_ context.Context, _ string, at experiments.BranchPoint) (experiments.BranchPoint, error) {
	if at.Branch != "main" {
		return at, fmt.Errorf("branch %s: %w", at.Branch, experiments.ErrNotFound)
	}
	return experiments.BranchPoint{Branch: "main", Seq: 1}, nil
}

func (b templateBranches) Fork(ctx context.Context, _ string, from experiments.BranchPoint, name string) (experiments.ForkInfo, error) {
	err := b.exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", pgx.Identifier{b.db(name)}.Sanitize(), pgx.Identifier{b.db(from.Branch)}.Sanitize()))
	return experiments.ForkInfo{Branch: name, Seq: 1}, err
}

func (b templateBranches) Discard(ctx context.Context, _, branch string) error {
	return b.exec(ctx, "DROP DATABASE "+pgx.Identifier{b.db(branch)}.Sanitize()+" WITH (FORCE)")
}

func (b templateBranches) Conn(ctx context.Context, _, branch string, _ experiments.Access) (*pgx.Conn, func(), error) {
	conn, err := pgx.Connect(ctx, b.c.Postmaster.ConnString("postgres", "", b.db(branch)))
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "3D000" {
			return nil, nil, fmt.Errorf("branch %s: %w", branch, experiments.ErrNotFound)
		}
		return nil, nil, err
	}
	return conn, func() { conn.Close(context.Background()) }, nil
}

// TestRunOverHTTP starts an A/B run on Cranfield through the API, polls
// it, and compares the variants as JSON and HTML.
func TestRunOverHTTP(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres")
	}
	root, _ := os.Getwd()
	for ; ; root = filepath.Dir(root) {
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			break
		}
		if root == filepath.Dir(root) {
			t.Fatal("go.mod not found")
		}
	}
	data := filepath.Join(root, "..", "shared", "datasets", "cranfield")
	br := templateBranches{c: pgtest.New(t, nil)}
	ctx := context.Background()
	if err := br.exec(ctx, "CREATE DATABASE main"); err != nil {
		t.Fatal(err)
	}
	svc, err := experiments.New(experiments.Config{ControlDir: t.TempDir(), Connector: br, Branches: br})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Open(ctx); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
		svc.Close()
	})
	e := &env{url: "http://" + ln.Addr().String(), svc: svc, srv: srv}

	spec := map[string]any{"name": "ab", "project": "p", "base": map[string]any{"branch": "main"},
		"dataset": map[string]any{"beir": data}, "metrics": []string{"ndcg_cut.10"}, "concurrency": 2,
		"variants": []any{map[string]any{"name": "bow", "embedder": "hash-bow?dims=64"}, map[string]any{"name": "rp", "embedder": "hash-rp?dims=64"}}}
	var run experiments.Run
	if code, _ := e.call(t, "POST", "/v1/runs", "", spec, &run); code != http.StatusAccepted || run.ID == "" {
		t.Fatalf("start: %d %+v", code, run)
	}
	// Follow the run's events until it is done.
	ev, err := http.Get(e.url + "/v1/runs/" + run.ID + "/events")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(ev.Body)
	ev.Body.Close()
	if ev.Header.Get("Content-Type") != "text/event-stream" || !strings.Contains(string(body), "event: progress\n") ||
		!strings.Contains(string(body), `"phase":"`) || !strings.Contains(string(body), "event: done\ndata: {") {
		t.Errorf("events: %s %.300s", ev.Header.Get("Content-Type"), body)
	}
	e.call(t, "GET", "/v1/runs/"+run.ID+"?results=false", "", nil, &run)
	if run.Status != experiments.StatusSucceeded || len(run.Variants) != 2 || run.Variants[0].Metrics["ndcg_cut_10"] <= 0 {
		t.Fatalf("run: %s %q %+v", run.Status, run.Error, run.Variants)
	}
	var cmp experiments.RunComparison
	if code, _ := e.call(t, "GET", "/v1/runs/"+run.ID+":bow/compare/"+run.ID+":rp", "", nil, &cmp); code != http.StatusOK || cmp.Comparison == nil || cmp.Comparison.Queries != 225 {
		t.Fatalf("compare: %d %+v", code, cmp)
	}
	resp, err := http.Get(e.url + "/v1/runs/compare?format=html&a=" + run.ID + ":bow&b=" + run.ID + ":rp")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("html compare: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
