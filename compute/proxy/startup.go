package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Request codes of the startup phase (they take the place of the protocol
// version in the first word of the packet).
const (
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102
)

// MaxStartupPacket is Postgres' own limit on a startup packet
// (MAX_STARTUP_PACKET_LENGTH), the default of Config.MaxStartupPacket.
const MaxStartupPacket = 10000

// ReadStartup reads one startup-phase packet from r: a StartupMessage,
// SSLRequest, GSSEncRequest or CancelRequest. A packet longer than max
// bytes (length word included) is rejected with ErrOversized before its
// body is read; a body that does not decode gives ErrMalformed. A
// connection closed before the first byte gives io.EOF, one closed inside
// the packet io.ErrUnexpectedEOF.
func ReadStartup(r io.Reader, max int) (pgproto3.FrontendMessage, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int64(int32(binary.BigEndian.Uint32(hdr[:])))
	if n < 8 {
		return nil, fmt.Errorf("%w: length %d is below the minimum of 8", ErrMalformed, n)
	}
	if n > int64(max) {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrOversized, n, max)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return ParseStartup(body)
}

// ParseStartup decodes the body of a startup-phase packet (everything after
// the length word). It never panics; any malformed input gives an error
// wrapping ErrMalformed or ErrUnsupported.
func ParseStartup(body []byte) (pgproto3.FrontendMessage, error) {
	if len(body) < 4 {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(body))
	}
	code := binary.BigEndian.Uint32(body)
	var msg interface {
		pgproto3.FrontendMessage
		Decode([]byte) error
	}
	switch code {
	case sslRequestCode, gssEncRequestCode:
		if len(body) != 4 {
			return nil, fmt.Errorf("%w: request %d with %d bytes of payload", ErrMalformed, code, len(body)-4)
		}
		msg = &pgproto3.SSLRequest{}
		if code == gssEncRequestCode {
			msg = &pgproto3.GSSEncRequest{}
		}
	case cancelRequestCode:
		msg = &pgproto3.CancelRequest{}
	default:
		if code>>16 != 3 {
			return nil, fmt.Errorf("%w: protocol version %d.%d (only 3.x is spoken)", ErrUnsupported, code>>16, code&0xffff)
		}
		if code != pgproto3.ProtocolVersion30 && code != pgproto3.ProtocolVersion32 {
			// Postgres negotiates unknown 3.x minors down; so do we.
			b := append([]byte(nil), body...)
			binary.BigEndian.PutUint32(b, pgproto3.ProtocolVersion30)
			body = b
		}
		msg = &pgproto3.StartupMessage{}
	}
	if err := msg.Decode(body); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if sm, ok := msg.(*pgproto3.StartupMessage); ok {
		if sm.Parameters["user"] == "" {
			return nil, fmt.Errorf("%w: no user name in the startup packet", ErrMalformed)
		}
		sm.ProtocolVersion = code // forwarded as asked; Postgres negotiates
	}
	return msg, nil
}

// Route is where a connection goes.
type Route struct {
	Project, Branch string
}

// ParseRoute finds the route in a StartupMessage's parameters. The branch
// comes from the tokens `endpoint=<branch>` (what Neon clients send) or
// `branch=<branch>` in the `options` parameter, the project from
// `project=<project>` there, else defaultProject. It returns the
// parameters to forward: a copy with those tokens removed from options
// (and options dropped when nothing else is left). Other options (`-c
// x=y`, `--x=y`) pass through unchanged. Tokens follow Postgres' rules:
// separated by whitespace, with backslash escaping the next character.
func ParseRoute(params map[string]string, defaultProject string) (Route, map[string]string, error) {
	var r Route
	var keep []string
	for _, t := range splitOptions(params["options"]) {
		name, value, ok := strings.Cut(t.value, "=")
		if !ok {
			keep = append(keep, t.raw)
			continue
		}
		var dst *string
		switch name {
		case "endpoint", "branch":
			dst = &r.Branch
		case "project":
			dst = &r.Project
		default:
			keep = append(keep, t.raw)
			continue
		}
		if value == "" {
			return Route{}, nil, fmt.Errorf("%w: empty %s= in options", ErrNoRoute, name)
		}
		if *dst != "" && *dst != value {
			return Route{}, nil, fmt.Errorf("%w: options name two different values, %q and %q", ErrNoRoute, *dst, value)
		}
		*dst = value
	}
	if r.Branch == "" {
		return Route{}, nil, fmt.Errorf("%w: options has no endpoint=<branch> or branch=<branch>", ErrNoRoute)
	}
	if r.Project == "" {
		r.Project = defaultProject
	}
	if r.Project == "" {
		return Route{}, nil, fmt.Errorf("%w: options has no project=<project> and the proxy has no default project", ErrNoRoute)
	}
	out := make(map[string]string, len(params))
	for k, v := range params {
		out[k] = v
	}
	if len(keep) == 0 {
		delete(out, "options")
	} else {
		out["options"] = strings.Join(keep, " ")
	}
	return r, out, nil
}

type optToken struct{ raw, value string }

// splitOptions splits like Postgres' pg_split_opts: whitespace separates,
// a backslash takes the next character literally.
func splitOptions(s string) []optToken {
	var out []optToken
	var raw, val strings.Builder
	flush := func() {
		if raw.Len() > 0 {
			out = append(out, optToken{raw.String(), val.String()})
			raw.Reset()
			val.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			flush()
		case c == '\\' && i+1 < len(s):
			raw.WriteByte(c)
			raw.WriteByte(s[i+1])
			val.WriteByte(s[i+1])
			i++
		default:
			raw.WriteByte(c)
			val.WriteByte(c)
		}
	}
	flush()
	return out
}
