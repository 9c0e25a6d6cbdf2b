package sockmap

import (
	"bytes"
	"io"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pairOf returns two connected sockets of network ("tcp" or "unix"):
// the one a client dialled and the one a listener accepted.
func pairOf(t *testing.T, network string) (dialed, accepted net.Conn) {
	t.Helper()
	return pairOfB(t, network)
}

func pairOfB(t testing.TB, network string) (dialed, accepted net.Conn) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	d, err := net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a := <-ch
	t.Cleanup(func() { d.Close(); a.Close() })
	return d, a
}

func rawOf(t *testing.T, c net.Conn) syscall.RawConn {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

func newForwarder(t *testing.T) *Forwarder {
	t.Helper()
	f, err := New(16)
	if err != nil {
		t.Fatalf("kernel path unavailable: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestForwardTCPUnix pairs the proxy's side of a TCP connection with its
// side of a Unix connection, as the proxy pairs a client with Postgres,
// and checks bytes flow both ways, in order, without a reader in between.
func TestForwardTCPUnix(t *testing.T) {
	for _, nets := range [][2]string{{"tcp", "unix"}, {"tcp", "tcp"}, {"unix", "unix"}} {
		t.Run(nets[0]+"-"+nets[1], func(t *testing.T) {
			f := newForwarder(t)
			client, proxyA := pairOf(t, nets[0])
			server, proxyB := pairOf(t, nets[1])
			p, err := f.Pair(rawOf(t, proxyA), rawOf(t, proxyB))
			if err != nil {
				t.Fatal(err)
			}
			var sent, back int
			for i := range 200 {
				msg := bytes.Repeat([]byte{byte(i)}, 1+i*97%20000)
				if _, err := client.Write(msg); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, len(msg))
				_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.ReadFull(server, got); err != nil {
					t.Fatalf("round %d: server read: %v", i, err)
				}
				if !bytes.Equal(got, msg) {
					t.Fatalf("round %d: server got other bytes", i)
				}
				reply := append([]byte("reply"), msg[:min(len(msg), 100)]...)
				if _, err := server.Write(reply); err != nil {
					t.Fatal(err)
				}
				got = make([]byte, len(reply))
				_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.ReadFull(client, got); err != nil {
					t.Fatalf("round %d: client read: %v", i, err)
				}
				if !bytes.Equal(got, reply) {
					t.Fatalf("round %d: client got other bytes", i)
				}
				sent += len(msg)
				back += len(reply)
			}
			ab, ba := p.Bytes()
			if ab != uint64(sent) || ba != uint64(back) {
				t.Fatalf("counters %d, %d; want %d, %d", ab, ba, sent, back)
			}
			// The proxy's own reader sees the client's EOF.
			client.Close()
			_ = proxyA.SetReadDeadline(time.Now().Add(10 * time.Second))
			if n, err := proxyA.Read(make([]byte, 10)); err != io.EOF {
				t.Fatalf("proxy side of closed client: %d, %v; want EOF", n, err)
			}
			p.Unpair()
		})
	}
}

// TestKick checks that bytes queued on a TCP socket before it was paired
// are forwarded, in order, once the pair is kicked, and that without the
// kick they wait (so the test can fail).
func TestKick(t *testing.T) {
	f := newForwarder(t)
	client, proxyA := pairOf(t, "tcp")
	server, proxyB := pairOf(t, "unix")
	if _, err := client.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	// Wait until the bytes are queued on the proxy's side.
	for i := 0; ; i++ {
		var n int
		_ = rawOf(t, proxyA).Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
		if n == 5 {
			break
		}
		if i > 1000 {
			t.Fatal("bytes never queued")
		}
		time.Sleep(time.Millisecond)
	}
	p, err := f.Pair(rawOf(t, proxyA), rawOf(t, proxyB))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	_ = server.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := server.Read(buf); err == nil {
		t.Fatalf("queued bytes %q forwarded without a kick; the test proves nothing", buf[:n])
	}
	if err := p.Kick(rawOf(t, proxyA)); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Write([]byte("-late")); err != nil {
		t.Fatal(err)
	}
	_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, 10)
	if _, err := io.ReadFull(server, got); err != nil || string(got) != "early-late" {
		t.Fatalf("server got %q, %v; want early-late", got, err)
	}
}
