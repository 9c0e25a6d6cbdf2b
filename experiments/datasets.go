package experiments

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Dataset is one BEIR directory under Config.DatasetsDir.
type Dataset struct {
	// Name is the directory's name.
	Name string `json:"name"`
	// Path is what a spec's dataset.beir names the directory by: its
	// absolute path for admin, its name (relative to the datasets
	// directory) for other keys, who learn no server path.
	Path string `json:"path"`
	// Docs and Queries are the lines of corpus.jsonl and queries.jsonl.
	Docs    int `json:"docs"`
	Queries int `json:"queries"`
	// Qrels maps a split (qrels/<split>.tsv) to its judgement lines,
	// header excluded.
	Qrels map[string]int `json:"qrels"`
}

// DatasetList is the answer of ListDatasets.
type DatasetList struct {
	// Dir is the configured datasets directory ("" when none, and for
	// keys other than admin).
	Dir      string    `json:"dir"`
	Datasets []Dataset `json:"datasets"`
	// Hint says why the list is empty, when it is.
	Hint string `json:"hint,omitempty"`
}

// ListDatasets lists the subdirectories of Config.DatasetsDir that hold a
// BEIR corpus.jsonl, with line counts (cheap: no JSON is parsed). With no
// DatasetsDir, or a missing one, the list is empty and Hint says why. Any
// caller with a scope may list; only admin sees server paths. Safe for
// concurrent use.
func (s *Service) ListDatasets(ctx context.Context) (*DatasetList, error) {
	c, ok := CallerFrom(ctx)
	if !ok {
		return nil, s.refused(ctx, "dataset.list", "datasets", fmt.Errorf("no caller: %w", ErrUnauthenticated))
	}
	if len(c.Scopes) == 0 {
		return nil, s.refused(ctx, "dataset.list", "datasets", fmt.Errorf("key %s has no scope: %w", c.KeyID, ErrForbidden))
	}
	out, err := s.listDatasets(ctx)
	if err != nil || c.Allows(RoleAdmin, "", "") {
		return out, err
	}
	out.Dir = ""
	for i := range out.Datasets {
		out.Datasets[i].Path = out.Datasets[i].Name
	}
	if out.Hint != "" && s.cfg.DatasetsDir != "" {
		out.Hint = "no BEIR directory (with corpus.jsonl) in the server's datasets directory; an admin sees where it is"
	}
	return out, nil
}

func (s *Service) listDatasets(ctx context.Context) (*DatasetList, error) {
	out := &DatasetList{Dir: s.cfg.DatasetsDir, Datasets: []Dataset{}}
	if out.Dir == "" {
		out.Hint = "no datasets directory is configured (offshoot serve --datasets-dir)"
		return out, nil
	}
	abs, err := filepath.Abs(out.Dir)
	if err != nil {
		return nil, fmt.Errorf("datasets dir: %w", err)
	}
	out.Dir = abs
	entries, err := os.ReadDir(abs)
	if os.IsNotExist(err) {
		out.Hint = fmt.Sprintf("datasets directory %s does not exist; put BEIR directories (corpus.jsonl, queries.jsonl, qrels/*.tsv) there", abs)
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("datasets dir: %w", err)
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		dir := filepath.Join(abs, e.Name())
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue
		}
		docs, err := countLines(filepath.Join(dir, "corpus.jsonl"))
		if err != nil {
			continue // not a BEIR directory
		}
		d := Dataset{Name: e.Name(), Path: dir, Docs: docs, Qrels: map[string]int{}}
		if d.Queries, err = countLines(filepath.Join(dir, "queries.jsonl")); err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("dataset %s: %w", e.Name(), err)
		}
		splits, _ := filepath.Glob(filepath.Join(dir, "qrels", "*.tsv"))
		sort.Strings(splits)
		for _, p := range splits {
			n, err := countLines(p)
			if err != nil {
				return nil, fmt.Errorf("dataset %s: %w", e.Name(), err)
			}
			if n > 0 {
				n-- // header line
			}
			d.Qrels[filepath.Base(p[:len(p)-len(".tsv")])] = n
		}
		out.Datasets = append(out.Datasets, d)
	}
	if len(out.Datasets) == 0 {
		out.Hint = fmt.Sprintf("no BEIR directory (with corpus.jsonl) under %s", abs)
	}
	return out, nil
}

// countLines counts the non-empty lines of a file.
func countLines(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	n, last := 0, byte('\n')
	for {
		k, err := f.Read(buf)
		if k > 0 {
			n += bytes.Count(buf[:k], []byte{'\n'})
			last = buf[k-1]
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	if last != '\n' {
		n++
	}
	return n, nil
}

// resolveDataset confines a spec's BEIR directory to Config.DatasetsDir:
// a relative path is taken relative to it, and the path, cleaned and with
// symbolic links followed, must name a directory strictly inside it. On
// success d.BEIR is replaced by that resolved absolute path. The split
// must name a file (see DatasetSpec.Split), also in a spec stored before
// that was validated. A spec that reads its dataset by SQL passes
// untouched. Errors are *FieldError for dataset.beir naming the allowed
// directory, or for dataset.split.
func (s *Service) resolveDataset(d *DatasetSpec) error {
	if d.BEIR == "" {
		return nil
	}
	if err := validSplit(d.Split); err != nil {
		return err
	}
	if s.cfg.DatasetsDir == "" {
		return invalid("dataset.beir", "this server has no datasets directory (offshoot serve --datasets-dir); read the dataset by SQL from the base instead (corpus_sql, queries_sql, qrels_sql)")
	}
	root, err := filepath.Abs(s.cfg.DatasetsDir)
	if err != nil {
		return fmt.Errorf("datasets dir: %w", err)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return invalid("dataset.beir", "the datasets directory %s is not readable: %v", root, err)
	}
	p := d.BEIR
	if !filepath.IsAbs(p) {
		p = filepath.Join(root, p)
	}
	p = filepath.Clean(p)
	outside := invalid("dataset.beir", "%q is not inside the datasets directory %s; put the BEIR directory there, or name it relative to it", d.BEIR, root)
	if !within(root, p) && !within(realRoot, p) {
		return outside // refused before anything outside is looked at
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return invalid("dataset.beir", "%q: no such directory in the datasets directory %s", d.BEIR, root)
	}
	if !within(realRoot, real) {
		return outside
	}
	if fi, err := os.Stat(real); err != nil || !fi.IsDir() {
		return invalid("dataset.beir", "%q is not a directory in the datasets directory %s", d.BEIR, root)
	}
	d.BEIR = real
	return nil
}

// within reports whether the clean absolute path p lies strictly below dir.
func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}
