package servetls

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestHosts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		hostname string
		addrs    []string
		extra    []string
		want     []string
	}{
		{"defaults", "", []string{"127.0.0.1:8432", "127.0.0.1:0"}, nil, []string{"127.0.0.1", "::1", "localhost"}},
		{"hostname", "Box", nil, nil, []string{"127.0.0.1", "::1", "box", "localhost"}},
		{"wildcards skipped", "", []string{"0.0.0.0:1", ":2", "[::]:3"}, nil, []string{"127.0.0.1", "::1", "localhost"}},
		{"bind hosts", "", []string{"10.0.0.5:8432", "[fd00::2]:55432", "db.example:1"}, nil,
			[]string{"10.0.0.5", "127.0.0.1", "::1", "db.example", "fd00::2", "localhost"}},
		{"extra", "", nil, []string{"Api.Example", "[::1]", " 192.0.2.1 "}, []string{"127.0.0.1", "192.0.2.1", "::1", "api.example", "localhost"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Hosts(tc.hostname, tc.addrs, tc.extra); !slices.Equal(got, tc.want) {
				t.Errorf("Hosts = %q, want %q", got, tc.want)
			}
		})
	}
}

// verify checks that g's server certificate verifies for host against
// only the CA file on disk.
func verify(t *testing.T, g *Generated, host string) error {
	t.Helper()
	pem, err := os.ReadFile(g.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("ca.crt holds no certificate")
	}
	leaf, err := x509.ParseCertificate(g.Cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, CurrentTime: t0.Add(time.Hour)})
	return err
}

func TestEnsure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	hosts := Hosts("", nil, []string{"db.example"})
	g, err := Ensure(dir, hosts, t0)
	if err != nil {
		t.Fatal(err)
	}
	if !g.NewCA || !g.NewServer {
		t.Fatalf("first Ensure: NewCA %v NewServer %v, want both", g.NewCA, g.NewServer)
	}
	for _, h := range []string{"localhost", "127.0.0.1", "::1", "db.example"} {
		if err := verify(t, g, h); err != nil {
			t.Errorf("verify %s: %v", h, err)
		}
	}
	if err := verify(t, g, "other.example"); err == nil {
		t.Error("a name not in the certificate verified")
	}
	for name, want := range map[string]os.FileMode{CACertFile: 0o644, CAKeyFile: 0o600, ServerCertFile: 0o644, ServerKeyFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 4 {
		t.Errorf("tls dir holds %d entries, want the 4 files (no temporary left)", len(ents))
	}

	fp := Fingerprint(g.CA)
	serverDER := g.Cert.Certificate[0]
	for _, step := range []struct {
		name             string
		hosts            []string
		now              time.Time
		newServer        bool
		verifyHost       string
		oldServerInvalid bool
	}{
		{"same hosts, same day: nothing new", hosts, t0.Add(24 * time.Hour), false, "db.example", false},
		{"hosts in another order: nothing new", reversed(hosts), t0, false, "db.example", false},
		{"a new host: server certificate again", append(slices.Clone(hosts), "10.1.2.3"), t0, true, "10.1.2.3", false},
		{"near expiry: server certificate again", append(slices.Clone(hosts), "10.1.2.3"), t0.Add(ServerLifetime - RenewBefore/2), true, "10.1.2.3", false},
	} {
		g2, err := Ensure(dir, step.hosts, step.now)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if g2.NewCA || Fingerprint(g2.CA) != fp {
			t.Fatalf("%s: the CA changed", step.name)
		}
		if g2.NewServer != step.newServer {
			t.Errorf("%s: NewServer %v, want %v", step.name, g2.NewServer, step.newServer)
		}
		if same := string(g2.Cert.Certificate[0]) == string(serverDER); same == step.newServer {
			t.Errorf("%s: server certificate replaced %v, want %v", step.name, !same, step.newServer)
		}
		serverDER = g2.Cert.Certificate[0]
		leaf, _ := x509.ParseCertificate(serverDER)
		pool := x509.NewCertPool()
		pool.AddCert(g2.CA)
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: step.verifyHost, CurrentTime: step.now}); err != nil {
			t.Errorf("%s: verify %s: %v", step.name, step.verifyHost, err)
		}
	}
}

