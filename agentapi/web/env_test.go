package web_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/offshootdb/offshoot/agentapi"
	"github.com/offshootdb/offshoot/agentapi/web"
	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/offshootdb/offshoot/evals/evalstest"
	"github.com/offshootdb/offshoot/experiments"
)

// pgBranches serves branches as databases of one real Postgres cluster:
// a fork is CREATE DATABASE ... TEMPLATE of the parent's database (as in
// the experiments package's run tests). It implements the facade's
// Connector and RunBranches and the UI's BranchSource, until the branch
// catalog lands in the facade.
type pgBranches struct {
	c  *pgtest.Cluster
	mu sync.Mutex // CREATE DATABASE from a template one at a time; guards parents
	// parents maps a fork to its parent; "main" is the root.
	parents map[string]string
	created map[string]time.Time
	// state is the endpoint state every branch reports; tests change it.
	state string
}

func (b *pgBranches) setState(s string) {
	b.mu.Lock()
	b.state = s
	b.mu.Unlock()
}

func dbName(branch string) string {
	if branch == "main" {
		return "main"
	}
	h := sha1.Sum([]byte(branch))
	return "b_" + hex.EncodeToString(h[:10])
}

func (b *pgBranches) admin(ctx context.Context) (*pgx.Conn, error) {
	return pgx.Connect(ctx, b.c.ConnString)
}

func (b *pgBranches) lsn(ctx context.Context, conn *pgx.Conn) (uint64, error) {
	var lsn int64
	err := conn.QueryRow(ctx, "SELECT (pg_current_wal_lsn() - '0/0')::bigint").Scan(&lsn)
	return uint64(lsn), err
}

func (b *pgBranches) Resolve(ctx context.Context, _ string, at experiments.BranchPoint) (experiments.BranchPoint, error) {
	conn, err := b.admin(ctx)
	if err != nil {
		return experiments.BranchPoint{}, err
	}
	defer conn.Close(ctx)
	seq, err := b.lsn(ctx, conn)
	return experiments.BranchPoint{Branch: at.Branch, Seq: seq}, err
}

func (b *pgBranches) Fork(ctx context.Context, _ string, from experiments.BranchPoint, name string) (experiments.ForkInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	conn, err := b.admin(ctx)
	if err != nil {
		return experiments.ForkInfo{}, err
	}
	defer conn.Close(ctx)
	sql := fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", pgx.Identifier{dbName(name)}.Sanitize(), pgx.Identifier{dbName(from.Branch)}.Sanitize())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return experiments.ForkInfo{}, err
	}
	b.parents[name], b.created[name] = from.Branch, time.Now()
	seq, err := b.lsn(ctx, conn)
	return experiments.ForkInfo{Branch: name, Seq: seq}, err
}

func (b *pgBranches) Discard(ctx context.Context, _ string, branch string) error {
	conn, err := b.admin(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{dbName(branch)}.Sanitize()+" WITH (FORCE)")
	b.mu.Lock()
	delete(b.parents, branch)
	b.mu.Unlock()
	return err
}

// size is the database's size on disk.
func (b *pgBranches) size(ctx context.Context, branch string) (int64, error) {
	conn, err := b.admin(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int64
	err = conn.QueryRow(ctx, "SELECT pg_database_size($1)", dbName(branch)).Scan(&n)
	return n, err
}

// ForkUsage is the database's size, as delta and as current bytes: a
// database copy holds all of itself.
func (b *pgBranches) ForkUsage(ctx context.Context, _ string, branch string) (experiments.ForkBytes, error) {
	n, err := b.size(ctx, branch)
	return experiments.ForkBytes{Delta: n, Current: n}, err
}

func (b *pgBranches) Conn(ctx context.Context, _ string, branch string, _ experiments.Access) (*pgx.Conn, func(), error) {
	conn, err := pgx.Connect(ctx, b.c.Postmaster.ConnString("postgres", "", dbName(branch)))
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "3D000" {
			return nil, nil, fmt.Errorf("branch %s: %w", branch, experiments.ErrNotFound)
		}
		return nil, nil, fmt.Errorf("%w: %w", experiments.ErrUnavailable, err)
	}
	return conn, func() { conn.Close(context.Background()) }, nil
}

