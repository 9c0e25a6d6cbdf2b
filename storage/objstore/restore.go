package objstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Restored describes what Restore brought back.
type Restored struct {
	Gen   uint64
	Time  time.Time // when the restored state was checkpointed
	Files int
	Bytes int64
}

// RestoreOptions choose the generation a restore brings back: Gen, else
// the newest checkpointed at or before At, else the latest.
type RestoreOptions struct {
	Gen uint64
	At  time.Time
	// StateDir, if set, is where the restored data dir's uploader will
	// keep its state (New's stateDir). Restore seeds it: the files it
	// brought back are known to be in the bucket under their keys, the
	// round numbers continue after the bucket's last, and the files the
	// restored server writes from then on get keys of a new lineage, so
	// that they never overwrite, or pass for, files of other generations
	// with the same names.
	StateDir string
}

// RestoringMarker is the file a restore writes into the data dir before
// anything else and removes once every file is downloaded, synced and
// checked: a data dir that holds it is an unfinished restore.
const RestoringMarker = "RESTORING"

// CheckRestored returns ErrRestoreUnfinished when dataDir holds an
// unfinished restore (one interrupted, or still running); nothing may
// serve on it.
func CheckRestored(dataDir string) error {
	if _, err := os.Stat(filepath.Join(dataDir, RestoringMarker)); err == nil {
		return fmt.Errorf("%w: %s (interrupted, or still running): run the same offshoot restore again, which replaces it, or delete the directory", ErrRestoreUnfinished, dataDir)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("data dir: %w", err)
	}
	return nil
}

// testHookFile, if set, is called before each file a restore downloads.
var testHookFile func(n int)

// Restore recreates, under dataDir, every source of one complete upload
// round (the latest unless opt says otherwise). dataDir must not exist, be
// empty, or hold an unfinished restore (which Restore replaces); else
// ErrNotEmpty. Until Restore returns nil, dataDir holds RestoringMarker
// (CheckRestored); on error, a cancelled ctx included, nothing is left in
// it. A request that gets no byte for Config.Stall fails (ErrStalled).
func Restore(ctx context.Context, cfg Config, dataDir string, opt RestoreOptions) (Restored, error) {
	cfg = cfg.withDefaults()
	unfinished := false
	if ents, err := os.ReadDir(dataDir); err == nil && len(ents) > 0 {
		if CheckRestored(dataDir) == nil {
			return Restored{}, fmt.Errorf("%w: %s", ErrNotEmpty, dataDir)
		}
		unfinished = true
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Restored{}, fmt.Errorf("restore: %w", err)
	}
	b, err := openBucket(ctx, cfg)
	if err != nil {
		return Restored{}, err
	}
	gen, err := pickGeneration(ctx, b, opt)
	if errors.Is(err, errNoKey) {
		return Restored{}, fmt.Errorf("%w: s3://%s/%s", ErrNoBackup, cfg.Bucket, cfg.Prefix)
	}
	if err != nil {
		return Restored{}, fmt.Errorf("restore: %w", err)
	}
	// As serve makes it: the endpoints' OS users traverse it to the run dir.
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return Restored{}, fmt.Errorf("restore: %w", err)
	}
	marker := filepath.Join(dataDir, RestoringMarker)
	clear := func() {
		// The marker goes last: a crash while clearing leaves an
		// unfinished restore, never a partial data dir without it.
		ents, _ := os.ReadDir(dataDir)
		for _, e := range ents {
			if e.Name() != RestoringMarker {
				_ = os.RemoveAll(filepath.Join(dataDir, e.Name()))
			}
		}
		_ = os.Remove(marker)
	}
	if err := writeSynced(marker, fmt.Sprintf("restore of generation %d from s3://%s/%s started %s\n",
		gen.Gen, cfg.Bucket, cfg.Prefix, time.Now().UTC().Format(time.RFC3339)), 0o644); err != nil {
		return Restored{}, fmt.Errorf("restore: %w", err)
	}
	if unfinished {
		ents, _ := os.ReadDir(dataDir)
		for _, e := range ents {
			if e.Name() != RestoringMarker {
				if err := os.RemoveAll(filepath.Join(dataDir, e.Name())); err != nil {
					return Restored{}, fmt.Errorf("restore: clear the unfinished restore: %w", err)
				}
			}
		}
	}
	r := Restored{Gen: gen.Gen, Time: gen.Time}
	ok := false
	defer func() {
		if !ok {
			clear()
		}
	}()
	for name, files := range gen.Sources {
		if name == "" || strings.Contains(name, "..") || filepath.IsAbs(name) {
			return Restored{}, fmt.Errorf("restore: bad source name %q", name)
		}
		for _, f := range files {
			if strings.Contains(f.Name, "..") || filepath.IsAbs(f.Name) {
				return Restored{}, fmt.Errorf("restore: bad file name %q", f.Name)
			}
			p := filepath.Join(dataDir, name, filepath.FromSlash(f.Name))
			if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
				return Restored{}, fmt.Errorf("restore: %w", err)
			}
			if testHookFile != nil {
				testHookFile(r.Files)
			}
			if err := b.getFile(ctx, f.Key, p, f.Size); err != nil {
				return Restored{}, fmt.Errorf("restore %s: %w", f.Key, err)
			}
			r.Files++
			r.Bytes += f.Size
		}
	}
	if opt.StateDir != "" {
		if err := seedState(ctx, b, opt.StateDir, gen); err != nil {
			return Restored{}, fmt.Errorf("restore: %w", err)
		}
	}
	if err := syncDirs(dataDir); err != nil {
		return Restored{}, fmt.Errorf("restore: %w", err)
	}
	if err := os.Remove(marker); err != nil {
		return Restored{}, fmt.Errorf("restore: %w", err)
	}
	if err := syncDir(dataDir); err != nil {
		return Restored{}, fmt.Errorf("restore: %w", err)
	}
	ok = true
	return r, nil
}

