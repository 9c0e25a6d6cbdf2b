package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/offshootdb/offshoot/cmd/offshoot/internal/servetls"
)

// nodePGDir is where `scripts/setup --test` installs node-postgres.
const nodePGDir = "/var/cache/offshoot/node-pg/node_modules"

// jdbcJar is Debian's PostgreSQL JDBC driver (libpostgresql-jdbc-java).
const jdbcJar = "/usr/share/java/postgresql.jar"

// tool finds a client program the TLS tests drive; a missing one fails
// the test (never skips it): setup installs them all.
func tool(t *testing.T, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Fatalf("%s not found: run `scripts/setup --test` (make setup-test), which installs the clients the TLS tests use", names[0])
	return ""
}

// otherCA is a CA file that did not sign the server's certificate.
func otherCA(t *testing.T) string {
	t.Helper()
	g, err := servetls.Ensure(t.TempDir(), []string{"localhost", "127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return g.CAFile
}

// withRootCert is uri with sslrootcert (and sslmode) replaced.
func withRootCert(t *testing.T, uri, mode, rootCert string) string {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("sslmode", mode)
	q.Del("sslrootcert")
	if rootCert != "" {
		q.Set("sslrootcert", rootCert)
	}
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
	return u.String()
}

// jdbcURL turns a libpq URI into a JDBC URL and its user and password.
func jdbcURL(t *testing.T, uri, rootCert string) (string, string, string) {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	q := url.Values{"sslmode": {"verify-full"}, "sslrootcert": {rootCert}, "options": {u.Query().Get("options")}}
	return "jdbc:postgresql://" + u.Host + u.Path + "?" + strings.ReplaceAll(q.Encode(), "+", "%20"), u.User.Username(), pw
}

const jdbcProbe = `import java.sql.*;

public class JdbcProbe {
    public static void main(String[] a) throws Exception {
        try (Connection c = DriverManager.getConnection(a[0], a[1], a[2]);
             ResultSet r = c.createStatement().executeQuery("SELECT 'jdbc-ok'")) {
            r.next();
            System.out.println(r.getString(1));
        }
    }
}
`

const nodeProbe = `const { Client } = require('pg');
const c = new Client({ connectionString: process.argv[2] });
c.connect()
  .then(() => c.query("SELECT 'node-ok' AS v"))
  .then((r) => { console.log(r.rows[0].v + ' ' + (c.connection.stream.encrypted ? 'tls' : 'plain')); return c.end(); })
  .catch((e) => { console.error('node-postgres: ' + e.message); process.exit(1); });
`

// clients runs each real client with verify-full against the server's
// CA (must succeed) and against another CA (must fail on the
// certificate).
func clientsVerifyFull(t *testing.T, uri, ca string) {
	psql := tool(t, "psql", "/usr/lib/postgresql/15/bin/psql")
	java := tool(t, "java")
	node := tool(t, "node")
	if _, err := os.Stat(jdbcJar); err != nil {
		t.Fatalf("%s missing (Debian libpostgresql-jdbc-java): run `scripts/setup --test`", jdbcJar)
	}
	if _, err := os.Stat(filepath.Join(nodePGDir, "pg")); err != nil {
		t.Fatalf("node-postgres missing in %s: run `scripts/setup --test`", nodePGDir)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "JdbcProbe.java"), []byte(jdbcProbe), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "probe.js"), []byte(nodeProbe), 0o644); err != nil {
		t.Fatal(err)
	}
	wrong := otherCA(t)
	for _, tc := range []struct {
		name string
		cmd  func(rootCert string) *exec.Cmd
		want string
	}{
		{"psql", func(rc string) *exec.Cmd {
			return exec.Command(psql, "-XAtq", "-c", "SELECT 'psql-ok'", withRootCert(t, uri, "verify-full", rc))
		}, "psql-ok"},
		{"jdbc", func(rc string) *exec.Cmd {
			u, user, pw := jdbcURL(t, uri, rc)
			return exec.Command(java, "-cp", jdbcJar, filepath.Join(dir, "JdbcProbe.java"), u, user, pw)
		}, "jdbc-ok"},
		{"node-postgres", func(rc string) *exec.Cmd {
			c := exec.Command(node, filepath.Join(dir, "probe.js"), withRootCert(t, uri, "verify-full", rc))
			c.Env = append(os.Environ(), "NODE_PATH="+nodePGDir)
			return c
		}, "node-ok tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := tc.cmd(ca).CombinedOutput()
			if err != nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("verify-full with the server's CA: %v\n%s", err, out)
			}
			out, err = tc.cmd(wrong).CombinedOutput()
			if err == nil {
				t.Fatalf("verify-full with another CA succeeded:\n%s", out)
			}
			if lo := strings.ToLower(string(out)); !strings.Contains(lo, "certificate") && !strings.Contains(lo, "pkix") {
				t.Fatalf("verify-full with another CA failed, but not on the certificate:\n%s", out)
			}
		})
	}
}

