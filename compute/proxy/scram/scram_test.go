package scram

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// TestRFC7677 runs the example exchange of RFC 7677 section 3.
func TestRFC7677(t *testing.T) {
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	v, err := Derive("pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	c := NewConversation(v)
	c.serverNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	sf, err := c.ClientFirst([]byte("n,,n=user,r=rOprNGfwEbeRWgbNEkqO"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"; string(sf) != want {
		t.Fatalf("server-first %q, want %q", sf, want)
	}
	fin, err := c.ClientFinal([]byte("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="))
	if err != nil {
		t.Fatal(err)
	}
	if want := "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="; string(fin) != want || !c.Done() {
		t.Fatalf("server-final %q, want %q", fin, want)
	}
}

// client is a minimal SCRAM client for tests.
func client(t *testing.T, c *Conversation, gs2, password string) ([]byte, error) {
	t.Helper()
	bare := "n=,r=clientnonce123"
	sf, err := c.ClientFirst([]byte(gs2 + bare))
	if err != nil {
		return nil, err
	}
	parts := strings.Split(string(sf), ",")
	nonce, salt64, iter := parts[0][2:], parts[1][2:], parts[2][2:]
	salt, _ := base64.StdEncoding.DecodeString(salt64)
	if iter != "4096" {
		t.Fatalf("iterations %s", iter)
	}
	salted, _ := pbkdf2.Key(sha256.New, password, salt, 4096, 32)
	ck := hm(salted, "Client Key")
	stored := sha256.Sum256(ck)
	noProof := "c=" + base64.StdEncoding.EncodeToString([]byte(gs2)) + ",r=" + nonce
	sig := hm(stored[:], bare+","+string(sf)+","+noProof)
	for i := range ck {
		ck[i] ^= sig[i]
	}
	return c.ClientFinal([]byte(noProof + ",p=" + base64.StdEncoding.EncodeToString(ck)))
}

func hm(k []byte, m string) []byte {
	h := hmac.New(sha256.New, k)
	h.Write([]byte(m))
	return h.Sum(nil)
}

func TestNewVerifier(t *testing.T) {
	for _, tc := range []struct {
		name, password, try, gs2 string
		want                     error
	}{
		{"right", "s3cret", "s3cret", "n,,", nil},
		{"right over TLS", "s3cret", "s3cret", "y,,", nil},
		{"wrong", "s3cret", "s3cret ", "n,,", ErrProof},
		{"empty", "s3cret", "", "n,,", ErrProof},
		{"ascii kept", "a b\tc", "a b\tc", "n,,", nil},
		{"channel binding", "s3cret", "s3cret", "p=tls-server-end-point,,", ErrChannelBinding},
		{"authzid", "s3cret", "s3cret", "n,a=bob,", ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewVerifier(tc.password)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(s, "SCRAM-SHA-256$4096:") {
				t.Fatalf("verifier %q", s)
			}
			v, err := ParseVerifier(s)
			if err != nil {
				t.Fatal(err)
			}
			if v.String() != s || len(v.Salt) != SaltLen {
				t.Fatalf("round trip %q → %q", s, v.String())
			}
			fin, err := client(t, NewConversation(v), tc.gs2, tc.try)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if err == nil && !bytes.HasPrefix(fin, []byte("v=")) {
				t.Fatalf("server-final %q", fin)
			}
		})
	}
}

func TestParseVerifier(t *testing.T) {
	good := "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$" + strings.Repeat("A", 43) + "=:" + strings.Repeat("B", 43) + "="
	if _, err := ParseVerifier(good); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"",
		"md5a3556571e93b0d20722ba62be61e8c2d",
		"plain",
		"SCRAM-SHA-256$4096:c2FsdA==",
		"SCRAM-SHA-256$x:c2FsdA==$AAAA:AAAA",
		"SCRAM-SHA-256$0:c2FsdA==$" + strings.Repeat("A", 43) + "=:" + strings.Repeat("B", 43) + "=",
		"SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA",
		"SCRAM-SHA-256$4096:!!$" + strings.Repeat("A", 43) + "=:" + strings.Repeat("B", 43) + "=",
	} {
		if _, err := ParseVerifier(s); !errors.Is(err, ErrBadVerifier) {
			t.Errorf("%q: got %v, want ErrBadVerifier", s, err)
		}
	}
}

