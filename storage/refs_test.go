package storage

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"testing"
	"time"
)

// TestTimelineRefs: random forks (of heads and of snapshots), snapshots
// (some expiring), resets that keep or discard the old head, deletions of
// snapshots and branches (cascading or not), GC and a project's deletion
// keep the index of each timeline's children and snapshots in step with
// the catalog (Check rebuilds it and compares after every step and after
// a reopen), and a timeline goes exactly when nothing reads it any more:
// Check refuses a detached timeline nothing references and a read chain
// whose timeline is gone, and at the end, with every branch but main and
// every snapshot deleted, only main's timelines are left.
func TestTimelineRefs(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	opts := &Options{GCInterval: -1, Now: func() time.Time { return now }}
	s, err := Open(dir, opts)
	ok(t, err)
	for _, p := range []string{"p", "q"} {
		_, _, err = s.CreateProject(p)
		ok(t, err)
	}
	rng := rand.New(rand.NewSource(11))
	branches := map[string][]string{"p": {"main"}, "q": {"main"}}
	snaps := map[string][]string{}
	pick := func(l []string) string { return l[rng.Intn(len(l))] }
	for i := range 600 {
		p := pick([]string{"p", "p", "p", "q"})
		op := rng.Intn(100)
		switch {
		case op < 35:
			name := fmt.Sprintf("b%03d", i)
			at := AtHead()
			if len(snaps[p]) > 0 && rng.Intn(3) == 0 {
				at = AtSnapshot(pick(snaps[p]))
			}
			_, err := s.Fork(p, pick(branches[p]), name, at, BranchOptions{})
			ok(t, err)
			branches[p] = append(branches[p], name)
		case op < 55:
			name := fmt.Sprintf("s%03d", i)
			var o SnapshotOptions
			if rng.Intn(3) == 0 {
				o.ExpiresAt = now.Add(time.Minute)
			}
			_, err := s.Snapshot(p, pick(branches[p]), name, o)
			ok(t, err)
			snaps[p] = append(snaps[p], name)
		case op < 65:
			b := pick(branches[p])
			keep := rng.Intn(2) == 0
			o := ResetOptions{Discard: !keep, Snapshot: fmt.Sprintf("r%03d", i)}
			if _, err := s.Reset(p, b, o); err != nil {
				if b == "main" { // a root has no parent to reset onto
					continue
				}
				t.Fatalf("reset %s/%s: %v", p, b, err)
			}
			if keep {
				snaps[p] = append(snaps[p], o.Snapshot)
			}
		case op < 75 && len(snaps[p]) > 0:
			name := pick(snaps[p])
			ok(t, s.DeleteSnapshot(p, name))
			snaps[p] = slices.DeleteFunc(snaps[p], func(x string) bool { return x == name })
		case op < 92:
			b := pick(branches[p])
			if b == "main" {
				continue
			}
			cascade := rng.Intn(2) == 0
			err := s.DeleteBranch(p, b, DeleteOptions{Cascade: cascade})
			if errors.Is(err, ErrHasChildren) && !cascade {
				continue
			}
			ok(t, err)
			branches[p] = existing(t, s, p)
		case op < 97:
			now = now.Add(2 * time.Minute) // expires every snapshot made with an expiry so far
			_, err := s.GC(context.Background())
			ok(t, err)
			snaps[p], snaps[otherProject(p)] = existingSnapshots(t, s, p), existingSnapshots(t, s, otherProject(p))
		default:
			ok(t, s.DeleteProject("q", DeleteProjectOptions{Force: true}))
			_, _, err := s.CreateProject("q")
			ok(t, err)
			branches["q"], snaps["q"] = []string{"main"}, nil
		}
		if err := s.Check(); err != nil {
			t.Fatalf("step %d (op %d on %s): %v", i, op, p, err)
		}
	}
	ok(t, s.Close())
	s, err = Open(dir, opts)
	ok(t, err)
	defer s.Close()
	ok(t, s.Check())

	for _, p := range []string{"p", "q"} {
		for _, sn := range existingSnapshots(t, s, p) {
			ok(t, s.DeleteSnapshot(p, sn))
		}
		for _, b := range existing(t, s, p) {
			if b != "main" {
				if err := s.DeleteBranch(p, b, DeleteOptions{Cascade: true}); err != nil && !errors.Is(err, ErrBranchNotFound) {
					t.Fatal(err)
				}
			}
		}
	}
	ok(t, s.Check())
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, tl := range s.cat.timelines {
		if tl.Branch == 0 {
			t.Errorf("timeline %d left without a branch", id)
		}
	}
	if len(s.cat.refs.snapshots) != 0 {
		t.Errorf("snapshot index not empty: %v", s.cat.refs.snapshots)
	}
}

func otherProject(p string) string {
	if p == "p" {
		return "q"
	}
	return "p"
}

func existing(t *testing.T, s *Store, p string) []string {
	t.Helper()
	bs, err := s.Branches(p)
	ok(t, err)
	var names []string
	for _, b := range bs {
		names = append(names, b.Name)
	}
	return names
}

func existingSnapshots(t *testing.T, s *Store, p string) []string {
	t.Helper()
	sns, err := s.Snapshots(p)
	ok(t, err)
	var names []string
	for _, sn := range sns {
		names = append(names, sn.Name)
	}
	return names
}
