package experiments

import (
	"bytes"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/offshootdb/offshoot/evals"
)

// TestZeroVectorsUnranked: a query or a document without tokens embeds
// as the zero vector, which has no cosine distance to anything. Such a
// query ranks nothing and such a document is never ranked, exactly as a
// lexical variant's empty tsquery matches nothing: exact, indexed and
// binary quantized variants succeed, the query counts as a judged query
// that retrieved nothing (trec_eval -c), and every recorded distance is a
// number, so the rankings can be stored and exported. k exceeds the rows,
// so that every query reaches the zero document: last in an exact scan,
// left out of a cosine index (which then returns fewer rows than the
// table holds without capping recall).
func TestZeroVectorsUnranked(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres")
	}
	datasets := t.TempDir()
	words := []string{"apple", "banana", "cherry", "damson", "elder", "fig", "grape"}
	ds := &evals.Dataset{Qrels: evals.Qrels{"q1": {"d00": 1}, "q2": {"d02": 1}, "qempty": {"dempty": 1}}}
	for i := range 20 {
		ds.Corpus = append(ds.Corpus, evals.Doc{ID: fmt.Sprintf("d%02d", i), Text: words[i%len(words)] + " " + words[(i*3+1)%len(words)]})
	}
	ds.Corpus = append(ds.Corpus, evals.Doc{ID: "dempty", Text: "???"})
	ds.Queries = []evals.Query{{ID: "q1", Text: "apple banana"}, {ID: "q2", Text: "cherry"}, {ID: "qempty", Text: "???"}}
	if err := evals.WriteBEIR(filepath.Join(datasets, "tiny"), "test", ds); err != nil {
		t.Fatal(err)
	}
	e := newRunEnvConfig(t, Config{DatasetsDir: datasets}, false)
	hnsw := &IndexSpec{Type: "hnsw"}
	sp := ExperimentSpec{Name: "zero", Project: "p", Base: BranchPoint{Branch: "main"}, Dataset: DatasetSpec{BEIR: "tiny"},
		Metrics: []string{"ndcg_cut.10", "recall.10"}, K: 25, Concurrency: 2, Variants: []VariantSpec{
			{Name: "exact", Embedder: "hash-bow?dims=64"},
			{Name: "hnsw", Embedder: "hash-bow?dims=64", Index: hnsw},
			{Name: "bq", Embedder: "hash-bow?dims=64", Index: hnsw, Quantization: QuantizationBinary},
			{Name: "lex", Type: VariantLexical},
		}}
	r := e.run(t, sp)
	if r.Status != StatusSucceeded {
		t.Errorf("run %s: %s", r.Status, r.Error)
	}
	for _, v := range r.Variants {
		if v.Status != StatusSucceeded {
			t.Errorf("%s: %s: %s", v.Name, v.Status, v.Error)
			continue
		}
		if m := v.Metrics["ndcg_cut_10"]; m <= 0 || m >= 1 { // q1 and q2 find theirs, qempty nothing
			t.Errorf("%s: ndcg_cut_10 %v, want the mean of two found and one empty query", v.Name, m)
		}
		for _, q := range v.Results {
			if q.Query == "qempty" && len(q.Hits) != 0 {
				t.Errorf("%s: the empty query ranks %v", v.Name, q.Hits)
			}
			for _, h := range q.Hits {
				if h.Doc == "dempty" || math.IsNaN(h.Distance) {
					t.Errorf("%s: query %s ranks %s at distance %v", v.Name, q.Query, h.Doc, h.Distance)
				}
			}
			if q.Query == "qempty" && (len(q.Values) != 2 || q.Values[0] != 0) {
				t.Errorf("%s: the empty query's measures %v, want 0 (judged, nothing retrieved)", v.Name, q.Values)
			}
		}
		if v.Spec.Index != nil && (v.ANNRecall == nil || !(*v.ANNRecall > 0 && *v.ANNRecall <= 1)) {
			t.Errorf("%s: ANN recall %v", v.Name, v.ANNRecall)
		}
		var out bytes.Buffer
		if err := e.svc.ExportRun(e.ctx, r.ID+":"+v.Name, ExportJSONL, &out); err != nil || !strings.Contains(out.String(), `"query":"qempty","hits":[]`) {
			t.Errorf("%s: export %v:\n%s", v.Name, err, out.String())
		}
	}
}
