package compute

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// logTailWindow bounds how much of the end of a log LogTail reads.
const logTailWindow = 1 << 20

// LogTail returns the last n lines (n > 0) of the Postgres log of the
// endpoint of project/branch, oldest first. A branch whose endpoint never
// started has no log: the result is empty, not an error. Only the last
// MiB of the log is read, so very long lines may shorten the tail. Safe
// for concurrent use.
func (m *Manager) LogTail(project, branch string, n int) ([]string, error) {
	if n <= 0 {
		return nil, fmt.Errorf("log tail of %s/%s: line count %d must be positive", project, branch, n)
	}
	sum := sha256.Sum256([]byte(project + "\x00" + branch))
	path := filepath.Join(m.cfg.RunDir, hex.EncodeToString(sum[:8]), "postgres.log")
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return []string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("log tail of %s/%s: %w", project, branch, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("log tail of %s/%s: %w", project, branch, err)
	}
	off := max(fi.Size()-logTailWindow, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return nil, fmt.Errorf("log tail of %s/%s: %w", project, branch, err)
	}
	s := strings.TrimRight(string(b), "\n")
	if off > 0 {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:] // drop the partial first line
		}
	}
	if s == "" {
		return []string{}, nil
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines, nil
}
