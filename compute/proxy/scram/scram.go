// Package scram is the server side of SCRAM-SHA-256 (RFC 5802, RFC 7677)
// as PostgreSQL speaks it in SASL authentication, and the verifier format
// PostgreSQL stores in pg_authid.rolpassword:
//
//	SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>
//
// The proxy runs a Conversation with each client against the verifier of
// the role it asks for; the facade makes verifiers from passwords with
// NewVerifier. Only the mechanism "SCRAM-SHA-256" is spoken: no channel
// binding (-PLUS), so clients must send the gs2 header "n,," or "y,,".
package scram

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"
)

// Mechanism is the SASL mechanism name this package speaks.
const Mechanism = "SCRAM-SHA-256"

// DefaultIterations is the PBKDF2 iteration count of NewVerifier, as
// PostgreSQL's default scram_iterations.
const DefaultIterations = 4096

// SaltLen is the salt length of NewVerifier in bytes, as PostgreSQL's.
const SaltLen = 16

// Errors returned by this package.
var (
	// ErrBadVerifier means a string that is not a SCRAM-SHA-256 verifier.
	ErrBadVerifier = errors.New("not a SCRAM-SHA-256 verifier")
	// ErrMalformed means a client message that does not follow RFC 5802.
	ErrMalformed = errors.New("malformed SCRAM message")
	// ErrChannelBinding means a client that asks for channel binding
	// (SCRAM-SHA-256-PLUS, gs2 header "p=..."), which is not offered.
	ErrChannelBinding = errors.New("SCRAM channel binding is not supported; connect with channel_binding=disable or prefer")
	// ErrProof means a client proof that does not match the verifier: a
	// wrong password.
	ErrProof = errors.New("SCRAM proof does not match")
	// ErrState means a Conversation method called out of order.
	ErrState = errors.New("SCRAM conversation out of order")
)

// Verifier is a decoded pg_authid SCRAM-SHA-256 secret.
type Verifier struct {
	Iterations int
	Salt       []byte
	StoredKey  []byte // H(ClientKey), 32 bytes
	ServerKey  []byte // 32 bytes
}

// String encodes v in pg_authid's format.
func (v *Verifier) String() string {
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("%s$%d:%s$%s:%s", Mechanism, v.Iterations, b64(v.Salt), b64(v.StoredKey), b64(v.ServerKey))
}

// ParseVerifier decodes a verifier in pg_authid's format. Anything else
// (an MD5 hash, a plain password, a truncated key) gives ErrBadVerifier.
func ParseVerifier(s string) (*Verifier, error) {
	rest, ok := strings.CutPrefix(s, Mechanism+"$")
	if !ok {
		return nil, fmt.Errorf("%w: no %s$ prefix", ErrBadVerifier, Mechanism)
	}
	head, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return nil, fmt.Errorf("%w: no keys", ErrBadVerifier)
	}
	iter, salt, ok1 := strings.Cut(head, ":")
	stored, server, ok2 := strings.Cut(keys, ":")
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("%w: missing ':'", ErrBadVerifier)
	}
	v := &Verifier{}
	var err error
	if v.Iterations, err = strconv.Atoi(iter); err != nil || v.Iterations < 1 {
		return nil, fmt.Errorf("%w: iterations %q", ErrBadVerifier, iter)
	}
	dec := base64.StdEncoding.DecodeString
	if v.Salt, err = dec(salt); err != nil || len(v.Salt) == 0 {
		return nil, fmt.Errorf("%w: salt %q", ErrBadVerifier, salt)
	}
	if v.StoredKey, err = dec(stored); err != nil || len(v.StoredKey) != sha256.Size {
		return nil, fmt.Errorf("%w: StoredKey", ErrBadVerifier)
	}
	if v.ServerKey, err = dec(server); err != nil || len(v.ServerKey) != sha256.Size {
		return nil, fmt.Errorf("%w: ServerKey", ErrBadVerifier)
	}
	return v, nil
}

// NewVerifier makes the pg_authid verifier of password with
// DefaultIterations and a random salt of SaltLen bytes, the same string
// (but for the salt) that PostgreSQL stores for ALTER ROLE ... PASSWORD.
// It may be set as is with ALTER ROLE x PASSWORD '<verifier>'.
func NewVerifier(password string) (string, error) {
	salt := make([]byte, SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("new verifier: %w", err)
	}
	v, err := Derive(password, salt, DefaultIterations)
	if err != nil {
		return "", err
	}
	return v.String(), nil
}

