package compute

// Supervising running endpoints, and suspending and stopping them: on
// request, on a crash, and when their autosuspend timers fire.

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/offshootdb/offshoot/compute/pg"
)

// supervise notices a postmaster that exits without being asked to.
func (m *Manager) supervise(ep *endpoint, p *proc) {
	defer m.wg.Done()
	select {
	case <-p.pm.Done():
	case <-m.ctx.Done():
		// Close stops it; wait no longer here so Close can proceed.
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.crashedLocked(ep, p)
}

// crashedLocked handles the unrequested death of p, ep's postmaster. m.mu
// held.
func (m *Manager) crashedLocked(ep *endpoint, p *proc) {
	if p.stopping || ep.proc != p {
		return
	}
	// Backends of a dead postmaster exit on their own; the next start
	// makes sure (clearStaleLock).
	os.Remove(m.pidFile(ep))
	ep.proc = nil
	if time.Since(p.started) > time.Minute {
		ep.failures = 0 // a long run before the crash is no loop
	}
	if ep.busy {
		return // start in progress: it sees the exit and reports
	}
	m.failLocked(ep, fmt.Errorf("postmaster %d died: %v; last log lines:\n%s", p.pm.Pid(), p.pm.ExitErr(), pg.LastLines(m.logFile(ep), 10)))
	m.broadcast(ep)
}

// killCluster kills every process left of a dead postmaster's cluster
// (backends call setsid, so its process group does not reach them; their
// working directory is PGDATA) and waits until they are gone: they hold
// the shared memory a new postmaster needs.
func killCluster(ctx context.Context, dataDir string) error {
	for {
		left := false
		eachProc(func(pid int) {
			if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err != nil || cwd != dataDir || !alive(pid) {
				return
			}
			left = true
			_ = syscall.Kill(pid, syscall.SIGKILL)
		})
		if !left {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for processes of a dead postmaster in %s: %w", dataDir, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// beginSuspendLocked marks ep (running or idle, not busy) as being
// suspended. m.mu held.
func (m *Manager) beginSuspendLocked(ep *endpoint) {
	ep.busy = true
	if ep.proc != nil {
		ep.proc.stopping = true
	}
	m.wg.Add(1)
}

// suspend stops Postgres of ep (marked by beginSuspendLocked) with a fast
// shutdown and keeps the volume.
func (m *Manager) suspend(ep *endpoint, reason string) { m.stopProc(ep, reason, pg.Fast) }

// stopProc stops Postgres of ep (marked by beginSuspendLocked) in mode and
// keeps the volume.
func (m *Manager) stopProc(ep *endpoint, reason string, mode pg.StopMode) {
	defer m.wg.Done()
	m.mu.Lock()
	p := ep.proc
	m.mu.Unlock()
	if p != nil {
		if mode != pg.Immediate && m.cfg.LocalAuth == "trust" {
			m.captureVerifiers(ep, p.pm)
		}
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.StopTimeout)
		if err := p.pm.Stop(ctx, mode); err != nil {
			m.log.Warn("suspend", "project", ep.project, "branch", ep.branch, "err", err)
		}
		cancel()
		os.Remove(m.pidFile(ep))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ep.proc = nil
	ep.busy = false
	ep.failures = 0
	m.setState(ep, Suspended, reason)
	m.broadcast(ep)
}

// release releases the volume of a suspended ep marked busy.
func (m *Manager) release(ep *endpoint, reason string) {
	defer m.wg.Done()
	m.mu.Lock()
	vol := ep.vol
	m.mu.Unlock()
	var err error
	if vol != nil {
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.StopTimeout)
		err = vol.Release(ctx)
		cancel()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ep.busy = false
	if err != nil {
		ep.lastErr = fmt.Sprintf("release volume: %v", err)
		m.log.Error("release volume", "project", ep.project, "branch", ep.branch, "err", err)
	} else {
		ep.vol = nil
		m.setState(ep, Stopped, reason)
	}
	m.broadcast(ep)
}

// Suspend suspends a branch's endpoint now (fast shutdown: open
// connections are closed). A stopped or suspended endpoint is left as is.
func (m *Manager) Suspend(ctx context.Context, project, branch string) error {
	return m.transition(ctx, key{project, branch}, Suspended, pg.Fast)
}

// Stop stops a branch's endpoint now and releases its volume.
func (m *Manager) Stop(ctx context.Context, project, branch string) error {
	return m.transition(ctx, key{project, branch}, Stopped, pg.Fast)
}

// Discard is Stop for a branch about to be deleted: Postgres gets an
// immediate shutdown, which skips the shutdown checkpoint (the pages it
// would write are never read again). Should the branch survive after
// all, its next start runs ordinary crash recovery: nothing committed is
// lost. A replica's password to its source and the source's CA leave its
// run directory (its log stays for branch log).
func (m *Manager) Discard(ctx context.Context, project, branch string) error {
	if err := m.transition(ctx, key{project, branch}, Stopped, pg.Immediate); err != nil {
		return err
	}
	m.ForgetPrimary(project, branch)
	return nil
}

// ForgetPrimary removes from a branch's run directory what its endpoint
// read to follow a primary as a standby (the replication password and the
// primary's CA): once a replica is promoted or deleted, nothing may reach
// its former source with them.
func (m *Manager) ForgetPrimary(project, branch string) {
	m.mu.Lock()
	ep, ok := m.endpoints[key{project, branch}]
	m.mu.Unlock()
	if ok {
		removeStandbyFiles(ep.dir)
	}
}

// transition moves a branch's endpoint to Suspended or Stopped, stopping
// a running Postgres in mode.
func (m *Manager) transition(ctx context.Context, k key, to State, mode pg.StopMode) error {
	for {
		m.mu.Lock()
		if !m.open || m.closed {
			m.mu.Unlock()
			return ErrClosed
		}
		ep, ok := m.endpoints[k]
		if !ok {
			m.mu.Unlock()
			return nil
		}
		if ep.busy {
			ch := ep.changed
			m.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		switch {
		case ep.state == Running || ep.state == Idle:
			m.beginSuspendLocked(ep)
			m.mu.Unlock()
			m.stopProc(ep, "requested", mode)
			if to == Suspended {
				return nil
			}
		case ep.state == Suspended && to == Stopped:
			ep.busy = true
			m.wg.Add(1)
			m.mu.Unlock()
			m.release(ep, "requested")
			return nil
		default:
			m.mu.Unlock()
			return nil
		}
	}
}

// loop runs the autosuspend timers until Close.
func (m *Manager) loop() {
	defer m.wg.Done()
	for {
		next := m.tick(time.Now())
		t := time.NewTimer(time.Until(next))
		select {
		case <-m.ctx.Done():
			t.Stop()
			return
		case <-m.poke:
		case <-t.C:
		}
		t.Stop()
	}
}

// tick applies due timers and returns when it next needs to run.
func (m *Manager) tick(now time.Time) time.Time {
	next := now.Add(time.Minute)
	due := func(d time.Duration, last time.Time) bool {
		if d <= 0 {
			return false
		}
		at := last.Add(d)
		if !now.Before(at) {
			return true
		}
		if at.Before(next) {
			next = at
		}
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return next
	}
	for _, ep := range m.endpoints {
		if ep.busy || ep.conns > 0 {
			continue
		}
		t := m.timersOf(ep.key)
		switch ep.state {
		case Running:
			if due(t.IdleAfter, ep.lastActive) {
				m.setState(ep, Idle, fmt.Sprintf("no connection for %s", t.IdleAfter))
				due(t.SuspendAfter, ep.lastActive) // schedule the next step
			}
		case Idle:
			if due(t.SuspendAfter, ep.lastActive) {
				m.beginSuspendLocked(ep)
				go m.suspend(ep, fmt.Sprintf("no connection for %s", t.SuspendAfter))
			}
		case Suspended:
			if due(t.StopAfter, ep.lastActive) {
				ep.busy = true
				m.wg.Add(1)
				go m.release(ep, fmt.Sprintf("suspended, no connection for %s", t.StopAfter))
			}
		}
	}
	return next
}
