package objstore

import (
	"context"
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

// Restore recreates, under dataDir, every source of the last complete
// upload round. dataDir must not exist or be empty (ErrNotEmpty); on error
// nothing is left in it.
func Restore(ctx context.Context, cfg Config, dataDir string) (Restored, error) {
	cfg = cfg.withDefaults()
	if ents, err := os.ReadDir(dataDir); err == nil && len(ents) > 0 {
		return Restored{}, fmt.Errorf("%w: %s", ErrNotEmpty, dataDir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Restored{}, fmt.Errorf("restore: %w", err)
	}
	b, err := openBucket(ctx, cfg)
	if err != nil {
		return Restored{}, err
	}
	data, err := b.get(ctx, b.key("latest.json"))
	if errors.Is(err, errNoKey) {
		return Restored{}, fmt.Errorf("%w: s3://%s/%s", ErrNoBackup, cfg.Bucket, cfg.Prefix)
	}
	if err != nil {
		return Restored{}, fmt.Errorf("restore: %w", err)
	}
	var gen generation
	if err := json.Unmarshal(data, &gen); err != nil {
		return Restored{}, fmt.Errorf("restore: latest.json: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return Restored{}, fmt.Errorf("restore: %w", err)
	}
	r := Restored{Gen: gen.Gen, Time: gen.Time}
	ok := false
	defer func() {
		if !ok {
			ents, _ := os.ReadDir(dataDir)
			for _, e := range ents {
				_ = os.RemoveAll(filepath.Join(dataDir, e.Name()))
			}
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
			if err := b.getFile(ctx, f.Key, p); err != nil {
				return Restored{}, fmt.Errorf("restore %s: %w", f.Key, err)
			}
			r.Files++
			r.Bytes += f.Size
		}
	}
	ok = true
	return r, nil
}
