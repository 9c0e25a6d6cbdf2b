package compute

// The pid file of each running Postgres, and the orphans a crashed
// server left behind.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pidRecord is the pid file of one endpoint under RunDir.
type pidRecord struct {
	Pid     int    `json:"pid"`
	DataDir string `json:"data_dir"`
	Project string `json:"project"`
	Branch  string `json:"branch"`
}

func writePidFile(path string, r pidRecord) error {
	b, _ := json.Marshal(r)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// cleanOrphans stops every postmaster recorded under RunDir (left by a
// crashed run) and removes the records.
func (m *Manager) cleanOrphans(ctx context.Context) error {
	files, err := filepath.Glob(filepath.Join(m.cfg.RunDir, "*", "postmaster.json"))
	if err != nil {
		return err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var r pidRecord
		if err := json.Unmarshal(b, &r); err != nil || r.Pid <= 1 {
			m.log.Warn("removing unreadable pid file", "file", f)
			os.Remove(f)
			continue
		}
		if isPostmaster(r.Pid, r.DataDir) {
			m.log.Warn("stopping orphaned postmaster", "pid", r.Pid, "project", r.Project, "branch", r.Branch, "data_dir", r.DataDir)
			_ = syscall.Kill(-r.Pid, syscall.SIGQUIT) // immediate shutdown of its process group
			deadline := time.Now().Add(5 * time.Second)
			for alive(r.Pid) && time.Now().Before(deadline) && ctx.Err() == nil {
				time.Sleep(20 * time.Millisecond)
			}
			_ = syscall.Kill(-r.Pid, syscall.SIGKILL)
			for alive(r.Pid) && ctx.Err() == nil {
				time.Sleep(10 * time.Millisecond)
			}
		}
		// The dead postmaster may linger as a zombie until init reaps it,
		// and Postgres refuses a socket lock file whose pid still answers
		// kill(pid, 0): remove its socket and lock file now.
		if socks, _ := filepath.Glob(filepath.Join(filepath.Dir(f), "*", ".s.PGSQL.*")); len(socks) > 0 {
			for _, sf := range socks {
				os.Remove(sf)
			}
		}
		os.Remove(f)
	}
	return ctx.Err()
}

// eachProc calls fn with the pid of every process but this one.
func eachProc(fn func(pid int)) {
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if pid, err := strconv.Atoi(d.Name()); err == nil && pid != os.Getpid() {
			fn(pid)
		}
	}
}

// alive reports whether pid runs (zombies count as dead).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// state is the field after "(comm)".
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

// isPostmaster reports whether pid is a live postgres serving dataDir.
func isPostmaster(pid int, dataDir string) bool {
	if !alive(pid) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(b), "\x00")
	if len(args) == 0 || filepath.Base(args[0]) != "postgres" {
		return false
	}
	for i, a := range args {
		if a == "-D" && i+1 < len(args) && args[i+1] == dataDir {
			return true
		}
	}
	return false
}
