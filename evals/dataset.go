package evals

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Doc is one corpus document.
type Doc struct {
	ID    string `json:"_id"`
	Title string `json:"title"`
	Text  string `json:"text"`
}

// Query is one query (topic).
type Query struct {
	ID   string `json:"_id"`
	Text string `json:"text"`
}

// Qrels are relevance judgments: query id → document id → relevance grade.
// Following trec_eval, a grade >= 1 (by default) marks a relevant document,
// 0 a judged non-relevant one, and a negative grade a document that is in
// the pool but unjudged; documents not listed are unjudged. Graded values
// are the gains of nDCG.
type Qrels map[string]map[string]int

// Dataset is a test collection in memory: corpus, queries and judgments of
// one split. Corpus and Queries keep file order.
type Dataset struct {
	Name    string
	Corpus  []Doc
	Queries []Query
	Qrels   Qrels
}

// NumJudgments returns the number of (query, document) judgments.
func (q Qrels) NumJudgments() int {
	n := 0
	for _, docs := range q {
		n += len(docs)
	}
	return n
}

// QueryIDs returns the judged query ids in trec_eval order (byte-wise
// ascending).
func (q Qrels) QueryIDs() []string {
	ids := make([]string, 0, len(q))
	for id := range q {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// maxLine bounds one input line (corpus documents can be long).
const maxLine = 64 << 20

// eachLine calls fn for each line of r with its 1-based number, skipping
// lines that are empty or only white space.
func eachLine(r io.Reader, fn func(n int, line string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if err := fn(n, line); err != nil {
			return err
		}
	}
	return sc.Err()
}

// jsonRecord decodes one JSONL line holding an object whose "_id" is a
// non-empty string and whose named string fields, if present, are strings.
func jsonRecord(file string, n int, line string, required []string, optional []string) (map[string]string, error) {
	if out, ok := flatRecord(line, required, optional); ok {
		return out, checkID(file, n, out)
	}
	return decodeRecord(file, n, line, required, optional)
}

// decodeRecord is jsonRecord through encoding/json.
func decodeRecord(file string, n int, line string, required []string, optional []string) (map[string]string, error) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(strings.NewReader(line))
	if err := dec.Decode(&raw); err != nil {
		return nil, lineErr(file, n, ErrFormat, "invalid JSON object: %v", err)
	}
	if raw == nil {
		return nil, lineErr(file, n, ErrFormat, "want a JSON object")
	}
	if dec.More() {
		return nil, lineErr(file, n, ErrFormat, "trailing data after JSON object")
	}
	out := make(map[string]string, len(required)+len(optional))
	get := func(key string, must bool) error {
		v, ok := raw[key]
		if !ok {
			if must {
				return lineErr(file, n, ErrFormat, "missing field %q", key)
			}
			return nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return lineErr(file, n, ErrFormat, "field %q must be a string", key)
		}
		out[key] = s
		return nil
	}
	for _, k := range required {
		if err := get(k, true); err != nil {
			return nil, err
		}
	}
	for _, k := range optional {
		if err := get(k, false); err != nil {
			return nil, err
		}
	}
	return out, checkID(file, n, out)
}

// checkID checks the "_id" of a decoded record.
func checkID(file string, n int, rec map[string]string) error {
	if rec["_id"] == "" {
		return lineErr(file, n, ErrFormat, "empty _id")
	}
	if strings.ContainsAny(rec["_id"], " \t\r\n") {
		return lineErr(file, n, ErrFormat, "_id %q contains white space", rec["_id"])
	}
	return nil
}

// flatRecord is jsonRecord's fast path, for the common line: one JSON
// object whose values are all strings, with no escape in a key and every
// required field present. It decodes such a line as encoding/json does
// (an escaped value through encoding/json itself) at a fraction of the
// cost, and says !ok for anything else (other values, malformed JSON,
// invalid UTF-8, a missing field), which jsonRecord then decodes or
// rejects the slow way; FuzzFlatRecord holds the two to the same result.
func flatRecord(line string, required, optional []string) (map[string]string, bool) {
	out := make(map[string]string, len(required)+len(optional))
	i := skipSpace(line, 0)
	if i == len(line) || line[i] != '{' {
		return nil, false
	}
	i = skipSpace(line, i+1)
	if i < len(line) && line[i] == '}' {
		i++
	} else {
		for {
			key, j, ok := flatString(line, i, false)
			if !ok {
				return nil, false
			}
			if i = skipSpace(line, j); i == len(line) || line[i] != ':' {
				return nil, false
			}
			val, j, ok := flatString(line, skipSpace(line, i+1), true)
			if !ok {
				return nil, false
			}
			if slices.Contains(required, key) || slices.Contains(optional, key) {
				out[key] = strings.Clone(val) // not the whole line, for who keeps one field
			}
			if i = skipSpace(line, j); i == len(line) {
				return nil, false
			}
			if line[i] == '}' {
				i++
				break
			}
			if line[i] != ',' {
				return nil, false
			}
			i = skipSpace(line, i+1)
		}
	}
	if skipSpace(line, i) != len(line) {
		return nil, false
	}
	for _, k := range required {
		if _, ok := out[k]; !ok {
			return nil, false
		}
	}
	return out, true
}

// skipSpace returns the index of the first byte of s from i on that is
// not JSON white space.
func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// flatString decodes the JSON string at s[i:] and returns it and the
// index after it; !ok when there is none, when it holds invalid UTF-8 or
// a control character, or when it holds an escape and !escapes (with
// escapes, encoding/json decodes it).
func flatString(s string, i int, escapes bool) (string, int, bool) {
	if i == len(s) || s[i] != '"' {
		return "", 0, false
	}
	escaped := false
	for j := i + 1; j < len(s); j++ {
		switch c := s[j]; {
		case c == '"':
			if !escaped {
				v := s[i+1 : j]
				return v, j + 1, utf8.ValidString(v)
			}
			var v string
			if json.Unmarshal([]byte(s[i:j+1]), &v) != nil {
				return "", 0, false
			}
			return v, j + 1, utf8.ValidString(s[i+1 : j])
		case c == '\\':
			if !escapes {
				return "", 0, false
			}
			escaped = true
			j++ // the escaped byte; \u's digits are plain bytes
		case c < 0x20:
			return "", 0, false
		}
	}
	return "", 0, false
}

// ReadCorpus reads a BEIR corpus.jsonl: one JSON object per line with a
// string "_id" (non-empty, no white space, unique), an optional string
// "title" and a string "text". Other fields are ignored. name labels errors.
func ReadCorpus(r io.Reader, name string) ([]Doc, error) {
	var docs []Doc
	seen := map[string]int{}
	err := scanCorpus(r, name, func(n int, d Doc) error {
		if prev, ok := seen[d.ID]; ok {
			return lineErr(name, n, ErrDuplicate, "document %q already on line %d", d.ID, prev)
		}
		seen[d.ID] = n
		docs = append(docs, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read corpus: %w", err)
	}
	return docs, nil
}

// ScanCorpus reads a BEIR corpus.jsonl as ReadCorpus does and calls fn for
// each document in file order, holding one line at a time: memory does
// not grow with the corpus. It does not check that ids are unique (that
// needs a record of every id: OpenBEIR checks it with an IDSet). An error
// from fn stops the scan and is returned as is.
func ScanCorpus(r io.Reader, name string, fn func(Doc) error) error {
	return scanCorpusLines(r, name, func(_ int, d Doc) error { return fn(d) })
}

// scanCorpusLines is ScanCorpus passing each document's line number too:
// a format error comes back wrapped, an error from fn as is.
func scanCorpusLines(r io.Reader, name string, fn func(n int, d Doc) error) error {
	var fnErr error
	err := scanCorpus(r, name, func(n int, d Doc) error {
		if err := fn(n, d); err != nil {
			fnErr = err
			return err
		}
		return nil
	})
	if err != nil && fnErr == nil {
		return fmt.Errorf("scan corpus: %w", err)
	}
	return err
}

// scanCorpus calls fn with each document and its line number.
func scanCorpus(r io.Reader, name string, fn func(n int, d Doc) error) error {
	return eachLine(r, func(n int, line string) error {
		rec, err := jsonRecord(name, n, line, []string{"_id", "text"}, []string{"title"})
		if err != nil {
			return err
		}
		return fn(n, Doc{ID: rec["_id"], Title: rec["title"], Text: rec["text"]})
	})
}

// ReadQueries reads a BEIR queries.jsonl: one JSON object per line with a
// unique string "_id" and a string "text". name labels errors.
func ReadQueries(r io.Reader, name string) ([]Query, error) {
	var qs []Query
	seen := map[string]int{}
	err := eachLine(r, func(n int, line string) error {
		rec, err := jsonRecord(name, n, line, []string{"_id", "text"}, nil)
		if err != nil {
			return err
		}
		if prev, ok := seen[rec["_id"]]; ok {
			return lineErr(name, n, ErrDuplicate, "query %q already on line %d", rec["_id"], prev)
		}
		seen[rec["_id"]] = n
		qs = append(qs, Query{ID: rec["_id"], Text: rec["text"]})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read queries: %w", err)
	}
	return qs, nil
}

// beirHeader is the first line of a BEIR qrels file.
var beirHeader = []string{"query-id", "corpus-id", "score"}

// ReadBEIRQrels reads a BEIR qrels tsv: the header line
// "query-id<TAB>corpus-id<TAB>score", then one judgment per line with an
// integer score. A (query, document) pair may occur once. name labels errors.
func ReadBEIRQrels(r io.Reader, name string) (Qrels, error) {
	q, err := readQrels(r, name, true, nil)
	if err != nil {
		return nil, fmt.Errorf("read qrels: %w", err)
	}
	return q, nil
}

// ReadTRECQrels reads TREC qrels: lines "qid iter docno rel" separated by
// white space, iter ignored, rel an integer; lines starting with '#' are
// comments. A (query, document) pair may occur once. name labels errors.
func ReadTRECQrels(r io.Reader, name string) (Qrels, error) {
	q, err := readQrels(r, name, false, nil)
	if err != nil {
		return nil, fmt.Errorf("read qrels: %w", err)
	}
	return q, nil
}

// ReadQrels reads qrels in either format, deciding from the first non-blank
// line: the BEIR header or three fields mean BEIR tsv (header optional),
// four fields mean TREC.
func ReadQrels(r io.Reader, name string) (Qrels, error) {
	br := bufio.NewReader(r)
	var head []byte
	for {
		line, err := br.ReadBytes('\n')
		head = append(head, line...)
		t := strings.TrimSpace(string(line))
		if t != "" && !strings.HasPrefix(t, "#") {
			switch len(strings.Fields(t)) {
			case 3:
				return ReadBEIRQrels(io.MultiReader(bytes.NewReader(head), br), name)
			case 4:
				return ReadTRECQrels(io.MultiReader(bytes.NewReader(head), br), name)
			default:
				n := bytes.Count(head, []byte("\n"))
				if !bytes.HasSuffix(head, []byte("\n")) {
					n++
				}
				return nil, fmt.Errorf("read qrels: %w", lineErr(name, n, ErrFormat,
					"want 4 fields (TREC: qid iter docno rel) or 3 (BEIR: query-id corpus-id score), got %d", len(strings.Fields(t))))
			}
		}
		if err == io.EOF {
			return nil, fmt.Errorf("read qrels: %s: no judgments: %w", name, ErrFormat)
		}
		if err != nil {
			return nil, fmt.Errorf("read qrels: %w", err)
		}
	}
}

// readQrels parses qrels; check, if not nil, vets each judgment's ids and
// returns the sentinel-wrapped complaint.
func readQrels(r io.Reader, name string, beir bool, check func(qid, did string) error) (Qrels, error) {
	q := Qrels{}
	seen := map[[2]string]int{}
	first := true
	err := eachLine(r, func(n int, line string) error {
		var f []string
		if beir {
			f = strings.Split(line, "\t")
			if len(f) == 1 {
				f = strings.Fields(line)
			}
			for i := range f {
				f[i] = strings.TrimSpace(f[i])
			}
			if first {
				first = false
				if len(f) == 3 && f[0] == beirHeader[0] && f[1] == beirHeader[1] && f[2] == beirHeader[2] {
					return nil
				}
			}
			if len(f) != 3 {
				return lineErr(name, n, ErrFormat, "want 3 tab-separated fields (query-id corpus-id score), got %d", len(f))
			}
		} else {
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				return nil
			}
			f = strings.Fields(line)
			if len(f) != 4 {
				return lineErr(name, n, ErrFormat, "want 4 fields (qid iter docno rel), got %d", len(f))
			}
			f = []string{f[0], f[2], f[3]}
		}
		qid, did := f[0], f[1]
		if qid == "" || did == "" {
			return lineErr(name, n, ErrFormat, "empty query or document id")
		}
		rel, err := strconv.Atoi(f[2])
		if err != nil {
			return lineErr(name, n, ErrFormat, "relevance %q is not an integer", f[2])
		}
		if check != nil {
			if err := check(qid, did); err != nil {
				return &LineError{File: name, Line: n, Err: err}
			}
		}
		key := [2]string{qid, did}
		if prev, ok := seen[key]; ok {
			return lineErr(name, n, ErrDuplicate, "judgment of query %q document %q already on line %d", qid, did, prev)
		}
		seen[key] = n
		if q[qid] == nil {
			q[qid] = map[string]int{}
		}
		q[qid][did] = rel
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(q) == 0 {
		return nil, fmt.Errorf("%s: no judgments: %w", name, ErrFormat)
	}
	return q, nil
}

// ReadQrelsFile opens path and reads it with ReadQrels.
func ReadQrelsFile(path string) (Qrels, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read qrels: %w", err)
	}
	defer f.Close()
	return ReadQrels(f, path)
}

// LoadBEIR loads a BEIR-layout dataset from dir: corpus.jsonl,
// queries.jsonl and qrels/<split>.tsv. Every record is validated; a
// judgment naming a query or document that is not in the dataset is an
// error (ErrUnknownID) naming the qrels file and line. The split must be
// a file name in dir's qrels directory: one with a path separator, or
// whose file links out of that directory, is ErrInvalidArgument. The
// dataset is named after dir's base name.
func LoadBEIR(dir, split string) (*Dataset, error) {
	ds := &Dataset{Name: filepath.Base(filepath.Clean(dir))}
	read := func(path string, fn func(io.Reader, string) error) error {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("load dataset: %w", err)
		}
		defer f.Close()
		if err := fn(f, path); err != nil {
			return fmt.Errorf("load dataset: %w", err)
		}
		return nil
	}
	if err := read(filepath.Join(dir, "corpus.jsonl"), func(r io.Reader, name string) (err error) {
		ds.Corpus, err = ReadCorpus(r, name)
		return err
	}); err != nil {
		return nil, err
	}
	if err := read(filepath.Join(dir, "queries.jsonl"), func(r io.Reader, name string) (err error) {
		ds.Queries, err = ReadQueries(r, name)
		return err
	}); err != nil {
		return nil, err
	}
	docs := make(map[string]bool, len(ds.Corpus))
	for _, d := range ds.Corpus {
		docs[d.ID] = true
	}
	queries := make(map[string]bool, len(ds.Queries))
	for _, q := range ds.Queries {
		queries[q.ID] = true
	}
	rpath, err := qrelsFile(dir, split)
	if err != nil {
		return nil, fmt.Errorf("load dataset: %w", err)
	}
	if err := read(rpath, func(r io.Reader, name string) error {
		var err error
		ds.Qrels, err = readQrelsChecked(r, name, queries, docs)
		return err
	}); err != nil {
		return nil, err
	}
	return ds, nil
}

// qrelsFile is the path of split's judgments in the BEIR directory dir,
// qrels/<split>.tsv. The split must be a file name (no '/' or '\', not
// "." or ".."), and the file, links followed, must lie in the qrels
// directory, links followed; otherwise the error wraps
// ErrInvalidArgument and nothing outside that directory has been opened.
func qrelsFile(dir, split string) (string, error) {
	qdir := filepath.Join(dir, "qrels")
	if split == "" || split == "." || split == ".." || strings.ContainsAny(split, `/\`) {
		return "", fmt.Errorf("qrels split %q is not a file name in %s: %w", split, qdir, ErrInvalidArgument)
	}
	path := filepath.Join(qdir, split+".tsv")
	realDir, err := filepath.EvalSymlinks(qdir)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", err
	}
	if rel, err := filepath.Rel(realDir, real); err != nil || rel == "." || rel == ".." || filepath.IsAbs(rel) ||
		strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("qrels split %q: %s links outside %s: %w", split, path, qdir, ErrInvalidArgument)
	}
	return path, nil
}

// readQrelsChecked reads BEIR qrels and checks every id against the dataset.
func readQrelsChecked(r io.Reader, name string, queries, docs map[string]bool) (Qrels, error) {
	q, err := readQrels(r, name, true, func(qid, did string) error {
		if !queries[qid] {
			return fmt.Errorf("query %q is not in queries.jsonl: %w", qid, ErrUnknownID)
		}
		if !docs[did] {
			return fmt.Errorf("document %q is not in corpus.jsonl: %w", did, ErrUnknownID)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read qrels: %w", err)
	}
	return q, nil
}

// WriteBEIR writes ds to dir in BEIR layout (corpus.jsonl, queries.jsonl,
// qrels/<split>.tsv), creating directories as needed. Judgments are written
// sorted by query then document id, so the output is deterministic.
func WriteBEIR(dir, split string, ds *Dataset) error {
	if err := os.MkdirAll(filepath.Join(dir, "qrels"), 0o755); err != nil {
		return fmt.Errorf("write dataset: %w", err)
	}
	write := func(file string, fn func(w *bufio.Writer) error) error {
		f, err := os.Create(filepath.Join(dir, file))
		if err != nil {
			return fmt.Errorf("write dataset: %w", err)
		}
		w := bufio.NewWriter(f)
		err = fn(w)
		if err == nil {
			err = w.Flush()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write dataset: %w", err)
		}
		return nil
	}
	if err := write("corpus.jsonl", func(w *bufio.Writer) error {
		enc := json.NewEncoder(w)
		for _, d := range ds.Corpus {
			if err := enc.Encode(d); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := write("queries.jsonl", func(w *bufio.Writer) error {
		enc := json.NewEncoder(w)
		for _, q := range ds.Queries {
			if err := enc.Encode(q); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	return write(filepath.Join("qrels", split+".tsv"), func(w *bufio.Writer) error {
		return WriteBEIRQrels(w, ds.Qrels)
	})
}

// WriteBEIRQrels writes q as a BEIR qrels tsv with header, sorted by query
// then document id.
func WriteBEIRQrels(w io.Writer, q Qrels) error {
	if _, err := fmt.Fprintln(w, strings.Join(beirHeader, "\t")); err != nil {
		return err
	}
	for _, qid := range q.QueryIDs() {
		dids := make([]string, 0, len(q[qid]))
		for d := range q[qid] {
			dids = append(dids, d)
		}
		sort.Strings(dids)
		for _, d := range dids {
			if _, err := fmt.Fprintf(w, "%s\t%s\t%d\n", qid, d, q[qid][d]); err != nil {
				return err
			}
		}
	}
	return nil
}
