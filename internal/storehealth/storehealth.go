// Package storehealth tracks whether the coordinator's store accepts
// writes. A store that cannot write for now (a full disk, an etcd outage)
// is not a reason to stop: the coordinator refuses new work with
// STORE_UNAVAILABLE, keeps what it already accepted, and resumes on its own
// once a write succeeds again. Which errors count as "for now" is Transient;
// anything else still stops the coordinator.
package storehealth

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/store"
)

// RetryAfter is what a refusal tells clients to wait before trying again.
const RetryAfter = 5 * time.Second

// Transient reports whether err means the store cannot write for now but
// may again without a restart: etcd not answering or past its quota, or a
// filesystem that is full, over quota, read-only or failing I/O. bbolt
// wraps some of these with %s, so the errno's text is matched too.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNoSpace) {
		return true
	}
	for _, no := range transientErrnos {
		if errno(err, no) {
			return true
		}
	}
	return false
}

var transientErrnos = []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT, syscall.EROFS, syscall.EIO}

// State is the store's write health as status and doctor show it.
type State struct {
	Writable bool
	// Since is when writes started failing (zero while writable).
	Since time.Time
	// Error is the last write error, Fix what brings writes back.
	Error, Fix string
	// Outages counts the times writes started failing; Failures every
	// failed write attempt, retries included.
	Outages, Failures uint64
}

// Monitor is the store's write health, shared by the journal (which
// reports each commit) and the API (which refuses new work while writes
// fail).
type Monitor struct {
	store string // "bolt store /data/ward.db", for messages
	dir   string // the bolt store's directory ("" for etcd)
	now   func() time.Time

	isDown atomic.Bool // mirrors down, so a commit's Succeeded costs no lock

	mu       sync.Mutex
	down     bool
	since    time.Time
	err      error
	downCh   chan struct{} // closed when writes start failing; replaced when they succeed again
	outages  uint64
	failures uint64
}

// New returns a Monitor for the store described by store ("bolt store
// PATH" or "etcd store URL…"); dir, for a file store, is the directory whose
// filesystem must have room.
func New(store, dir string) *Monitor {
	return &Monitor{store: store, dir: dir, now: time.Now, downCh: make(chan struct{})}
}

// Failed records a failed write. It reports whether this starts an outage.
func (m *Monitor) Failed(err error) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failures++
	m.err = err
	if m.down {
		return false
	}
	m.down, m.since = true, m.now()
	m.isDown.Store(true)
	m.outages++
	close(m.downCh)
	return true
}

// Succeeded records a successful write. It reports whether this ends an
// outage, and how long that lasted.
func (m *Monitor) Succeeded() (bool, time.Duration) {
	if !m.isDown.Load() {
		return false, 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.down {
		return false, 0
	}
	d := m.now().Sub(m.since)
	m.down, m.since, m.err = false, time.Time{}, nil
	m.isDown.Store(false)
	m.downCh = make(chan struct{})
	return true, d
}

// Down is closed once writes fail; a channel taken while writes fail is
// closed already.
func (m *Monitor) Down() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.downCh
}

// Err is nil while the store writes, else the STORE_UNAVAILABLE refusal
// for new work: it names the store, the error and the fix.
func (m *Monitor) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.down {
		return nil
	}
	return m.refusalLocked("new work is refused until writes succeed again; sessions and running tasks go on")
}

// Pending is the STORE_UNAVAILABLE error for a request that was accepted
// into memory just before the store stopped writing: what (e.g. "job 12")
// is kept and written once the store recovers, so the client must not send
// it again.
func (m *Monitor) Pending(what string) *api.Error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.refusalLocked(what + " was accepted before the store stopped writing and is kept in memory; it is written, and takes effect, once the store writes again: check for it before sending it again")
}

// Refuse is the STORE_UNAVAILABLE error for a write that failed with err,
// a Transient error, outside the journal (which alone decides whether the
// store is down).
func (m *Monitor) Refuse(err error) error {
	e := api.Errorf(api.CodeStoreUnavailable, fixFor(err, m.dir),
		"the coordinator's %s could not write: %v; nothing was changed, try again", m.store, err)
	e.RetryAfter = api.Duration(RetryAfter)
	return e.WithCause(err)
}

func (m *Monitor) refusalLocked(then string) *api.Error {
	cause := "writes are failing"
	if m.err != nil {
		cause = m.err.Error()
	}
	e := api.Errorf(api.CodeStoreUnavailable, m.fixLocked(),
		"the coordinator's %s cannot write since %s (%s ago): %s; %s",
		m.store, m.since.UTC().Format(time.RFC3339), m.now().Sub(m.since).Round(time.Second), cause, then)
	e.RetryAfter = api.Duration(RetryAfter)
	return e
}

// State is the current write health.
func (m *Monitor) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := State{Writable: !m.down, Since: m.since, Outages: m.outages, Failures: m.failures}
	if m.down {
		if m.err != nil {
			s.Error = m.err.Error()
		}
		s.Fix = m.fixLocked()
	}
	return s
}

// fixLocked is what an operator does to bring writes back, for the error
// at hand; the coordinator then resumes on its own.
func (m *Monitor) fixLocked() string { return fixFor(m.err, m.dir) }

// fixFor is the fix for a write that failed with err; dir is the file
// store's directory ("" for etcd).
func fixFor(err error, dir string) string {
	const resume = "; the coordinator retries on its own and resumes once a write succeeds, no restart needed"
	where, df := "the store's disk", "."
	if dir != "" {
		where, df = "the filesystem holding "+dir, dir
	}
	switch {
	case err == nil:
		return "check the store" + resume
	case errors.Is(err, store.ErrNoSpace):
		return "make room in etcd: compact and defragment it (`etcdctl defrag`), raise --quota-backend-bytes if needed, then `etcdctl alarm disarm`" + resume
	case errors.Is(err, store.ErrUnavailable):
		return "bring etcd back or restore its quorum (`etcdctl endpoint health` shows which members answer)" + resume
	case errno(err, syscall.ENOSPC):
		return fmt.Sprintf("free space on %s (`df -h %s`)", where, df) + resume
	case errno(err, syscall.EDQUOT):
		return fmt.Sprintf("raise the disk quota of the coordinator's user on %s, or free space under it", where) + resume
	case errno(err, syscall.EROFS):
		return fmt.Sprintf("%s is read-only: remount it read-write", where) + resume
	case errno(err, syscall.EIO):
		return fmt.Sprintf("%s reports I/O errors: check the device (`dmesg`), and restore from `ward store backup` onto a sound disk if it is failing", where) + resume
	}
	return "check the store" + resume
}

func errno(err error, no syscall.Errno) bool {
	return errors.Is(err, no) || strings.Contains(err.Error(), no.Error())
}
