package agentapi

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/experiments"
)

func TestAuth(t *testing.T) {
	t.Parallel()
	e := start(t, cluster(t), "", Config{})
	since := time.Now().UTC().Add(-time.Second).Format(time.RFC3339Nano)

	// No key exists yet: the local operator is admin and creates keys.
	mk := func(token, name string, scopes ...string) experiments.NewKey {
		t.Helper()
		var k experiments.NewKey
		if code, _ := e.call(t, "POST", "/v1/keys", token, map[string]any{"name": name, "scopes": scopes}, &k); code != 201 {
			t.Fatalf("create key %s: %d", name, code)
		}
		return k
	}
	root := mk("", "root", "admin")
	reader := mk(root.Token, "reader", "read:p")
	agent := mk(root.Token, "agent", "write:p:feature/*")
	other := mk(root.Token, "other", "write:q")
	revoked := mk(root.Token, "old", "admin")
	if code, _ := e.call(t, "DELETE", "/v1/keys/"+revoked.ID, root.Token, nil, nil); code != 200 {
		t.Fatalf("revoke: %d", code)
	}

	write := map[string]any{"sql": "CREATE TABLE IF NOT EXISTS w (a int)"}
	read := map[string]any{"sql": "SELECT 1", "read_only": true}
	for _, tc := range []struct {
		name         string
		method, path string
		token        string
		body         any
		status       int
	}{
		{"no key", "POST", queryPath("main"), "", read, 401},
		{"wrong key", "POST", queryPath("main"), root.Token + "x", read, 401},
		{"not bearer", "POST", queryPath("main"), "", read, 401},
		{"revoked key", "GET", "/v1/keys", revoked.Token, nil, 401},
		{"reader reads", "POST", queryPath("main"), reader.Token, read, 200},
		{"reader writes", "POST", queryPath("main"), reader.Token, write, 403},
		{"reader diffs", "GET", "/v1/projects/p/branches/main/diff?against=feature%2Fx", reader.Token, nil, 200},
		{"agent writes its branch", "POST", queryPath("feature/x"), agent.Token, write, 200},
		{"agent writes main", "POST", queryPath("main"), agent.Token, write, 403},
		{"agent reads main", "POST", queryPath("main"), agent.Token, read, 403},
		{"agent diffs against main", "GET", "/v1/projects/p/branches/feature%2Fx/diff?against=main", agent.Token, nil, 403},
		{"other project", "POST", queryPath("main"), other.Token, read, 403},
		{"agent lists keys", "GET", "/v1/keys", agent.Token, nil, 403},
		{"reader reads audit", "GET", "/v1/audit", reader.Token, nil, 403},
		{"agent creates key", "POST", "/v1/keys", agent.Token, map[string]any{"name": "x", "scopes": []string{"admin"}}, 403},
		{"admin writes", "POST", queryPath("main"), root.Token, write, 200},
	} {
		path := tc.path
		var p Problem
		var out any
		if tc.status >= 400 {
			out = &p
		}
		token := tc.token
		if tc.name == "not bearer" {
			token = ""
		}
		code, hdr := e.callAuth(t, tc.method, path, token, tc.name == "not bearer", tc.body, out)
		if code != tc.status {
			t.Errorf("%s: status %d, want %d (%+v)", tc.name, code, tc.status, p)
		}
		if tc.status == 401 && (hdr.Get("WWW-Authenticate") == "" || p.Code != "unauthenticated") {
			t.Errorf("%s: %v %+v", tc.name, hdr, p)
		}
		if tc.status == 403 && p.Code != "forbidden" {
			t.Errorf("%s: %+v", tc.name, p)
		}
	}

	var page experiments.AuditPage
	if code, _ := e.call(t, "GET", "/v1/audit?since="+since, root.Token, nil, &page); code != 200 {
		t.Fatalf("audit: %d", code)
	}
	var got []string
	for _, en := range page.Entries {
		if en.RequestID == "" || en.Remote == "" || en.Time.IsZero() {
			t.Errorf("entry lacks request fields: %+v", en)
		}
		got = append(got, fmt.Sprintf("%s %s %s %s", who(en.KeyID, root, reader, agent, other, revoked), en.Action, en.Target, en.Result))
	}
	want := []string{
		"local key.create key/root ok",
		"root key.create key/reader ok",
		"root key.create key/agent ok",
		"root key.create key/other ok",
		"root key.create key/old ok",
		"root key.revoke key/" + revoked.ID + " ok",
		"- query p/main denied", // no key
		"- query p/main denied", // wrong key
		"- query p/main denied", // not bearer
		"- key.list keys denied",
		"reader query p/main ok",
		"reader query p/main denied",
		"agent query p/feature/x ok",
		"agent query p/main denied",
		"agent query p/main denied",
		"agent diff p/feature/x denied",
		"other query p/main denied",
		"agent key.list keys denied",
		"reader audit.list audit denied",
		"agent key.create key/x denied",
		"root query p/main ok",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit log:\n%s\n\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var keys struct{ Keys []experiments.Key }
	if code, _ := e.call(t, "GET", "/v1/keys", root.Token, nil, &keys); code != 200 || len(keys.Keys) != 5 {
		t.Errorf("keys: %d %+v", code, keys)
	}
	var p Problem
	if code, _ := e.call(t, "DELETE", "/v1/keys/"+revoked.ID, root.Token, nil, &p); code != 409 || p.Code != "conflict" {
		t.Errorf("revoke twice: %d %+v", code, p)
	}
	if code, _ := e.call(t, "DELETE", "/v1/keys/nosuch", root.Token, nil, &p); code != 404 {
		t.Errorf("revoke unknown: %d %+v", code, p)
	}
	if code, _ := e.call(t, "POST", "/v1/keys", root.Token, map[string]any{"name": "bad", "scopes": []string{"owner:p"}}, &p); code != 400 || p.Field != "scopes" {
		t.Errorf("bad scope: %d %+v", code, p)
	}
	if code, _ := e.call(t, "GET", "/v1/audit?since=yesterday", root.Token, nil, &p); code != 400 || p.Field != "since" {
		t.Errorf("bad since: %d %+v", code, p)
	}
}

func who(id string, keys ...experiments.NewKey) string {
	if id == "" {
		return "-"
	}
	for _, k := range keys {
		if k.ID == id {
			return k.Name
		}
	}
	return id
}

// A server on a non-loopback address demands a key even before any exists.
func TestKeysRequiredOffLoopback(t *testing.T) {
	t.Parallel()
	e := start(t, nil, "0.0.0.0:0", Config{})
	var p Problem
	code, _ := e.call(t, "GET", "/v1/keys", "", nil, &p)
	if code != 401 || !strings.Contains(p.Detail, "requires an API key") {
		t.Errorf("keyless call off loopback: %d %+v", code, p)
	}
	if code, _ := e.call(t, "GET", "/healthz", "", nil, nil); code != 200 {
		t.Errorf("healthz: %d", code)
	}
	if isLoopback(&net.TCPAddr{IP: net.IPv4zero}) || !isLoopback(&net.TCPAddr{IP: net.IPv6loopback}) {
		t.Error("isLoopback")
	}
}
