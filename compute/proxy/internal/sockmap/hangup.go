package sockmap

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// A paired socket must not stay in Go's poller: the kernel wakes a
// socket's readers after every batch the verdict program forwarded
// (sk_psock_verdict_data_ready calls the socket's own data-ready callback),
// so a goroutine parked in Read, or the runtime's poller, would wake for
// each message only to find nothing to read. A Watcher's epoll set asks
// for hang-ups only (EPOLLRDHUP, EPOLLHUP, EPOLLERR), and epoll drops
// wake-ups whose events nobody asked for, so data never wakes it.

// Watcher reports when sockets hang up (the peer closed or reset, or an
// error) without waking on their data. Its methods are safe for concurrent
// use.
type Watcher struct {
	epfd int

	mu      sync.Mutex
	closed  bool
	next    uint64
	waiters map[uint64]chan struct{}
	done    chan struct{} // closed when the loop returned
}

// NewWatcher starts a Watcher; Close stops it.
func NewWatcher() (*Watcher, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("sockmap: epoll: %w", err)
	}
	w := &Watcher{epfd: epfd, waiters: map[uint64]chan struct{}{}, done: make(chan struct{})}
	go w.loop()
	return w, nil
}

// Watch returns a channel closed once any of fds hangs up, and a stop
// function that stops watching them; callers call stop before closing the
// descriptors.
func (w *Watcher) Watch(fds ...int) (<-chan struct{}, func(), error) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil, nil, ErrClosed
	}
	w.next++
	id := w.next
	ch := make(chan struct{})
	w.waiters[id] = ch
	w.mu.Unlock()
	var added []int
	stop := func() {
		for _, fd := range added {
			_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, fd, nil)
		}
		w.mu.Lock()
		delete(w.waiters, id)
		w.mu.Unlock()
	}
	for _, fd := range fds {
		ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLHUP | unix.EPOLLERR | unix.EPOLLONESHOT,
			Fd: int32(id), Pad: int32(id >> 32)}
		if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			stop()
			return nil, nil, fmt.Errorf("sockmap: watch: %w", err)
		}
		added = append(added, fd)
	}
	return ch, stop, nil
}

func (w *Watcher) loop() {
	defer close(w.done)
	evs := make([]unix.EpollEvent, 64)
	for {
		// A bounded wait lets Close end the loop.
		n, err := unix.EpollWait(w.epfd, evs, 200)
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			w.mu.Unlock()
			return
		}
		for _, ev := range evs[:max(n, 0)] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if ch, ok := w.waiters[id]; ok {
				close(ch)
				delete(w.waiters, id)
			}
		}
		w.mu.Unlock()
	}
}

// Close stops the Watcher; channels not yet closed stay open.
func (w *Watcher) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	<-w.done
	return unix.Close(w.epfd)
}
