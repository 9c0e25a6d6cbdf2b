// Package servetls is the TLS of `offshoot serve`: a CA and server
// certificate generated once into the data dir, a listener that serves TLS
// and (where allowed) plain HTTP on one port, and the trust a client puts
// in a server (system roots plus the data dir's CA and --ca-file).
//
// Files under <data-dir>/tls:
//
//	ca.crt      the CA certificate clients trust (offshoot ca prints it)
//	ca.key      its ECDSA P-256 key, mode 0600
//	server.crt  the server certificate, signed by the CA
//	server.key  its key, mode 0600
//
// The CA is made once and kept; the server certificate is made again when
// its names change or it is near expiry. Every file is written atomically
// (temporary file, then rename), so a crash never leaves half a file; the
// data dir lock of serve keeps two servers from generating at once.
package servetls

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Errors returned by this package.
var (
	// ErrNoCA means the data dir holds no generated CA (serve has not run
	// with a generated certificate yet).
	ErrNoCA = errors.New("no generated CA")
	// ErrBadPEM means a certificate or key file that does not decode.
	ErrBadPEM = errors.New("malformed PEM")
)

// Lifetimes of generated certificates.
const (
	CALifetime     = 10 * 365 * 24 * time.Hour
	ServerLifetime = 2 * 365 * 24 * time.Hour
	// RenewBefore is how close to expiry a server certificate is made again.
	RenewBefore = 30 * 24 * time.Hour
)

// File names under Dir.
const (
	CACertFile     = "ca.crt"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
)

// Dir is the TLS directory of a data dir.
func Dir(dataDir string) string { return filepath.Join(dataDir, "tls") }

// Generated is the outcome of Ensure.
type Generated struct {
	// Cert is the server certificate and key, ready for tls.Config.
	Cert tls.Certificate
	// CA is the CA certificate; CAFile its path.
	CA     *x509.Certificate
	CAFile string
	// Hosts are the server certificate's names (DNS names and IPs).
	Hosts []string
	// NewCA and NewServer say what this call generated.
	NewCA, NewServer bool
}

// Ensure makes sure dir holds a CA and a server certificate signed by it
// that names exactly hosts (DNS names or IP literals, deduplicated) and is
// valid past now+RenewBefore. It keeps what is there when it fits and
// generates the missing or stale parts; the CA is never replaced once it
// exists (a CA certificate without its key is an error, not a reason to
// make a new one: clients trust the old one). Callers must not run Ensure
// on one dir concurrently (serve holds the data dir lock).
func Ensure(dir string, hosts []string, now time.Time) (*Generated, error) {
	hosts = normHosts(hosts)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("tls dir: %w", err)
	}
	g := &Generated{CAFile: filepath.Join(dir, CACertFile), Hosts: hosts}
	ca, caKey, err := loadPair(g.CAFile, filepath.Join(dir, CAKeyFile))
	switch {
	case errors.Is(err, os.ErrNotExist) && !exists(g.CAFile):
		ca, caKey, err = newCA(dir, now)
		if err != nil {
			return nil, err
		}
		g.NewCA = true
	case err != nil:
		return nil, fmt.Errorf("tls ca: %w", err)
	}
	g.CA = ca
	certFile, keyFile := filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile)
	leaf, _, err := loadPair(certFile, keyFile)
	if err != nil || !fits(leaf, ca, hosts, now) {
		if err := newServer(certFile, keyFile, ca, caKey, hosts, now); err != nil {
			return nil, err
		}
		g.NewServer = true
	}
	g.Cert, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls server certificate: %w", err)
	}
	return g, nil
}

// LoadCA reads the generated CA certificate of dir, as PEM and parsed.
// It fails with ErrNoCA when there is none.
func LoadCA(dir string) ([]byte, *x509.Certificate, error) {
	b, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w in %s", ErrNoCA, dir)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("tls ca: %w", err)
	}
	c, err := parseCert(b)
	if err != nil {
		return nil, nil, fmt.Errorf("tls ca %s: %w", dir, err)
	}
	return b, c, nil
}