// ProjectBranches implements web.BranchSource: "main" and its forks, with
// database sizes as logical sizes, all on one page.
func (b *pgBranches) ProjectBranches(ctx context.Context, project, _ string, _ int) (web.BranchesPage, error) {
	bs, err := b.all(ctx, project)
	return web.BranchesPage{Branches: bs, Total: len(bs)}, err
}

// Branch implements web.BranchSource.
func (b *pgBranches) Branch(ctx context.Context, project, name string) (web.Branch, error) {
	bs, err := b.all(ctx, project)
	if err != nil {
		return web.Branch{}, err
	}
	for _, x := range bs {
		if x.Name == name {
			return x, nil
		}
	}
	return web.Branch{}, fmt.Errorf("branch %s: %w", name, experiments.ErrNotFound)
}

func (b *pgBranches) all(ctx context.Context, project string) ([]web.Branch, error) {
	if project != "p" {
		return nil, fmt.Errorf("project %s: %w", project, experiments.ErrNotFound)
	}
	b.mu.Lock()
	names := map[string]string{"main": ""}
	state := b.state
	created := map[string]time.Time{}
	for k, v := range b.parents {
		names[k] = v
		created[k] = b.created[k]
	}
	b.mu.Unlock()
	var out []web.Branch
	for n, parent := range names {
		size, err := b.size(ctx, n)
		if err != nil {
			return nil, err
		}
		out = append(out, web.Branch{Name: n, Parent: parent, Created: created[n], ForkTime: created[n], State: state,
			LogicalBytes: size, DeltaBytes: size / 10, SharedBytes: size - size/10, Labels: map[string]string{"owner": "test"}})
	}
	return out, nil
}

// env is a facade over a real cluster with a base branch "main" (table
// items), a fork "feature" that changed it, and the HTTP server with the UI.
type env struct {
	svc  *experiments.Service
	br   *pgBranches
	srv  *httptest.Server
	ctx  context.Context
	beir string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c := pgtest.New(t, nil)
	br := &pgBranches{c: c, parents: map[string]string{}, created: map[string]time.Time{}, state: "running"}
	ctx := context.Background()
	admin := c.Connect(t)
	if _, err := admin.Exec(ctx, "CREATE DATABASE main"); err != nil {
		t.Fatal(err)
	}
	exec := func(branch, sql string) {
		t.Helper()
		conn, release, err := br.Conn(ctx, "p", branch, experiments.ReadWrite)
		if err != nil {
			t.Fatal(err)
		}
		defer release()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	exec("main", `CREATE EXTENSION vector; CREATE TABLE items(id int PRIMARY KEY, name text NOT NULL);
		INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 20) g; CREATE INDEX items_name ON items(name)`)
	if _, err := br.Fork(ctx, "p", experiments.BranchPoint{Branch: "main"}, "feature"); err != nil {
		t.Fatal(err)
	}
	exec("feature", `ALTER TABLE items ADD COLUMN price numeric; UPDATE items SET name = 'renamed' WHERE id = 3;
		DELETE FROM items WHERE id = 4; INSERT INTO items VALUES (21, 'new item', 9.5)`)
	svc, err := experiments.New(experiments.Config{ControlDir: filepath.Join(t.TempDir(), "control"), Connector: br, Branches: br,
		DatasetsDir: evalstest.DatasetsDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	api, err := agentapi.New(agentapi.Config{Service: svc, Branches: br})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return &env{svc: svc, br: br, srv: srv, ctx: experiments.WithCaller(ctx, experiments.LocalCaller), beir: evalstest.Cranfield(t)}
}

// run starts a run and waits for it.
func (e *env) run(t *testing.T, variants ...experiments.VariantSpec) *experiments.Run {
	t.Helper()
	sp := experiments.ExperimentSpec{Name: "ab", Project: "p", Base: experiments.BranchPoint{Branch: "main"},
		Dataset: experiments.DatasetSpec{BEIR: e.beir}, Variants: variants,
		Metrics: []string{"ndcg_cut.10", "recall.10", "recip_rank"}, Concurrency: 2}
	r, err := e.svc.StartRun(e.ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 3*time.Minute)
	defer cancel()
	done, err := e.svc.WaitRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != experiments.StatusSucceeded {
		t.Fatalf("run %s: %s %s %+v", done.ID, done.Status, done.Error, done.Variants)
	}
	return done
}
