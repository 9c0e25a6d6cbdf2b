package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/offshootdb/offshoot/cmd/offshoot/internal/servetls"
	"github.com/offshootdb/offshoot/compute"
	"github.com/offshootdb/offshoot/mcp"
)

func init() {
	subcommands = append(subcommands, func(a *app) *cobra.Command {
		var token string
		cmd := &cobra.Command{
			Use:   "mcp",
			Short: "Serve the MCP tools over stdio, for agents that spawn their tool servers",
			Long: `mcp speaks the Model Context Protocol on stdin/stdout (newline-delimited
JSON-RPC) with the tools fork_branch, run_sql, diff_branches, discard_branch and
the rest. Logs go to stderr.

If an offshoot server already runs on the data dir (its LOCK is held), mcp
forwards to that server's /mcp endpoint over streamable HTTP, sending --token
(OFFSHOOT_TOKEN) when set. Otherwise it runs the server itself, in this
process, on a loopback HTTP port of its own, and stops it when stdin ends.`,
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				// Clients close our stderr when they are done; without this a
				// log line written then would kill the process (SIGPIPE)
				// before the in-process server has stopped its endpoints.
				signal.Ignore(syscall.SIGPIPE)
				return a.mcpStdio(ctx, token, os.Stdin, a.stdout)
			},
		}
		addAddrFlags(cmd, a)
		cmd.Flags().StringVar(&token, "token", os.Getenv("OFFSHOOT_TOKEN"), "API key token sent to the server (env OFFSHOOT_TOKEN)")
		return cmd
	})
}

// serverInfo is what a running server records in its data dir, so that
// `offshoot mcp` can find it.
type serverInfo struct {
	HTTP string `json:"http"` // host:port of the HTTP API
	// TLS says the HTTP API serves https (and plain http to loopback).
	TLS bool `json:"tls,omitempty"`
	// CAFile is the generated CA that verifies the server; "" when the
	// server uses --tls-cert (trusted through the system roots).
	CAFile string `json:"ca_file,omitempty"`
}

func serverInfoPath(dataDir string) string { return filepath.Join(dataDir, "server.json") }

// writeServerInfo records how to reach the server holding the data dir's
// lock.
func writeServerInfo(dataDir string, si serverInfo) error {
	b, _ := json.Marshal(si)
	p := serverInfoPath(dataDir)
	if err := os.WriteFile(p+".tmp", b, 0o644); err != nil {
		return fmt.Errorf("server info: %w", err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		return fmt.Errorf("server info: %w", err)
	}
	return nil
}

func readServerInfo(dataDir string) (serverInfo, error) {
	var si serverInfo
	b, err := os.ReadFile(serverInfoPath(dataDir))
	if err != nil {
		return si, err
	}
	if err := json.Unmarshal(b, &si); err != nil || si.HTTP == "" {
		return si, fmt.Errorf("server info %s: malformed", serverInfoPath(dataDir))
	}
	return si, nil
}

// dataDirLocked reports whether a server holds the data dir's lock.
func dataDirLocked(dir string) (bool, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("data dir lock: %w", err)
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("data dir lock: %w", err)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false, nil
}

// mcpStdio serves MCP on in/out: forwarding to the server that holds the
// data dir, or running one in this process.
func (a *app) mcpStdio(ctx context.Context, token string, in io.Reader, out io.Writer) error {
	locked, err := dataDirLocked(a.cfg.DataDir)
	if err != nil {
		return err
	}
	if locked {
		si, err := readServerInfo(a.cfg.DataDir)
		if err != nil {
			si = serverInfo{HTTP: a.cfg.HTTPAddr}
		}
		url, opts, err := a.forwardTarget(si)
		if err != nil {
			return err
		}
		a.log.Info("mcp: forwarding to the server running on the data dir", "data_dir", a.cfg.DataDir, "url", url)
		return mcp.Forward(ctx, url, token, in, out, opts...)
	}

	// No server: run one here, its HTTP API on a private loopback port, and
	// forward to it, so both paths serve MCP the same way. Its banner goes
	// to stderr: stdout is the MCP channel.
	os.Remove(serverInfoPath(a.cfg.DataDir)) // stale, from a crashed server
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := *a
	srv.cfg.HTTPAddr = "127.0.0.1:0"
	srv.stdout = a.stderr
	done := make(chan error, 1)
	go func() { done <- srv.serve(sctx, serveOptions{timers: compute.DefaultTimers}) }()
	a.log.Info("mcp: starting an in-process server on the data dir", "data_dir", a.cfg.DataDir)
	var si serverInfo
	for tick := time.NewTicker(50 * time.Millisecond); ; {
		if si, err = readServerInfo(a.cfg.DataDir); err == nil {
			tick.Stop()
			break
		}
		select {
		case err := <-done:
			tick.Stop()
			if err == nil {
				err = errors.New("stopped before serving")
			}
			return fmt.Errorf("mcp: in-process server: %w", err)
		case <-ctx.Done():
			tick.Stop()
			<-done
			return nil
		case <-tick.C:
		}
	}
	url, opts, err := a.forwardTarget(si)
	if err != nil {
		cancel()
		<-done
		return err
	}
	ferr := mcp.Forward(sctx, url, token, in, out, opts...)
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ferr
}

// forwardTarget is the /mcp URL of the server si describes and the
// options to reach it: https verified against the server's CA (plus the
// system roots) when the server speaks TLS, so the forwarding never trusts
// what answers on the port blindly. A wildcard bind address is reached on
// 127.0.0.1, a name the generated certificate always carries.
func (a *app) forwardTarget(si serverInfo) (string, []mcp.ForwardOption, error) {
	host, port, err := net.SplitHostPort(si.HTTP)
	if err != nil {
		return "", nil, fmt.Errorf("server address %q: %w", si.HTTP, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	addr := net.JoinHostPort(host, port)
	if !si.TLS {
		return "http://" + addr + "/mcp", nil, nil
	}
	cfg, err := servetls.ClientConfig([]string{si.CAFile}, nil)
	if err != nil {
		return "", nil, fmt.Errorf("mcp: %w", err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, Proxy: http.ProxyFromEnvironment}}
	return "https://" + addr + "/mcp", []mcp.ForwardOption{mcp.WithHTTPClient(hc)}, nil
}
