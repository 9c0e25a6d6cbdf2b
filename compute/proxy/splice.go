package proxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"golang.org/x/sys/unix"

	"github.com/offshootdb/offshoot/compute/proxy/internal/sockmap"
)

// The steady state. Once the endpoint has said ReadyForQuery, the proxy
// only relays bytes. On the kernel path it puts the client's socket and
// the endpoint's socket into a BPF sockmap whose verdict program forwards
// every byte arriving on one to the other, so no thread of offshoot reads
// or writes them; the proxy only waits for either side to close. The copy
// path is the user-space read/write loop both ways. A connection takes the
// kernel path when the forwarder loaded (New tries it; Config.CopyOnly
// turns it off), the client is plain-text TCP (TLS needs the proxy to
// decrypt; a client on the proxy's Unix socket could not be switched
// without risking a stall, see switchToKernel) and it sent nothing while
// the proxy was switching (a client that pipelines before ReadyForQuery).
// The metric offshoot_proxy_splices_total{path,reason} counts the choice.

// Paths and the reasons a connection takes the copy path.
const (
	pathKernel = "kernel"
	pathCopy   = "copy"

	reasonKernel      = ""            // on the kernel path
	reasonDisabled    = "disabled"    // Config.CopyOnly
	reasonUnavailable = "unavailable" // the forwarder did not load (see KernelPath)
	reasonTLS         = "tls"
	reasonUnixClient  = "unix_client"
	reasonPipelined   = "pipelined" // bytes were in flight at the switch
	reasonPairFailed  = "pair_failed"
	reasonClosed      = "closed" // a side closed during the switch
)

// KernelPath loads the kernel path's BPF program and unloads it again: nil
// means this host forwards proxied bytes in the kernel, an error says why
// the proxy falls back to its copy loop (for offshoot doctor).
func KernelPath() error {
	f, err := sockmap.New(1)
	if err != nil {
		return err
	}
	return f.Close()
}

// Path reports the steady-state path new plain-text TCP connections take
// ("kernel" or "copy") and, for "copy", why.
func (s *Server) Path() (path, why string) {
	switch {
	case s.cfg.CopyOnly:
		return pathCopy, "Config.CopyOnly"
	case s.fwd == nil:
		return pathCopy, s.fwdErr.Error()
	}
	return pathKernel, ""
}

// splice relays the rest of the startup exchange (the client's messages
// as they come, the endpoint's up to ReadyForQuery, noting the backend key
// data for cancel requests) and then the steady state until either side
// closes. It returns the cancel key it registered, if any.
func (s *Server) splice(raw, conn, backend net.Conn, socket string, proxyAuth bool) (cancelKey string) {
	// Client to server: plain copy from the start (passwords, queries).
	up := copyUp(backend, conn)
	br := bufio.NewReaderSize(backend, 32<<10)
	bw := bufio.NewWriterSize(conn, 8<<10)
	var ready []byte // the ReadyForQuery, not yet written
	for first := true; ; first = false {
		typ, msg, err := readMessage(br)
		if err == nil && first && proxyAuth && typ == 'R' && len(msg) >= 9 && binary.BigEndian.Uint32(msg[5:]) != 0 {
			// The client authenticated here; the endpoint must not ask again.
			s.fail(conn, errEndpointAuth)
			break
		}
		if err != nil {
			break
		}
		if typ == 'Z' {
			ready = msg
			break
		}
		_, err = bw.Write(msg)
		if err == nil && br.Buffered() == 0 {
			err = bw.Flush()
		}
		if err != nil {
			break
		}
		if typ == 'K' {
			var kd pgproto3.BackendKeyData
			if kd.Decode(msg[5:]) == nil {
				cancelKey = keyOf(kd.ProcessID, kd.SecretKey)
				s.mu.Lock()
				s.cancels[cancelKey] = socket
				s.mu.Unlock()
			}
		}
	}
	if ready != nil {
		if reason := s.switchToKernel(raw, conn, backend, br, bw, up, ready); reason != reasonKernel {
			s.metrics.splices.WithLabelValues(pathCopy, reason).Inc()
			if _, err := bw.Write(ready); err == nil && bw.Flush() == nil {
				pipe(conn, br)
			}
		}
	}
	conn.Close()
	backend.Close()
	<-up.done
	return cancelKey
}