// httpsClient trusts caFile (and the system roots).
func httpsClient(t *testing.T, caFile string) *http.Client {
	t.Helper()
	cfg, err := servetls.ClientConfig([]string{caFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 3 * time.Minute, Transport: &http.Transport{TLSClientConfig: cfg}}
}

func getJSON(t *testing.T, hc *http.Client, u string, out any) {
	t.Helper()
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("GET %s: %v: %s", u, err, b)
	}
}

func pgxConnect(uri string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return pgx.Connect(ctx, uri)
}

// TestE2ETLS: a default server generates a CA; the connection string the
// facade hands out is verify-full against it and works with psql, pgx,
// JDBC and node-postgres; the HTTP API serves https to a verifying Go
// client, the CLI and `offshoot mcp` forwarding; another CA is refused by
// each; plain HTTP from loopback keeps working.
func TestE2ETLS(t *testing.T) {
	s := newE2EServer(t)
	ca := filepath.Join(s.dataDir, "tls", "ca.crt")
	pemOut, errOut, code := run(t, context.Background(), "ca", "--data-dir", s.dataDir)
	caPEM, err := os.ReadFile(ca)
	if code != 0 || err != nil || pemOut != string(caPEM) {
		t.Fatalf("offshoot ca: exit %d %v\n%s%s", code, err, pemOut, errOut)
	}
	fp := strings.TrimSpace(strings.TrimPrefix(errOut, "SHA-256 fingerprint "))
	if len(fp) != 95 || !strings.Contains(s.stdout.String(), fp) {
		t.Errorf("the banner does not show the CA fingerprint %q:\n%s", fp, s.stdout)
	}
	if _, errOut, code := run(t, context.Background(), "ca", "--data-dir", t.TempDir()); code != exitNotFound || !strings.Contains(errOut, "offshoot serve") {
		t.Errorf("offshoot ca without a CA: exit %d %s", code, errOut)
	}

	var c struct{ URI string }
	s.must(200, "GET", branchPath("main")+"/connection?password=true", nil, &c)
	if !strings.Contains(c.URI, "sslmode=verify-full") || !strings.Contains(c.URI, "sslrootcert="+url.QueryEscape(ca)) {
		t.Fatalf("connection string %q: want sslmode=verify-full and sslrootcert=%s", c.URI, ca)
	}

	t.Run("pgx", func(t *testing.T) {
		conn, err := pgxConnect(c.URI)
		if err != nil {
			t.Fatalf("pgx verify-full: %v\n%s", err, s.log())
		}
		defer conn.Close(context.Background())
		if _, ok := conn.PgConn().Conn().(*tls.Conn); !ok {
			t.Fatalf("pgx connection is %T, not TLS", conn.PgConn().Conn())
		}
		var v string
		if err := conn.QueryRow(context.Background(), "SELECT 'pgx-ok'").Scan(&v); err != nil || v != "pgx-ok" {
			t.Fatalf("query: %q %v", v, err)
		}
		if conn, err := pgxConnect(withRootCert(t, c.URI, "verify-full", otherCA(t))); err == nil {
			conn.Close(context.Background())
			t.Fatal("pgx verify-full with another CA connected")
		} else if !errors.As(err, new(*tls.CertificateVerificationError)) {
			t.Fatalf("pgx with another CA: %v, want a certificate verification error", err)
		}
	})
	clientsVerifyFull(t, c.URI, ca)

	httpsURL := "https://" + strings.TrimPrefix(s.http, "http://")
	t.Run("https API", func(t *testing.T) {
		var projects struct{ Projects []struct{ Name string } }
		getJSON(t, httpsClient(t, ca), httpsURL+"/v1/projects", &projects)
		if len(projects.Projects) != 1 {
			t.Fatalf("projects over https: %+v", projects)
		}
		_, err := httpsClient(t, otherCA(t)).Get(httpsURL + "/v1/projects")
		if !errors.As(err, new(*tls.CertificateVerificationError)) {
			t.Fatalf("https with another CA: %v, want a certificate verification error", err)
		}
	})
	t.Run("CLI", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			want int
		}{
			{"--ca-file", []string{"--ca-file", ca, "--data-dir", t.TempDir()}, 0},
			{"the data dir's CA", []string{"--data-dir", s.dataDir}, 0},
			{"no CA", []string{"--data-dir", t.TempDir()}, exitNoServer},
			{"another CA", []string{"--ca-file", otherCA(t), "--data-dir", t.TempDir()}, exitNoServer},
		} {
			args := append([]string{"branch", "list", "--server", httpsURL}, tc.args...)
			out, errOut, code := run(t, context.Background(), args...)
			if code != tc.want {
				t.Errorf("%s: exit %d, want %d\n%s%s", tc.name, code, tc.want, out, errOut)
			}
			if tc.want == 0 && !strings.Contains(out, "main") {
				t.Errorf("%s: branch list lacks main:\n%s", tc.name, out)
			}
			if tc.want != 0 && !strings.Contains(errOut, "not trusted") {
				t.Errorf("%s: %s, want a message saying the server is not trusted", tc.name, errOut)
			}
		}
	})
	t.Run("mcp forwarding", func(t *testing.T) {
		cmd := exec.Command(serverBin, "mcp", "--data-dir", s.dataDir)
		cmd.Stdin = strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"tls-test","version":"1"}}}` + "\n")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || !strings.Contains(string(out), `"serverInfo"`) {
			t.Fatalf("offshoot mcp: %v\n%s\n%s", err, out, stderr.String())
		}
		if !strings.Contains(stderr.String(), "url=https://127.0.0.1:") {
			t.Errorf("offshoot mcp did not forward over https:\n%s", stderr.String())
		}
	})
	// Plain HTTP from loopback still works (the harness uses it throughout).
	var projects struct{ Projects []struct{ Name string } }
	s.must(200, "GET", "/v1/projects", nil, &projects)
}

// offLoopbackIP adds an address that is not loopback to the lo interface
// (removed when the test ends) so that a server can bind off loopback on a
// machine without another interface.
func offLoopbackIP(t *testing.T) string {
	t.Helper()
	const ip = "10.213.19.5"
	ipCmd := tool(t, "ip")
	out, err := exec.Command(ipCmd, "addr", "add", ip+"/32", "dev", "lo").CombinedOutput()
	if err != nil && !strings.Contains(string(out), "File exists") {
		t.Fatalf("ip addr add %s/32 dev lo (needs root): %v\n%s", ip, err, out)
	}
	if err == nil {
		t.Cleanup(func() { _ = exec.Command(ipCmd, "addr", "del", ip+"/32", "dev", "lo").Run() })
	}
	if net.ParseIP(ip).IsLoopback() {
		t.Fatal("the test address is loopback")
	}
	return ip
}

// TestE2EOffLoopback: a server bound off loopback refuses plain HTTP and
// plain pgwire with a message naming TLS, serves both over TLS, and with
// --insecure-plaintext serves plain text too.
func TestE2EOffLoopback(t *testing.T) {
	ip := offLoopbackIP(t)
	s := newE2EServerArgs(t, "--http-addr", ip+":0", "--proxy-addr", ip+":0")
	ca := filepath.Join(s.dataDir, "tls", "ca.crt")
	httpsURL := "https://" + strings.TrimPrefix(s.http, "http://")

	// Off loopback the API wants a key; /healthz does not, and the
	// banner has main's connection string.
	if resp, err := httpsClient(t, ca).Get(httpsURL + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("https /healthz off loopback: %v", err)
	} else {
		resp.Body.Close()
	}
	if _, err := httpsClient(t, otherCA(t)).Get(httpsURL + "/healthz"); !errors.As(err, new(*tls.CertificateVerificationError)) {
		t.Fatalf("https off loopback with another CA: %v, want a certificate verification error", err)
	}
	c := struct{ URI string }{bannerURI(t, s)}
	if !strings.Contains(c.URI, "@"+ip+":") || !strings.Contains(c.URI, "sslmode=verify-full") {
		t.Fatalf("connection string %q: want host %s with verify-full", c.URI, ip)
	}
	conn, err := pgxConnect(c.URI)
	if err != nil {
		t.Fatalf("pgx verify-full off loopback: %v\n%s", err, s.log())
	}
	conn.Close(context.Background())
	clientsVerifyFull(t, c.URI, ca)

	plainURI := withRootCert(t, c.URI, "disable", "")
	checkPlain := func(allowed bool) {
		t.Helper()
		resp, err := http.Get(s.http + "/healthz")
		if err != nil {
			t.Fatalf("plain GET: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if allowed && resp.StatusCode != 200 {
			t.Errorf("plain HTTP with --insecure-plaintext: %d %s", resp.StatusCode, b)
		}
		if !allowed && (resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "requires TLS")) {
			t.Errorf("plain HTTP off loopback: %d %s, want 400 naming TLS", resp.StatusCode, b)
		}

		conn, err := pgxConnect(plainURI)
		if allowed {
			if err != nil {
				t.Errorf("plain pgwire with --insecure-plaintext: %v", err)
			} else {
				conn.Close(context.Background())
			}
		} else {
			var pgErr *pgconn.PgError
			if err == nil {
				conn.Close(context.Background())
				t.Errorf("plain pgwire off loopback connected")
			} else if !errors.As(err, &pgErr) || pgErr.Code != "28000" || !strings.Contains(pgErr.Message, "TLS required") {
				t.Errorf("plain pgwire off loopback: %v, want FATAL 28000 TLS required", err)
			}
		}

		psql := tool(t, "psql", "/usr/lib/postgresql/15/bin/psql")
		out, err := exec.Command(psql, "-XAtq", "-c", "SELECT 'plain-ok'", plainURI).CombinedOutput()
		if allowed != (err == nil) || (!allowed && !strings.Contains(string(out), "TLS required")) {
			t.Errorf("psql sslmode=disable (plain allowed %v): %v\n%s", allowed, err, out)
		}
	}
	checkPlain(false)

	s.stop()
	s.args = append(s.args, "--insecure-plaintext")
	s.start()
	if !strings.Contains(s.stdout.String(), "--insecure-plaintext") {
		t.Errorf("the banner does not say plain text is served to anyone:\n%s", s.stdout)
	}
	plainURI = withRootCert(t, bannerURI(t, s), "disable", "")
	checkPlain(true)
}

// bannerURI is the connection string of main that serve printed.
func bannerURI(t *testing.T, s *e2eServer) string {
	t.Helper()
	_, rest, ok := strings.Cut(s.stdout.String(), "psql '")
	uri, _, ok2 := strings.Cut(rest, "'")
	if !ok || !ok2 {
		t.Fatalf("no psql command in the banner:\n%s", s.stdout)
	}
	return uri
}

// TestServeTLSFlags: --tls-cert and --tls-key go together.
func TestServeTLSFlags(t *testing.T) {
	for _, args := range [][]string{{"--tls-cert", "x.pem"}, {"--tls-key", "k.pem"}} {
		_, errOut, code := run(t, context.Background(), append([]string{"serve", "--data-dir", t.TempDir()}, args...)...)
		if code != 2 || !strings.Contains(errOut, "--tls-cert and --tls-key go together") {
			t.Errorf("serve %v: exit %d %s", args, code, errOut)
		}
	}
}

// TestE2EUserCert: with --tls-cert/--tls-key the server uses that
// certificate, generates no CA, and hands out sslmode=require (it cannot
// know what the client trusts).
func TestE2EUserCert(t *testing.T) {
	certDir := t.TempDir()
	g, err := servetls.Ensure(certDir, []string{"localhost", "127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s := newE2EServerArgs(t, "--tls-cert", filepath.Join(certDir, servetls.ServerCertFile), "--tls-key", filepath.Join(certDir, servetls.ServerKeyFile))
	if _, err := os.Stat(filepath.Join(s.dataDir, "tls")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a CA was generated although --tls-cert was given: %v", err)
	}
	var c struct{ URI string }
	s.must(200, "GET", branchPath("main")+"/connection?password=true", nil, &c)
	if !strings.Contains(c.URI, "sslmode=require") || strings.Contains(c.URI, "sslrootcert") {
		t.Fatalf("connection string %q: want sslmode=require without sslrootcert", c.URI)
	}
	conn, err := pgxConnect(withRootCert(t, c.URI, "verify-full", g.CAFile))
	if err != nil {
		t.Fatalf("pgx verify-full against the user certificate's CA: %v\n%s", err, s.log())
	}
	defer conn.Close(context.Background())
	if _, ok := conn.PgConn().Conn().(*tls.Conn); !ok {
		t.Fatalf("pgx connection is %T, not TLS", conn.PgConn().Conn())
	}
	var projects struct{ Projects []struct{ Name string } }
	getJSON(t, httpsClient(t, g.CAFile), "https://"+strings.TrimPrefix(s.http, "http://")+"/v1/projects", &projects)
}

func TestWithCAFile(t *testing.T) {
	const base = "postgresql://postgres:pw@db.example:55432/postgres?sslmode=verify-full&sslrootcert=%2Fsrv%2Ftls%2Fca.crt&options=endpoint%3Dmain%20project%3Dp"
	for _, tc := range []struct{ name, uri, caFile, want string }{
		{"no --ca-file", base, "", base},
		{"no sslrootcert", "postgresql://h:1/postgres?sslmode=require", "/home/me/ca.crt", "postgresql://h:1/postgres?sslmode=require"},
		{"replaced", base, "/home/me/my ca.crt",
			"postgresql://postgres:pw@db.example:55432/postgres?options=endpoint%3Dmain%20project%3Dp&sslmode=verify-full&sslrootcert=%2Fhome%2Fme%2Fmy%20ca.crt"},
	} {
		if got := withCAFile(tc.uri, tc.caFile); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}
