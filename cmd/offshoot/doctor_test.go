package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/internal/tmpfs"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestDoctorPassesOnThisMachine(t *testing.T) {
	dir := t.TempDir()
	out, errOut, code := run(t, context.Background(), "doctor", "--data-dir", dir,
		"--http-addr", freeAddr(t), "--proxy-addr", freeAddr(t))
	if code != 0 {
		t.Fatalf("doctor exit %d\n%s%s", code, out, errOut)
	}
	for _, name := range []string{"postgres 15", "postgres user", "project users", "pgvector", "fuse", "data dir", "disk space", "http port", "wal path", "proxy path", "proxy port"} {
		if !strings.Contains(out, "ok    "+name) {
			t.Errorf("no ok line for %q in:\n%s", name, out)
		}
	}
	if !strings.Contains(out, "ok    wal path     local: ") {
		t.Errorf("doctor does not report the local WAL, the default:\n%s", out)
	}
	if !strings.Contains(out, "ok    proxy path   kernel: ") {
		t.Errorf("doctor does not report the proxy's kernel path:\n%s", out)
	}
}

func TestDoctorReportsUnwritableDataDir(t *testing.T) {
	// A path below a regular file can never be created, even by root.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(file, "data")
	out, errOut, code := run(t, context.Background(), "doctor", "--data-dir", bad,
		"--http-addr", freeAddr(t), "--proxy-addr", freeAddr(t))
	if code != 1 {
		t.Fatalf("exit code %d, want 1\n%s", code, out)
	}
	if !strings.Contains(out, "FAIL  data dir     create data dir: mkdir "+file+": not a directory") {
		t.Errorf("missing data dir failure line:\n%s", out)
	}
	if !strings.Contains(out, "fix: pass --data-dir") {
		t.Errorf("missing fix:\n%s", out)
	}
	if !strings.Contains(errOut, "doctor: failed: data dir") {
		t.Errorf("stderr %q does not name the failed check", errOut)
	}
	if !strings.Contains(out, "ok    pgvector") {
		t.Errorf("other checks should still run:\n%s", out)
	}
}

func TestDoctorReportsBusyPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	out, _, code := run(t, context.Background(), "doctor", "--data-dir", t.TempDir(),
		"--http-addr", l.Addr().String(), "--proxy-addr", freeAddr(t))
	if code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	if !strings.Contains(out, "FAIL  http port    "+l.Addr().String()+" is already in use") {
		t.Errorf("missing port failure:\n%s", out)
	}
}

func TestServeRefusesWhenACheckFails(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, errOut, code := run(t, context.Background(), "serve", "--data-dir", t.TempDir(),
		"--http-addr", freeAddr(t), "--proxy-addr", l.Addr().String())
	if code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	if !strings.Contains(errOut, "FAIL  proxy port") || !strings.Contains(errOut, "doctor: failed: proxy port") {
		t.Errorf("serve did not explain the failed check:\n%s", errOut)
	}
}

func TestBadGlobalFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"version", "--log-level", "loud"}, `--log-level "loud": want debug, info, warn or error`},
		{[]string{"version", "--log-format", "xml"}, `--log-format "xml": want text or json`},
		{[]string{"version", "--config", "/nonexistent/offshoot.yaml"}, "read config: open /nonexistent/offshoot.yaml"},
	} {
		_, errOut, code := run(t, context.Background(), tc.args...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", tc.args, code, errOut, tc.want)
		}
	}
}