// writeSynced writes a new file with data and syncs it and its directory.
func writeSynced(p, data string, perm os.FileMode) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return syncDir(filepath.Dir(p))
}

// syncDirs syncs every directory under root (the files sync themselves).
func syncDirs(root string) error {
	return filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return syncDir(p)
	})
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// seedState writes the uploader state of a data dir restored from gen.
func seedState(ctx context.Context, b *bucket, dir string, gen *generation) error {
	st := state{Gen: gen.Gen, Uploaded: map[string]int64{}, Known: map[string]string{}}
	if data, err := b.get(ctx, b.key("latest.json")); err == nil {
		var last generation
		if json.Unmarshal(data, &last) == nil {
			st.Gen = max(st.Gen, last.Gen)
		}
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return err
	}
	st.Lineage = hex.EncodeToString(id[:])
	for name, files := range gen.Sources {
		for _, f := range files {
			if immutable(f.Name) {
				st.Known[name+"/"+f.Name] = f.Key
				st.Uploaded[f.Key] = f.Size
			}
		}
	}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// Synced: the restore is complete only with it.
	return writeSynced(filepath.Join(dir, "state.json"), string(data), 0o600)
}

// pickGeneration reads the generation opt names; errNoKey when the bucket
// has none, ErrNoGeneration when it has none that matches.
func pickGeneration(ctx context.Context, b *bucket, opt RestoreOptions) (*generation, error) {
	switch {
	case opt.Gen != 0:
		g, err := b.generation(ctx, opt.Gen)
		if errors.Is(err, errNoKey) {
			return nil, fmt.Errorf("%w: generation %d is not in the bucket (offshoot restore --list shows those that are)", ErrNoGeneration, opt.Gen)
		}
		return g, err
	case !opt.At.IsZero():
		nums, err := b.generations(ctx)
		if err != nil {
			return nil, err
		}
		if len(nums) == 0 {
			return nil, errNoKey
		}
		// Every record is read: numbers follow time on a prefix one data
		// dir uploads to, but not where two did (see ErrPrefixTaken).
		var best *generation
		for _, n := range nums {
			g, err := b.generation(ctx, n)
			if errors.Is(err, errNoKey) {
				continue // pruned meanwhile
			}
			if err != nil {
				return nil, err
			}
			if !g.Time.After(opt.At) && (best == nil || !g.Time.Before(best.Time)) {
				best = g
			}
		}
		if best != nil {
			return best, nil
		}
		return nil, fmt.Errorf("%w: none was checkpointed at or before %s", ErrNoGeneration, opt.At.Format(time.RFC3339))
	}
	data, err := b.get(ctx, b.key("latest.json"))
	if err != nil {
		return nil, err
	}
	var g generation
	if err := json.Unmarshal(data, &g); err != nil {
		return nil, fmt.Errorf("latest.json: %w", err)
	}
	return &g, nil
}
