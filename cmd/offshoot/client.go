package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/offshootdb/offshoot/cmd/offshoot/internal/servetls"
)

// Exit codes of the client verbs (query, diff, key, audit).
const (
	exitFailure     = 1 // anything else, including internal server errors
	exitBadInput    = 2 // the server refused the input (400)
	exitNoServer    = 3 // no server reachable, or it is unavailable (503)
	exitAuth        = 4 // no, wrong or insufficient API key (401, 403)
	exitNotFound    = 5 // project, branch or key not found (404)
	exitConflict    = 6 // conflicts with current state (409)
	exitQueryFailed = 7 // Postgres rejected a statement (422)
	exitCapacity    = 8 // over a quota or capacity; retry later (429)
)

// defaultServer is the API address when neither --server nor
// OFFSHOOT_SERVER is set.
const defaultServer = "http://127.0.0.1:8432"

// client talks to a running server's HTTP API.
type client struct {
	server string
	token  string
	json   bool
	caFile string         // --ca-file: a CA that verifies an https server
	cmd    *cobra.Command // for the resolved --data-dir (whose tls/ca.crt is trusted too)
	http   *http.Client
	// app and serverFlag decide whether to use the admin socket of the
	// server running on the data dir (see adminSocket); nil: never.
	app        *app
	serverFlag *pflag.Flag
	serverEnv  bool
}

// addClientFlags adds --server, --token and --json to a client verb.
func addClientFlags(cmd *cobra.Command, a *app, c *client) {
	server := os.Getenv("OFFSHOOT_SERVER")
	c.serverEnv = server != ""
	if server == "" {
		server = defaultServer
	}
	f := cmd.Flags()
	f.StringVar(&c.server, "server", server, "offshoot server URL (env OFFSHOOT_SERVER); without it, --token and OFFSHOOT_TOKEN, the admin socket of the server on --data-dir is used when this user may open it")
	f.StringVar(&c.token, "token", os.Getenv("OFFSHOOT_TOKEN"), "API key token (env OFFSHOOT_TOKEN)")
	f.BoolVar(&c.json, "json", false, "print the server's JSON answer, for scripts")
	f.StringVar(&c.caFile, "ca-file", os.Getenv("OFFSHOOT_CA_FILE"), "PEM CA that verifies an https --server, besides the system roots and <data-dir>/tls/ca.crt (env OFFSHOOT_CA_FILE; `offshoot ca` on the server prints it)")
	c.cmd = cmd
	c.app, c.serverFlag = a, f.Lookup("server")
}