// TestServeRejectsBadProxyPath: a proxy_path other than auto or copy stops
// serve before it starts anything, naming the values it takes.
func TestServeRejectsBadProxyPath(t *testing.T) {
	_, errOut, code := run(t, context.Background(), "serve", "--data-dir", t.TempDir(), "--proxy-path", "kernel",
		"--http-addr", freeAddr(t), "--proxy-addr", freeAddr(t))
	if code != 2 || !strings.Contains(errOut, `--proxy-path "kernel": want auto or copy`) {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

// TestServeRejectsBadWALPath: likewise for wal_path.
func TestServeRejectsBadWALPath(t *testing.T) {
	_, errOut, code := run(t, context.Background(), "serve", "--data-dir", t.TempDir(), "--wal-path", "tmpfs",
		"--http-addr", freeAddr(t), "--proxy-addr", freeAddr(t))
	if code != 2 || !strings.Contains(errOut, `--wal-path "tmpfs": want store or local`) {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestConfigFileAndPrecedence(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "offshoot.yaml")
	if err := os.WriteFile(cfgFile, []byte("data_dir: /from/file\nlog_level: debug\nbogus: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := run(t, context.Background(), "version", "--config", cfgFile)
	if code == 0 || !strings.Contains(errOut, "field bogus not found") {
		t.Fatalf("unknown config field accepted: exit %d %q", code, errOut)
	}

	if err := os.WriteFile(cfgFile, []byte("data_dir: /from/file\nlog_level: debug\nproxy_addr: 127.0.0.1:1111\n"+
		"object_store:\n  endpoint: file:9000\n  region: file-region\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OFFSHOOT_PROXY_ADDR", "127.0.0.1:2222")
	t.Setenv("OFFSHOOT_S3_ENDPOINT", "env:9000")
	out, errOut, code := run(t, context.Background(), "config", "--config", cfgFile, "--log-level", "warn")
	if code != 0 {
		t.Fatalf("config: exit %d %s", code, errOut)
	}
	for _, want := range []string{
		"data_dir: /from/file\n",       // file over default
		"log_level: warn\n",            // flag over file
		"proxy_addr: 127.0.0.1:2222\n", // env over file
		"http_addr: 127.0.0.1:8432\n",  // default
		"endpoint: env:9000\n",         // env over file, for the S3 settings too
		"region: file-region\n",        // file over default
	} {
		if !strings.Contains(out, want) {
			t.Errorf("config output lacks %q:\n%s", want, out)
		}
	}
}

// TestServeStartsOnALowDisk: below its free-space threshold serve still
// starts, with a loud warning, so that branches can be deleted to free
// space; queries, forks and deletions work.
func TestServeStartsOnALowDisk(t *testing.T) {
	// Not t.TempDir: the server's OS users must reach the data dir.
	mnt, err := os.MkdirTemp("", "offshoot-lowdisk-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(mnt) })
	tmpfs.Mount(t, mnt, "700m")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := freeAddr(t)
	srv := "http://" + addr
	served := make(chan string, 1)
	go func() {
		out, errOut, code := run(t, ctx, "serve", "--data-dir", filepath.Join(mnt, "data"), "--http-addr", addr, "--proxy-addr", freeAddr(t))
		served <- fmt.Sprintf("%s%sexit %d", out, errOut, code)
	}()
	var log string
	defer func() {
		cancel()
		if log == "" {
			log = <-served
		}
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get(srv + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case log = <-served:
			t.Fatalf("serve exited on a low disk: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not become ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cli := func(args ...string) (string, string, int) {
		t.Helper()
		return run(t, ctx, append(args, "--server", srv)...)
	}
	if out, errOut, code := cli("query", "main", "SELECT 41 + 1 AS answer"); code != 0 || !strings.Contains(out, "42") {
		t.Errorf("query on main: exit %d %s %s", code, out, errOut)
	}
	if out, errOut, code := cli("branch", "create", "tmp"); code != 0 {
		t.Errorf("branch create: exit %d %s %s", code, out, errOut)
	}
	if out, errOut, code := cli("branch", "delete", "tmp"); code != 0 {
		t.Errorf("branch delete: exit %d %s %s", code, out, errOut)
	}
	cancel()
	log = <-served
	if !strings.Contains(log, "LOW DISK SPACE") || !strings.Contains(log, "warn  disk space") {
		t.Errorf("no loud warning about the low disk:\n%s", log)
	}
}
