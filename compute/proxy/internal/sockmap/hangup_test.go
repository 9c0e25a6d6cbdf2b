package sockmap

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestWatcher: a watched socket's channel stays open while data arrives
// (it is forwarded by a pair, or just queued) and closes when the peer
// hangs up, for TCP and Unix sockets; a stopped watch never fires.
func TestWatcher(t *testing.T) {
	w, err := NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			peer, mine := pairOf(t, network)
			var fd int
			_ = rawOf(t, mine).Control(func(s uintptr) { fd, _ = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) })
			defer unix.Close(fd)
			hup, stop, err := w.Watch(fd)
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
			if _, err := peer.Write([]byte("data, not a hang-up")); err != nil {
				t.Fatal(err)
			}
			select {
			case <-hup:
				t.Fatal("data reported as a hang-up")
			case <-time.After(100 * time.Millisecond):
			}
			peer.Close()
			select {
			case <-hup:
			case <-time.After(10 * time.Second):
				t.Fatal("hang-up not reported")
			}

			// A stopped watch does not fire.
			peer2, mine2 := pairOf(t, network)
			hup2, stop2, err := w.Watch(fdOf(t, mine2))
			if err != nil {
				t.Fatal(err)
			}
			stop2()
			peer2.Close()
			select {
			case <-hup2:
				t.Fatal("stopped watch fired")
			case <-time.After(100 * time.Millisecond):
			}
		})
	}
}

// fdOf returns c's descriptor (valid while c is open).
func fdOf(t *testing.T, c net.Conn) int {
	var fd int
	_ = rawOf(t, c).Control(func(s uintptr) { fd = int(s) })
	return fd
}
