package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/offshootdb/offshoot/agentapi"
	"github.com/offshootdb/offshoot/experiments"
)

func init() {
	subcommands = append(subcommands, func(a *app) *cobra.Command {
		cmd := &cobra.Command{
			Use:   "serve",
			Short: "Run the offshoot server (HTTP API, pgwire proxy, computes)",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				return a.serve(ctx)
			},
		}
		addAddrFlags(cmd, a)
		return cmd
	})
}

// lockDataDir takes an exclusive lock on the data dir so two servers never
// share one store. The lock is released when the process exits.
func lockDataDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data dir %s is in use by another offshoot process (lock %s): %w", dir, f.Name(), err)
	}
	return f, nil
}

func (a *app) serve(ctx context.Context) error {
	if _, err := runChecks(ctx, a.stderr, a.doctorChecks()); err != nil {
		return &exitError{code: 1, err: fmt.Errorf("%w (see the fixes above; `offshoot doctor` repeats these checks)", err)}
	}
	lock, err := lockDataDir(a.cfg.DataDir)
	if err != nil {
		return err
	}
	defer lock.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	svc, err := experiments.New(experiments.Config{ControlDir: filepath.Join(a.cfg.DataDir, "control"), Logger: a.log})
	if err != nil {
		return err
	}
	if err := svc.Open(ctx); err != nil {
		return err
	}
	defer svc.Close()
	api, err := agentapi.New(agentapi.Config{Service: svc, Logger: a.log, Registry: reg})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", a.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- api.Serve(ctx, ln) }()

	a.log.Info("offshoot serving", "http", "http://"+ln.Addr().String(), "data_dir", a.cfg.DataDir)
	fmt.Fprintf(a.stdout, "offshoot %s\n  data dir  %s\n  http      http://%s  (/v1 API, /v1/openapi.json, /healthz, /readyz, /metrics)\n", version, a.cfg.DataDir, ln.Addr())
	fmt.Fprintln(a.stdout, "  not yet available: branch storage, computes and the pgwire proxy (queries and diffs answer 503 until they land), MCP, experiments, web UI")

	if err := <-errc; err != nil {
		return err
	}
	a.log.Info("stopped")
	return nil
}