// Fingerprint is the SHA-256 of a certificate's DER, as colon hex
// (AB:CD:...), the way openssl x509 -fingerprint -sha256 prints it.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// Hosts is the name set of a generated server certificate: localhost,
// 127.0.0.1, ::1, hostname (when not empty), the host of each listen
// address that is not a wildcard (empty, 0.0.0.0, ::), and extra.
func Hosts(hostname string, addrs []string, extra []string) []string {
	hs := []string{"localhost", "127.0.0.1", "::1"}
	if hostname != "" {
		hs = append(hs, hostname)
	}
	for _, a := range addrs {
		h, _, err := net.SplitHostPort(a)
		if err != nil {
			h = a
		}
		if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
			continue
		}
		hs = append(hs, h)
	}
	return normHosts(append(hs, extra...))
}

// normHosts lowercases, deduplicates and sorts, IPs in canonical form.
func normHosts(hosts []string) []string {
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		h = strings.ToLower(strings.TrimSpace(strings.Trim(h, "[]")))
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			h = ip.String()
		}
		out = append(out, h)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// fits reports whether leaf is signed by ca, names exactly hosts and is
// valid from now until past now+RenewBefore.
func fits(leaf, ca *x509.Certificate, hosts []string, now time.Time) bool {
	if leaf.CheckSignatureFrom(ca) != nil || now.Before(leaf.NotBefore) || now.Add(RenewBefore).After(leaf.NotAfter) {
		return false
	}
	var have []string
	have = append(have, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		have = append(have, ip.String())
	}
	return slices.Equal(normHosts(have), hosts)
}

func newCA(dir string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tls ca key: %w", err)
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"offshoot"}, CommonName: "offshoot CA " + host},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("tls ca: %w", err)
	}
	// Key first: a CA certificate on disk always has its key.
	if err := writeKey(filepath.Join(dir, CAKeyFile), key); err != nil {
		return nil, nil, err
	}
	if err := writeFile(filepath.Join(dir, CACertFile), pemCert(der), 0o644); err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	return c, key, err
}

func newServer(certFile, keyFile string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("tls server key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"offshoot"}, CommonName: hosts[0]},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(ServerLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("tls server certificate: %w", err)
	}
	// The pair is replaced key first; a crash in between leaves a pair
	// that does not load, which the next Ensure makes again.
	if err := writeKey(keyFile, key); err != nil {
		return err
	}
	return writeFile(certFile, pemCert(der), 0o644)
}

// loadPair reads a certificate and its ECDSA key.
func loadPair(certFile, keyFile string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, err
	}
	c, err := parseCert(cb)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certFile, err)
	}
	blk, _ := pem.Decode(kb)
	if blk == nil {
		return nil, nil, fmt.Errorf("%s: %w", keyFile, ErrBadPEM)
	}
	key, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	if !key.PublicKey.Equal(c.PublicKey) {
		return nil, nil, fmt.Errorf("%s does not match %s", keyFile, certFile)
	}
	return c, key, nil
}

func parseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, ErrBadPEM
	}
	return x509.ParseCertificate(blk.Bytes)
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("tls key: %w", err)
	}
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

// writeFile writes atomically: a temporary file in the same directory,
// synced, then renamed over path.
func writeFile(path string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("tls write: %w", err)
	}
	defer os.Remove(f.Name())
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("tls write %s: %w", path, err)
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

// CertPool is the system roots plus the certificates in the PEM files
// named: each of required must exist; optional files that do not exist
// are skipped. Empty names are skipped.
func CertPool(required, optional []string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	add := func(f string, mustExist bool) error {
		if f == "" {
			return nil
		}
		b, err := os.ReadFile(f)
		if !mustExist && errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("ca file: %w", err)
		}
		if !bytes.Contains(b, []byte("CERTIFICATE")) || !pool.AppendCertsFromPEM(b) {
			return fmt.Errorf("ca file %s: %w", f, ErrBadPEM)
		}
		return nil
	}
	for _, f := range required {
		if err := add(f, true); err != nil {
			return nil, err
		}
	}
	for _, f := range optional {
		if err := add(f, false); err != nil {
			return nil, err
		}
	}
	return pool, nil
}

// ClientConfig is the TLS configuration of a client of an offshoot server:
// it verifies the server against CertPool(required, optional).
func ClientConfig(required, optional []string) (*tls.Config, error) {
	pool, err := CertPool(required, optional)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// ServerConfig is the TLS configuration of both listeners of serve.
func ServerConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}
