package evals

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

func hashDir(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	for _, f := range []string{"corpus.jsonl", "queries.jsonl", "qrels/test.tsv"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	return string(h.Sum(nil))
}

func TestWriteSynth(t *testing.T) {
	o := SynthOptions{Docs: 500, Queries: 20, Seed: 7}
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	st, err := WriteSynth(a, o)
	if err != nil {
		t.Fatal(err)
	}
	if st != (SynthStats{Docs: 500, Queries: 20, Judgments: 200}) {
		t.Fatalf("stats %+v", st)
	}
	if _, err := WriteSynth(b, o); err != nil {
		t.Fatal(err)
	}
	o2 := o
	o2.Seed = 8
	if _, err := WriteSynth(c, o2); err != nil {
		t.Fatal(err)
	}
	if hashDir(t, a) != hashDir(t, b) {
		t.Error("same seed wrote different collections")
	}
	if hashDir(t, a) == hashDir(t, c) {
		t.Error("another seed wrote the same collection")
	}

	// The loader that validates everything reads it, and the streaming
	// one agrees.
	ds, err := LoadBEIR(a, "test")
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Corpus) != 500 || len(ds.Queries) != 20 || ds.Qrels.NumJudgments() != 200 {
		t.Fatalf("loaded %d docs, %d queries, %d judgments", len(ds.Corpus), len(ds.Queries), ds.Qrels.NumJudgments())
	}
	col, err := OpenBEIR(a, "test")
	if err != nil {
		t.Fatal(err)
	}
	if col.Docs != 500 || len(col.Queries) != 20 || col.Qrels.NumJudgments() != 200 {
		t.Fatalf("opened %d docs, %d queries, %d judgments", col.Docs, len(col.Queries), col.Qrels.NumJudgments())
	}
	i := 0
	if err := col.EachDoc(func(d Doc) error {
		if d != ds.Corpus[i] {
			t.Fatalf("doc %d: stream %+v, load %+v", i, d, ds.Corpus[i])
		}
		if sd, _ := SynthDoc(o, i); sd != d {
			t.Fatalf("SynthDoc(%d) = %+v, file has %+v", i, sd, d)
		}
		i++
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// Qrels are consistent with the text: a relevant document holds every
	// key word of its query, a non-relevant one never does.
	docs := map[string]Doc{}
	for _, d := range ds.Corpus {
		docs[d.ID] = d
	}
	for _, q := range ds.Queries {
		keys := strings.Fields(q.Text)
		holdsAll := func(d Doc) bool {
			text := " " + d.Title + " " + d.Text + " "
			n := 0
			for _, k := range keys {
				if strings.Contains(text, " "+k+" ") {
					n++
				}
			}
			return n >= 3
		}
		grade2 := 0
		for _, d := range ds.Corpus {
			rel, judged := ds.Qrels[q.ID][d.ID]
			if judged != holdsAll(d) {
				t.Fatalf("query %s (%q), doc %s: judged %v, holds every key word %v", q.ID, q.Text, d.ID, judged, holdsAll(d))
			}
			if rel == 2 {
				grade2++
			}
		}
		if len(ds.Qrels[q.ID]) != 10 || grade2 != 1 {
			t.Fatalf("query %s: %d judgments, %d of grade 2", q.ID, len(ds.Qrels[q.ID]), grade2)
		}
	}
}

func TestWriteSynthOptions(t *testing.T) {
	for _, o := range []SynthOptions{{Docs: 10, Queries: 0}, {Docs: 5, Queries: 6}} {
		if _, err := WriteSynth(t.TempDir(), o); !errors.Is(err, ErrSynthOptions) {
			t.Errorf("%+v: err %v, want ErrSynthOptions", o, err)
		}
	}
	// Fewer documents than queries × Relevant: every query still gets one.
	dir := t.TempDir()
	st, err := WriteSynth(dir, SynthOptions{Docs: 30, Queries: 20, Relevant: 10})
	if err != nil || st.Judgments != 20 {
		t.Fatalf("stats %+v, err %v", st, err)
	}
	if _, err := LoadBEIR(dir, "test"); err != nil {
		t.Fatal(err)
	}
}

func TestOpenBEIRUnknownDoc(t *testing.T) {
	dir := t.TempDir()
	if _, err := WriteSynth(dir, SynthOptions{Docs: 40, Queries: 4, Relevant: 2}); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "qrels", "test.tsv"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("q000001\tnope\t1\n")
	f.Close()
	if _, err := OpenBEIR(dir, "test"); !errors.Is(err, ErrUnknownID) || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("err %v, want ErrUnknownID naming nope", err)
	}
}

// TestDocsAt reads documents back by the line numbers OpenBEIRFunc
// reported, across blank lines and CRLF endings, and refuses lines that
// hold no document or are past the end.
func TestDocsAt(t *testing.T) {
	dir := t.TempDir()
	if _, err := WriteSynth(dir, SynthOptions{Docs: 40, Queries: 4, Relevant: 2}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "corpus.jsonl")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Blank lines and CRLF endings shift line numbers from document order.
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	var b strings.Builder
	for i, l := range lines {
		if i%7 == 3 {
			b.WriteString("\n  \r\n")
		}
		b.WriteString(l + "\r\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	at := map[int]Doc{}
	col, err := OpenBEIRFunc(dir, "test", func(n int, d Doc) { at[n] = d })
	if err != nil {
		t.Fatal(err)
	}
	if len(at) != 40 {
		t.Fatalf("visited %d documents, want 40", len(at))
	}
	var want []int
	for n := range at {
		if n%3 != 0 {
			want = append(want, n)
		}
	}
	sort.Ints(want)
	var got []int
	if err := col.DocsAt(want, func(n int, d Doc) error {
		if d != at[n] {
			t.Errorf("line %d: %+v, the scan saw %+v", n, d, at[n])
		}
		got = append(got, n)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("read lines %v, want %v", got, want)
	}
	for _, bad := range [][]int{{5}, {len(lines) + 20}, {want[1], want[0]}} {
		if err := col.DocsAt(bad, func(int, Doc) error { return nil }); err == nil {
			t.Errorf("DocsAt(%v): no error", bad)
		}
	}
	for _, bad := range [][]int{{5}, {len(lines) + 20}} {
		if err := col.DocsAt(bad, func(int, Doc) error { return nil }); !errors.Is(err, ErrFormat) {
			t.Errorf("DocsAt(%v): %v, want ErrFormat", bad, err)
		}
	}
}

// TestOpenBEIRDuplicateDoc: a document id on two lines of corpus.jsonl
// is refused by the scan, naming the file, both lines and the id, as
// LoadBEIR refuses it (it used to pass, and fail a run only when the
// second copy was loaded after embedding).
func TestOpenBEIRDuplicateDoc(t *testing.T) {
	dir := t.TempDir()
	if _, err := WriteSynth(dir, SynthOptions{Docs: 40, Queries: 4, Relevant: 2}); err != nil {
		t.Fatal(err)
	}
	corpus := filepath.Join(dir, "corpus.jsonl")
	b, err := os.ReadFile(corpus)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	var first Doc
	if err := json.Unmarshal([]byte(lines[2]), &struct {
		ID *string `json:"_id"`
	}{&first.ID}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(corpus, []byte(string(b)+lines[2]), 0o644); err != nil { // line 3 again, as line 41
		t.Fatal(err)
	}
	_, err = OpenBEIR(dir, "test")
	var le *LineError
	if !errors.Is(err, ErrDuplicate) || !errors.As(err, &le) || le.File != corpus || le.Line != 41 ||
		!strings.Contains(err.Error(), fmt.Sprintf("document %q already on line 3", first.ID)) {
		t.Fatalf("err %v, want ErrDuplicate at %s:41 naming %s", err, corpus, first.ID)
	}
}
