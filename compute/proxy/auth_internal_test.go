package proxy

import (
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/offshootdb/offshoot/compute/proxy/scram"
)

// TestLimiter steps a limiter of 3 failures per minute through a
// transcript of failures and checks at given times.
func TestLimiter(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var now time.Time
	l := &limiter{max: 3, window: time.Minute, now: func() time.Time { return now }, fails: map[string][]time.Time{}}
	for i, step := range []struct {
		at    time.Duration
		op    string // "fail" or "check"
		src   string
		retry time.Duration // for check: 0 means allowed
	}{
		{0, "fail", "a", 0},
		{10 * time.Second, "fail", "a", 0},
		{15 * time.Second, "check", "a", 0},
		{20 * time.Second, "fail", "a", 0},
		{20 * time.Second, "check", "a", 40 * time.Second},
		{20 * time.Second, "check", "b", 0},
		{59 * time.Second, "check", "a", time.Second},
		{60 * time.Second, "check", "a", 0}, // the failure at 0 has left
		{61 * time.Second, "fail", "a", 0},
		{61 * time.Second, "check", "a", 9 * time.Second},
		{200 * time.Second, "check", "a", 0},
	} {
		now = t0.Add(step.at)
		switch step.op {
		case "fail":
			l.fail(step.src)
		case "check":
			err := l.check(step.src)
			var rl *RateLimitError
			switch {
			case step.retry == 0 && err != nil:
				t.Fatalf("step %d: %v, want allowed", i, err)
			case step.retry != 0 && (!errors.As(err, &rl) || rl.Retry != step.retry || !errors.Is(err, ErrRateLimited)):
				t.Fatalf("step %d: %v, want retry in %s", i, err, step.retry)
			}
		}
	}
	if len(l.fails) != 0 {
		t.Fatalf("expired sources kept: %v", l.fails)
	}
	// Many sources: expired ones are swept once the map is large.
	for i := range 5000 {
		l.fail(strconv.Itoa(i))
	}
	now = now.Add(2 * time.Minute)
	l.fail("last")
	if len(l.fails) != 1 {
		t.Fatalf("%d sources kept after their window", len(l.fails))
	}
}

func TestRateLimitErrorRoundsUp(t *testing.T) {
	for _, tc := range []struct {
		retry time.Duration
		want  string
	}{
		{time.Second, "retry in 1 s"},
		{1500 * time.Millisecond, "retry in 2 s"},
		{time.Millisecond, "retry in 1 s"},
		{time.Minute, "retry in 60 s"},
	} {
		if got := (&RateLimitError{Source: "x", Target: "role r on branch b of project p", Retry: tc.retry}).Error(); got != "too many failed authentication attempts from x for role r on branch b of project p; "+tc.want {
			t.Errorf("%s: %q", tc.retry, got)
		}
	}
}

// FuzzSASL plays arbitrary client bytes against the proxy's side of the
// SASL exchange: it never panics, never accepts, and never reads past
// the messages it asked for.
func FuzzSASL(f *testing.F) {
	msg := func(m pgproto3.FrontendMessage) []byte { b, _ := m.Encode(nil); return b }
	f.Add(msg(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=abc")}),
		msg(&pgproto3.SASLResponse{Data: []byte("c=biws,r=abc,p=AAAA")}))
	f.Add(msg(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256-PLUS", Data: []byte("p=x,,n=,r=a")}), []byte{})
	f.Add(msg(&pgproto3.PasswordMessage{Password: "pw"}), []byte{})
	f.Add([]byte{'p', 0, 0, 0, 3}, []byte{})
	f.Add([]byte{'p', 0xff, 0xff, 0xff, 0xff}, []byte{})
	v, _ := scram.Derive("pw", []byte("salt"), 1)
	s := &Server{}
	f.Fuzz(func(t *testing.T, first, second []byte) {
		client, server := net.Pipe()
		defer client.Close()
		go func() { _, _ = io.Copy(io.Discard, client) }() // the server's messages
		go func() {
			_, _ = client.Write(first)
			_, _ = client.Write(second)
			client.Close() // net.Pipe writes return once read: the server has it all
		}()
		_ = server.SetDeadline(time.Now().Add(time.Second))
		err := s.sasl(server, v)
		server.Close()
		if err == nil {
			t.Fatalf("accepted %q %q", first, second)
		}
	})
}
