// Package sockmap forwards bytes between pairs of connected stream sockets
// inside the kernel: both sockets of a pair go into a BPF SOCKHASH whose
// sk_skb verdict program redirects every byte that arrives on one to the
// other's send side, so no thread of this process reads or writes them.
//
// The program finds a socket's peer by its socket cookie: a hash map keys
// each paired socket's cookie to its peer's cookie and counts the bytes
// forwarded from it. A socket without a peer entry has its bytes passed to
// its own receive queue, where a user-space reader sees them.
//
// Linux only; it needs CAP_BPF (or root) and a kernel whose sockmap takes
// the socket types paired (TCP since 4.14, AF_UNIX stream since 5.15).
// New reports why it cannot load.
package sockmap

import (
	"errors"
	"fmt"
	"sync"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Errors returned by this package.
var (
	// ErrFull means the maps hold their maximum number of sockets.
	ErrFull = errors.New("sockmap full")
	// ErrClosed means the Forwarder is closed.
	ErrClosed = errors.New("sockmap closed")
)

// peer is a value of the peers map: the peer's cookie and the bytes
// forwarded from the key's socket to it.
type peer struct {
	Cookie uint64
	Bytes  uint64
}

// Forwarder owns the maps and the verdict program. Its methods are safe
// for concurrent use.
type Forwarder struct {
	socks *ebpf.Map // SOCKHASH: cookie → socket
	peers *ebpf.Map // HASH: cookie → peer
	prog  *ebpf.Program

	mu     sync.Mutex
	closed bool
}

// New loads the verdict program and attaches it to a fresh SOCKHASH of up
// to maxPairs pairs. The error says why the kernel path is unavailable
// (no BPF, no permission, an old kernel).
func New(maxPairs int) (*Forwarder, error) {
	if maxPairs <= 0 {
		return nil, fmt.Errorf("sockmap: maxPairs %d", maxPairs)
	}
	socks, err := ebpf.NewMap(&ebpf.MapSpec{Name: "offshoot_socks", Type: ebpf.SockHash,
		KeySize: 8, ValueSize: 8, MaxEntries: uint32(2 * maxPairs)})
	if err != nil {
		return nil, fmt.Errorf("sockmap: create sockhash: %w", err)
	}
	peers, err := ebpf.NewMap(&ebpf.MapSpec{Name: "offshoot_peers", Type: ebpf.Hash,
		KeySize: 8, ValueSize: 16, MaxEntries: uint32(2 * maxPairs)})
	if err != nil {
		socks.Close()
		return nil, fmt.Errorf("sockmap: create peer map: %w", err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "offshoot_fwd",
		Type:         ebpf.SkSKB,
		AttachType:   ebpf.AttachSkSKBVerdict,
		License:      "GPL",
		Instructions: verdict(socks.FD(), peers.FD()),
	})
	if err != nil {
		socks.Close()
		peers.Close()
		return nil, fmt.Errorf("sockmap: load verdict program: %w", err)
	}
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{Target: socks.FD(), Program: prog,
		Attach: ebpf.AttachSkSKBVerdict}); err != nil {
		prog.Close()
		socks.Close()
		peers.Close()
		return nil, fmt.Errorf("sockmap: attach verdict program: %w", err)
	}
	return &Forwarder{socks: socks, peers: peers, prog: prog}, nil
}

// verdict is the sk_skb verdict program:
//
//	cookie = bpf_get_socket_cookie(skb)
//	p = peers[cookie]; if !p { return SK_PASS }
//	p.bytes += skb->len
//	return bpf_sk_redirect_hash(skb, socks, &p.cookie, 0)  // to p's send side
func verdict(socks, peers int) asm.Instructions {
	const skPass = 1
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.FnGetSocketCookie.Call(),
		asm.StoreMem(asm.RFP, -8, asm.R0, asm.DWord),
		asm.LoadMapPtr(asm.R1, peers),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord), // p.cookie
		asm.StoreMem(asm.RFP, -16, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.R6, 0, asm.Word), // skb->len
		asm.Add.Imm(asm.R0, 8),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord), // p.bytes += len
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMapPtr(asm.R2, socks),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -16),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnSkRedirectHash.Call(),
		asm.Return(),
		asm.Mov.Imm(asm.R0, skPass).WithSymbol("pass"),
		asm.Return(),
	}
}

// Close detaches the program and frees the maps; paired sockets fall back
// to their ordinary receive path.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	err := link.RawDetachProgram(link.RawDetachProgramOptions{Target: f.socks.FD(), Program: f.prog,
		Attach: ebpf.AttachSkSKBVerdict})
	return errors.Join(err, f.prog.Close(), f.socks.Close(), f.peers.Close())
}

