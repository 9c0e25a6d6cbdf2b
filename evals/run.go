package evals

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
)

// ScoredDoc is one retrieved document with its retrieval score (higher is
// better).
type ScoredDoc struct {
	DocID string  `json:"doc_id"`
	Score float64 `json:"score"`
}

// Run is the output of one retrieval system: for each query, the retrieved
// documents with scores, in any order. Evaluation ranks them the way
// trec_eval does (see Rank); the rank column of a TREC run file is ignored.
type Run struct {
	// Name is the run tag (the last column of a TREC run file).
	Name string
	// Results maps query id to retrieved documents.
	Results map[string][]ScoredDoc
}

// RunFromRankings builds a run from ranked id lists (best first), giving
// the i-th of n documents the score n-i so that trec_eval's ordering equals
// the list order. Use it for systems that return ranks and distances rather
// than scores. A document listed twice for one query is an error.
func RunFromRankings(name string, rankings map[string][]string) (*Run, error) {
	run := &Run{Name: name, Results: make(map[string][]ScoredDoc, len(rankings))}
	for qid, ids := range rankings {
		seen := make(map[string]bool, len(ids))
		docs := make([]ScoredDoc, len(ids))
		for i, id := range ids {
			if seen[id] {
				return nil, fmt.Errorf("run %s: query %q: document %q retrieved twice: %w", name, qid, id, ErrDuplicate)
			}
			seen[id] = true
			docs[i] = ScoredDoc{DocID: id, Score: float64(len(ids) - i)}
		}
		run.Results[qid] = docs
	}
	return run, nil
}

// Rank returns a copy of docs in trec_eval's evaluation order: by score
// descending, ties broken by document id descending in byte order (the
// strcmp(docno2, docno1) of trec_eval's comp_sim_docno).
func Rank(docs []ScoredDoc) []ScoredDoc {
	out := append([]ScoredDoc(nil), docs...)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Score != out[j].Score {
			return out[i].Score > out[j].Score
		}
		return out[i].DocID > out[j].DocID
	})
	return out
}

// ReadRun reads a TREC run file: lines "qid Q0 docno rank score tag"
// separated by white space (fields after the tag are ignored, as trec_eval
// does). The rank column is ignored; the score must be a finite number. A
// document may be retrieved once per query. Blank lines and lines starting
// with '#' are skipped. The run takes the tag of its last line as its name.
// name labels errors.
func ReadRun(r io.Reader, name string) (*Run, error) {
	run := &Run{Results: map[string][]ScoredDoc{}}
	seen := map[[2]string]int{}
	err := eachLine(r, func(n int, line string) error {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			return nil
		}
		f := strings.Fields(line)
		if len(f) < 6 {
			return lineErr(name, n, ErrFormat, "want 6 fields (qid Q0 docno rank score tag), got %d", len(f))
		}
		score, err := strconv.ParseFloat(f[4], 64)
		if err != nil || math.IsNaN(score) || math.IsInf(score, 0) {
			return lineErr(name, n, ErrFormat, "score %q is not a finite number", f[4])
		}
		key := [2]string{f[0], f[2]}
		if prev, ok := seen[key]; ok {
			return lineErr(name, n, ErrDuplicate, "query %q retrieves document %q again (first on line %d)", f[0], f[2], prev)
		}
		seen[key] = n
		run.Results[f[0]] = append(run.Results[f[0]], ScoredDoc{DocID: f[2], Score: score})
		run.Name = f[5]
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read run: %w", err)
	}
	if len(run.Results) == 0 {
		return nil, fmt.Errorf("read run: %s: no results: %w", name, ErrFormat)
	}
	return run, nil
}

// ReadRunFile opens path and reads it with ReadRun.
func ReadRunFile(path string) (*Run, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read run: %w", err)
	}
	defer f.Close()
	return ReadRun(f, path)
}

// WriteRun writes run as a TREC run file: queries in byte order, documents
// in evaluation order (Rank) with ranks from 1, scores in full precision
// (strconv 'g', -1) so reading the file back gives the same run.
func WriteRun(w io.Writer, run *Run) error {
	bw := bufio.NewWriter(w)
	tag := run.Name
	if tag == "" {
		tag = "run"
	}
	qids := make([]string, 0, len(run.Results))
	for q := range run.Results {
		qids = append(qids, q)
	}
	sort.Strings(qids)
	for _, q := range qids {
		for i, d := range Rank(run.Results[q]) {
			fmt.Fprintf(bw, "%s Q0 %s %d %s %s\n", q, d.DocID, i+1, strconv.FormatFloat(d.Score, 'g', -1, 64), tag)
		}
	}
	return bw.Flush()
}
