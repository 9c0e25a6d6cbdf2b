package evals

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// SyntheticConfig shapes a generated dataset. Zero fields take the defaults
// named on each.
type SyntheticConfig struct {
	// Seed makes the dataset reproducible: the same config gives the same
	// dataset on every machine. Default 0 is a valid seed.
	Seed uint64
	// Docs is the corpus size. Default 1000.
	Docs int
	// Queries is the number of queries. Default 100.
	Queries int
	// RelevantPerQuery is the number of judged relevant documents per
	// query, graded 3 (best) down to 1. Default 5; at most Docs.
	RelevantPerQuery int
	// Vocab is the number of distinct background words. Default 5000.
	Vocab int
	// DocWords is the number of background words per document. Default 50.
	DocWords int
	// QueryWords is the number of topic words per query. Default 4.
	QueryWords int
}

func (c *SyntheticConfig) defaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Docs, 1000)
	def(&c.Queries, 100)
	def(&c.RelevantPerQuery, 5)
	def(&c.Vocab, 5000)
	def(&c.DocWords, 50)
	def(&c.QueryWords, 4)
}

// Synthetic generates a BEIR-shaped dataset for scale tests: documents of
// Zipf-distributed background words ("w123"), queries of topic words
// ("t7_2") unique to the query, and for each query RelevantPerQuery
// distinct documents graded 3..1 whose text repeats the query's topic
// words as often as their grade. So a lexical retriever finds the relevant
// documents and ranks higher grades first: metrics on it are meaningful,
// not noise. Deterministic in cfg.
func Synthetic(cfg SyntheticConfig) (*Dataset, error) {
	cfg.defaults()
	if cfg.Docs < 1 || cfg.Queries < 1 || cfg.RelevantPerQuery < 1 || cfg.Vocab < 2 || cfg.DocWords < 1 || cfg.QueryWords < 1 {
		return nil, fmt.Errorf("synthetic dataset: sizes must be positive: %w", ErrInvalidArgument)
	}
	if cfg.RelevantPerQuery > cfg.Docs {
		return nil, fmt.Errorf("synthetic dataset: %d relevant per query > %d docs: %w", cfg.RelevantPerQuery, cfg.Docs, ErrInvalidArgument)
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6f666673686f6f74)) // "offshoot"
	zipf := rand.NewZipf(rng, 1.1, 1, uint64(cfg.Vocab-1))
	words := make([][]string, cfg.Docs)
	for i := range words {
		w := make([]string, cfg.DocWords)
		for j := range w {
			w[j] = fmt.Sprintf("w%d", zipf.Uint64())
		}
		words[i] = w
	}
	ds := &Dataset{Name: fmt.Sprintf("synthetic-%d", cfg.Seed), Qrels: Qrels{}}
	for qi := 0; qi < cfg.Queries; qi++ {
		qid := fmt.Sprintf("q%d", qi+1)
		topic := make([]string, cfg.QueryWords)
		for j := range topic {
			topic[j] = fmt.Sprintf("t%d_%d", qi+1, j+1)
		}
		ds.Queries = append(ds.Queries, Query{ID: qid, Text: strings.Join(topic, " ")})
		ds.Qrels[qid] = map[string]int{}
		for j, di := range rng.Perm(cfg.Docs)[:cfg.RelevantPerQuery] {
			grade := 3 - j*3/cfg.RelevantPerQuery
			ds.Qrels[qid][fmt.Sprintf("d%d", di+1)] = grade
			for range grade {
				words[di] = append(words[di], topic...)
			}
		}
	}
	for i, w := range words {
		// Shuffle so topic words are not all at the end.
		rng.Shuffle(len(w), func(a, b int) { w[a], w[b] = w[b], w[a] })
		title := w
		if len(title) > 5 {
			title = title[:5]
		}
		ds.Corpus = append(ds.Corpus, Doc{ID: fmt.Sprintf("d%d", i+1), Title: strings.Join(title, " "), Text: strings.Join(w, " ")})
	}
	return ds, nil
}