func reversed(s []string) []string {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

// TestEnsureKeepsCA: a CA certificate whose key is gone is an error, never
// a reason to replace the CA clients trust.
func TestEnsureKeepsCA(t *testing.T) {
	dir := t.TempDir()
	if _, err := Ensure(dir, []string{"localhost"}, t0); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, CACertFile))
	if err := os.Remove(filepath.Join(dir, CAKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(dir, []string{"localhost"}, t0); err == nil {
		t.Fatal("Ensure without ca.key succeeded")
	}
	after, _ := os.ReadFile(filepath.Join(dir, CACertFile))
	if string(before) != string(after) {
		t.Fatal("ca.crt was replaced")
	}
}

func TestLoadCA(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := LoadCA(dir); !errors.Is(err, ErrNoCA) {
		t.Fatalf("LoadCA on an empty dir: %v, want ErrNoCA", err)
	}
	g, err := Ensure(dir, []string{"localhost"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, c, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(pemBytes), "-----BEGIN CERTIFICATE-----") || Fingerprint(c) != Fingerprint(g.CA) {
		t.Fatalf("LoadCA gave another CA")
	}
	if fp := Fingerprint(c); len(fp) != 32*3-1 || strings.ToUpper(fp) != fp {
		t.Errorf("fingerprint %q: want 32 upper-case hex bytes joined by colons", fp)
	}
}

// TestListener serves one handler through a Listener over real sockets:
// TLS verified against the generated CA, plain text where allowed, a 400
// where not, and a client trusting another CA refused.
func TestListener(t *testing.T) {
	g, err := Ensure(t.TempDir(), Hosts("", nil, nil), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, err := Ensure(t.TempDir(), Hosts("", nil, nil), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		plain     bool
		wantPlain bool
	}{
		{"plain allowed", true, true},
		{"plain refused", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := NewListener(raw, ServerConfig(g.Cert), func(net.Addr) bool { return tc.plain }, nil)
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "tls=%v", r.TLS != nil)
			})}
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })
			addr := ln.Addr().String()

			get := func(scheme string, files ...string) (string, int, error) {
				cfg, err := ClientConfig(files, nil)
				if err != nil {
					t.Fatal(err)
				}
				hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
				resp, err := hc.Get(scheme + "://" + addr + "/")
				if err != nil {
					return "", 0, err
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return string(b), resp.StatusCode, nil
			}
			body, code, err := get("https", g.CAFile)
			if err != nil || code != 200 || body != "tls=true" {
				t.Fatalf("https with the CA: %q %d %v", body, code, err)
			}
			if _, _, err := get("https", other.CAFile); err == nil {
				t.Fatal("https trusting another CA succeeded")
			} else if !errors.As(err, new(*tls.CertificateVerificationError)) {
				t.Fatalf("https trusting another CA: %v, want a verification error", err)
			}
			body, code, err = get("http")
			if tc.wantPlain {
				if err != nil || code != 200 || body != "tls=false" {
					t.Fatalf("plain http: %q %d %v", body, code, err)
				}
				return
			}
			if err != nil || code != http.StatusBadRequest || !strings.Contains(body, "requires TLS") {
				t.Fatalf("plain http where refused: %q %d %v, want 400 naming TLS", body, code, err)
			}
		})
	}
}

// TestListenerSilentClient: a client that connects and sends nothing does
// not hold up the next one.
func TestListenerSilentClient(t *testing.T) {
	g, err := Ensure(t.TempDir(), Hosts("", nil, nil), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := NewListener(raw, ServerConfig(g.Cert), LoopbackOnly, nil)
	defer ln.Close()
	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprint(c, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
			c.Close()
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.Contains(line, "204") {
		t.Fatalf("second client: %q %v", line, err)
	}
	// Close ends the connection still waiting for its first byte.
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	_ = silent.SetReadDeadline(time.Now().Add(time.Minute)) // a bound, not an assertion
	if n, err := silent.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("silent client after Close: %d %v, want EOF", n, err)
	}
}
