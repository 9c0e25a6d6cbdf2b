package evals

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Collection is a BEIR-layout dataset whose corpus stays on disk: queries
// and judgments are in memory (they are small), documents are read on
// demand by EachDoc, one at a time, so a million-document corpus costs no
// memory. A Collection is read-only and safe for concurrent use; each
// EachDoc call opens the corpus file again.
type Collection struct {
	Name    string
	Queries []Query
	Qrels   Qrels
	// Docs is the number of documents OpenBEIR counted.
	Docs int
	// Corpus is the path of corpus.jsonl.
	Corpus string
}

// OpenBEIR opens a BEIR-layout dataset in dir as LoadBEIR does, without
// keeping the corpus: it reads queries.jsonl and qrels/<split>.tsv and
// scans corpus.jsonl once to count and validate its documents and to check
// that every judged document is in it (ErrUnknownID names the qrels file
// and the first missing document). Like LoadBEIR it refuses a document id
// that occurs twice (ErrDuplicate, in a *LineError naming corpus.jsonl,
// the line and the id), holding a hash of every id for the scan (IDSet).
func OpenBEIR(dir, split string) (*Collection, error) { return OpenBEIRFunc(dir, split, nil) }

// OpenBEIRFunc is OpenBEIR, calling visit (when not nil) for every
// document of the scan it makes anyway, in file order, with its 1-based
// line number in corpus.jsonl (DocsAt reads it back by that number): a
// caller that needs one pass over the corpus (a fingerprint, say) gets it
// without a second read. The documents visited are only valid if it
// returns no error.
func OpenBEIRFunc(dir, split string, visit func(line int, d Doc)) (*Collection, error) {
	c := &Collection{Name: filepath.Base(filepath.Clean(dir)), Corpus: filepath.Join(dir, "corpus.jsonl")}
	qpath := filepath.Join(dir, "queries.jsonl")
	f, err := os.Open(qpath)
	if err != nil {
		return nil, fmt.Errorf("open dataset: %w", err)
	}
	c.Queries, err = ReadQueries(f, qpath)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("open dataset: %w", err)
	}
	queries := make(map[string]bool, len(c.Queries))
	for _, q := range c.Queries {
		queries[q.ID] = true
	}
	rpath, err := qrelsFile(dir, split)
	if err != nil {
		return nil, fmt.Errorf("open dataset: %w", err)
	}
	if f, err = os.Open(rpath); err != nil {
		return nil, fmt.Errorf("open dataset: %w", err)
	}
	c.Qrels, err = readQrels(f, rpath, true, func(qid, _ string) error {
		if !queries[qid] {
			return fmt.Errorf("query %q is not in queries.jsonl: %w", qid, ErrUnknownID)
		}
		return nil
	})
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("open dataset: read qrels: %w", err)
	}
	judged := map[string]bool{}
	for _, docs := range c.Qrels {
		for d := range docs {
			judged[d] = false
		}
	}
	ids := NewIDSet()
	if err := c.eachDoc(func(n int, d Doc) error {
		if first, seen := ids.Add(d.ID, n); seen {
			return lineErr(c.Corpus, n, ErrDuplicate, "document %q already on line %d", d.ID, first)
		}
		c.Docs++
		if _, ok := judged[d.ID]; ok {
			judged[d.ID] = true
		}
		if visit != nil {
			visit(n, d)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("open dataset: %w", err)
	}
	var missing []string
	for d, ok := range judged {
		if !ok {
			missing = append(missing, d)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("open dataset: %s: document %q (and %d more) is not in corpus.jsonl: %w",
			rpath, missing[0], len(missing)-1, ErrUnknownID)
	}
	return c, nil
}

// EachDoc calls fn for every document in file order (see ScanCorpus); an
// error from fn stops the scan and is returned as is.
func (c *Collection) EachDoc(fn func(Doc) error) error {
	return c.eachDoc(func(_ int, d Doc) error { return fn(d) })
}

// eachDoc is EachDoc, passing each document's line number too.
func (c *Collection) eachDoc(fn func(n int, d Doc) error) error {
	f, err := os.Open(c.Corpus)
	if err != nil {
		return fmt.Errorf("read corpus: %w", err)
	}
	defer f.Close()
	return scanCorpusLines(f, c.Corpus, fn)
}

// DocsAt calls fn for the documents on lines (1-based line numbers of
// corpus.jsonl as OpenBEIRFunc reports them, ascending), in that order,
// and decodes no other line: a caller that noted where documents are
// reads a few of them back for the cost of reading the file up to the
// last one, not of parsing every document. A line that holds no
// document is an ErrFormat error, and so is a line past the end of the
// file (the file changed since it was scanned); an error from fn stops
// the read and is returned as is.
func (c *Collection) DocsAt(lines []int, fn func(line int, d Doc) error) error {
	if len(lines) == 0 {
		return nil
	}
	f, err := os.Open(c.Corpus)
	if err != nil {
		return fmt.Errorf("read corpus: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	n, i := 0, 0
	for i < len(lines) && sc.Scan() {
		n++
		if lines[i] < n {
			return fmt.Errorf("read corpus: lines %d and %d are not ascending", lines[max(i-1, 0)], lines[i])
		}
		if lines[i] > n {
			continue
		}
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			return fmt.Errorf("read corpus: %w", lineErr(c.Corpus, n, ErrFormat, "no document on the line"))
		}
		rec, err := jsonRecord(c.Corpus, n, line, []string{"_id", "text"}, []string{"title"})
		if err != nil {
			return fmt.Errorf("read corpus: %w", err)
		}
		if err := fn(n, Doc{ID: rec["_id"], Title: rec["title"], Text: rec["text"]}); err != nil {
			return err
		}
		i++
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read corpus: %w", err)
	}
	if i < len(lines) {
		return fmt.Errorf("read corpus: %w", lineErr(c.Corpus, lines[i], ErrFormat, "past the end of the file (%d lines)", n))
	}
	return nil
}
