package evals

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/offshootdb/offshoot/evals/evalstest"
)

func loadCranfield(t testing.TB) *Dataset {
	t.Helper()
	ds, err := LoadBEIR(evalstest.Cranfield(t), "test")
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func TestLoadCranfield(t *testing.T) {
	ds := loadCranfield(t)
	if len(ds.Corpus) != 1400 || len(ds.Queries) != 225 || len(ds.Qrels) != 225 || ds.Qrels.NumJudgments() != 1837 {
		t.Fatalf("cranfield: %d docs, %d queries, %d judged queries, %d judgments; README says 1400, 225, 225, 1837",
			len(ds.Corpus), len(ds.Queries), len(ds.Qrels), ds.Qrels.NumJudgments())
	}
	if ds.Name != "cranfield" || ds.Corpus[0].ID != "1" || ds.Queries[224].ID != "225" {
		t.Fatalf("unexpected name/order: %q %q %q", ds.Name, ds.Corpus[0].ID, ds.Queries[224].ID)
	}
	if g := ds.Qrels["1"]["184"]; g != 3 {
		t.Fatalf("qrels 1/184 = %d, want 3 (first line of test.tsv)", g)
	}
	for q, docs := range ds.Qrels {
		for d, g := range docs {
			if g < 1 || g > 4 {
				t.Fatalf("query %s doc %s grade %d outside 1..4", q, d, g)
			}
		}
	}
}

// writeDataset writes a tiny BEIR dataset with the given file contents.
func writeDataset(t *testing.T, corpus, queries, qrels string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "qrels"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"corpus.jsonl": corpus, "queries.jsonl": queries, "qrels/test.tsv": qrels} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestBEIRSplitConfined: the split names a file of the dataset's qrels
// directory; a split with a path in it, or a qrels file linking out of
// the directory, is refused before anything outside is read (so nothing
// of it can show in an error).
func TestBEIRSplitConfined(t *testing.T) {
	const corpus = `{"_id":"d1","text":"x"}` + "\n"
	const queries = `{"_id":"q1","text":"a"}` + "\n"
	const qrels = "query-id\tcorpus-id\tscore\nq1\td1\t1\n"
	dir := writeDataset(t, corpus, queries, qrels)
	outside := filepath.Join(filepath.Dir(dir), "outside.tsv") // dir/qrels/../../outside.tsv
	if err := os.WriteFile(outside, []byte("secret contents\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "qrels", "link.tsv")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("test.tsv", filepath.Join(dir, "qrels", "alias.tsv")); err != nil {
		t.Fatal(err)
	}
	loaders := map[string]func(dir, split string) error{
		"LoadBEIR": func(dir, split string) error { _, err := LoadBEIR(dir, split); return err },
		"OpenBEIR": func(dir, split string) error { _, err := OpenBEIR(dir, split); return err },
	}
	for name, load := range loaders {
		for _, split := range []string{"../../outside", "../qrels/../../outside", "link", ".", "..", ""} {
			err := load(dir, split)
			if !errors.Is(err, ErrInvalidArgument) || strings.Contains(err.Error(), "secret") {
				t.Errorf("%s split %q: err = %v, want ErrInvalidArgument", name, split, err)
			}
		}
		if err := load(dir, "alias"); err != nil {
			t.Errorf("%s: a link within the qrels directory: %v", name, err)
		}
	}
}

func TestLoadBEIRErrorsNameFileAndLine(t *testing.T) {
	const corpus = `{"_id":"d1","title":"t","text":"x"}
{"_id":"d2","text":"y"}
`
	const queries = `{"_id":"q1","text":"a"}
`
	const qrels = "query-id\tcorpus-id\tscore\nq1\td1\t1\n"
	for _, c := range []struct {
		name                   string
		corpus, queries, qrels string
		file                   string
		line                   int
		sentinel               error
		msg                    string
	}{
		{"bad json", corpus + "{\"_id\": \"d3\", \n", queries, qrels, "corpus.jsonl", 3, ErrFormat, "invalid JSON"},
		{"missing id", corpus + `{"text":"z"}` + "\n", queries, qrels, "corpus.jsonl", 3, ErrFormat, `missing field "_id"`},
		{"numeric id", corpus + `{"_id":3,"text":"z"}` + "\n", queries, qrels, "corpus.jsonl", 3, ErrFormat, `"_id" must be a string`},
		{"missing text", corpus, `{"_id":"q2"}` + "\n", qrels, "queries.jsonl", 1, ErrFormat, `missing field "text"`},
		{"dup doc", corpus + "\n" + `{"_id":"d1","text":"z"}` + "\n", queries, qrels, "corpus.jsonl", 4, ErrDuplicate, "already on line 1"},
		{"dup query", corpus, queries + queries, qrels, "queries.jsonl", 2, ErrDuplicate, "already on line 1"},
		{"qrels fields", corpus, queries, qrels + "q1\td2\n", "test.tsv", 3, ErrFormat, "want 3 tab-separated fields"},
		{"qrels score", corpus, queries, qrels + "q1\td2\thigh\n", "test.tsv", 3, ErrFormat, `relevance "high" is not an integer`},
		{"qrels dup", corpus, queries, qrels + "q1\td1\t2\n", "test.tsv", 3, ErrDuplicate, "already on line 2"},
		{"qrels unknown doc", corpus, queries, qrels + "q1\td9\t1\n", "test.tsv", 3, ErrUnknownID, `document "d9" is not in corpus.jsonl`},
		{"qrels unknown query", corpus, queries, qrels + "q7\td1\t1\n", "test.tsv", 3, ErrUnknownID, `query "q7" is not in queries.jsonl`},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeDataset(t, c.corpus, c.queries, c.qrels)
			_, err := LoadBEIR(dir, "test")
			if !errors.Is(err, c.sentinel) {
				t.Fatalf("err = %v, want %v", err, c.sentinel)
			}
			var le *LineError
			if !errors.As(err, &le) || filepath.Base(le.File) != c.file || le.Line != c.line {
				t.Fatalf("err = %v, want a LineError at %s:%d", err, c.file, c.line)
			}
			if !strings.Contains(err.Error(), c.file+":") || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %q, want it to name %s and say %q", err, c.file, c.msg)
			}
		})
	}
	if _, err := LoadBEIR(writeDataset(t, corpus, queries, qrels), "dev"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing split: err = %v, want ErrNotExist", err)
	}
}