// httpClient is the client's HTTP client: for an https server it verifies
// the server against the system roots, --ca-file and the data dir's
// generated CA (when there is one).
func (c *client) httpClient() (*http.Client, error) {
	if c.http != nil {
		return c.http, nil
	}
	var optional []string
	if c.cmd != nil {
		if f := c.cmd.Flag("data-dir"); f != nil {
			optional = append(optional, filepath.Join(servetls.Dir(f.Value.String()), servetls.CACertFile))
		}
	}
	cfg, err := servetls.ClientConfig([]string{c.caFile}, optional)
	if err != nil {
		return nil, &exitError{code: exitBadInput, err: fmt.Errorf("--ca-file: %w", err)}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	c.http = &http.Client{Timeout: 10 * time.Minute, Transport: tr}
	return c.http, nil
}

// adminSocketPath is where a server listens for its local admin channel.
func adminSocketPath(dataDir string) string { return filepath.Join(dataDir, "admin.sock") }

// adminSocket returns the admin socket of the server on the data dir when
// the call should use it: no server and no token were given (flag or
// environment), and the socket exists and this user may write to it. On
// the socket every call acts as the local operator.
func (c *client) adminSocket() string {
	if c.app == nil || c.token != "" || c.serverEnv || (c.serverFlag != nil && c.serverFlag.Changed) {
		return ""
	}
	p := adminSocketPath(c.app.cfg.DataDir)
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Type() != os.ModeSocket || syscall.Access(p, 2 /* W_OK */) != nil {
		return ""
	}
	return p
}

// problem is the RFC 9457 body the server sends with every error.
type problem struct {
	Status   int    `json:"status"`
	Title    string `json:"title"`
	Detail   string `json:"detail"`
	Code     string `json:"code"`
	Field    string `json:"field"`
	Postgres *struct {
		Statement int    `json:"statement"`
		SQLState  string `json:"sqlstate"`
		Message   string `json:"message"`
		Detail    string `json:"detail"`
		Hint      string `json:"hint"`
		Position  int    `json:"position"`
	} `json:"postgres"`
	RequestID string `json:"request_id"`
}

// rawBody is a request body that do sends as is, not as JSON.
type rawBody struct {
	data        []byte
	contentType string
}

// do sends a request and decodes a 2xx JSON answer into out (and returns
// its raw bytes). body is sent as JSON, or as is when it is a rawBody.
// Errors are *exitError with a message that says what to do.
func (c *client) do(ctx context.Context, method, path string, body, out any) ([]byte, error) {
	var rd io.Reader
	contentType := "application/json"
	if raw, ok := body.(rawBody); ok {
		rd, contentType = bytes.NewReader(raw.data), raw.contentType
	} else if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	base := strings.TrimRight(c.server, "/")
	var hc *http.Client
	if sock := c.adminSocket(); sock != "" {
		base = "http://offshoot"
		hc = &http.Client{Timeout: 10 * time.Minute, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			}}}
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return nil, &exitError{code: exitBadInput, err: fmt.Errorf("--server %q: %w", c.server, err)}
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if hc == nil {
		if hc, err = c.httpClient(); err != nil {
			return nil, err
		}
	}
	resp, err := hc.Do(req)
	if err != nil {
		var verr *tls.CertificateVerificationError
		if errors.As(err, &verr) {
			return nil, &exitError{code: exitNoServer, err: fmt.Errorf("the server at %s is not trusted: %w: pass --ca-file (OFFSHOOT_CA_FILE) with the CA that `offshoot ca` prints on the server", base, verr)}
		}
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return nil, &exitError{code: exitNoServer, err: fmt.Errorf("no offshoot server is running at %s: start one with `make run` or `offshoot serve`, or point --server (OFFSHOOT_SERVER) at a running server", base)}
		}
		return nil, &exitError{code: exitNoServer, err: fmt.Errorf("cannot reach the offshoot server at %s: %w", base, err)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read answer from %s: %w", base, err)
	}
	if resp.StatusCode >= 400 {
		return b, c.problemError(resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return b, fmt.Errorf("decode answer from %s: %w", base, err)
		}
	}
	return b, nil
}

// problemError turns an error answer into an exitError with a message.
func (c *client) problemError(status int, b []byte) error {
	var p problem
	if err := json.Unmarshal(b, &p); err != nil || p.Status == 0 {
		return &exitError{code: exitFailure, err: fmt.Errorf("server answered %d: %s", status, strings.TrimSpace(string(b)))}
	}
	msg := p.Detail
	if msg == "" {
		msg = p.Title
	}
	code := exitFailure
	switch status {
	case http.StatusBadRequest:
		code = exitBadInput
		if p.Field != "" && !strings.HasPrefix(msg, p.Field) {
			msg = p.Field + ": " + msg
		}
	case http.StatusUnauthorized:
		code = exitAuth
		if c.token == "" {
			msg += " (pass --token or set OFFSHOOT_TOKEN)"
		}
	case http.StatusForbidden:
		code = exitAuth
	case http.StatusNotFound:
		code = exitNotFound
	case http.StatusConflict:
		code = exitConflict
	case http.StatusUnprocessableEntity:
		code = exitQueryFailed
	case http.StatusTooManyRequests:
		code = exitCapacity
	case http.StatusServiceUnavailable:
		code = exitNoServer
	}
	if p.Postgres != nil {
		msg = fmt.Sprintf("ERROR:  %s (SQLSTATE %s)", p.Postgres.Message, p.Postgres.SQLState)
	}
	if status >= 500 && p.RequestID != "" {
		msg += " (request id " + p.RequestID + ")"
	}
	return &exitError{code: code, err: &problemErr{msg: msg, p: p}}
}

// problemErr keeps the problem for callers that show more of it.
type problemErr struct {
	msg string
	p   problem
}

func (e *problemErr) Error() string { return e.msg }

// printJSON writes raw JSON indented.
func printJSON(w io.Writer, raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		_, err = w.Write(raw)
		return err
	}
	buf.WriteByte('\n')
	_, err := buf.WriteTo(w)
	return err
}
