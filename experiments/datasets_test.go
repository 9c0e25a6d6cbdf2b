package experiments_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/offshootdb/offshoot/experiments"
)

func TestListDatasets(t *testing.T) {
	newSvc := func(dir string) *experiments.Service {
		s, err := experiments.New(experiments.Config{ControlDir: t.TempDir(), DatasetsDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	ctx := admin()

	// No directory configured: empty, with a hint.
	l, err := newSvc("").ListDatasets(ctx)
	if err != nil || len(l.Datasets) != 0 || l.Hint == "" {
		t.Fatalf("unconfigured: %+v, %v", l, err)
	}
	// A missing directory: empty, with a hint naming it.
	root := t.TempDir()
	missing := filepath.Join(root, "nope")
	if l, err = newSvc(missing).ListDatasets(ctx); err != nil || len(l.Datasets) != 0 || l.Hint == "" {
		t.Fatalf("missing: %+v, %v", l, err)
	}

	write := func(p, s string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "tiny", "corpus.jsonl"), "{\"_id\":\"d1\"}\n{\"_id\":\"d2\"}\n{\"_id\":\"d3\"}") // no final newline
	write(filepath.Join(root, "tiny", "queries.jsonl"), "{\"_id\":\"q1\"}\n{\"_id\":\"q2\"}\n")
	write(filepath.Join(root, "tiny", "qrels", "test.tsv"), "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t2\n")
	write(filepath.Join(root, "tiny", "qrels", "dev.tsv"), "query-id\tcorpus-id\tscore\nq1\td2\t1\n")
	write(filepath.Join(root, "notbeir", "README"), "x")
	write(filepath.Join(root, "file.txt"), "x")

	l, err = newSvc(root).ListDatasets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Datasets) != 1 || l.Hint != "" {
		t.Fatalf("datasets %+v hint %q, want just tiny", l.Datasets, l.Hint)
	}
	d := l.Datasets[0]
	if d.Name != "tiny" || d.Path != filepath.Join(root, "tiny") || d.Docs != 3 || d.Queries != 2 || d.Qrels["test"] != 2 || d.Qrels["dev"] != 1 || len(d.Qrels) != 2 {
		t.Errorf("tiny = %+v", d)
	}

	// Cranfield, when the shared datasets are beside the module.
	if cran := filepath.Join("..", "..", "shared", "datasets"); dirExists(cran) {
		l, err = newSvc(cran).ListDatasets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, d := range l.Datasets {
			if d.Name == "cranfield" {
				found = true
				if d.Docs != 1400 || d.Queries != 225 || d.Qrels["test"] == 0 {
					t.Errorf("cranfield = %+v", d)
				}
			}
		}
		if !found {
			t.Errorf("cranfield not listed in %+v", l.Datasets)
		}
	}

	if _, err := newSvc(root).ListDatasets(context.Background()); !errors.Is(err, experiments.ErrUnauthenticated) {
		t.Errorf("no caller: %v", err)
	}
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
