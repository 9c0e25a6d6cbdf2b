package storage

import (
	"errors"
	"testing"
)

// TestCheckClosed: Check on a closed store returns ErrClosed, no panic.
func TestCheckClosed(t *testing.T) {
	s, err := Open(t.TempDir(), &Options{GCInterval: -1})
	ok(t, err)
	ok(t, s.Close())
	if err := s.Check(); !errors.Is(err, ErrClosed) {
		t.Fatalf("check on closed store: %v", err)
	}
}
