package vectors

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tmc/langchaingo/textsplitter"
)

// Chunk is a piece of a document with its position in the original text:
// Text == original[Start:End] (byte offsets), and CharStart/CharEnd are the
// same positions counted in runes.
type Chunk struct {
	DocID     string
	Index     int // 0-based position among the document's chunks
	Start     int // byte offset of the first byte
	End       int // byte offset just past the last byte
	CharStart int // rune offset of the first rune
	CharEnd   int // rune offset just past the last rune
	Text      string
}

// ID is the chunk's row id: "<doc id>#<index>".
func (c Chunk) ID() string { return fmt.Sprintf("%s#%d", c.DocID, c.Index) }

// Chunker splits documents with langchaingo's recursive character splitter
// (separators "\n\n", "\n", " ", ""; lengths in runes). The zero value is
// not usable: Size must be positive and 0 ≤ Overlap < Size. Safe for
// concurrent use.
type Chunker struct {
	// Size is the maximum chunk length in runes (the splitter exceeds it
	// when pieces cannot be split further or merged pieces overshoot).
	Size int
	// Overlap is the target overlap between consecutive chunks, in runes.
	Overlap int
}

var chunkSeparators = []string{"\n\n", "\n", " ", ""}

// Split cuts text into chunks with langchaingo's RecursiveCharacter
// splitter and gives each its exact position. Chunk texts alone cannot be
// located reliably (they repeat, overlap, and the splitter trims them), so
// Split replays the splitter's algorithm on byte spans and checks that the
// spans spell exactly the splitter's output; a disagreement (a changed
// splitter) is an error rather than wrong offsets. A chunk the splitter
// repeats at the same position is kept once.
func (c Chunker) Split(docID, text string) ([]Chunk, error) {
	if c.Size <= 0 || c.Overlap < 0 || c.Overlap >= c.Size {
		return nil, fmt.Errorf("chunk size %d overlap %d: %w", c.Size, c.Overlap, ErrBadChunking)
	}
	if !utf8.ValidString(text) {
		return nil, fmt.Errorf("chunk %q: text is not valid UTF-8: %w", docID, ErrBadChunking)
	}
	sp := textsplitter.NewRecursiveCharacter(textsplitter.WithChunkSize(c.Size),
		textsplitter.WithChunkOverlap(c.Overlap), textsplitter.WithSeparators(chunkSeparators))
	parts, err := sp.SplitText(text)
	if err != nil {
		return nil, fmt.Errorf("chunk %q: %w", docID, err)
	}
	r := replay{c: c, text: text, runes: make([]int, len(text)+1)}
	n := 0
	for i := range text {
		r.runes[i] = n
		n++
	}
	r.runes[len(text)] = n
	spans := r.split(span{0, len(text)}, chunkSeparators)
	if len(spans) != len(parts) {
		return nil, fmt.Errorf("chunk %q: offset replay found %d chunks, splitter %d", docID, len(spans), len(parts))
	}
	out := make([]Chunk, 0, len(spans))
	for i, s := range spans {
		if text[s.s:s.e] != parts[i] {
			return nil, fmt.Errorf("chunk %q: offset replay disagrees with splitter at chunk %d", docID, i)
		}
		if k := len(out); k > 0 && out[k-1].Start == s.s && out[k-1].End == s.e {
			continue
		}
		out = append(out, Chunk{
			DocID: docID, Index: len(out), Start: s.s, End: s.e,
			CharStart: r.runes[s.s], CharEnd: r.runes[s.e], Text: parts[i],
		})
	}
	return out, nil
}

// span is a byte range of the text being split.
type span struct{ s, e int }

// replay is langchaingo v0.1.14's RecursiveCharacter.splitText and
// mergeSplits (KeepSeparator false, rune lengths) on spans instead of
// strings.
type replay struct {
	c     Chunker
	text  string
	runes []int // runes[i] = number of runes in text[:i] at rune boundaries
}

func (r *replay) len(s span) int { return r.runes[s.e] - r.runes[s.s] }

func (r *replay) split(sp span, seps []string) []span {
	sub := r.text[sp.s:sp.e]
	sep, next := seps[len(seps)-1], []string{}
	for i, s := range seps {
		if s == "" || strings.Contains(sub, s) {
			sep, next = s, seps[i+1:]
			break
		}
	}
	var pieces []span
	if sep == "" {
		for i, ch := range sub {
			pieces = append(pieces, span{sp.s + i, sp.s + i + utf8.RuneLen(ch)})
		}
	} else {
		at := sp.s
		for {
			i := strings.Index(r.text[at:sp.e], sep)
			if i < 0 {
				pieces = append(pieces, span{at, sp.e})
				break
			}
			pieces = append(pieces, span{at, at + i})
			at += i + len(sep)
		}
	}
	var final, good []span
	for _, p := range pieces {
		if r.len(p) < r.c.Size {
			good = append(good, p)
			continue
		}
		if len(good) > 0 {
			final = append(final, r.merge(good, sep)...)
			good = nil
		}
		if len(next) == 0 {
			final = append(final, p)
		} else {
			final = append(final, r.split(p, next)...)
		}
	}
	if len(good) > 0 {
		final = append(final, r.merge(good, sep)...)
	}
	return final
}

// merge joins consecutive pieces (separated by sep in the text) into
// chunks, carrying up to Overlap runes into the next chunk.
func (r *replay) merge(pieces []span, sep string) []span {
	sepLen := utf8.RuneCountInString(sep)
	var docs, cur []span
	total := 0
	join := func() {
		if len(cur) == 0 {
			return
		}
		if d, ok := r.trim(span{cur[0].s, cur[len(cur)-1].e}); ok {
			docs = append(docs, d)
		}
	}
	for _, p := range pieces {
		l := r.len(p)
		with := total + l
		if len(cur) != 0 {
			with += sepLen
		}
		if with > r.c.Size && len(cur) > 0 {
			join()
			for shouldPop(r.c.Overlap, r.c.Size, total, l, sepLen, len(cur)) {
				total -= r.len(cur[0])
				if len(cur) > 1 {
					total -= sepLen
				}
				cur = cur[1:]
			}
		}
		cur = append(cur, p)
		total += l
		if len(cur) > 1 {
			total += sepLen
		}
	}
	join()
	return docs
}

func shouldPop(overlap, size, total, splitLen, sepLen, curLen int) bool {
	if curLen < 2 {
		sepLen = 0
	}
	return curLen > 0 && (total > overlap || (total+splitLen+sepLen > size && total > 0))
}

// trim is strings.TrimSpace on a span; ok is false for an empty result.
func (r *replay) trim(s span) (span, bool) {
	t := r.text[s.s:s.e]
	left := strings.TrimLeftFunc(t, unicode.IsSpace)
	start := s.s + len(t) - len(left)
	end := start + len(strings.TrimRightFunc(left, unicode.IsSpace))
	return span{start, end}, end > start
}
