package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/offshootdb/offshoot/experiments"
)

// apiServer serves the HTTP API over one real cluster: branch main of
// project main is database postgres, feature/x is database feat.
func apiServer(t *testing.T) string {
	t.Helper()
	c := pgtest.New(t, nil)
	ctx := context.Background()
	if _, err := c.Connect(t).Exec(ctx, "CREATE DATABASE feat"); err != nil {
		t.Fatal(err)
	}
	feat := c.Postmaster.ConnString("postgres", "", "feat")
	conn, err := pgx.Connect(ctx, feat)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE EXTENSION vector"); err != nil {
		t.Fatal(err)
	}
	srv, _ := serveAPI(t, experiments.Config{
		Connector: experiments.StaticConnector{"main/main": c.ConnString, "main/feature/x": feat}})
	return srv
}

func TestQueryAndDiffCLI(t *testing.T) {
	t.Parallel()
	srv := apiServer(t)
	ctx := context.Background()
	cli := func(args ...string) (string, string, int) {
		t.Helper()
		return run(t, ctx, append(args, "--server", srv)...)
	}

	out, errOut, code := cli("query", "main", "SELECT 1 AS n, 'two' AS word, NULL AS nothing, '[1,2]'::vector AS v")
	if code != 0 {
		t.Fatalf("query: %d %s", code, errOut)
	}
	want := "n  word  nothing  v\n1  two   NULL     [1,2]\n(1 row)\n"
	if out != want {
		t.Errorf("query output:\n%s\nwant:\n%s", out, want)
	}

	out, _, code = cli("query", "main", "SELECT g FROM generate_series(1, 5) g WHERE g > $1", "--param", "2", "--json", "--max-rows", "2")
	var res struct {
		Results []struct {
			Rows      [][]int `json:"rows"`
			Truncated bool    `json:"truncated"`
		} `json:"results"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || len(res.Results) != 1 ||
		len(res.Results[0].Rows) != 2 || res.Results[0].Rows[1][0] != 4 || !res.Results[0].Truncated {
		t.Errorf("query --json: %d %s", code, out)
	}

	_, errOut, code = cli("query", "main", "SELECT 1\nFROM pg_class WHER true")
	if code != exitQueryFailed || !strings.Contains(errOut, "SQLSTATE 42601") ||
		!strings.Contains(errOut, "LINE 2: FROM pg_class WHER true\n"+strings.Repeat(" ", 27)+"^\n") {
		t.Errorf("bad SQL: exit %d\n%s", code, errOut)
	}
	_, errOut, code = cli("query", "nope", "SELECT 1")
	if code != exitNotFound || !strings.Contains(errOut, "not found") {
		t.Errorf("unknown branch: exit %d %s", code, errOut)
	}
	_, errOut, code = cli("query", "main", "SELECT 1", "--max-rows", "1000000")
	if code != exitBadInput || !strings.Contains(errOut, "max_rows") {
		t.Errorf("bad max rows: exit %d %s", code, errOut)
	}

	for _, b := range []string{"main", "feature/x"} {
		if _, errOut, code := cli("query", b, "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 10) g"); code != 0 {
			t.Fatalf("setup %s: %s", b, errOut)
		}
	}
	if _, errOut, code := cli("query", "feature/x", "UPDATE items SET name = 'new' WHERE id = 2; DELETE FROM items WHERE id = 9; ALTER TABLE items ADD COLUMN score real"); code != 0 {
		t.Fatalf("change feature/x: %s", errOut)
	}
	out, errOut, code = cli("diff", "main", "feature/x")
	if code != 0 {
		t.Fatalf("diff: %d %s", code, errOut)
	}
	for _, want := range []string{
		"schema (main → feature/x):\n--- main\n+++ feature/x\n",
		"-    name text\n+    name text,\n+    score real\n",
		"  public.items  changed  10         9            0      1        1\n",
		"  - id=9  {\"id\":9,\"name\":\"n9\"}\n",
		"  ~ id=2\n      old {\"id\":2,\"name\":\"n2\"}\n      new {\"id\":2,\"name\":\"new\",\"score\":null}\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("diff output lacks %q:\n%s", want, out)
		}
	}
	out, _, code = cli("diff", "main", "feature/x", "--json")
	var d struct {
		Tables []struct{ Changed int } `json:"tables"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &d) != nil || len(d.Tables) != 1 || d.Tables[0].Changed != 1 {
		t.Errorf("diff --json: %s", out)
	}
}

