package experiments

import (
	"errors"
	"testing"
)

// TestProxySSLMode: the TLS part of connection strings follows
// Config.ProxySSLMode, and a bad mode is refused by New.
func TestProxySSLMode(t *testing.T) {
	for _, tc := range []struct {
		mode, root string
		want       string // "" for an invalid config
	}{
		{"", "", "sslmode=disable"},
		{"disable", "", "sslmode=disable"},
		{"require", "", "sslmode=require"},
		{"verify-full", "/data dir/tls/ca.crt", "sslmode=verify-full&sslrootcert=%2Fdata%20dir%2Ftls%2Fca.crt"},
		{"verify-full", "", ""},
		{"prefer", "", ""},
	} {
		s, err := New(Config{ControlDir: t.TempDir(), ProxySSLMode: tc.mode, ProxyRootCert: tc.root})
		if tc.want == "" {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("mode %q root %q: %v, want ErrInvalid", tc.mode, tc.root, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("mode %q: %v", tc.mode, err)
		}
		if got := s.sslParams(); got != tc.want {
			t.Errorf("mode %q: %q, want %q", tc.mode, got, tc.want)
		}
	}
}