// Derive computes the verifier of password with the given salt and
// iteration count.
func Derive(password string, salt []byte, iterations int) (*Verifier, error) {
	salted, err := pbkdf2.Key(sha256.New, Normalize(password), salt, iterations, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("derive verifier: %w", err)
	}
	clientKey := mac(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	return &Verifier{Iterations: iterations, Salt: salt, StoredKey: stored[:], ServerKey: mac(salted, "Server Key")}, nil
}

// Normalize prepares a password as PostgreSQL's pg_saslprep does before
// hashing: ASCII passes through unchanged; other valid UTF-8 is
// normalized (PRECIS OpaqueString, the successor of SASLprep, as pgx
// does); where normalization fails the raw password is used, as
// PostgreSQL does.
func Normalize(password string) string {
	ascii := true
	for i := 0; i < len(password); i++ {
		if password[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii || !utf8.ValidString(password) {
		return password
	}
	if n, err := precis.OpaqueString.String(password); err == nil {
		return n
	}
	return password
}

func mac(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

// Conversation is the server side of one SCRAM-SHA-256 exchange:
//
//	serverFirst, err := c.ClientFirst(clientFirst)
//	serverFinal, err := c.ClientFinal(clientFinal)
//
// Not safe for concurrent use.
type Conversation struct {
	v           *Verifier
	step        int
	gs2Header   string
	clientBare  string
	serverFirst string
	nonce       string // client nonce + server nonce
	serverNonce string // fixed by tests; random when ""
}

// NewConversation starts an exchange against v.
func NewConversation(v *Verifier) *Conversation { return &Conversation{v: v} }

// ClientFirst reads the client-first-message (the data of the SASL
// initial response) and returns the server-first-message. Errors wrap
// ErrMalformed or ErrChannelBinding.
func (c *Conversation) ClientFirst(msg []byte) ([]byte, error) {
	if c.step != 0 {
		return nil, ErrState
	}
	c.step = -1 // any error ends the conversation
	gs2, bare, err := ParseClientFirst(msg)
	if err != nil {
		return nil, err
	}
	if c.serverNonce == "" {
		var b [18]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("server nonce: %w", err)
		}
		c.serverNonce = base64.StdEncoding.EncodeToString(b[:])
	}
	c.gs2Header = gs2
	c.clientBare = bare.Raw
	c.nonce = bare.Nonce + c.serverNonce
	c.serverFirst = fmt.Sprintf("r=%s,s=%s,i=%d", c.nonce, base64.StdEncoding.EncodeToString(c.v.Salt), c.v.Iterations)
	c.step = 1
	return []byte(c.serverFirst), nil
}

// ClientFinal reads the client-final-message and returns the
// server-final-message when the client's proof matches the verifier. A
// wrong proof gives ErrProof; the comparison takes constant time.
func (c *Conversation) ClientFinal(msg []byte) ([]byte, error) {
	if c.step != 1 {
		return nil, ErrState
	}
	c.step = -1
	f, err := ParseClientFinal(msg)
	if err != nil {
		return nil, err
	}
	if f.ChannelBinding != base64.StdEncoding.EncodeToString([]byte(c.gs2Header)) {
		return nil, fmt.Errorf("%w: channel binding data does not match the gs2 header", ErrMalformed)
	}
	if f.Nonce != c.nonce {
		return nil, fmt.Errorf("%w: nonce does not match", ErrMalformed)
	}
	authMessage := c.clientBare + "," + c.serverFirst + "," + f.WithoutProof
	sig := mac(c.v.StoredKey, authMessage)
	clientKey := make([]byte, len(sig))
	ok := len(f.Proof) == len(sig)
	for i := range sig {
		var p byte
		if i < len(f.Proof) {
			p = f.Proof[i]
		}
		clientKey[i] = p ^ sig[i]
	}
	stored := sha256.Sum256(clientKey)
	if subtle.ConstantTimeCompare(stored[:], c.v.StoredKey) != 1 || !ok {
		return nil, ErrProof
	}
	c.step = 2
	return []byte("v=" + base64.StdEncoding.EncodeToString(mac(c.v.ServerKey, authMessage))), nil
}

// Done reports whether the client proved it knows the password.
func (c *Conversation) Done() bool { return c.step == 2 }

// ClientFirstBare is the decoded client-first-message-bare.
type ClientFirstBare struct {
	Raw   string // the message as sent, for the AuthMessage
	User  string // n=, ignored by PostgreSQL (the startup packet's user counts)
	Nonce string // r=
}

// ParseClientFirst splits a client-first-message into its gs2 header
// ("n,," or "y,,") and bare part. Channel binding ("p=") gives
// ErrChannelBinding, an authorization identity or a mandatory extension
// ("m=") ErrMalformed, as in PostgreSQL. It never panics.
func ParseClientFirst(msg []byte) (gs2 string, bare ClientFirstBare, err error) {
	s := string(msg)
	switch {
	case strings.HasPrefix(s, "p="):
		return "", bare, ErrChannelBinding
	case strings.HasPrefix(s, "n,"), strings.HasPrefix(s, "y,"):
	default:
		return "", bare, fmt.Errorf("%w: gs2 header must start with n, y or p", ErrMalformed)
	}
	rest := s[2:]
	authzid, rest, ok := strings.Cut(rest, ",")
	if !ok {
		return "", bare, fmt.Errorf("%w: incomplete gs2 header", ErrMalformed)
	}
	if authzid != "" {
		return "", bare, fmt.Errorf("%w: an authorization identity is not supported", ErrMalformed)
	}
	gs2 = s[:len(s)-len(rest)]
	bare.Raw = rest
	attrs := strings.Split(rest, ",")
	if len(attrs) < 2 {
		return "", bare, fmt.Errorf("%w: client-first-message needs n= and r=", ErrMalformed)
	}
	if strings.HasPrefix(attrs[0], "m=") {
		return "", bare, fmt.Errorf("%w: mandatory extensions are not supported", ErrMalformed)
	}
	user, ok := strings.CutPrefix(attrs[0], "n=")
	if !ok {
		return "", bare, fmt.Errorf("%w: expected n=", ErrMalformed)
	}
	nonce, ok := strings.CutPrefix(attrs[1], "r=")
	if !ok || nonce == "" || !printable(nonce) {
		return "", bare, fmt.Errorf("%w: expected a printable nonce r=", ErrMalformed)
	}
	for _, a := range attrs[2:] {
		if !isAttr(a) {
			return "", bare, fmt.Errorf("%w: bad extension %q", ErrMalformed, truncate(a))
		}
	}
	bare.User, bare.Nonce = user, nonce
	return gs2, bare, nil
}

// ClientFinalMessage is a decoded client-final-message.
type ClientFinalMessage struct {
	ChannelBinding string // c=, base64 as sent
	Nonce          string // r=
	Proof          []byte // p=, decoded
	WithoutProof   string // the message up to ",p=", for the AuthMessage
}

// ParseClientFinal decodes a client-final-message
// "c=<b64>,r=<nonce>[,ext...],p=<b64 proof>". It never panics; errors
// wrap ErrMalformed.
func ParseClientFinal(msg []byte) (ClientFinalMessage, error) {
	var f ClientFinalMessage
	s := string(msg)
	i := strings.LastIndex(s, ",p=")
	if i < 0 {
		return f, fmt.Errorf("%w: no proof p=", ErrMalformed)
	}
	f.WithoutProof = s[:i]
	proof, err := base64.StdEncoding.DecodeString(s[i+3:])
	if err != nil || len(proof) == 0 {
		return f, fmt.Errorf("%w: proof is not base64", ErrMalformed)
	}
	f.Proof = proof
	attrs := strings.Split(f.WithoutProof, ",")
	if len(attrs) < 2 {
		return f, fmt.Errorf("%w: client-final-message needs c= and r=", ErrMalformed)
	}
	cb, ok := strings.CutPrefix(attrs[0], "c=")
	if !ok {
		return f, fmt.Errorf("%w: expected c=", ErrMalformed)
	}
	if _, err := base64.StdEncoding.DecodeString(cb); err != nil {
		return f, fmt.Errorf("%w: channel binding is not base64", ErrMalformed)
	}
	nonce, ok := strings.CutPrefix(attrs[1], "r=")
	if !ok || nonce == "" {
		return f, fmt.Errorf("%w: expected r=", ErrMalformed)
	}
	for _, a := range attrs[2:] {
		if !isAttr(a) {
			return f, fmt.Errorf("%w: bad extension %q", ErrMalformed, truncate(a))
		}
	}
	f.ChannelBinding, f.Nonce = cb, nonce
	return f, nil
}

// printable reports whether s has only printable ASCII other than ','
// (RFC 5802's nonce characters).
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == ',' {
			return false
		}
	}
	return true
}

// isAttr reports whether a is "<letter>=...".
func isAttr(a string) bool {
	return len(a) >= 2 && a[1] == '=' && (a[0] >= 'a' && a[0] <= 'z' || a[0] >= 'A' && a[0] <= 'Z')
}

func truncate(s string) string {
	if len(s) > 20 {
		return s[:20] + "..."
	}
	return s
}
