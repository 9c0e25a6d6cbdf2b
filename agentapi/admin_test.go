package agentapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/offshootdb/offshoot/experiments"
)

// TestAdminSocket: a server listening off loopback refuses keyless calls,
// so the first key is created over the admin socket, where every caller
// is the local operator, also once keys exist; a peer of another uid is
// turned away and audited.
func TestAdminSocket(t *testing.T) {
	e := start(t, nil, "0.0.0.0:0", Config{})
	if code, _ := e.call(t, "POST", "/v1/keys", "", map[string]any{"name": "root", "scopes": []string{"admin"}}, nil); code != http.StatusUnauthorized {
		t.Fatalf("keyless key creation off loopback: %d, want 401", code)
	}

	// A directory others may traverse, so that the foreign-uid peer below
	// reaches the socket and is refused by its credentials.
	dir, err := os.MkdirTemp("", "offshoot-admin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "admin.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.ServeAdmin(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	admin := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	post := func(path string, body any, out any) int {
		t.Helper()
		b, _ := json.Marshal(body)
		resp, err := admin.Post("http://offshoot"+path, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if out != nil {
			json.NewDecoder(resp.Body).Decode(out)
		}
		return resp.StatusCode
	}
	var root experiments.NewKey
	if code := post("/v1/keys", map[string]any{"name": "root", "scopes": []string{"admin"}}, &root); code != http.StatusCreated || root.Token == "" || root.CreatedBy != "local" {
		t.Fatalf("create the first key over the admin socket: %d %+v", code, root)
	}
	if code, _ := e.call(t, "GET", "/v1/keys", root.Token, nil, nil); code != http.StatusOK {
		t.Errorf("the new admin key over TCP: %d", code)
	}
	// Keys exist now; the socket still needs none.
	if code := post("/v1/keys", map[string]any{"name": "ci", "scopes": []string{"read:*"}}, nil); code != http.StatusCreated {
		t.Errorf("second key over the admin socket: %d", code)
	}

	// Another uid is refused even when the file mode lets it connect.
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() != 0 {
		t.Log("not root: cannot run a peer under another uid")
		return
	}
	cmd := exec.Command("curl", "-sS", "--max-time", "10", "--unix-socket", sock, "-X", "POST", "-H", "Content-Type: application/json",
		"-d", `{"name":"evil","scopes":["admin"]}`, "http://offshoot/v1/keys")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil || strings.Contains(string(out), "osk_") {
		t.Errorf("a peer of uid 65534 was served: %v %s", err, out)
	}
	page, err := e.svc.AuditLog(experiments.WithCaller(context.Background(), experiments.LocalCaller), experiments.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, en := range page.Entries {
		if en.Action == "admin.connect" && en.Result == "denied" && strings.Contains(en.Error, "uid 65534") {
			refused++
		}
		if en.Action == "key.create" && en.Target == "key/evil" {
			t.Errorf("the foreign peer's call reached the facade: %+v", en)
		}
	}
	if refused != 1 {
		t.Errorf("%d admin.connect denials of uid 65534 audited, want 1", refused)
	}
}
