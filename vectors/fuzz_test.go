package vectors

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"
)

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"hash-bow?dims=384", "openai:m?dims=3&base_url=http://x", "a:b:c?seed=1", "?", ":x", "x?dims=1&dims=2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := ParseSpec(s)
		if err != nil {
			if !errors.Is(err, ErrBadSpec) {
				t.Fatalf("error not ErrBadSpec: %v", err)
			}
			return
		}
		back, err := ParseSpec(sp.String())
		if err != nil || !reflect.DeepEqual(back, sp) {
			t.Fatalf("%q → %+v → %q → %+v, %v", s, sp, sp.String(), back, err)
		}
	})
}

func FuzzReadIDF(f *testing.F) {
	f.Add([]byte(`{"features":"words","n":2,"df":{"wing":2}}`))
	f.Add([]byte(`{"features":"char3-5","n":0}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		idf, err := ReadIDF(b)
		if err != nil {
			return
		}
		again, err := json.Marshal(idf)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ReadIDF(again)
		if err != nil || back.Fingerprint() != idf.Fingerprint() {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzChunk(f *testing.F) {
	f.Add("Über die Strömung.\n\nA wing  in a slipstream.", 10, 3)
	f.Add("a\n\n\nb  c", 1, 0)
	f.Fuzz(func(t *testing.T, text string, size, overlap int) {
		ch := Chunker{Size: (size%64+64)%64 + 1}
		ch.Overlap = (overlap%ch.Size + ch.Size) % ch.Size
		chunks, err := ch.Split("d", text)
		if !utf8.ValidString(text) {
			if !errors.Is(err, ErrBadChunking) {
				t.Fatalf("invalid UTF-8 accepted: %v", err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		checkChunks(t, text, ch, chunks)
	})
}
