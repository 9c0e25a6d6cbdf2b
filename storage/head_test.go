package storage

import "testing"

// TestTrimZeros: trailing zeros go, whatever chunk boundary the last
// non-zero byte sits at; nothing else does.
func TestTrimZeros(t *testing.T) {
	for _, last := range []int{-1, 0, 1, 7, 8, 9, 511, 512, 513, 1023, 4096, BlockSize - 513, BlockSize - 1} {
		b := make([]byte, BlockSize)
		b[0] = 0 // a zero before the last non-zero byte stays
		if last >= 0 {
			b[last] = 0xff
		}
		if got, want := len(trimZeros(b)), last+1; got != want {
			t.Errorf("last non-zero byte at %d: trimmed to %d bytes, want %d", last, got, want)
		}
	}
	if got := trimZeros(nil); len(got) != 0 {
		t.Errorf("nil: %d bytes", len(got))
	}
	if got := trimZeros([]byte{1, 0, 0}); len(got) != 1 {
		t.Errorf("short: %d bytes", len(got))
	}
}
