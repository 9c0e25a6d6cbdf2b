package mcp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/mark3labs/mcp-go/client/transport"
	mcpgo "github.com/mark3labs/mcp-go/mcp"
)

// ForwardOption changes how Forward reaches the server.
type ForwardOption transport.StreamableHTTPCOption

// WithHTTPClient makes Forward send its requests with hc, e.g. one whose
// TLS configuration trusts the server's CA. Default: http.DefaultClient's
// behaviour (system roots).
func WithHTTPClient(hc *http.Client) ForwardOption {
	return ForwardOption(transport.WithHTTPBasicClient(hc))
}

// Forward relays one stdio MCP client (newline-delimited JSON-RPC on in
// and out) to the streamable HTTP MCP endpoint at url, sending token as a
// bearer key when it is not empty. Requests are relayed concurrently and
// their responses written as they arrive; server notifications (progress,
// logs) are written too. Requests the server sends to the client
// (sampling, elicitation) are not relayed. It returns when in ends or ctx
// is done; a failing request is answered with a JSON-RPC error naming
// the server, so the client never hangs.
func Forward(ctx context.Context, url, token string, in io.Reader, out io.Writer, fopts ...ForwardOption) error {
	var opts []transport.StreamableHTTPCOption
	for _, o := range fopts {
		opts = append(opts, transport.StreamableHTTPCOption(o))
	}
	if token != "" {
		opts = append(opts, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + token}))
	}
	tr, err := transport.NewStreamableHTTP(url, opts...)
	if err != nil {
		return fmt.Errorf("mcp forward: %w", err)
	}
	if err := tr.Start(ctx); err != nil {
		return fmt.Errorf("mcp forward: %w", err)
	}
	defer tr.Close()
	var mu sync.Mutex
	write := func(v any) {
		b, err := json.Marshal(v)
		if err != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		_, _ = out.Write(append(b, '\n'))
	}
	tr.SetNotificationHandler(func(n mcpgo.JSONRPCNotification) { write(n) })

	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	var wg sync.WaitGroup
	defer wg.Wait()
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var msg struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
		}
		if err := json.Unmarshal(line, &msg); err != nil {
			write(mcpgo.NewJSONRPCError(mcpgo.NewRequestId(nil), mcpgo.PARSE_ERROR, "not a JSON-RPC message: "+err.Error(), nil))
			continue
		}
		var params any
		if len(msg.Params) > 0 {
			params = append(json.RawMessage(nil), msg.Params...)
		}
		switch {
		case msg.Method == "":
			// A response to a server request; not relayed (see above).
		case len(msg.ID) == 0 || string(msg.ID) == "null":
			n := mcpgo.JSONRPCNotification{JSONRPC: mcpgo.JSONRPC_VERSION, Notification: mcpgo.Notification{Method: msg.Method}}
			if len(msg.Params) > 0 {
				_ = json.Unmarshal(msg.Params, &n.Params)
			}
			_ = tr.SendNotification(ctx, n)
		default:
			var id mcpgo.RequestId
			if err := json.Unmarshal(msg.ID, &id); err != nil {
				write(mcpgo.NewJSONRPCError(mcpgo.NewRequestId(nil), mcpgo.INVALID_REQUEST, "bad id: "+err.Error(), nil))
				continue
			}
			req := transport.JSONRPCRequest{JSONRPC: mcpgo.JSONRPC_VERSION, ID: id, Method: msg.Method, Params: params}
			wg.Go(func() {
				resp, err := tr.SendRequest(ctx, req)
				if err != nil {
					write(mcpgo.NewJSONRPCError(id, mcpgo.INTERNAL_ERROR, fmt.Sprintf("offshoot server at %s: %v", url, err), nil))
					return
				}
				if req.Method == string(mcpgo.MethodInitialize) && resp.Error == nil {
					var r struct {
						ProtocolVersion string `json:"protocolVersion"`
					}
					if json.Unmarshal(resp.Result, &r) == nil && r.ProtocolVersion != "" {
						tr.SetProtocolVersion(r.ProtocolVersion)
					}
				}
				write(resp)
			})
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("mcp forward: read stdin: %w", err)
	}
	return nil
}
