package vectors

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

func checkChunks(t *testing.T, text string, ch Chunker, chunks []Chunk) {
	t.Helper()
	prevStart := -1
	covered := 0
	for i, c := range chunks {
		if c.Index != i || c.DocID == "" {
			t.Fatalf("chunk %d: index %d doc %q", i, c.Index, c.DocID)
		}
		if text[c.Start:c.End] != c.Text {
			t.Fatalf("chunk %d: text[%d:%d] = %q, want %q", i, c.Start, c.End, text[c.Start:c.End], c.Text)
		}
		r := []rune(text)
		if string(r[c.CharStart:c.CharEnd]) != c.Text {
			t.Fatalf("chunk %d: runes[%d:%d] mismatch", i, c.CharStart, c.CharEnd)
		}
		if c.Start < prevStart {
			t.Fatalf("chunk %d starts at %d, before %d", i, c.Start, prevStart)
		}
		if n := utf8.RuneCountInString(c.Text); n > 2*ch.Size {
			t.Fatalf("chunk %d has %d runes > 2 × size %d", i, n, ch.Size)
		}
		// Nothing but whitespace is left out between chunks.
		if c.Start > covered && strings.TrimSpace(text[covered:c.Start]) != "" {
			t.Fatalf("gap before chunk %d: %q", i, text[covered:c.Start])
		}
		covered = max(covered, c.End)
		prevStart = c.Start
	}
	if strings.TrimSpace(text[covered:]) != "" {
		t.Fatalf("tail not covered: %q", text[covered:])
	}
}

func TestChunkOffsets(t *testing.T) {
	text := "Über die Strömung.\n\nA wing in a slipstream: the lift increase — measured at α = 5°.\nSecond line here.\n\nLast paragraph with 日本語 text and more words to split."
	ch := Chunker{Size: 30, Overlap: 10}
	chunks, err := ch.Split("doc-1", text)
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) < 4 {
		t.Fatalf("only %d chunks", len(chunks))
	}
	checkChunks(t, text, ch, chunks)
	// Exact expectations for the first chunks: offsets in bytes and runes.
	if c := chunks[0]; c.Text != "Über die Strömung." || c.Start != 0 || c.End != 20 || c.CharStart != 0 || c.CharEnd != 18 {
		t.Errorf("chunk 0 = %+v", c)
	}
	if c := chunks[1]; c.Text != "A wing in a slipstream: the" || c.Start != 22 || c.CharStart != 20 {
		t.Errorf("chunk 1 = %+v", c)
	}
	if chunks[1].ID() != "doc-1#1" {
		t.Errorf("id %q", chunks[1].ID())
	}
	// Overlap: consecutive chunks of one paragraph share text.
	if chunks[2].Start >= chunks[1].End {
		t.Errorf("no overlap between %+v and %+v", chunks[1], chunks[2])
	}
}

func TestChunkCranfieldAndRandom(t *testing.T) {
	c := loadCranfield(t)
	ch := Chunker{Size: 200, Overlap: 40}
	n := 0
	for i, d := range c.docs {
		chunks, err := ch.Split(c.docIDs[i], d)
		if err != nil {
			t.Fatal(err)
		}
		checkChunks(t, d, ch, chunks)
		n += len(chunks)
	}
	t.Logf("cranfield: %d docs → %d chunks", len(c.docs), n)

	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	alphabet := []string{"a", "b", "é", "語", " ", " ", "\n", "\n\n", "xy", "  "}
	for iter := 0; iter < 2000; iter++ {
		var b strings.Builder
		for j := rng.IntN(400); j > 0; j-- {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		size := 1 + rng.IntN(40)
		ch := Chunker{Size: size, Overlap: rng.IntN(size)}
		chunks, err := ch.Split("r", b.String())
		if err != nil {
			t.Fatalf("seed %d iter %d: %v", seed, iter, err)
		}
		checkChunks(t, b.String(), ch, chunks)
	}
}

func TestChunkErrors(t *testing.T) {
	for _, ch := range []Chunker{{}, {Size: 10, Overlap: 10}, {Size: 10, Overlap: -1}} {
		if _, err := ch.Split("d", "text"); !errors.Is(err, ErrBadChunking) {
			t.Errorf("%+v: %v", ch, err)
		}
	}
	if _, err := (Chunker{Size: 10}).Split("d", "bad \xff utf8"); !errors.Is(err, ErrBadChunking) {
		t.Errorf("invalid utf8: %v", err)
	}
	if chunks, err := (Chunker{Size: 10}).Split("d", "  \n "); err != nil || len(chunks) != 0 {
		t.Errorf("blank text: %v %v", chunks, err)
	}
}
