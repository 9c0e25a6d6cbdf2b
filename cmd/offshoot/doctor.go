package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/offshootdb/offshoot/compute/pg"
	"github.com/offshootdb/offshoot/compute/proxy"
)

// check is one doctor check. run returns what it found, or an error with
// the cause; fix says exactly what to do about a failure.
type check struct {
	name string
	// required checks make doctor (and serve) fail; others only warn.
	required bool
	fix      string
	run      func(ctx context.Context) (string, error)
}

// checkResult is the outcome of one check.
type checkResult struct {
	check
	detail string
	err    error
}

// doctorChecks are the checks `offshoot doctor` and `offshoot serve` run.
func (a *app) doctorChecks() []check {
	return []check{
		{name: "postgres 15", required: true, fix: "run scripts/setup (installs postgresql-15), or set OFFSHOOT_PG_BIN to its bin directory",
			run: func(ctx context.Context) (string, error) {
				v, err := pg.Version(ctx)
				if err != nil {
					return "", err
				}
				if !strings.Contains(v, "PostgreSQL) 15.") {
					return "", fmt.Errorf("%s at %s: want PostgreSQL 15", v, pg.BinDir())
				}
				return v + " at " + pg.BinDir(), nil
			}},
		{name: "postgres user", required: true, fix: "install postgresql-15 (it creates the user), or: useradd --system --home /var/lib/postgresql postgres",
			run: func(context.Context) (string, error) {
				u, err := pg.PostgresUser()
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("uid %d gid %d", u.UID, u.GID), nil
			}},
		{name: "project users", required: true, fix: "install the passwd package (apt-get install passwd): each project's endpoints run as an OS user of their own, made with useradd",
			run: func(context.Context) (string, error) {
				p, err := pg.Useradd()
				if err != nil {
					return "", err
				}
				if os.Geteuid() != 0 {
					return "", fmt.Errorf("%s needs root", p)
				}
				return p, nil
			}},
		{name: "pgvector", required: true, fix: "run scripts/setup (builds pgvector 0.8.7 from Debian's source package)",
			run: checkPgvector},
		{name: "fuse", required: true, fix: "load the fuse module (modprobe fuse), give the process /dev/fuse (containers: --device /dev/fuse --cap-add SYS_ADMIN), and run as root",
			run: checkFUSE},
		{name: "data dir", required: true, fix: "pass --data-dir (or OFFSHOOT_DATA_DIR) naming a writable directory on a local disk",
			run: func(context.Context) (string, error) { return checkDataDir(a.cfg.DataDir) }},
		{name: "disk space", required: true, fix: "free space on the data dir's disk or move --data-dir to a larger one",
			run: func(context.Context) (string, error) { return checkDiskSpace(a.cfg.DataDir) }},
		{name: "http port", required: true, fix: "stop what listens there or set --http-addr (OFFSHOOT_HTTP_ADDR)",
			run: func(context.Context) (string, error) { return checkPortFree(a.cfg.HTTPAddr) }},
		{name: "proxy path", fix: "run offshoot as root on Linux 5.15 or later with BPF enabled (CAP_BPF and CAP_NET_ADMIN in containers); without it the proxy relays every connection with its copy loop, which costs about two thirds of the throughput of small queries",
			run: func(context.Context) (string, error) {
				if copyOnly, err := proxyCopyOnly(a.cfg.ProxyPath); err != nil || copyOnly {
					return "copy loop for every connection (proxy_path copy)", err
				}
				if err := proxy.KernelPath(); err != nil {
					return "", fmt.Errorf("copy loop for every connection: %w", err)
				}
				return "kernel: plain-text TCP connections forwarded by a BPF sockmap (TLS and Unix-socket clients: copy loop)", nil
			}},
		{name: "wal path", fix: "set wal_path to local or store; local needs the run dir (--run-dir) on the data dir's file system",
			run: func(context.Context) (string, error) {
				if local, err := walLocal(a.cfg.WALPath); err != nil || !local {
					return "store: endpoints write their WAL through the mount (wal_path store)", err
				}
				return "local: endpoints write their WAL to <run-dir>/wal on the data dir's disk, absorbed by the store before every commit (wal_path local)", nil
			}},
		{name: "proxy port", required: true, fix: "stop what listens there or set --proxy-addr (OFFSHOOT_PROXY_ADDR)",
			run: func(context.Context) (string, error) { return checkPortFree(a.cfg.ProxyAddr) }},
	}
}

// runChecks runs every check and prints one line per check to w. It
// returns an error naming the failed required checks.
func runChecks(ctx context.Context, w io.Writer, checks []check) ([]checkResult, error) {
	var results []checkResult
	var failed []string
	for _, c := range checks {
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		detail, err := c.run(cctx)
		cancel()
		results = append(results, checkResult{check: c, detail: detail, err: err})
		switch {
		case err == nil:
			fmt.Fprintf(w, "ok    %-12s %s\n", c.name, detail)
		case c.required:
			failed = append(failed, c.name)
			fmt.Fprintf(w, "FAIL  %-12s %v\n      fix: %s\n", c.name, err, c.fix)
		default:
			fmt.Fprintf(w, "warn  %-12s %v\n      fix: %s\n", c.name, err, c.fix)
		}
	}
	if len(failed) > 0 {
		return results, fmt.Errorf("doctor: failed: %s", strings.Join(failed, ", "))
	}
	return results, nil
}

