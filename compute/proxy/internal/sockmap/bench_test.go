package sockmap

import (
	"io"
	"net"
	"testing"
)

// BenchmarkPingPong measures a 64-byte round trip from a TCP client
// through a relay to a Unix-socket echo server, with the relay in the
// kernel (a Pair) or a user-space copy loop per direction.
func BenchmarkPingPong(b *testing.B) {
	for _, mode := range []string{"kernel", "kernel-reader", "copy"} {
		b.Run(mode, func(b *testing.B) {
			client, proxyA := pairOfB(b, "tcp")
			server, proxyB := pairOfB(b, "unix")
			if mode != "copy" {
				f, err := New(4)
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				ra, _ := proxyA.(*net.TCPConn).SyscallConn()
				rb, _ := proxyB.(*net.UnixConn).SyscallConn()
				if _, err := f.Pair(ra, rb); err != nil {
					b.Fatal(err)
				}
				if mode == "kernel-reader" {
					go proxyA.Read(make([]byte, 1))
					go proxyB.Read(make([]byte, 1))
				}
			} else {
				go io.Copy(struct{ io.Writer }{proxyB}, struct{ io.Reader }{proxyA})
				go io.Copy(struct{ io.Writer }{proxyA}, struct{ io.Reader }{proxyB})
			}
			go func() {
				buf := make([]byte, 64)
				for {
					if _, err := io.ReadFull(server, buf); err != nil {
						return
					}
					if _, err := server.Write(buf); err != nil {
						return
					}
				}
			}()
			buf := make([]byte, 64)
			b.ResetTimer()
			for range b.N {
				if _, err := client.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(client, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
