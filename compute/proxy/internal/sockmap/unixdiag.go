package sockmap

import (
	"encoding/binary"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// An AF_UNIX stream socket's incoming bytes belong to the sending socket
// (the kernel charges them to the sender's buffer), so for them the
// verdict program sees the cookie of the connection's other end, not the
// receiving socket's. remoteCookie finds that cookie through sock_diag:
// the inode of the peer of the socket with inode ino, then that peer's
// cookie.

// remoteCookie returns the cookie of the other end of the AF_UNIX socket
// with inode ino.
func remoteCookie(ino uint32) (uint64, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return 0, fmt.Errorf("sock_diag: %w", err)
	}
	defer unix.Close(fd)
	_, peer, err := unixDiag(fd, ino)
	if err != nil {
		return 0, err
	}
	if peer == 0 {
		return 0, fmt.Errorf("sock_diag: socket %d has no peer", ino)
	}
	cookie, _, err := unixDiag(fd, peer)
	return cookie, err
}

// unixDiag asks for one AF_UNIX socket by inode and returns its cookie and
// its peer's inode.
func unixDiag(fd int, ino uint32) (cookie uint64, peer uint32, err error) {
	const (
		sockDiagByFamily = 20
		udiagShowPeer    = 0x4
		unixDiagPeer     = 2
	)
	req := make([]byte, 16+24)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], sockDiagByFamily)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST)
	b := req[16:]
	b[0] = unix.AF_UNIX
	binary.NativeEndian.PutUint32(b[4:], ^uint32(0)) // every state
	binary.NativeEndian.PutUint32(b[8:], ino)
	binary.NativeEndian.PutUint32(b[12:], udiagShowPeer)
	binary.NativeEndian.PutUint32(b[16:], ^uint32(0)) // no cookie check
	binary.NativeEndian.PutUint32(b[20:], ^uint32(0))
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, 0, fmt.Errorf("sock_diag: %w", err)
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("sock_diag: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return 0, 0, fmt.Errorf("sock_diag: %w", err)
	}
	for _, m := range msgs {
		switch m.Header.Type {
		case unix.NLMSG_ERROR:
			if len(m.Data) >= 4 {
				if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
					return 0, 0, fmt.Errorf("sock_diag socket %d: %w", ino, unix.Errno(-e))
				}
			}
		case sockDiagByFamily:
			d := m.Data
			if len(d) < 16 {
				return 0, 0, fmt.Errorf("sock_diag: short answer")
			}
			cookie = uint64(binary.NativeEndian.Uint32(d[8:])) | uint64(binary.NativeEndian.Uint32(d[12:]))<<32
			for a := d[16:]; len(a) >= 4; {
				l := int(binary.NativeEndian.Uint16(a[0:]))
				if l < 4 || l > len(a) {
					break
				}
				if binary.NativeEndian.Uint16(a[2:]) == unixDiagPeer && l >= 8 {
					peer = binary.NativeEndian.Uint32(a[4:])
				}
				a = a[min((l+3)&^3, len(a)):]
			}
			return cookie, peer, nil
		}
	}
	return 0, 0, fmt.Errorf("sock_diag: no answer for socket %d", ino)
}