func TestReadQrelsDetectsFormat(t *testing.T) {
	want := Qrels{"1": {"a": 2, "b": 0}, "2": {"c": 1}}
	for name, in := range map[string]string{
		"trec":          "# comment\n1 0 a 2\n1 0 b 0\n\n2 0 c 1\n",
		"beir":          "query-id\tcorpus-id\tscore\n1\ta\t2\n1\tb\t0\n2\tc\t1\n",
		"beir-noheader": "1\ta\t2\n1\tb\t0\n2\tc\t1\n",
	} {
		got, err := ReadQrels(strings.NewReader(in), name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: got %v, want %v", name, got, want)
		}
	}
	for name, c := range map[string]struct {
		in   string
		line int
	}{
		"five fields":  {"\n1 0 a 2 x\n", 2},
		"trec 3 later": {"1 0 a 2\n1 b 1\n", 2},
		"trec float":   {"1 0 a 2\n1 0 b 0.5\n", 2},
	} {
		_, err := ReadQrels(strings.NewReader(c.in), "q.txt")
		var le *LineError
		if !errors.Is(err, ErrFormat) || !errors.As(err, &le) || le.Line != c.line {
			t.Fatalf("%s: err = %v, want ErrFormat at line %d", name, err, c.line)
		}
	}
	if _, err := ReadQrels(strings.NewReader("\n# only comments\n"), "empty"); !errors.Is(err, ErrFormat) {
		t.Fatalf("empty qrels: err = %v, want ErrFormat", err)
	}
}

