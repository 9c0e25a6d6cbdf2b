package experiments

import (
	"strings"
	"testing"
)

// TestSQLDatasetIDs: a corpus_sql with a repeated, NULL or empty document
// id fails its run when the dataset is read, before any embedding, with
// an error naming corpus_sql and the id or row; a repeated id used to
// fail only when loaded, with Postgres's duplicate key error, and a NULL
// one was loaded as a document.
func TestSQLDatasetIDs(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Postgres")
	}
	e := newRunEnv(t)
	mc, release, err := e.br.Conn(e.ctx, "p", "main", ReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	_, err = mc.Exec(e.ctx, `CREATE TABLE docs(id text, body text);
		INSERT INTO docs VALUES ('d1', 'apples'), ('d2', 'pears'), ('d1', 'apples again'), (NULL, 'no id'), ('', 'empty id');
		CREATE TABLE qs(id text, q text); INSERT INTO qs VALUES ('q1', 'apples');
		CREATE TABLE judged(q text, d text, g int); INSERT INTO judged VALUES ('q1', 'd1', 1)`)
	release() // forks copy main, which must be idle
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ where, says string }{
		{"id IS NOT NULL AND id <> ''", `corpus_sql: document "d1" on rows 1 and 2`},
		{"id IS NULL OR id = 'd2'", "corpus_sql: row 1: the id (first column) is NULL or empty"},
		{"id <> 'd1'", "corpus_sql: row 1: the id (first column) is NULL or empty"},
	} {
		sp := e.spec(VariantSpec{Name: "v", Embedder: "hash-bow?dims=16"})
		sp.Dataset = DatasetSpec{CorpusSQL: "SELECT id, body FROM docs WHERE " + tc.where + " ORDER BY body",
			QueriesSQL: "SELECT id, q FROM qs", QrelsSQL: "SELECT q, d, g FROM judged"}
		r := e.run(t, sp)
		if r.Status != StatusFailed || !strings.Contains(r.Error, tc.says) || r.Variants[0].Phase != "" {
			t.Errorf("%s: run %s %q (variant phase %q), want it failed before the variants with %s", tc.where, r.Status, r.Error, r.Variants[0].Phase, tc.says)
		}
	}
}
