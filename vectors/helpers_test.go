package vectors

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/offshootdb/offshoot/evals/evalstest"
)

// cranfield is the minimal part of a BEIR collection these tests need. The
// official reader and validation live in package evals.
type cranfield struct {
	docIDs, docs []string            // corpus order
	qIDs, qs     []string            // queries order
	rel          map[string][]string // query id → relevant doc ids (score > 0)
}

func readJSONL(t testing.TB, path string, fn func(id, title, text string)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var raw map[string]string
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		fn(raw["_id"], raw["title"], raw["text"])
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

func loadCranfield(t testing.TB) *cranfield {
	t.Helper()
	dir := evalstest.Cranfield(t)
	c := &cranfield{rel: map[string][]string{}}
	readJSONL(t, filepath.Join(dir, "corpus.jsonl"), func(id, title, text string) {
		c.docIDs = append(c.docIDs, id)
		c.docs = append(c.docs, text) // Cranfield's text repeats the title
	})
	readJSONL(t, filepath.Join(dir, "queries.jsonl"), func(id, _, text string) {
		c.qIDs = append(c.qIDs, id)
		c.qs = append(c.qs, text)
	})
	b, err := os.ReadFile(filepath.Join(dir, "qrels", "test.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Split(line, "\t")
		if i == 0 || len(f) != 3 || f[2] == "0" || strings.HasPrefix(f[2], "-") {
			continue
		}
		c.rel[f[0]] = append(c.rel[f[0]], f[1])
	}
	return c
}

// overlapAt is |a[:k] ∩ b[:k]| / min(k, len(b)): recall of a run against a
// reference top-k (ANN recall vs exact search).
func overlapAt(a, b []string, k int) float64 {
	if len(b) > k {
		b = b[:k]
	}
	if len(a) > k {
		a = a[:k]
	}
	if len(b) == 0 {
		return 1
	}
	ref := map[string]bool{}
	for _, id := range b {
		ref[id] = true
	}
	n := 0
	for _, id := range a {
		if ref[id] {
			n++
		}
	}
	return float64(n) / float64(len(b))
}
