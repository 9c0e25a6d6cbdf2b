package compute_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/offshootdb/offshoot/compute"
	"github.com/offshootdb/offshoot/compute/pg"
	"github.com/offshootdb/offshoot/compute/pg/pgtest"
	"github.com/offshootdb/offshoot/storage"
)

// TestIsolation runs the main branches of two projects of the copy-on-write
// store side by side and, as each one's superuser, tries every way Postgres
// offers to read the other's data directory, WAL, run directory, log and
// socket: each fails with permission denied, while the session's own files
// read fine and its processes run as its project's OS user.
func TestIsolation(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := pgtest.Dir(t)
	st, err := storage.Open(filepath.Join(dir, "store"), &storage.Options{GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	projects := []string{"iso-a", "iso-b"}
	pws := map[string]string{}
	for _, p := range projects {
		if _, _, err := st.CreateProject(p); err != nil {
			t.Fatal(err)
		}
		h, err := st.OpenHead(p, "main")
		if err != nil {
			t.Fatal(err)
		}
		pws[p], err = compute.InitProject(ctx, h, filepath.Join(dir, "init-"+p), compute.InitOptions{Project: p})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
	}
	run := filepath.Join(dir, "run")
	vols := compute.StoreVolumes{Store: st, MountDir: filepath.Join(run, "mnt")}
	m, err := compute.New(compute.Config{Volumes: vols, RunDir: filepath.Join(run, "compute"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	type endpoint struct {
		lease *compute.Lease
		conn  *pgx.Conn
		data  string
		user  pg.OSUser
	}
	eps := map[string]*endpoint{}
	for _, p := range projects {
		l, err := m.Acquire(ctx, p, "main")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release()
		conn, err := pgx.Connect(ctx, l.ConnString("postgres", pws[p], "postgres"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		u, err := compute.ProjectUser(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		eps[p] = &endpoint{lease: l, conn: conn, data: vols.MountPoint(p, "main"), user: u}
	}
	if a, b := eps["iso-a"].user, eps["iso-b"].user; a.UID == b.UID || a.UID == 0 {
		t.Fatalf("projects run as uid %d and %d, want two distinct unprivileged users", a.UID, b.UID)
	}

	// output runs a shell command through COPY FROM PROGRAM on conn (as
	// the postmaster's OS user) and returns what it printed.
	output := func(conn *pgx.Conn, shell string) string {
		t.Helper()
		if _, err := conn.Exec(ctx, "CREATE TEMP TABLE IF NOT EXISTS out (line text); TRUNCATE out"); err != nil {
			t.Fatal(err)
		}
		q := fmt.Sprintf("COPY out FROM PROGRAM %s WITH (FORMAT text, DELIMITER E'\\x01')", quote("("+shell+") 2>&1; true"))
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		var s string
		if err := conn.QueryRow(ctx, "SELECT coalesce(string_agg(line, E'\\n'), '') FROM out").Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}

	for _, pair := range [][2]string{{"iso-a", "iso-b"}, {"iso-b", "iso-a"}} {
		self, other := eps[pair[0]], eps[pair[1]]
		t.Run(pair[0]+"-reads-"+pair[1], func(t *testing.T) {
			// The session's own files.
			var v string
			if err := self.conn.QueryRow(ctx, "SELECT pg_read_file($1)", filepath.Join(self.data, "PG_VERSION")).Scan(&v); err != nil || v != "15\n" {
				t.Errorf("own PG_VERSION: %q, %v", v, err)
			}
			var n int
			if err := self.conn.QueryRow(ctx, "SELECT count(*) FROM pg_ls_dir($1)", filepath.Join(self.data, "pg_wal")).Scan(&n); err != nil || n == 0 {
				t.Errorf("own pg_wal: %d entries, %v", n, err)
			}
			// The other's, through SQL functions.
			runDir := filepath.Dir(other.lease.SocketDir)
			for _, c := range []struct{ sql, arg string }{
				{"SELECT pg_read_file($1)", filepath.Join(other.data, "PG_VERSION")},
				{"SELECT count(*)::text FROM pg_ls_dir($1)", filepath.Join(other.data, "pg_wal")},
				{"SELECT count(*)::text FROM pg_ls_dir($1)", filepath.Dir(other.data)},
				{"SELECT pg_read_file($1)", filepath.Join(runDir, "postgres.log")},
				{"SELECT count(*)::text FROM pg_ls_dir($1)", runDir},
				{"SELECT count(*)::text FROM pg_ls_dir($1)", filepath.Dir(runDir)},
			} {
				var s string
				err := self.conn.QueryRow(ctx, c.sql, c.arg).Scan(&s)
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Message, "Permission denied") {
					t.Errorf("%s on %s: %q, %v; want permission denied (42501)", c.sql, c.arg, s, err)
				}
			}
			// Through a program the server runs.
			_, err := self.conn.Exec(ctx, "COPY (SELECT 1) TO PROGRAM "+quote("cat "+filepath.Join(other.data, "PG_VERSION")+" >&2"))
			if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || pe.Code != "38000" || !strings.Contains(pe.Detail, "exit code 1") {
				t.Errorf("COPY TO PROGRAM cat the other's PG_VERSION: %v, want the program to fail with exit code 1", err)
			}
			for _, shell := range []string{
				"cat " + filepath.Join(other.data, "PG_VERSION"),
				"ls " + filepath.Join(other.data, "pg_wal"),
				"cat " + filepath.Join(runDir, "pg_hba.conf"),
				"ls " + other.lease.SocketDir,
				fmt.Sprintf("%s -h %s -p %d -U postgres -d postgres -w -c 'SELECT 1'", pg.Bin("psql"), other.lease.SocketDir, other.lease.Port),
			} {
				if out := output(self.conn, shell); !strings.Contains(out, "Permission denied") {
					t.Errorf("%s printed %q, want Permission denied", shell, out)
				}
			}
			// The postmaster and the backend run as the project's user.
			pid, err := os.ReadFile(filepath.Join(self.data, "postmaster.pid"))
			if err != nil {
				t.Fatal(err)
			}
			var backend int
			if err := self.conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{strings.SplitN(string(pid), "\n", 2)[0], fmt.Sprint(backend)} {
				status, err := os.ReadFile("/proc/" + p + "/status")
				if err != nil {
					t.Fatal(err)
				}
				want := fmt.Sprintf("Uid:\t%d\t%d\t%d\t%d", self.user.UID, self.user.UID, self.user.UID, self.user.UID)
				if !strings.Contains(string(status), want+"\n") {
					t.Errorf("process %s: %q not in its status", p, want)
				}
				// ... and hold no FUSE connection (the other's mount's).
				fds, _ := filepath.Glob("/proc/" + p + "/fd/*")
				for _, fd := range fds {
					if l, _ := os.Readlink(fd); l == "/dev/fuse" {
						t.Errorf("process %s holds a FUSE connection (%s)", p, fd)
					}
				}
			}
		})
	}
}

// quote is a SQL string literal.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// childVolumes are the volumes of child: the store's (storeVolumes) when
// OFFSHOOT_COMPUTE_CHILD_STORE is set (TestOrphanCleanupIsolated), else
// plain directories in dir/branches.
func childVolumes(dir string) (compute.Volumes, error) {
	if os.Getenv("OFFSHOOT_COMPUTE_CHILD_STORE") == "" {
		return compute.DirVolumes{Root: filepath.Join(dir, "branches")}, nil
	}
	return storeVolumes(dir)
}

// storeVolumes opens the store in dir/store and mounts under dir/mnt.
func storeVolumes(dir string) (compute.StoreVolumes, error) {
	st, err := storage.Open(filepath.Join(dir, "store"), &storage.Options{GCInterval: -1})
	if err != nil {
		return compute.StoreVolumes{}, err
	}
	return compute.StoreVolumes{Store: st, MountDir: filepath.Join(dir, "mnt")}, nil
}

// TestOrphanCleanupIsolated kills -9 a process serving a branch of the
// store, whose postmaster runs as the project's OS user on a FUSE mount
// that dies with it: a new Manager on the same run dir stops the orphaned
// postmaster, detaches the dead mount and serves the branch again.
func TestOrphanCleanupIsolated(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := pgtest.Dir(t)
	st, err := storage.Open(filepath.Join(dir, "store"), &storage.Options{GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.CreateProject("p"); err != nil {
		t.Fatal(err)
	}
	h, err := st.OpenHead("p", "main")
	if err != nil {
		t.Fatal(err)
	}
	pw, err := compute.InitProject(ctx, h, filepath.Join(dir, "init"), compute.InitOptions{Project: "p"})
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	u, err := compute.ProjectUser(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "OFFSHOOT_COMPUTE_CHILD="+dir, "OFFSHOOT_COMPUTE_CHILD_STORE=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "READY ") {
		cmd.Process.Kill()
		t.Fatalf("child: %q %v", line, err)
	}
	pid, _ := strconv.Atoi(strings.Fields(line)[1])
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if want := fmt.Sprintf("\nUid:\t%d\t", u.UID); err != nil || !strings.Contains(string(status), want) {
		t.Errorf("postmaster %d: %q not in its status (%v)", pid, want, err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if !alive(pid) {
		t.Fatal("postmaster died with its parent; nothing to clean")
	}

	vols, err := storeVolumes(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer vols.Store.Close()
	m, err := compute.New(compute.Config{Volumes: vols, RunDir: filepath.Join(dir, "run"), Password: pw,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if alive(pid) {
		t.Fatalf("orphaned postmaster %d still running after Open", pid)
	}
	l, err := m.Acquire(ctx, "p", "main")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	conn, err := pgx.Connect(ctx, l.ConnString("postgres", pw, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, "SELECT 'works'").Scan(&s); err != nil || s != "works" {
		t.Fatalf("%q %v", s, err)
	}
}
