package evals

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// SynthOptions describe a synthetic test collection (WriteSynth).
type SynthOptions struct {
	// Docs is the number of documents (≥ Queries).
	Docs int
	// Queries is the number of queries (≥ 1).
	Queries int
	// Seed selects the collection: the same options write the same bytes.
	Seed uint64
	// Relevant is the number of relevant documents per query. Default 10,
	// at most Docs/Queries.
	Relevant int
	// Words is the mean number of words per document. Default 60.
	Words int
}

// SynthStats count what WriteSynth wrote.
type SynthStats struct {
	Docs, Queries, Judgments int
}

// Synthetic collections: query q owns synthKeyWords pseudo-words that no
// other query uses. Document i is about query i mod Queries; the first
// Relevant documents of each query (i < Queries×Relevant) are relevant: they
// repeat their query's key words among background words, the first of
// them (grade 2) most often. Every other document is background words and
// one key word of some query (a distractor that shares one term with a
// query, never all of them). So lexical and offline embedders rank a
// query's relevant documents first, and a run's measures are far from 0
// and from 1 only by retrieval error.
const (
	synthKeyWords   = 3
	synthBackground = 4096
)

// ErrSynthOptions reports unusable SynthOptions.
var ErrSynthOptions = errors.New("synthetic collection options")

func (o *SynthOptions) normalize() error {
	if o.Queries < 1 {
		return fmt.Errorf("%d queries, want ≥ 1: %w", o.Queries, ErrSynthOptions)
	}
	if o.Docs < o.Queries {
		return fmt.Errorf("%d docs for %d queries, want docs ≥ queries: %w", o.Docs, o.Queries, ErrSynthOptions)
	}
	if o.Relevant <= 0 {
		o.Relevant = 10
	}
	o.Relevant = min(o.Relevant, o.Docs/o.Queries)
	if o.Words <= 0 {
		o.Words = 60
	}
	return nil
}

// syllables make pseudo-words: word n is n written in base len(syllables),
// at least three syllables, so words are distinct, pronounceable and not
// English stop words.
var syllables = strings.Fields("ba be bi bo bu da de di do du ka ke ki ko ku la le li lo lu ma me mi mo mu na ne ni no nu ra re ri ro ru sa se si so su ta te ti to tu va ve vi vo vu za ze zi zo zu")

func synthWord(n int) string {
	var b strings.Builder
	for i := 0; i < 3 || n > 0; i++ {
		b.WriteString(syllables[n%len(syllables)])
		n /= len(syllables)
	}
	return b.String()
}

// keyWord is query q's j-th key word; background words come after every
// key word, so the two never collide.
func (o SynthOptions) keyWord(q, j int) string { return synthWord(q*synthKeyWords + j) }

func (o SynthOptions) backgroundWord(r *rand.Rand) string {
	// Roughly Zipfian: squaring a uniform favours low ranks.
	u := r.Float64()
	return synthWord(o.Queries*synthKeyWords + int(u*u*synthBackground))
}

func synthDocID(i int) string   { return fmt.Sprintf("d%08d", i) }
func synthQueryID(q int) string { return fmt.Sprintf("q%06d", q) }

// SynthDoc returns document i of the collection o describes, alone: the
// generator keeps no state between documents, which is what lets it
// stream any number of them.
func SynthDoc(o SynthOptions, i int) (Doc, error) {
	if err := o.normalize(); err != nil {
		return Doc{}, err
	}
	return o.doc(i), nil
}

func (o SynthOptions) doc(i int) Doc {
	r := rand.New(rand.NewPCG(o.Seed, uint64(i)))
	q := i % o.Queries
	n := o.Words/2 + r.IntN(o.Words+1)
	words := make([]string, 0, n+8)
	for range n {
		words = append(words, o.backgroundWord(r))
	}
	if rank := i / o.Queries; rank < o.Relevant {
		reps := 2
		if rank == 0 {
			reps = 4
		}
		for j := range synthKeyWords {
			for range reps {
				words = append(words, o.keyWord(q, j))
			}
		}
	} else {
		words = append(words, o.keyWord(r.IntN(o.Queries), r.IntN(synthKeyWords)))
	}
	r.Shuffle(len(words), func(a, b int) { words[a], words[b] = words[b], words[a] })
	return Doc{ID: synthDocID(i), Title: words[0] + " " + words[1], Text: strings.Join(words[2:], " ")}
}

func (o SynthOptions) query(q int) Query {
	r := rand.New(rand.NewPCG(o.Seed^0x9e3779b97f4a7c15, uint64(q)))
	words := []string{o.keyWord(q, 0), o.keyWord(q, 1), o.keyWord(q, 2), o.backgroundWord(r)}
	r.Shuffle(len(words), func(a, b int) { words[a], words[b] = words[b], words[a] })
	return Query{ID: synthQueryID(q), Text: strings.Join(words, " ")}
}

// WriteSynth writes the synthetic collection o describes to dir in BEIR
// layout (corpus.jsonl, queries.jsonl, qrels/test.tsv), creating dir. It
// streams: memory does not grow with Docs. The same options always write
// the same bytes; see the constants above for how relevance is built.
func WriteSynth(dir string, o SynthOptions) (SynthStats, error) {
	if err := o.normalize(); err != nil {
		return SynthStats{}, err
	}
	st := SynthStats{Docs: o.Docs, Queries: o.Queries, Judgments: o.Queries * o.Relevant}
	if err := os.MkdirAll(filepath.Join(dir, "qrels"), 0o755); err != nil {
		return SynthStats{}, fmt.Errorf("synth: %w", err)
	}
	write := func(file string, fn func(w io.Writer) error) error {
		f, err := os.Create(filepath.Join(dir, file))
		if err != nil {
			return fmt.Errorf("synth: %w", err)
		}
		w := bufio.NewWriterSize(f, 1<<20)
		err = fn(w)
		if err == nil {
			err = w.Flush()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("synth: %s: %w", file, err)
		}
		return nil
	}
	if err := write("corpus.jsonl", func(w io.Writer) error {
		enc := json.NewEncoder(w)
		for i := range o.Docs {
			if err := enc.Encode(o.doc(i)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return SynthStats{}, err
	}
	if err := write("queries.jsonl", func(w io.Writer) error {
		enc := json.NewEncoder(w)
		for q := range o.Queries {
			if err := enc.Encode(o.query(q)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return SynthStats{}, err
	}
	err := write(filepath.Join("qrels", "test.tsv"), func(w io.Writer) error {
		if _, err := fmt.Fprintln(w, strings.Join(beirHeader, "\t")); err != nil {
			return err
		}
		// Document ids are zero-padded and rank×Queries+q grows with
		// rank, so this order is sorted, as WriteBEIRQrels writes.
		for q := range o.Queries {
			for rank := range o.Relevant {
				grade := 1
				if rank == 0 {
					grade = 2
				}
				if _, err := fmt.Fprintf(w, "%s\t%s\t%d\n", synthQueryID(q), synthDocID(rank*o.Queries+q), grade); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return SynthStats{}, err
	}
	return st, nil
}