// Pair is two sockets whose bytes the kernel forwards to each other.
type Pair struct {
	f      *Forwarder
	a, b   uint64 // cookies: the sockets' keys in socks
	ia, ib uint64 // cookies their incoming bytes carry: their keys in peers
}

// Pair makes the kernel forward every byte that arrives on a to b and on b
// to a, from now on. Bytes already queued on either socket stay there:
// the caller pairs sockets only while both receive queues are empty.
func (f *Forwarder) Pair(a, b syscall.RawConn) (*Pair, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, ErrClosed
	}
	fa, ca, err := fdCookie(a)
	if err != nil {
		return nil, err
	}
	fb, cb, err := fdCookie(b)
	if err != nil {
		return nil, err
	}
	// The program sees bytes arriving on a socket under the cookie of
	// their owner: the socket itself for TCP, the other end for AF_UNIX.
	ia, err := incoming(fa, ca)
	if err != nil {
		return nil, err
	}
	ib, err := incoming(fb, cb)
	if err != nil {
		return nil, err
	}
	p := &Pair{f: f, a: ca, b: cb, ia: ia, ib: ib}
	if err := f.peers.Update(ia, peer{Cookie: cb}, ebpf.UpdateNoExist); err != nil {
		return nil, mapErr("add peer", err)
	}
	if err := f.peers.Update(ib, peer{Cookie: ca}, ebpf.UpdateNoExist); err != nil {
		_ = f.peers.Delete(ia)
		return nil, mapErr("add peer", err)
	}
	if err := f.socks.Update(ca, uint64(fa), ebpf.UpdateNoExist); err != nil {
		p.unpair()
		return nil, mapErr("add socket", err)
	}
	if err := f.socks.Update(cb, uint64(fb), ebpf.UpdateNoExist); err != nil {
		p.unpair()
		return nil, mapErr("add socket", err)
	}
	return p, nil
}

func mapErr(op string, err error) error {
	if errors.Is(err, unix.E2BIG) || errors.Is(err, unix.ENOSPC) {
		return fmt.Errorf("sockmap: %s: %w", op, ErrFull)
	}
	return fmt.Errorf("sockmap: %s: %w", op, err)
}

// Bytes returns the bytes the kernel forwarded from a to b and from b to a.
func (p *Pair) Bytes() (ab, ba uint64) {
	var v peer
	if p.f.peers.Lookup(p.ia, &v) == nil {
		ab = v.Bytes
	}
	if p.f.peers.Lookup(p.ib, &v) == nil {
		ba = v.Bytes
	}
	return ab, ba
}

// Unpair stops the forwarding; bytes the kernel has taken but not yet
// sent may be lost, so callers unpair only sockets they are closing.
func (p *Pair) Unpair() {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	if p.f.closed {
		return
	}
	p.unpair()
}

func (p *Pair) unpair() {
	_ = p.f.peers.Delete(p.ia)
	_ = p.f.peers.Delete(p.ib)
	_ = p.f.socks.Delete(p.a)
	_ = p.f.socks.Delete(p.b)
}

// fdCookie returns a socket's descriptor and cookie.
func fdCookie(rc syscall.RawConn) (int, uint64, error) {
	var fd int
	var cookie uint64
	var err error
	cerr := rc.Control(func(s uintptr) {
		fd = int(s)
		cookie, err = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return 0, 0, fmt.Errorf("sockmap: socket cookie: %w", err)
	}
	return fd, cookie, nil
}

// incoming returns the cookie the verdict program sees on bytes arriving
// at the socket fd with cookie c.
func incoming(fd int, c uint64) (uint64, error) {
	dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return 0, fmt.Errorf("sockmap: socket domain: %w", err)
	}
	if dom != unix.AF_UNIX {
		return c, nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("sockmap: %w", err)
	}
	rc, err := remoteCookie(uint32(st.Ino))
	if err != nil {
		return 0, fmt.Errorf("sockmap: %w", err)
	}
	return rc, nil
}

// Kick makes the kernel forward bytes that reached a TCP socket of the
// pair before it was paired (they wait for the next arrival otherwise):
// setting SO_RCVLOWAT runs the socket's data-ready callback, which hands
// the whole receive queue, in order, to the verdict program. AF_UNIX
// sockets have no such hook, so callers pair them only while their
// receive queues are empty.
func (p *Pair) Kick(rc syscall.RawConn) error {
	var err error
	cerr := rc.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVLOWAT, 1)
	})
	return errors.Join(err, cerr)
}