// switchToKernel moves a connection whose endpoint just said ReadyForQuery
// (not yet written to the client) to the kernel path and serves it there
// until either side closes, returning reasonKernel; otherwise it returns
// why not, with the client-to-server copy still running.
//
// No byte may be lost or reordered at the switch. The endpoint sends
// nothing after ReadyForQuery until the client sends, and a client that
// waits for ReadyForQuery before its first query (libpq, pgx, JDBC) has
// sent nothing: the switch stops the client-to-server copy (every byte it
// read is written), checks that the client sent nothing but password
// messages and that no byte is in flight (the proxy's buffer and both
// sockets' receive queues are empty; otherwise the copy path),
// pairs the sockets, and only then writes the ReadyForQuery (with the
// messages before it still in the proxy's buffer), so whatever
// the client sends next finds the kernel forwarding. Bytes that arrive
// between the check and the pairing stay queued on the client's socket
// until the kick after the ReadyForQuery hands them to the kernel in
// order. An AF_UNIX socket has no such kick, so clients on the proxy's
// Unix socket stay on the copy path.
func (s *Server) switchToKernel(raw, conn, backend net.Conn, br *bufio.Reader, bw *bufio.Writer, up *upstream, ready []byte) string {
	switch {
	case s.cfg.CopyOnly:
		return reasonDisabled
	case s.fwd == nil:
		return reasonUnavailable
	case conn != raw:
		return reasonTLS
	}
	client, ok := raw.(*net.TCPConn)
	if !ok {
		return reasonUnixClient
	}
	crc, err1 := client.SyscallConn()
	brc, err2 := backend.(syscall.Conn).SyscallConn()
	if err1 != nil || err2 != nil || br.Buffered() > 0 {
		return reasonPipelined
	}
	if !up.stop(conn) {
		return reasonClosed // up.done is closed
	}
	if up.msgs.other || inq(crc) > 0 || inq(brc) > 0 { // (before pairing: a paired socket's SIOCINQ reads 0)
		up.restart(backend, conn)
		return reasonPipelined
	}
	pair, err := s.fwd.Pair(crc, brc)
	if err != nil {
		s.log.Warn("kernel path: pair sockets", "err", err)
		up.restart(backend, conn)
		return reasonPairFailed
	}
	defer pair.Unpair()
	s.metrics.splices.WithLabelValues(pathKernel, reasonKernel).Inc()
	if _, err := bw.Write(ready); err != nil || bw.Flush() != nil {
		backend.Close()
		return reasonKernel
	}
	var base uint64
	_ = crc.Control(func(fd uintptr) { base, _ = queued(int(fd)) })
	if err := pair.Kick(crc); err != nil {
		s.log.Warn("kernel path: kick", "err", err)
	}

	// Steady state: the proxy only waits for either side to hang up, on
	// duplicates of the two sockets outside Go's poller (see
	// sockmap.Watcher).
	cfd, bfd, err := detach(client, backend.(syscall.Conn))
	if err != nil {
		s.log.Warn("kernel path: detach sockets", "err", err)
		return reasonKernel // the caller closes both
	}
	defer unix.Close(cfd)
	defer unix.Close(bfd)
	hup, stop, err := s.watch.Watch(cfd, bfd)
	if err != nil {
		s.log.Warn("kernel path: watch sockets", "err", err)
		return reasonKernel
	}
	select {
	case <-hup:
	case <-s.ctx.Done():
	}
	stop()
	// The endpoint's last bytes (a FATAL on shutdown) may still be on
	// their way to the client through the kernel: let them leave before
	// closing the client (drain returns at once if the client is gone).
	toServer, toClient := pair.Bytes()
	drain(cfd, base+toClient, time.Second)
	s.metrics.kernelBytes.WithLabelValues("to_endpoint").Add(float64(toServer))
	s.metrics.kernelBytes.WithLabelValues("to_client").Add(float64(toClient))
	return reasonKernel
}

// detach takes two connections out of Go's poller: it duplicates their
// descriptors and closes the connections (the sockets live on in the
// duplicates, and in the sockmap). On an error both stay as they were.
func detach(a, b syscall.Conn) (fa, fb int, err error) {
	dup := func(c syscall.Conn) (int, error) {
		rc, err := c.SyscallConn()
		if err != nil {
			return -1, err
		}
		fd := -1
		cerr := rc.Control(func(s uintptr) { fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) })
		return fd, errors.Join(err, cerr)
	}
	if fa, err = dup(a); err != nil {
		return -1, -1, err
	}
	if fb, err = dup(b); err != nil {
		unix.Close(fa)
		return -1, -1, err
	}
	a.(io.Closer).Close()
	b.(io.Closer).Close()
	return fa, fb, nil
}

