package main

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// projectDeleteSteps creates project p2 with a table and a fork, checks that
// deleting it needs force, deletes it with force (its running endpoint is
// stopped), and recreates p2 as a fresh cluster; the default project needs
// force too. Called from TestE2E on its running server.
func projectDeleteSteps(s *e2eServer) {
	t := s.t
	t.Helper()
	p2 := "/v1/projects/p2"
	br := func(b string) string { return p2 + "/branches/" + url.PathEscape(b) }
	connect := func(b string) *pgx.Conn {
		t.Helper()
		var c struct{ URI string }
		s.must(200, "GET", br(b)+"/connection?password=true", nil, &c)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, c.URI)
		if err != nil {
			t.Fatalf("connect to p2/%s: %v\n%s", b, err, s.log())
		}
		return conn
	}
	state := func(b string) string {
		t.Helper()
		var d struct{ Endpoint struct{ State string } }
		s.must(200, "GET", br(b), nil, &d)
		return d.Endpoint.State
	}

	s.must(201, "POST", "/v1/projects", map[string]any{"name": "p2"}, nil)
	c := connect("main")
	if _, err := c.Exec(context.Background(), "CREATE TABLE old_p2 (id int); INSERT INTO old_p2 VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	s.must(201, "POST", p2+"/branches", map[string]any{"name": "dev"}, nil)
	if st := state("main"); st != "running" && st != "idle" {
		t.Errorf("p2/main endpoint %q before delete, want running", st)
	}

	if p := s.problem(409, "DELETE", p2, nil); !strings.Contains(p.Detail, "branches besides main") {
		t.Errorf("delete p2 without force: %+v", p)
	}
	s.problem(409, "DELETE", "/v1/projects/main", nil) // the default project
	s.problem(404, "DELETE", "/v1/projects/nope?force=true", nil)
	s.problem(400, "DELETE", p2+"?force=maybe", nil)
	state("dev") // still there after the refusal

	s.must(204, "DELETE", p2+"?force=true", nil, nil)
	// The stopped endpoint closed our session.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("session on deleted project p2 still works")
	}
	c.Close(context.Background())
	s.problem(404, "GET", p2, nil)
	s.problem(404, "GET", br("dev"), nil)
	var list struct{ Projects []struct{ Name string } }
	s.must(200, "GET", "/v1/projects", nil, &list)
	for _, p := range list.Projects {
		if p.Name == "p2" {
			t.Errorf("p2 still listed: %+v", list.Projects)
		}
	}

	// Recreate: a fresh cluster without the old table.
	s.must(201, "POST", "/v1/projects", map[string]any{"name": "p2"}, nil)
	c = connect("main")
	defer c.Close(context.Background())
	_, err := c.Exec(context.Background(), "SELECT * FROM old_p2")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42P01" {
		t.Errorf("old table in recreated p2: %v, want undefined_table", err)
	}
	c.Close(context.Background())
	// An empty non-default project goes without force.
	s.must(204, "DELETE", p2, nil, nil)
}
