package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestE2EAdminSocket runs the server bound off loopback: keyless
// calls over TCP are refused, the banner shows no superuser password, and
// `offshoot key create` with --data-dir (no --server, no --token) creates
// the first admin key over the admin socket, which the HTTP API then
// accepts.
func TestE2EAdminSocket(t *testing.T) {
	ip := offLoopbackIP(t)
	s := newE2EServerArgs(t, "--http-addr", ip+":0", "--proxy-addr", ip+":0")
	ctx := context.Background()
	server := "https://" + strings.TrimPrefix(s.http, "http://")
	ca := filepath.Join(s.dataDir, "tls", "ca.crt")
	sock := adminSocketPath(s.dataDir)
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket %s: %v %v", sock, fi, err)
	}

	// The password, as the local admin reads it over the socket.
	uri := adminConnectionURI(t, s)
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	pw, ok := u.User.Password()
	if !ok || pw == "" {
		t.Fatalf("no password in %q", uri)
	}
	banner := s.stdout.String()
	if !strings.Contains(banner, "psql 'postgresql://") || strings.Contains(banner, pw) {
		t.Errorf("banner off loopback (must connect line, no password):\n%s", banner)
	}
	if strings.Contains(s.log(), pw) {
		t.Error("the server log holds the superuser password")
	}

	if _, errOut, code := run(t, ctx, "key", "list", "--server", server, "--ca-file", ca); code != exitAuth {
		t.Fatalf("keyless key list over TCP off loopback: exit %d %s", code, errOut)
	}
	out, errOut, code := run(t, ctx, "key", "create", "root", "--scope", "admin", "--data-dir", s.dataDir, "--json")
	var nk struct{ ID, Token string }
	if code != 0 || json.Unmarshal([]byte(out), &nk) != nil || nk.Token == "" {
		t.Fatalf("key create over the admin socket: exit %d %s %s", code, out, errOut)
	}
	if out, errOut, code := run(t, ctx, "key", "list", "--server", server, "--ca-file", ca, "--token", nk.Token); code != 0 || !strings.Contains(out, nk.ID) {
		t.Errorf("key list with the new admin key: exit %d %s %s", code, out, errOut)
	}
	// The socket keeps working once keys exist.
	if out, errOut, code := run(t, ctx, "key", "list", "--data-dir", s.dataDir); code != 0 || !strings.Contains(out, nk.ID) {
		t.Errorf("key list over the admin socket: exit %d %s %s", code, out, errOut)
	}
	s.stop()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("admin socket left after stop: %v", err)
	}
}

// adminConnectionURI is main's connection string with the superuser
// password, read as the local admin over the server's admin socket.
func adminConnectionURI(t *testing.T, s *e2eServer) string {
	t.Helper()
	sock := adminSocketPath(s.dataDir)
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := hc.Get("http://offshoot/v1/projects/main/branches/main/connection?password=true")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var conn struct{ URI string }
	if err := json.Unmarshal(b, &conn); err != nil || resp.StatusCode != 200 {
		t.Fatalf("connection over the admin socket: %d %s", resp.StatusCode, b)
	}
	return conn.URI
}
