// Package experimentstest gives tests of the packages above experiments a
// real, throwaway branch store for runs without storage or compute: one
// pgtest cluster where a branch is a database.
package experimentstest

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/offshootdb/offshoot/experiments"
)

// TemplateBranches is experiments.RunBranches and experiments.Connector
// over one cluster: branch "main" is database main, any other branch a
// database named after its hash, and a fork is CREATE DATABASE ...
// TEMPLATE. Only main resolves; every branch is at sequence 1. Projects
// and access modes are ignored. Safe for concurrent use.
type TemplateBranches struct{ Cluster *pgtest.Cluster }

var (
	_ experiments.RunBranches = TemplateBranches{}
	_ experiments.Connector   = TemplateBranches{}
)

// NewTemplateBranches starts a pgtest cluster (stopped when the test ends)
// holding an empty database main.
func NewTemplateBranches(t testing.TB) TemplateBranches {
	t.Helper()
	b := TemplateBranches{Cluster: pgtest.New(t, nil)}
	if err := b.Exec(context.Background(), "CREATE DATABASE main"); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b TemplateBranches) db(branch string) string {
	if branch == "main" {
		return "main"
	}
	h := sha1.Sum([]byte(branch))
	return "b_" + hex.EncodeToString(h[:10])
}

// Exec runs sql as the superuser in database postgres.
func (b TemplateBranches) Exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, b.Cluster.ConnString)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// Resolve pins main at sequence 1; any other branch is
// experiments.ErrNotFound.
func (b TemplateBranches) Resolve(_ context.Context, _ string, at experiments.BranchPoint) (experiments.BranchPoint, error) {
	if at.Branch != "main" {
		return at, fmt.Errorf("branch %s: %w", at.Branch, experiments.ErrNotFound)
	}
	return experiments.BranchPoint{Branch: "main", Seq: 1}, nil
}

// Fork copies from's database into a new one for branch name.
func (b TemplateBranches) Fork(ctx context.Context, _ string, from experiments.BranchPoint, name string) (experiments.ForkInfo, error) {
	err := b.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", pgx.Identifier{b.db(name)}.Sanitize(), pgx.Identifier{b.db(from.Branch)}.Sanitize()))
	return experiments.ForkInfo{Branch: name, Seq: 1}, err
}

// Discard drops branch's database, disconnecting its sessions.
func (b TemplateBranches) Discard(ctx context.Context, _, branch string) error {
	return b.Exec(ctx, "DROP DATABASE "+pgx.Identifier{b.db(branch)}.Sanitize()+" WITH (FORCE)")
}

// Conn connects to branch's database; a missing one is
// experiments.ErrNotFound.
func (b TemplateBranches) Conn(ctx context.Context, _, branch string, _ experiments.Access) (*pgx.Conn, func(), error) {
	conn, err := pgx.Connect(ctx, b.Cluster.Postmaster.ConnString("postgres", "", b.db(branch)))
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "3D000" {
			return nil, nil, fmt.Errorf("branch %s: %w", branch, experiments.ErrNotFound)
		}
		return nil, nil, err
	}
	return conn, func() { conn.Close(context.Background()) }, nil
}
