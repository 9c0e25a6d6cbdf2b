package experiments_test

import (
	"context"
	"errors"
	"testing"

	"github.com/offshootdb/offshoot/experiments"
)

// FuzzParseScope checks that every scope that parses prints back to text
// that parses to the same scope, and that others fail with ErrInvalid.
func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"admin", "read:main", "write:p:feature/*", "read:*", "write:p:[", "x:y:z", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := experiments.ParseScope(s)
		if err != nil {
			if !errors.Is(err, experiments.ErrInvalid) {
				t.Fatalf("ParseScope(%q): %v is not ErrInvalid", s, err)
			}
			return
		}
		again, err := experiments.ParseScope(sc.String())
		if err != nil || again != sc {
			t.Fatalf("ParseScope(%q) = %v; round trip gives %v, %v", s, sc, again, err)
		}
	})
}

// FuzzAuthenticate feeds arbitrary bearer tokens to a service with one key:
// only the real token may authenticate.
func FuzzAuthenticate(f *testing.F) {
	s, err := experiments.New(experiments.Config{ControlDir: f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	if err := s.Open(context.Background()); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	nk, err := s.CreateKey(admin(), experiments.KeyRequest{Name: "k", Scopes: []experiments.Scope{{Role: experiments.RoleAdmin}}})
	if err != nil {
		f.Fatal(err)
	}
	for _, tok := range []string{"", "osk_", "osk_" + nk.ID + "_", nk.Token[:len(nk.Token)-1], nk.Token + "A"} {
		f.Add(tok)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := s.Authenticate(context.Background(), tok)
		if tok == nk.Token {
			if err != nil || c.KeyID != nk.ID {
				t.Fatalf("real token refused: %v", err)
			}
			return
		}
		if !errors.Is(err, experiments.ErrUnauthenticated) {
			t.Fatalf("Authenticate(%q) = %+v, %v", tok, c, err)
		}
	})
}