// TestConversationOrder: a final before a first, or a second first, is
// refused; an error ends the conversation.
func TestConversationOrder(t *testing.T) {
	v, _ := Derive("pw", []byte("salt"), 4096)
	c := NewConversation(v)
	if _, err := c.ClientFinal([]byte("c=biws,r=x,p=AAAA")); !errors.Is(err, ErrState) {
		t.Fatalf("final first: %v", err)
	}
	c = NewConversation(v)
	if _, err := c.ClientFirst([]byte("x")); !errors.Is(err, ErrMalformed) {
		t.Fatal(err)
	}
	if _, err := c.ClientFirst([]byte("n,,n=,r=abc")); !errors.Is(err, ErrState) {
		t.Fatalf("first after an error: %v", err)
	}
	c = NewConversation(v)
	sf, _ := c.ClientFirst([]byte("n,,n=,r=abc"))
	nonce := strings.Split(string(sf), ",")[0][2:]
	for _, tc := range []struct{ msg, want string }{
		{"c=eSws,r=" + nonce + ",p=AAAA", "gs2 header"},
		{"c=biws,r=abcother,p=AAAA", "nonce"},
	} {
		c2 := *c
		if _, err := c2.ClientFinal([]byte(tc.msg)); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v", tc.msg, err)
		}
	}
}

func TestParseClientFirst(t *testing.T) {
	for _, tc := range []struct {
		msg, gs2, nonce string
		want            error
	}{
		{"n,,n=,r=abc", "n,,", "abc", nil},
		{"y,,n=user,r=abc,x=ext", "y,,", "abc", nil},
		{"p=tls-server-end-point,,n=,r=abc", "", "", ErrChannelBinding},
		{"n,a=x,n=,r=abc", "", "", ErrMalformed},
		{"n,,m=ext,n=,r=abc", "", "", ErrMalformed},
		{"n,,n=,r=", "", "", ErrMalformed},
		{"n,,n=,r=a\x01b", "", "", ErrMalformed},
		{"n,,r=abc", "", "", ErrMalformed},
		{"n,,n=", "", "", ErrMalformed},
		{"n,", "", "", ErrMalformed},
		{"", "", "", ErrMalformed},
		{"n,,n=,r=abc,bad", "", "", ErrMalformed},
	} {
		gs2, bare, err := ParseClientFirst([]byte(tc.msg))
		if !errors.Is(err, tc.want) || gs2 != tc.gs2 || bare.Nonce != tc.nonce {
			t.Errorf("%q: got %q %+v %v", tc.msg, gs2, bare, err)
		}
	}
}

func TestParseClientFinal(t *testing.T) {
	for _, tc := range []struct {
		msg, nonce string
		want       error
	}{
		{"c=biws,r=abc,p=AAAA", "abc", nil},
		{"c=biws,r=abc,x=1,p=AAAA", "abc", nil},
		{"c=biws,r=abc", "", ErrMalformed},
		{"c=biws,r=abc,p=!!", "", ErrMalformed},
		{"c=!!,r=abc,p=AAAA", "", ErrMalformed},
		{"r=abc,p=AAAA", "", ErrMalformed},
		{"c=biws,p=AAAA", "", ErrMalformed},
		{"c=biws,r=,p=AAAA", "", ErrMalformed},
		{",p=AAAA", "", ErrMalformed},
	} {
		f, err := ParseClientFinal([]byte(tc.msg))
		if !errors.Is(err, tc.want) || f.Nonce != tc.nonce {
			t.Errorf("%q: got %+v %v", tc.msg, f, err)
		}
	}
}

// FuzzClientMessages feeds arbitrary bytes to both client-message parsers
// and to a conversation: nothing panics, and whatever parses satisfies
// the grammar's invariants.
func FuzzClientMessages(f *testing.F) {
	for _, s := range []string{"n,,n=,r=abc", "y,,n=user,r=abc,x=ext", "p=tls-server-end-point,,n=,r=abc",
		"c=biws,r=abc,p=AAAA", "c=biws,r=abc,x=1,p=AAAA", "", ",,,", "n,,n=,r=,p="} {
		f.Add([]byte(s), []byte("c=biws,r=abc,p=AAAA"))
	}
	v, _ := Derive("pw", []byte("salt"), 1)
	f.Fuzz(func(t *testing.T, first, final []byte) {
		gs2, bare, err := ParseClientFirst(first)
		if err == nil {
			if (gs2 != "n,," && gs2 != "y,,") || !printable(bare.Nonce) || bare.Nonce == "" || gs2+bare.Raw != string(first) {
				t.Fatalf("%q parsed to %q %+v", first, gs2, bare)
			}
		}
		fm, err := ParseClientFinal(final)
		if err == nil {
			if fm.Nonce == "" || len(fm.Proof) == 0 || !strings.HasPrefix(string(final), fm.WithoutProof+",p=") {
				t.Fatalf("%q parsed to %+v", final, fm)
			}
		}
		c := NewConversation(v)
		if _, err := c.ClientFirst(first); err == nil {
			if _, err := c.ClientFinal(final); err == nil {
				t.Fatalf("random proof %q accepted", final)
			}
		}
	})
}
