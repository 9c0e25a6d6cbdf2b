package servetls

import (
	"bufio"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// recordTypeHandshake is the first byte of every TLS ClientHello.
const recordTypeHandshake = 0x16

// SniffTimeout bounds the wait for a connection's first byte.
const SniffTimeout = 10 * time.Second

// plainRefusal is what a plain-text HTTP client gets where TLS is required.
const plainRefusal = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n" +
	"offshoot: this server requires TLS from non-loopback clients: use https:// (trust the CA that `offshoot ca` prints)\n"

// Listener serves TLS and plain text on one port. Accept returns a
// *tls.Conn (not yet handshaken, so http.Server sees r.TLS) for a
// connection whose first byte starts a TLS record, and the plain
// connection otherwise when AllowPlain allows its peer; a refused plain
// connection gets an HTTP 400 text answer and is closed. The first byte is
// read in a goroutine per connection, so a silent client does not hold up
// Accept. Methods are safe for concurrent use.
type Listener struct {
	ln         net.Listener
	cfg        *tls.Config
	allowPlain func(remote net.Addr) bool
	log        *slog.Logger
	conns      chan net.Conn
	done       chan struct{}
	closeOnce  sync.Once
	acceptErr  error
	acceptDone chan struct{}

	mu      sync.Mutex
	pending map[net.Conn]struct{} // accepted, first byte not yet seen; closed by Close
	wg      sync.WaitGroup        // acceptLoop and sniff goroutines
}

// NewListener wraps ln; allowPlain decides per peer whether plain text is
// served (nil: never). It starts accepting at once; Close stops it.
func NewListener(ln net.Listener, cfg *tls.Config, allowPlain func(net.Addr) bool, log *slog.Logger) *Listener {
	if allowPlain == nil {
		allowPlain = func(net.Addr) bool { return false }
	}
	if log == nil {
		log = slog.Default()
	}
	l := &Listener{ln: ln, cfg: cfg, allowPlain: allowPlain, log: log,
		conns: make(chan net.Conn), done: make(chan struct{}), acceptDone: make(chan struct{}),
		pending: map[net.Conn]struct{}{}}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

// LoopbackOnly allows plain text from loopback TCP peers and Unix sockets:
// bytes that never leave the machine.
func LoopbackOnly(remote net.Addr) bool {
	switch a := remote.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	return false
}

func (l *Listener) acceptLoop() {
	defer l.wg.Done()
	defer close(l.acceptDone)
	for {
		c, err := l.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.acceptErr = err
			return
		}
		l.mu.Lock()
		select {
		case <-l.done:
			l.mu.Unlock()
			c.Close()
			continue // Accept fails next, the listener being closed
		default:
		}
		l.pending[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.sniff(c)
	}
}

func (l *Listener) sniff(c net.Conn) {
	defer l.wg.Done()
	_ = c.SetReadDeadline(time.Now().Add(SniffTimeout))
	br := bufio.NewReaderSize(c, 1024)
	first, err := br.Peek(1)
	_ = c.SetReadDeadline(time.Time{})
	l.mu.Lock()
	delete(l.pending, c)
	l.mu.Unlock()
	if err != nil {
		c.Close()
		return
	}
	var out net.Conn = &peekedConn{Conn: c, r: br}
	if first[0] == recordTypeHandshake {
		out = tls.Server(out, l.cfg)
	} else if !l.allowPlain(c.RemoteAddr()) {
		l.log.Info("plain-text HTTP refused: TLS is required off loopback", "remote", c.RemoteAddr().String())
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write([]byte(plainRefusal))
		c.Close()
		return
	}
	select {
	case l.conns <- out:
	case <-l.done:
		c.Close()
	}
}

// Accept returns the next connection (see Listener).
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.acceptDone:
		select {
		case c := <-l.conns:
			return c, nil
		default:
		}
		return nil, l.acceptErr
	}
}

// Close stops listening, closes the connections not yet returned by
// Accept and waits for its goroutines; connections already returned stay
// open.
func (l *Listener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		l.mu.Lock()
		close(l.done)
		for c := range l.pending {
			c.Close()
		}
		l.mu.Unlock()
		err = l.ln.Close()
		l.wg.Wait()
	})
	return err
}

// Addr is the address of the wrapped listener.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// peekedConn reads through the reader that peeked its first byte.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
