package main

import (
	"crypto/tls"
	"fmt"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/offshootdb/offshoot/compute"
	"github.com/offshootdb/offshoot/compute/proxy"
	"github.com/spf13/cobra"
)

func init() {
	subcommands = append(subcommands, func(a *app) *cobra.Command {
		var (
			branches, project, certFile, keyFile, socketDir string
			maxRunning                                      int
			timers                                          = compute.DefaultTimers
		)
		cmd := &cobra.Command{
			Use:   "proxy",
			Short: "Serve branches in plain directories through the autosuspending pgwire proxy",
			Long: `proxy runs the endpoint manager and the pgwire proxy over plain branch
directories: the PGDATA of branch B of project P is <branches>/<P>/<B>, an
initdb'd cluster owned by the postgres OS user (what "offshoot branch export"
writes where FUSE is not available). Connect with
  psql "host=127.0.0.1 port=55432 user=postgres options='endpoint=<branch> project=<project>'"
Endpoints start on the first connection, idle, suspend and stop on their own.`,
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if branches == "" {
					branches = filepath.Join(a.cfg.DataDir, "branches")
				}
				ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
				defer stop()
				m, err := compute.New(compute.Config{
					// This proxy passes authentication through to Postgres.
					LocalAuth: "scram-sha-256",
					Volumes:   compute.DirVolumes{Root: branches}, RunDir: filepath.Join(a.cfg.DataDir, "run", "compute"),
					Timers: &timers, MaxRunning: maxRunning, Logger: a.log,
				})
				if err != nil {
					return err
				}
				if err := m.Open(ctx); err != nil {
					return err
				}
				defer m.Close()
				pcfg := proxy.Config{Addr: a.cfg.ProxyAddr, SocketDir: socketDir, Manager: m, DefaultProject: project, Logger: a.log}
				if certFile != "" {
					cert, err := tls.LoadX509KeyPair(certFile, keyFile)
					if err != nil {
						return fmt.Errorf("proxy tls: %w", err)
					}
					pcfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
				}
				srv, err := proxy.New(pcfg)
				if err != nil {
					return err
				}
				if err := srv.Open(ctx); err != nil {
					return err
				}
				defer srv.Close()
				a.log.Info("proxy listening", "addr", srv.Addr().String(), "socket", srv.SocketPath(), "branches", branches, "default_project", project)
				<-ctx.Done()
				a.log.Info("shutting down")
				return nil
			},
		}
		f := cmd.Flags()
		f.StringVar(&branches, "branches", "", "root of the branch directories (default <data-dir>/branches)")
		f.StringVar(&project, "project", "default", "project of connections that name none")
		f.StringVar(&a.cfg.ProxyAddr, "proxy-addr", a.cfg.ProxyAddr, "listen address (env OFFSHOOT_PROXY_ADDR)")
		f.StringVar(&socketDir, "socket-dir", "", "also listen on a Unix socket in this directory (clients use host=<dir>)")
		f.StringVar(&certFile, "tls-cert", "", "TLS certificate (PEM) offered on SSLRequest")
		f.StringVar(&keyFile, "tls-key", "", "TLS key (PEM)")
		f.IntVar(&maxRunning, "max-endpoints", 16, "maximum running endpoints")
		f.DurationVar(&timers.IdleAfter, "idle-after", timers.IdleAfter, "idle after no connection for this long (0 never)")
		f.DurationVar(&timers.SuspendAfter, "suspend-after", timers.SuspendAfter, "suspend (stop Postgres) after no connection for this long (0 never)")
		f.DurationVar(&timers.StopAfter, "stop-after", timers.StopAfter, "release the volume after no connection for this long (0 never)")
		return cmd
	})
}
