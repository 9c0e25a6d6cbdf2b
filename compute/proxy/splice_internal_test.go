package proxy

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestFramer: the switch's check for a pipelining client sees only
// password messages as the startup's, however the bytes are cut.
func TestFramer(t *testing.T) {
	enc := func(msgs ...pgproto3.FrontendMessage) []byte {
		var b []byte
		for _, m := range msgs {
			var err error
			if b, err = m.Encode(b); err != nil {
				t.Fatal(err)
			}
		}
		return b
	}
	pw := &pgproto3.PasswordMessage{Password: "secret"}
	sasl := &pgproto3.SASLResponse{Data: []byte("c=biws,r=nonce,p=proof")}
	for _, tc := range []struct {
		name  string
		bytes []byte
		other bool
	}{
		{"nothing", nil, false},
		{"password", enc(pw), false},
		{"sasl exchange", enc(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=x")}, sasl), false},
		{"password then query", enc(pw, &pgproto3.Query{String: "SELECT 1"}), true},
		{"query", enc(&pgproto3.Query{String: "SELECT 1"}), true},
		{"terminate", enc(&pgproto3.Terminate{}), true},
		{"bad length", []byte{'p', 0, 0, 0, 2}, true},
	} {
		for _, cut := range []int{1, 2, 3, 7, 1 << 20} {
			var f framer
			for b := tc.bytes; len(b) > 0; b = b[min(cut, len(b)):] {
				f.feed(b[:min(cut, len(b))])
			}
			if f.other != tc.other {
				t.Errorf("%s in pieces of %d: other %v, want %v", tc.name, cut, f.other, tc.other)
			}
		}
	}
}
