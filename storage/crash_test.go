package storage

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	crashEnv = "OFFSHOOT_STORAGE_CRASH_DIR"
	// crashBufEnv sets the child's HeadBufferBytes in blocks (default:
	// the store's default, which the child's writes never fill).
	crashBufEnv = "OFFSHOOT_STORAGE_CRASH_BUFFER"
	crashSlots  = 64
)

func crashBlock(i uint64) []byte {
	b := make([]byte, BlockSize)
	for j := range b {
		b[j] = byte(i) ^ byte(j)
	}
	binary.BigEndian.PutUint64(b, i+1)
	return b
}

// crashChild runs in the re-executed test binary: it continues the write
// sequence found in the store and prints "ack N" after every Sync that
// covers writes 0..N-1, until it is killed.
func crashChild(dir string) {
	fail := func(err error) {
		fmt.Println("error", err)
		os.Exit(2)
	}
	opts := &Options{GCInterval: -1}
	if n, _ := strconv.Atoi(os.Getenv(crashBufEnv)); n > 0 {
		opts.HeadBufferBytes = n * BlockSize
	}
	s, err := Open(dir, opts)
	if err != nil {
		fail(err)
	}
	if _, _, err := s.CreateProject("p"); err != nil && !errors.Is(err, ErrProjectExists) {
		fail(err)
	}
	h, err := s.OpenHead("p", "main")
	if err != nil {
		fail(err)
	}
	a, err := h.Lookup(RootIno, "data")
	if errors.Is(err, ErrNotExist) {
		a, err = h.Create(RootIno, "data", 0o600, 0, 0)
	}
	if err != nil {
		fail(err)
	}
	next, err := crashScan(h, a.Ino)
	if err != nil {
		fail(err)
	}
	// A crash may fall between write i and the creation of f<i> that
	// follows it; finish that step before going on, as crashScan expects
	// f<i> once a later write exists.
	if last := next - 1; next > 0 && last%50 == 0 {
		if _, err := h.Lookup(RootIno, fmt.Sprintf("f%d", last)); errors.Is(err, ErrNotExist) {
			if _, err := h.Create(RootIno, fmt.Sprintf("f%d", last), 0o600, 0, 0); err != nil {
				fail(err)
			}
		} else if err != nil {
			fail(err)
		}
	}
	for i := next; ; i++ {
		if _, err := h.WriteAt(a.Ino, crashBlock(i), int64(i%crashSlots)*BlockSize); err != nil {
			fail(err)
		}
		if i%50 == 0 {
			if _, err := h.Create(RootIno, fmt.Sprintf("f%d", i), 0o600, 0, 0); err != nil {
				fail(err)
			}
		}
		if i%7 == 6 {
			if err := h.Sync(); err != nil {
				fail(err)
			}
			fmt.Printf("ack %d\n", i+1)
		}
	}
}

// crashScan checks that the store holds exactly the first n writes for
// some n and returns n.
func crashScan(r treeReader, ino uint64) (uint64, error) {
	var n uint64
	buf := make([]byte, BlockSize)
	for slot := range uint64(crashSlots) {
		k, err := r.ReadAt(ino, buf, int64(slot)*BlockSize)
		if k == 0 {
			continue
		}
		if err != nil && k != BlockSize {
			return 0, err
		}
		if i := binary.BigEndian.Uint64(buf); i > n {
			n = i
		}
	}
	// With n writes, slot s holds the last i < n with i%slots == s.
	for slot := range uint64(crashSlots) {
		k, _ := r.ReadAt(ino, buf, int64(slot)*BlockSize)
		var want []byte
		if slot < n {
			last := slot + (n-1-slot)/crashSlots*crashSlots
			want = crashBlock(last)
		}
		if want == nil {
			if k != 0 && binary.BigEndian.Uint64(buf) != 0 {
				return 0, fmt.Errorf("slot %d written beyond prefix %d", slot, n)
			}
			continue
		}
		if k != BlockSize || string(buf) != string(want) {
			return 0, fmt.Errorf("slot %d: not the state after %d writes (holds write %d)", slot, n, binary.BigEndian.Uint64(buf))
		}
	}
	// File f<i> is created right after write i, so it exists for every
	// such i < n-1 and may or may not exist for i == n-1.
	for i := uint64(0); i+1 < n; i += 50 {
		if _, err := r.Lookup(RootIno, fmt.Sprintf("f%d", i)); err != nil {
			return 0, fmt.Errorf("file of write %d: %w", i, err)
		}
	}
	if _, err := r.Lookup(RootIno, fmt.Sprintf("f%d", (n+49)/50*50)); !errors.Is(err, ErrNotExist) {
		return 0, fmt.Errorf("file beyond prefix %d exists: %v", n, err)
	}
	return n, nil
}

func TestCrash(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir)
		return
	}
	crashRounds(t, "TestCrash", 0)
}

// TestCrashSmallBuffer is TestCrash with a write buffer of 5 blocks: the
// child's writes fill it every few writes (TestCrash's never do, 64
// blocks in 32 MiB), so the SIGKILL also cuts flushes of a full buffer.
func TestCrashSmallBuffer(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir)
		return
	}
	crashRounds(t, "TestCrashSmallBuffer", 5)
}

// crashRounds runs test (TestCrash or a variant) as a child in six rounds,
// each killed with SIGKILL after a few acknowledged syncs, and checks the
// store after each: a prefix of the writes, holding every acknowledged
// one. bufBlocks sets the child's write buffer (0: the default).
func crashRounds(t *testing.T, test string, bufBlocks int) {
	if testing.Short() {
		t.Skip("crash test re-executes the test binary")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	dir := t.TempDir()
	var acked uint64
	for round := range 6 {
		cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir, crashBufEnv+"="+strconv.Itoa(bufBlocks))
		out, err := cmd.StdoutPipe()
		ok(t, err)
		cmd.Stderr = os.Stderr
		ok(t, cmd.Start())
		sc := bufio.NewScanner(out)
		want := 3 + rng.IntN(40)
		for got := 0; got < want && sc.Scan(); {
			line := sc.Text()
			if n, ok := strings.CutPrefix(line, "ack "); ok {
				v, _ := strconv.ParseUint(n, 10, 64)
				if v < acked {
					t.Fatalf("round %d: child acked %d after %d", round, v, acked)
				}
				acked = v
				got++
			} else if strings.HasPrefix(line, "error") {
				t.Fatalf("round %d: child: %s", round, line)
			}
		}
		time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
		ok(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()

		s, err := Open(dir, &Options{GCInterval: -1})
		ok(t, err)
		v, err := s.OpenView("p", "main", AtHead())
		ok(t, err)
		a, err := v.Lookup(RootIno, "data")
		ok(t, err)
		n, err := crashScan(v, a.Ino)
		if err != nil {
			t.Fatalf("round %d: after SIGKILL: %v", round, err)
		}
		if n < acked {
			t.Fatalf("round %d: store holds %d writes, %d were acknowledged as synced", round, n, acked)
		}
		t.Logf("round %d: %d writes acknowledged, %d recovered", round, acked, n)
		ok(t, v.Close())
		ok(t, s.Check())
		ok(t, s.Close())
	}
}