// The key and audit verbs against `offshoot serve` itself.
func TestServeKeysAndAuditCLI(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := freeAddr(t)
	srv := "http://" + addr
	served := make(chan string, 1)
	go func() {
		out, errOut, code := run(t, ctx, "serve", "--data-dir", t.TempDir(), "--http-addr", addr, "--proxy-addr", freeAddr(t))
		served <- out + errOut + "exit " + string(rune('0'+code))
	}()
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get(srv + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("serve did not become ready: %s", <-served)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cli := func(args ...string) (string, string, int) {
		t.Helper()
		return run(t, ctx, append(args, "--server", srv)...)
	}

	// serve created project main (its data dir, a t.TempDir under /tmp's
	// private parent, makes it use a separate run dir) and runs queries on it.
	out0, errOut, code := cli("query", "main", "SELECT 41 + 1 AS answer")
	if code != 0 || !strings.Contains(out0, "42") {
		t.Errorf("query on main: exit %d %s %s", code, out0, errOut)
	}
	out, errOut, code := cli("key", "create", "root", "--scope", "admin")
	if code != 0 || !strings.Contains(errOut, "shown only now") {
		t.Fatalf("key create: %d %s %s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	token := lines[len(lines)-1]
	id := strings.Fields(lines[0])[1]
	if !strings.HasPrefix(token, "osk_"+id+"_") {
		t.Fatalf("key create printed %q", out)
	}
	_, errOut, code = cli("key", "list")
	if code != exitAuth || !strings.Contains(errOut, "requires an API key") || !strings.Contains(errOut, "OFFSHOOT_TOKEN") {
		t.Errorf("key list without token: exit %d %s", code, errOut)
	}
	out, errOut, code = cli("key", "create", "agent", "--scope", "write:main:feature/*", "--token", token, "--json")
	var agent struct{ ID, Token string }
	if code != 0 || json.Unmarshal([]byte(out), &agent) != nil || agent.Token == "" {
		t.Fatalf("key create --json: %d %s %s", code, out, errOut)
	}
	_, errOut, code = cli("key", "list", "--token", agent.Token)
	if code != exitAuth || !strings.Contains(errOut, "no admin scope") {
		t.Errorf("key list as agent: exit %d %s", code, errOut)
	}
	_, errOut, code = cli("key", "create", "x", "--scope", "owner", "--token", token)
	if code != exitBadInput || !strings.Contains(errOut, "scopes") {
		t.Errorf("bad scope: exit %d %s", code, errOut)
	}
	if out, errOut, code = cli("key", "revoke", agent.ID, "--token", token); code != 0 || !strings.Contains(out, "revoked key "+agent.ID) {
		t.Errorf("revoke: %d %s %s", code, out, errOut)
	}
	if _, errOut, code = cli("key", "revoke", agent.ID, "--token", token); code != exitConflict {
		t.Errorf("revoke twice: exit %d %s", code, errOut)
	}
	out, errOut, code = cli("key", "list", "--token", token)
	out = squeeze(out)
	if code != 0 || !strings.Contains(out, "ID NAME SCOPES CREATED REVOKED") || !strings.Contains(out, id+" root admin ") ||
		!strings.Contains(out, agent.ID+" agent write:main:feature/* ") {
		t.Errorf("key list: %d %s %s", code, out, errOut)
	}
	out, errOut, code = cli("audit", "--since", "1h", "--token", token)
	if code != 0 {
		t.Fatalf("audit: %d %s", code, errOut)
	}
	out = squeeze(out)
	for _, want := range []string{"local query main/main ok", "local key.create key/root ok", "- key.list keys denied",
		agent.ID + " key.list keys denied", id + " key.revoke key/" + agent.ID + " ok", id + " key.revoke key/" + agent.ID + " error"} {
		if !strings.Contains(out, want) {
			t.Errorf("audit lacks %q:\n%s", want, out)
		}
	}
	if _, errOut, code = cli("audit", "--since", "last week", "--token", token); code != exitBadInput || !strings.Contains(errOut, "RFC 3339") {
		t.Errorf("bad since: %d %s", code, errOut)
	}

	cancel()
	if got := <-served; !strings.HasSuffix(got, "exit 0") {
		t.Errorf("serve did not stop cleanly: %s", got)
	}
}

// squeeze collapses runs of spaces, so table columns compare simply.
func squeeze(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	return strings.Join(lines, "\n")
}

func TestNoServer(t *testing.T) {
	srv := "http://" + freeAddr(t) // nothing listens there
	for _, args := range [][]string{{"query", "main", "SELECT 1"}, {"diff", "main", "x"}, {"key", "list"}, {"audit"}} {
		_, errOut, code := run(t, context.Background(), append(args, "--server", srv)...)
		if code != exitNoServer || !strings.Contains(errOut, "no offshoot server is running at "+srv) || !strings.Contains(errOut, "offshoot serve") {
			t.Errorf("%v: exit %d %s", args, code, errOut)
		}
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"1h":                   now.Add(-time.Hour),
		"2026-01-01T00:00:00Z": time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		if got, err := parseSince(in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "yesterday", "-1h"} {
		if _, err := parseSince(bad, now); err == nil {
			t.Errorf("parseSince(%q) accepted", bad)
		}
	}
}
