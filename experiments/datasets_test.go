package experiments_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
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

	// Other keys see names, never a server path; a key without any
	// scope may not list.
	reader := experiments.WithCaller(context.Background(), experiments.Caller{KeyID: "r", Scopes: []experiments.Scope{{Role: experiments.RoleRead, Project: "p"}}})
	if l, err = newSvc(root).ListDatasets(reader); err != nil || l.Dir != "" || len(l.Datasets) != 1 || l.Datasets[0].Path != "tiny" {
		t.Errorf("reader lists %+v, %v; want tiny by name and no directory", l, err)
	}
	if l, err = newSvc(missing).ListDatasets(reader); err != nil || strings.Contains(l.Hint, root) {
		t.Errorf("reader's hint on a missing directory: %+v, %v; want no path", l, err)
	}
	none := experiments.WithCaller(context.Background(), experiments.Caller{KeyID: "n"})
	if _, err := newSvc(root).ListDatasets(none); !errors.Is(err, experiments.ErrForbidden) {
		t.Errorf("a key without scopes lists datasets: %v", err)
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

// TestDatasetConfinement: a spec's dataset.beir is read only from inside
// the datasets directory, whatever the spelling, symbolic links included;
// the error names the field and the allowed directory.
func TestDatasetConfinement(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "datasets")
	for _, d := range []string{filepath.Join(dir, "cranfield"), filepath.Join(dir, "nested", "small"), filepath.Join(root, "secret")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(root, "secret"), filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "cranfield"), filepath.Join(dir, "alias")); err != nil {
		t.Fatal(err)
	}
	// No Branches or Connector: a spec that passes the dataset check fails
	// with ErrUnavailable, one that does not with ErrInvalid.
	s, err := experiments.New(experiments.Config{ControlDir: t.TempDir(), DatasetsDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	unconfigured, err := experiments.New(experiments.Config{ControlDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := unconfigured.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer unconfigured.Close()
	spec := func(beir string) experiments.ExperimentSpec {
		return experiments.ExperimentSpec{Name: "x", Project: "p", Base: experiments.BranchPoint{Branch: "main"},
			Dataset: experiments.DatasetSpec{BEIR: beir}, Variants: []experiments.VariantSpec{{Name: "a", Embedder: "hash-bow"}}}
	}
	for _, tc := range []struct {
		svc  *experiments.Service
		beir string
		ok   bool
	}{
		{s, "cranfield", true},
		{s, filepath.Join(dir, "cranfield"), true},
		{s, "nested/small", true},
		{s, "alias", true}, // a link that stays inside
		{s, "./nested/../cranfield", true},
		{s, "../../../../etc", false},
		{s, "/etc", false},
		{s, filepath.Join(dir, "..", "secret"), false},
		{s, "escape", false}, // a link out of the directory
		{s, ".", false},      // the directory itself is no dataset
		{s, "missing", false},
		{unconfigured, "/etc", false},
		{unconfigured, filepath.Join(dir, "cranfield"), false},
	} {
		_, err := tc.svc.StartRun(admin(), spec(tc.beir))
		var fe *experiments.FieldError
		switch {
		case tc.ok && !errors.Is(err, experiments.ErrUnavailable):
			t.Errorf("beir %q: %v, want it accepted (then ErrUnavailable)", tc.beir, err)
		case !tc.ok && (!errors.As(err, &fe) || fe.Field != "dataset.beir"):
			t.Errorf("beir %q: %v, want a dataset.beir FieldError", tc.beir, err)
		case !tc.ok && tc.svc == s && !strings.Contains(fe.Reason, dir):
			t.Errorf("beir %q: %q does not name the datasets directory %s", tc.beir, fe.Reason, dir)
		}
	}
	// The split names a qrels file of the dataset, never a path: no
	// qrels/<split>.tsv outside it is read.
	if err := os.WriteFile(filepath.Join(root, "secret", "outside.tsv"), []byte("secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	outside := spec("cranfield")
	outside.Dataset.Split = "../../../secret/outside"
	_, err = s.StartRun(admin(), outside)
	var fe *experiments.FieldError
	if !errors.As(err, &fe) || fe.Field != "dataset.split" {
		t.Errorf("split out of the dataset: %v, want a dataset.split FieldError", err)
	}
	// Schedules are checked the same way, under spec.
	_, err = s.CreateSchedule(admin(), experiments.Schedule{Name: "n", Cron: "@daily", Metric: "ndcg_cut_10", Spec: spec("../../../../etc")})
	if !errors.As(err, &fe) || fe.Field != "spec.dataset.beir" {
		t.Errorf("schedule with an outside dataset: %v", err)
	}
	_, err = s.CreateSchedule(admin(), experiments.Schedule{Name: "n", Cron: "@daily", Metric: "ndcg_cut_10", Spec: outside})
	if !errors.As(err, &fe) || fe.Field != "spec.dataset.split" {
		t.Errorf("schedule with a split out of the dataset: %v", err)
	}
	sc, err := s.CreateSchedule(admin(), experiments.Schedule{Name: "n", Cron: "@daily", Metric: "ndcg_cut_10", Spec: spec("alias")})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "cranfield"); sc.Spec.Dataset.BEIR != want {
		t.Errorf("schedule records dataset %q, want the resolved %q", sc.Spec.Dataset.BEIR, want)
	}
}