func TestReadRun(t *testing.T) {
	run, err := ReadRun(strings.NewReader("1 Q0 a 1 2.5 sys\n# c\n1 Q0 b 2 -1e2 sys\n2 Q0 a 1 0 sysB extra\n"), "r")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]ScoredDoc{"1": {{"a", 2.5}, {"b", -100}}, "2": {{"a", 0}}}
	if run.Name != "sysB" || !reflect.DeepEqual(run.Results, want) {
		t.Fatalf("run = %+v", run)
	}
	for name, c := range map[string]struct {
		in       string
		line     int
		sentinel error
	}{
		"short":     {"1 Q0 a 1 2.5 s\n1 Q0 b 2 2.5\n", 2, ErrFormat},
		"bad score": {"1 Q0 a 1 high s\n", 1, ErrFormat},
		"nan":       {"1 Q0 a 1 NaN s\n", 1, ErrFormat},
		"dup":       {"1 Q0 a 1 2 s\n2 Q0 a 1 2 s\n\n1 Q0 a 2 1 s\n", 4, ErrDuplicate},
	} {
		_, err := ReadRun(strings.NewReader(c.in), "r.run")
		var le *LineError
		if !errors.Is(err, c.sentinel) || !errors.As(err, &le) || le.File != "r.run" || le.Line != c.line {
			t.Fatalf("%s: err = %v, want %v at r.run:%d", name, err, c.sentinel, c.line)
		}
	}
}

func TestWriteRunRoundTrip(t *testing.T) {
	run := &Run{Name: "x", Results: map[string][]ScoredDoc{
		"q2": {{"b", 0.1}, {"a", 0.30000000000000004}},
		"q1": {{"c", 1}, {"d", 1}},
	}}
	var b strings.Builder
	if err := WriteRun(&b, run); err != nil {
		t.Fatal(err)
	}
	want := "q1 Q0 d 1 1 x\nq1 Q0 c 2 1 x\nq2 Q0 a 1 0.30000000000000004 x\nq2 Q0 b 2 0.1 x\n"
	if b.String() != want {
		t.Fatalf("WriteRun:\n%s\nwant:\n%s", b.String(), want)
	}
	back, err := ReadRun(strings.NewReader(b.String()), "back")
	if err != nil {
		t.Fatal(err)
	}
	for q := range run.Results {
		if !reflect.DeepEqual(Rank(back.Results[q]), Rank(run.Results[q])) {
			t.Fatalf("round trip of %s: %v vs %v", q, back.Results[q], run.Results[q])
		}
	}
}

func TestSyntheticDeterministicAndLoadable(t *testing.T) {
	const seed = 42
	t.Logf("seed %d", seed)
	cfg := SyntheticConfig{Seed: seed, Docs: 300, Queries: 20, RelevantPerQuery: 6}
	a, err := Synthetic(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Synthetic(cfg)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same config gave different datasets")
	}
	c, _ := Synthetic(SyntheticConfig{Seed: seed + 1, Docs: 300, Queries: 20, RelevantPerQuery: 6})
	if reflect.DeepEqual(a.Corpus, c.Corpus) {
		t.Fatal("different seeds gave the same corpus")
	}
	if len(a.Corpus) != 300 || len(a.Queries) != 20 || a.Qrels.NumJudgments() != 120 {
		t.Fatalf("sizes: %d docs %d queries %d judgments", len(a.Corpus), len(a.Queries), a.Qrels.NumJudgments())
	}
	grades := map[int]int{}
	for _, docs := range a.Qrels {
		for _, g := range docs {
			grades[g]++
		}
	}
	if grades[1] != 40 || grades[2] != 40 || grades[3] != 40 {
		t.Fatalf("grades %v, want 40 each of 1..3", grades)
	}
	dir := t.TempDir()
	if err := WriteBEIR(dir, "test", a); err != nil {
		t.Fatal(err)
	}
	back, err := LoadBEIR(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	back.Name = a.Name
	if !reflect.DeepEqual(back, a) {
		t.Fatal("synthetic dataset changed through WriteBEIR/LoadBEIR")
	}
	if _, err := Synthetic(SyntheticConfig{Docs: 3, RelevantPerQuery: 4}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("more relevant than docs: err = %v", err)
	}
}

// TestSyntheticPinned pins the bytes of a small generated dataset, so a
// change in generation (or in math/rand/v2's algorithms, which Go keeps
// stable) cannot silently change every scale test's data.
func TestSyntheticPinned(t *testing.T) {
	ds, err := Synthetic(SyntheticConfig{Seed: 1, Docs: 50, Queries: 5, RelevantPerQuery: 3, Vocab: 100, DocWords: 10, QueryWords: 2})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteBEIR(dir, "test", ds); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	for _, f := range []string{"corpus.jsonl", "queries.jsonl", "qrels/test.tsv"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	const want = "e03117c7a955be0dcbc898dd392ac97a969f96a7f36bcecb78473273e250e4d1"
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Fatalf("synthetic dataset hash %s, want %s", got, want)
	}
}
