package storage

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

const crashCountsEnv = "OFFSHOOT_STORAGE_CRASH_COUNTS_DIR"

// crashCountsChild runs in the re-executed test binary: it mutates two
// branches at random (writes, truncations, unlinks, renames, forks and
// deletions of dev) with GC running every few milliseconds, until killed.
func crashCountsChild(dir string) {
	fail := func(err error) {
		fmt.Println("error", err)
		os.Exit(2)
	}
	s, err := Open(dir, &Options{GCInterval: 5 * time.Millisecond, HistoryWindow: 50 * time.Millisecond,
		HistoryTick: 10 * time.Millisecond, GCBatch: 20, HeadBufferBytes: 8 * BlockSize})
	if err != nil {
		fail(err)
	}
	if _, _, err := s.CreateProject("p"); err != nil && !errors.Is(err, ErrProjectExists) {
		fail(err)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	heads := map[string]*Head{}
	open := func(name string) *Head {
		if heads[name] == nil {
			h, err := s.OpenHead("p", name)
			if err != nil {
				fail(err)
			}
			heads[name] = h
		}
		return heads[name]
	}
	open("main")
	if _, err := s.Branch("p", "dev"); err == nil {
		open("dev")
	}
	fmt.Println("ready")
	buf := make([]byte, 3*BlockSize)
	for {
		name := "main"
		if heads["dev"] != nil && rng.IntN(2) == 0 {
			name = "dev"
		}
		h := open(name)
		file := fmt.Sprintf("f%d", rng.IntN(6))
		a, err := h.Lookup(RootIno, file)
		if errors.Is(err, ErrNotExist) {
			a, err = h.Create(RootIno, file, 0o600, 0, 0)
		}
		if err != nil {
			fail(err)
		}
		switch r := rng.IntN(100); {
		case r < 60:
			p := buf[:1+rng.IntN(len(buf)-1)]
			for i := range p {
				p[i] = byte(rng.IntN(3))
			}
			_, err = h.WriteAt(a.Ino, p, int64(rng.IntN(8*BlockSize)))
		case r < 70:
			_, err = h.SetAttr(a.Ino, SetAttrIn{Valid: SetSize, Size: uint64(rng.IntN(8 * BlockSize))})
		case r < 75:
			err = h.Unlink(RootIno, file)
			if err == nil {
				err = h.Forget(a.Ino)
			}
		case r < 80:
			err = h.Rename(RootIno, file, RootIno, fmt.Sprintf("f%d", rng.IntN(6)))
		case r < 85:
			err = h.Sync()
		case r < 90:
			if d := heads["dev"]; d != nil {
				delete(heads, "dev")
				if err = d.Close(); err == nil {
					err = s.DeleteBranch("p", "dev", DeleteOptions{})
				}
			} else if _, err = s.Fork("p", "main", "dev", AtHead(), BranchOptions{}); err == nil {
				open("dev")
			}
		default:
			_, err = s.GC(context.Background())
		}
		if err != nil {
			fail(err)
		}
	}
}

// TestCrashCounters kills a process that writes, forks, deletes and
// collects at random, and checks after every reopen (and after a GC pass
// on the reopened store) that every timeline's usage counters equal a
// full recount.
func TestCrashCounters(t *testing.T) {
	if dir := os.Getenv(crashCountsEnv); dir != "" {
		crashCountsChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("crash test re-executes the test binary")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	dir := t.TempDir()
	for round := range 8 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashCounters$")
		cmd.Env = append(os.Environ(), crashCountsEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		ok(t, err)
		cmd.Stderr = os.Stderr
		ok(t, cmd.Start())
		sc := bufio.NewScanner(out)
		if !sc.Scan() || sc.Text() != "ready" {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("round %d: child: %q", round, sc.Text())
		}
		lines := make(chan string, 1)
		go func() {
			for sc.Scan() {
				select {
				case lines <- sc.Text():
				default:
				}
			}
		}()
		time.Sleep(time.Duration(20+rng.IntN(200)) * time.Millisecond)
		ok(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		select {
		case line := <-lines:
			t.Fatalf("round %d: child: %s", round, line)
		default:
		}

		s, err := Open(dir, &Options{GCInterval: -1})
		ok(t, err)
		if err := s.Check(); err != nil {
			t.Fatalf("round %d: after SIGKILL: %v", round, err)
		}
		must[GCStats](t)(s.GCFull(context.Background()))
		if err := s.Check(); err != nil {
			t.Fatalf("round %d: after SIGKILL and GC: %v", round, err)
		}
		u := must[BranchUsage](t)(s.Usage("p", "main"))
		t.Logf("round %d: main %+v", round, u)
		ok(t, s.Close())
	}
}
