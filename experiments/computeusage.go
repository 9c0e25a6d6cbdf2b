package experiments

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"time"

	"github.com/offshootdb/offshoot/experiments/internal/controldb"
	"github.com/offshootdb/offshoot/storage"
)

// Compute usage (compute seconds and wakes) is counted by compute, in
// memory, from the server's start. The service keeps the totals in the
// control database, one record per branch (computeusage/<project>\x00<branch>),
// so that they survive a restart: it writes the branches whose counts
// changed every computeUsageFlush and when it stops, and reports the
// totals earlier runs of the server recorded plus what compute counted
// since; records of deleted branches are dropped at the next flush. A
// crash loses at most the last computeUsageFlush of compute
// seconds and wakes. A record names its branch's ID: a branch deleted and
// created again under the same name starts from zero.

// computeUsageFlush is how often changed compute usage is written.
const computeUsageFlush = time.Minute

// computeUsage is a branch's compute usage record.
type computeUsage struct {
	BranchID       uint64  `json:"branch_id"`
	ComputeSeconds float64 `json:"compute_seconds"`
	Wakes          int64   `json:"wakes"`
}

var computeUsagePrefix = []byte("computeusage/")

func computeUsageKey(project, branch string) string {
	return string(computeUsagePrefix) + project + "\x00" + branch
}

// loadComputeUsage reads what earlier runs of the server recorded.
func loadComputeUsage(db *controldb.DB) (map[string]computeUsage, error) {
	out := map[string]computeUsage{}
	upper := append([]byte(nil), computeUsagePrefix...)
	upper[len(upper)-1]++
	err := db.Scan(computeUsagePrefix, upper, func(k, v []byte) (bool, error) {
		var u computeUsage
		if err := json.Unmarshal(v, &u); err != nil {
			return false, fmt.Errorf("compute usage %q: %w", k, err)
		}
		out[string(k)] = u
		return true, nil
	})
	return out, err
}

// computeUsageBase returns what earlier runs of the server counted for a
// branch (zero for none, or for another branch of the same name).
func (s *Service) computeUsageBase(project, branch string) computeUsage {
	s.usageMu.Lock()
	u, ok := s.usageBase[computeUsageKey(project, branch)]
	s.usageMu.Unlock()
	if !ok || s.cfg.Store == nil {
		return computeUsage{}
	}
	b, err := s.cfg.Store.Branch(project, branch)
	if err != nil || b.ID != u.BranchID {
		return computeUsage{}
	}
	return u
}

// flushComputeUsage writes the totals of every branch whose count changed
// since the last flush.
func (s *Service) flushComputeUsage() error {
	if s.cfg.Compute == nil || s.cfg.Store == nil {
		return nil
	}
	s.usageMu.Lock()
	defer s.usageMu.Unlock()
	var kvs []controldb.KV
	saved := map[string]computeUsage{}
	for _, st := range s.cfg.Compute.List() {
		if st.ComputeSeconds == 0 && st.Wakes == 0 {
			continue
		}
		b, err := s.cfg.Store.Branch(st.Project, st.Branch)
		if err != nil {
			continue // deleted
		}
		k := computeUsageKey(st.Project, st.Branch)
		u := computeUsage{BranchID: b.ID, ComputeSeconds: st.ComputeSeconds, Wakes: st.Wakes}
		if base, ok := s.usageBase[k]; ok && base.BranchID == b.ID {
			u.ComputeSeconds += base.ComputeSeconds
			u.Wakes += base.Wakes
		}
		// Whole milliseconds: an idle endpoint's record is not
		// rewritten for rounding noise.
		u.ComputeSeconds = float64(int64(u.ComputeSeconds*1000)) / 1000
		if s.usageSaved[k] != u {
			kvs = append(kvs, controldb.KV{Key: []byte(k), Value: u})
			saved[k] = u
		}
	}
	// Records of deleted branches (a run's forks, among others) go.
	var gone []string
	recorded := map[string]computeUsage{}
	maps.Copy(recorded, s.usageBase)
	maps.Copy(recorded, s.usageSaved)
	for k, u := range recorded {
		project, branch, _ := strings.Cut(strings.TrimPrefix(k, string(computeUsagePrefix)), "\x00")
		b, err := s.cfg.Store.Branch(project, branch)
		if errors.Is(err, storage.ErrBranchNotFound) || errors.Is(err, storage.ErrProjectNotFound) || (err == nil && b.ID != u.BranchID) {
			if _, ok := saved[k]; !ok {
				gone = append(gone, k)
			}
		}
	}
	if len(kvs) == 0 && len(gone) == 0 {
		return nil
	}
	err := s.withDB(func(db *controldb.DB) error {
		for _, k := range gone {
			if err := db.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return db.PutAll(kvs)
	})
	if err != nil {
		return fmt.Errorf("save compute usage: %w", err)
	}
	for _, k := range gone {
		delete(s.usageBase, k)
		delete(s.usageSaved, k)
	}
	for k, u := range saved {
		s.usageSaved[k] = u
	}
	return nil
}

// computeUsageFlusher writes changed compute usage every
// computeUsageFlush until stop is closed.
func (s *Service) computeUsageFlusher(stop, done chan struct{}) {
	defer close(done)
	tk := time.NewTicker(computeUsageFlush)
	defer tk.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tk.C:
			if err := s.flushComputeUsage(); err != nil && !errors.Is(err, ErrUnavailable) {
				s.log.Warn("compute usage", slog.String("err", err.Error()))
			}
		}
	}
}
