package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"maps"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func TestParseRoute(t *testing.T) {
	for _, tc := range []struct {
		options     string
		route       Route
		fwd         string // "-" means options removed
		err         error
		defaultProj string
	}{
		{options: "endpoint=main", route: Route{"def", "main"}, fwd: "-"},
		{options: "branch=main project=demo", route: Route{"demo", "main"}, fwd: "-"},
		{options: "  -c work_mem=4MB endpoint=ep-1  --search_path=x ", route: Route{"def", "ep-1"}, fwd: "-c work_mem=4MB --search_path=x"},
		{options: `-c application_name=a\ b endpoint=we\ ird`, route: Route{"def", "we ird"}, fwd: `-c application_name=a\ b`},
		{options: "endpoint=main endpoint=main", route: Route{"def", "main"}, fwd: "-"},
		{options: "endpoint=a branch=b", err: ErrNoRoute},
		{options: "endpoint=", err: ErrNoRoute},
		{options: "", err: ErrNoRoute},
		{options: "-c x=y", err: ErrNoRoute},
		{options: "endpoint=main", defaultProj: "-", err: ErrNoRoute},
	} {
		def := "def"
		if tc.defaultProj == "-" {
			def = ""
		}
		params := map[string]string{"user": "u", "options": tc.options}
		r, fwd, err := ParseRoute(params, def)
		if !errors.Is(err, tc.err) {
			t.Errorf("%q: err %v, want %v", tc.options, err, tc.err)
			continue
		}
		if err != nil {
			continue
		}
		got, ok := fwd["options"]
		if !ok {
			got = "-"
		}
		if r != tc.route || got != tc.fwd || fwd["user"] != "u" {
			t.Errorf("%q: got %+v %q, want %+v %q", tc.options, r, got, tc.route, tc.fwd)
		}
		if params["options"] != tc.options {
			t.Errorf("%q: input parameters modified", tc.options)
		}
	}
}

func TestReadStartup(t *testing.T) {
	valid, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "u"}}).Encode(nil)
	for _, tc := range []struct {
		name string
		in   []byte
		err  error
	}{
		{"valid", valid, nil},
		{"short length", []byte{0, 0, 0, 4}, ErrMalformed},
		{"negative length", []byte{0xff, 0xff, 0xff, 0xff}, ErrMalformed},
		{"oversized", binary.BigEndian.AppendUint32(nil, 10001), ErrOversized},
		{"protocol 2", append(binary.BigEndian.AppendUint32(nil, 8), 0, 2, 0, 0), ErrUnsupported},
		{"no user", append(binary.BigEndian.AppendUint32(nil, 10), 0, 3, 0, 0, 0, 0), ErrMalformed},
		{"ssl request with payload", append(binary.BigEndian.AppendUint32(nil, 12), 0x04, 0xd2, 0x16, 0x2f, 1, 2, 3, 4), ErrMalformed},
	} {
		_, err := ReadStartup(bytes.NewReader(tc.in), MaxStartupPacket)
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.err)
		}
	}
}

// FuzzParseStartup: the decoder of untrusted startup packets never panics,
// and what it accepts survives an encode/decode round trip and routing.
func FuzzParseStartup(f *testing.F) {
	for _, m := range []interface{ Encode([]byte) ([]byte, error) }{
		&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "u", "options": `endpoint=main -c a=b\ c`}},
		&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion32, Parameters: map[string]string{"user": "u", "database": "d"}},
		&pgproto3.SSLRequest{}, &pgproto3.GSSEncRequest{},
		&pgproto3.CancelRequest{ProcessID: 7, SecretKey: []byte{1, 2, 3, 4}},
	} {
		b, _ := m.Encode(nil)
		f.Add(b[4:])
	}
	f.Add([]byte{})
	f.Add([]byte{0, 3, 0, 1, 'u', 's', 'e', 'r', 0, 'x', 0, 0})
	f.Fuzz(func(t *testing.T, body []byte) {
		msg, err := ParseStartup(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		sm, ok := msg.(*pgproto3.StartupMessage)
		if !ok {
			return
		}
		enc, err := sm.Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseStartup(enc[4:])
		if err != nil {
			t.Fatalf("re-encoded packet rejected: %v", err)
		}
		if !maps.Equal(again.(*pgproto3.StartupMessage).Parameters, sm.Parameters) {
			t.Fatal("round trip changed parameters")
		}
		if _, fwd, err := ParseRoute(sm.Parameters, "p"); err == nil {
			if _, err := (&pgproto3.StartupMessage{ProtocolVersion: sm.ProtocolVersion, Parameters: fwd}).Encode(nil); err != nil {
				t.Fatal(err)
			}
		} else if !errors.Is(err, ErrNoRoute) {
			t.Fatal(err)
		}
	})
}