func init() {
	subcommands = append(subcommands, func(a *app) *cobra.Command {
		cmd := &cobra.Command{
			Use:   "doctor",
			Short: "Check that this machine can run offshoot, and say how to fix what it cannot",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if _, err := runChecks(cmd.Context(), a.stdout, a.doctorChecks()); err != nil {
					return &exitError{code: 1, err: err}
				}
				return nil
			},
		}
		addAddrFlags(cmd, a)
		return cmd
	})
}

// addAddrFlags adds the listen-address flags shared by serve and doctor.
func addAddrFlags(cmd *cobra.Command, a *app) {
	cmd.Flags().StringVar(&a.cfg.HTTPAddr, "http-addr", a.cfg.HTTPAddr, "HTTP API listen address (env OFFSHOOT_HTTP_ADDR)")
	cmd.Flags().StringVar(&a.cfg.ProxyAddr, "proxy-addr", a.cfg.ProxyAddr, "pgwire proxy listen address (env OFFSHOOT_PROXY_ADDR)")
}

// checkPgvector starts a throwaway cluster and creates the extension: the
// only proof that the installed library loads into this server.
func checkPgvector(ctx context.Context) (string, error) {
	shareDir := "/usr/share/postgresql/15"
	ctl := filepath.Join(shareDir, "extension", "vector.control")
	b, err := os.ReadFile(ctl)
	if err != nil {
		return "", fmt.Errorf("pgvector not installed: %s missing", ctl)
	}
	ver := ""
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "default_version = "); ok {
			ver = strings.Trim(v, "' ")
		}
	}
	dir, err := os.MkdirTemp("", "offshoot-doctor-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	data := filepath.Join(dir, "data")
	if err := pg.InitDB(ctx, pg.InitOptions{DataDir: data}); err != nil {
		return "", err
	}
	p, err := pg.Start(ctx, pg.Options{DataDir: data, SocketDir: filepath.Join(dir, "sock"), LogFile: filepath.Join(dir, "log"),
		Settings: map[string]string{"shared_buffers": "16MB", "fsync": "off"}})
	if err != nil {
		return "", err
	}
	defer p.Stop(context.Background(), pg.Immediate)
	conn := p.ConnString("postgres", "", "postgres")
	if err := p.WaitReady(ctx, conn); err != nil {
		return "", fmt.Errorf("%w: %s", err, pg.LastLines(filepath.Join(dir, "log"), 5))
	}
	c, err := pgx.Connect(ctx, conn)
	if err != nil {
		return "", err
	}
	defer c.Close(context.Background())
	var d float64
	if _, err := c.Exec(ctx, "CREATE EXTENSION vector"); err != nil {
		return "", fmt.Errorf("CREATE EXTENSION vector: %w", err)
	}
	if err := c.QueryRow(ctx, "SELECT '[1,2,3]'::vector <-> '[4,6,3]'::vector").Scan(&d); err != nil {
		return "", fmt.Errorf("vector query: %w", err)
	}
	if d != 5 {
		return "", fmt.Errorf("vector distance %v, want 5", d)
	}
	return "pgvector " + ver + " loads and answers", nil
}

// checkFUSE mounts an empty filesystem in a temp dir, stats it and unmounts.
func checkFUSE(ctx context.Context) (string, error) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return "", fmt.Errorf("/dev/fuse: %w", err)
	}
	dir, err := os.MkdirTemp("", "offshoot-fuse-")
	if err != nil {
		return "", err
	}
	defer os.Remove(dir)
	srv, err := fs.Mount(dir, &fs.Inode{}, &fs.Options{MountOptions: fuse.MountOptions{
		DirectMount: true, FsName: "offshoot-doctor", Name: "offshoot"}})
	if err != nil {
		return "", fmt.Errorf("test mount: %w", err)
	}
	var st syscall.Statfs_t
	statErr := syscall.Statfs(dir, &st)
	if err := srv.Unmount(); err != nil {
		return "", fmt.Errorf("test unmount: %w", err)
	}
	if statErr != nil {
		return "", fmt.Errorf("stat test mount: %w", statErr)
	}
	const fuseSuperMagic = 0x65735546
	if st.Type != fuseSuperMagic {
		return "", fmt.Errorf("test mount is not FUSE (fs type %#x)", st.Type)
	}
	return "test mount, stat and unmount succeeded", nil
}

// checkDataDir creates the data dir if needed and proves it writable.
func checkDataDir(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create data dir: %w", err)
	}
	f, err := os.CreateTemp(dir, ".doctor-*")
	if err != nil {
		return "", fmt.Errorf("data dir not writable: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.WriteString("offshoot"); err != nil {
		return "", fmt.Errorf("write in data dir: %w", err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("fsync in data dir: %w", err)
	}
	return dir + " is writable", nil
}

// minFreeBytes is the free space below which serve refuses to start.
const minFreeBytes = 1 << 30

func checkDiskSpace(dir string) (string, error) {
	var st syscall.Statfs_t
	// The data dir may not exist yet: stat its nearest existing ancestor.
	for d := dir; ; d = filepath.Dir(d) {
		if err := syscall.Statfs(d, &st); err == nil {
			break
		} else if d == filepath.Dir(d) {
			return "", fmt.Errorf("statfs %s: %w", dir, err)
		}
	}
	free := st.Bavail * uint64(st.Bsize)
	if free < minFreeBytes {
		return "", fmt.Errorf("%s free, need at least %s", humanBytes(free), humanBytes(minFreeBytes))
	}
	return humanBytes(free) + " free", nil
}

func checkPortFree(addr string) (string, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return "", fmt.Errorf("%s is already in use", addr)
		}
		return "", fmt.Errorf("cannot listen on %s: %w", addr, err)
	}
	l.Close()
	return addr + " is free", nil
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