// upstream is the client-to-server copy of the startup exchange, which
// the switch to the kernel path stops.
type upstream struct {
	done chan struct{} // closed when the copy returned
	err  error         // why, once done is closed
	msgs framer        // the client's messages, read once done is closed
}

// framer follows the message framing of the client's bytes and notes a
// message other than a password message ('p': password, SASL): before
// ReadyForQuery a client that waits for it sends nothing else, so such a
// message means a pipelining client, whose query may be answered while the
// proxy switches.
type framer struct {
	hdr   [5]byte
	hn    int // header bytes seen
	body  int // body bytes still to skip
	other bool
}

func (f *framer) feed(b []byte) {
	for len(b) > 0 {
		if f.body > 0 {
			k := min(f.body, len(b))
			f.body -= k
			b = b[k:]
			continue
		}
		k := copy(f.hdr[f.hn:], b)
		f.hn += k
		b = b[k:]
		if f.hn == len(f.hdr) {
			f.hn = 0
			f.body = int(binary.BigEndian.Uint32(f.hdr[1:])) - 4
			if f.hdr[0] != 'p' || f.body < 0 {
				f.other = true
				f.body = 0
			}
		}
	}
}

// copyUp copies src to dst until either fails; unless stopped, it then
// closes dst, which ends the server-to-client side.
func copyUp(dst, src net.Conn) *upstream {
	u := &upstream{}
	u.restart(dst, src)
	return u
}

func (u *upstream) restart(dst, src net.Conn) {
	u.done = make(chan struct{})
	go func() {
		defer close(u.done)
		u.err = copyLoop(dst, src, make([]byte, 32<<10), &u.msgs)
		if !errors.Is(u.err, os.ErrDeadlineExceeded) {
			dst.Close()
		}
	}()
}

// stop ends the copy and reports whether it stopped only because it was
// asked to (every byte it read is written, both sides are open).
func (u *upstream) stop(src net.Conn) bool {
	_ = src.SetReadDeadline(time.Unix(1, 0))
	<-u.done
	_ = src.SetReadDeadline(time.Time{})
	return errors.Is(u.err, os.ErrDeadlineExceeded)
}

// copyLoop copies src to dst with a plain read/write loop until either
// fails, and returns the error, showing what it copied to f (if not
// nil). (io.Copy would splice(2) between the
// sockets through a pipe, which costs more than it saves for the small
// messages of a query protocol.)
func copyLoop(dst io.Writer, src io.Reader, buf []byte, f *framer) error {
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if f != nil {
				f.feed(buf[:n])
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			return err
		}
	}
}

// pipe is copyLoop with a fresh buffer and no result.
func pipe(dst io.Writer, src io.Reader) { _ = copyLoop(dst, src, make([]byte, 32<<10), nil) }

// inq returns the bytes waiting in a socket's receive queue (0 when it
// cannot tell).
func inq(rc syscall.RawConn) int {
	var n int
	_ = rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
	return n
}

// queued returns the bytes a TCP socket has taken to send since it
// opened, and whether it is still established.
func queued(fd int) (q uint64, established bool) {
	ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0, false
	}
	return ti.Bytes_sent - ti.Bytes_retrans + uint64(ti.Notsent_bytes), ti.State == unix.BPF_TCP_ESTABLISHED
}

// drain waits until a TCP socket has taken target bytes to send, for at
// most max, and not once its peer is gone (bytes to it cannot leave).
func drain(fd int, target uint64, max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		q, ok := queued(fd)
		if !ok || q >= target {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// readMessage reads one typed protocol message and returns it whole.
func readMessage(r *bufio.Reader) (byte, []byte, error) {
	hdr, err := r.Peek(5)
	if err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[1:]))
	if n < 4 || n > 1<<26 {
		return 0, nil, fmt.Errorf("server message of %d bytes", n)
	}
	msg := make([]byte, 1+n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return 0, nil, err
	}
	return msg[0], msg, nil
}
