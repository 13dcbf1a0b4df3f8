package tpmkey

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/user"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"

	"github.com/wardcluster/ward/internal/api"
)

// DefaultDevice is the TPM a Source uses when its Device is empty: the
// kernel's resource manager, which many processes can share and which flushes
// a process's transient objects when it exits.
const DefaultDevice = "/dev/tpmrm0"

// Timeouts of the tcp:// transport. A TPM answers in milliseconds to
// seconds; a longer silence means the simulator is serving someone else.
// Variables only so that tests can shorten them.
var (
	tcpDialTimeout    = 5 * time.Second
	tcpCommandTimeout = 30 * time.Second
)

// maxResponse bounds a TPM response read from the network. Real TPMs answer
// with at most a few KiB (TPM2_PT_MAX_RESPONSE_SIZE is typically 4096).
const maxResponse = 64 << 10

// transportError is a failure to talk to the TPM at all (as opposed to the
// TPM refusing a command). The connection it happened on is dropped and the
// next operation reconnects.
type transportError struct {
	device string
	err    error
}

func (e *transportError) Error() string {
	return fmt.Sprintf("TPM at %s: %v", e.device, e.err)
}

func (e *transportError) Unwrap() error { return e.err }

// dialFunc opens a fresh connection to a TPM.
type dialFunc func() (transport.TPMCloser, error)

// dialerFor returns how to reach device: a character device path through
// go-tpm's linux transport, or tcp://HOST:PORT for swtpm's server socket.
func dialerFor(device string) (dialFunc, error) {
	if device == "" {
		device = DefaultDevice
	}
	if len(device) >= 6 && device[:6] == "tcp://" {
		addr, err := parseTCPDevice(device)
		if err != nil {
			return nil, err
		}
		return func() (transport.TPMCloser, error) { return dialTCP(device, addr) }, nil
	}
	return func() (transport.TPMCloser, error) { return openDevice(device) }, nil
}

func parseTCPDevice(device string) (string, error) {
	bad := func(why string) error {
		return api.Errorf(api.CodeInvalidArgument, "pass --tpm-device tcp://HOST:PORT, e.g. tcp://127.0.0.1:2321",
			"TPM device %q is not a valid tcp://HOST:PORT address: %s", device, why)
	}
	u, err := url.Parse(device)
	if err != nil {
		return "", bad(err.Error())
	}
	if u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
		return "", bad("want only a host and a port")
	}
	host, port := u.Hostname(), u.Port()
	if host == "" || port == "" {
		return "", bad("missing host or port")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", bad("port out of range")
	}
	return net.JoinHostPort(host, port), nil
}

// openDevice opens a TPM character device with go-tpm's linux transport and
// turns the usual failures into errors that say what to do.
func openDevice(path string) (transport.TPMCloser, error) {
	t, err := linuxtpm.Open(path)
	if err == nil {
		return t, nil
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, api.Errorf(api.CodeFailedPrecondition, "use --key file, or pass --tpm-device with the path of this node's TPM",
			"no TPM at %s: the node has no TPM 2.0, or the kernel resource manager is not loaded", path).WithCause(err)
	case errors.Is(err, fs.ErrPermission):
		return nil, permissionError(path, err)
	case errors.Is(err, linuxtpm.ErrFileIsNotDevice):
		return nil, api.Errorf(api.CodeFailedPrecondition, "pass --tpm-device /dev/tpmrm0 (or tcp://HOST:PORT for swtpm)",
			"%s is not a TPM: it is not a character device", path).WithCause(err)
	case errors.Is(err, syscall.EBUSY):
		return nil, api.Errorf(api.CodeUnavailable, "pass --tpm-device /dev/tpmrm0 (the kernel resource manager, which processes can share), or stop the process holding "+path,
			"the TPM at %s is in use by another process (often tpm2-abrmd); the raw device admits one process at a time", path).WithCause(err)
	}
	return nil, api.Errorf(api.CodeUnavailable, "check the device, or use --key file",
		"cannot open the TPM at %s: %v", path, err).WithCause(err)
}

// permissionError names the owner, group and mode of the device and how to
// get access to it.
func permissionError(path string, cause error) error {
	owner, group, mode := "?", "?", fs.FileMode(0)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			owner, group = strconv.Itoa(int(st.Uid)), strconv.Itoa(int(st.Gid))
			if u, err := user.LookupId(owner); err == nil {
				owner = u.Username
			}
			if g, err := user.LookupGroupId(group); err == nil {
				group = g.Name
			}
		}
	}
	who := "the agent's user"
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	fix := fmt.Sprintf("add %s to group %s (usermod -aG %s %s, then start the agent again from a new login), or run the agent as root", who, group, group, who)
	if mode&0o060 != 0o060 {
		fix = fmt.Sprintf("let group %s read and write it (chgrp %s %s && chmod 660 %s; make it permanent with a udev rule, as the tpm2-tss package's does for group tss), then add %s to that group", group, group, path, path, who)
	}
	return api.Errorf(api.CodePermissionDenied, fix,
		"permission denied opening the TPM at %s (owner %s, group %s, mode %04o)", path, owner, group, mode).WithCause(cause)
}

// swtpm's TCP server socket, as measured against swtpm 0.7.1 (see the
// package documentation for the whole finding):
//
//   - The server (data) port speaks raw TPM 2.0: write the command bytes,
//     read the response bytes, which carry their own size in the 10-byte
//     header. swtpm also accepts the Microsoft simulator's framing on the
//     same port, per command (a 4-byte TPM_SEND_COMMAND = 8, a locality byte
//     and a 4-byte length first; then the answer comes as a 4-byte length,
//     the response and a 4-byte 0), but the raw form is its native one and
//     needs nothing else.
//   - The control (--ctrl) port does not speak the Microsoft simulator's
//     platform protocol: it speaks swtpm's own control protocol (to
//     command 1 it answers CMD_GET_CAPABILITY's 8 bytes, where a Microsoft
//     simulator would take POWER_ON). It is needed only to initialise a TPM
//     started without --flags not-need-init, which otherwise answers every
//     command with TPM_RC_FAILURE.
//   - With not-need-init but without startup-clear the TPM answers
//     TPM_RC_INITIALIZE until TPM2_Startup; the connection sends
//     TPM2_Startup(CLEAR) itself in that case.
//   - swtpm serves one client connection at a time: a second connection is
//     accepted by the kernel but gets no answer until the first one closes.
//     Hence one shared connection per device in this process, and a deadline
//     on every command so that a busy simulator is an error, not a hang.
type tcpTPM struct {
	device string
	conn   net.Conn
}

func dialTCP(device, addr string) (transport.TPMCloser, error) {
	c, err := net.DialTimeout("tcp", addr, tcpDialTimeout)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, api.Errorf(api.CodeUnavailable,
				"start swtpm (swtpm socket --tpm2 --server type=tcp,port=PORT --ctrl type=tcp,port=PORT+1 --flags not-need-init,startup-clear --tpmstate dir=STATE), or fix --tpm-device",
				"no TPM simulator listening at %s", device).WithCause(err)
		}
		return nil, api.Errorf(api.CodeUnavailable, "check that the simulator's host and port are right and reachable, or fix --tpm-device",
			"cannot reach the TPM simulator at %s: %v", device, err).WithCause(err)
	}
	return &tcpTPM{device: device, conn: c}, nil
}

// Send writes one raw TPM command and reads one raw response.
func (t *tcpTPM) Send(cmd []byte) ([]byte, error) {
	if err := t.conn.SetDeadline(time.Now().Add(tcpCommandTimeout)); err != nil {
		return nil, err
	}
	if _, err := t.conn.Write(cmd); err != nil {
		return nil, t.ioError(err)
	}
	var hdr [10]byte
	if _, err := io.ReadFull(t.conn, hdr[:]); err != nil {
		return nil, t.ioError(err)
	}
	tag, size := binary.BigEndian.Uint16(hdr[0:2]), binary.BigEndian.Uint32(hdr[2:6])
	if (tag != uint16(tpm2.TPMSTNoSessions) && tag != uint16(tpm2.TPMSTSessions)) || size < 10 || size > maxResponse {
		return nil, fmt.Errorf("%s does not answer like a TPM 2.0 (response header %x); is it swtpm's --server port (not its --ctrl port)?", t.device, hdr)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr[:])
	if _, err := io.ReadFull(t.conn, rsp[10:]); err != nil {
		return nil, t.ioError(err)
	}
	return rsp, nil
}

func (t *tcpTPM) ioError(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("no answer within %v: swtpm serves one connection at a time, so another process may be holding it (stop it, or give this agent its own swtpm): %w", tcpCommandTimeout, err)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return fmt.Errorf("the simulator closed the connection (stopped or restarted?): %w", err)
	}
	return err
}

// Close closes the socket.
func (t *tcpTPM) Close() error { return t.conn.Close() }

// conn is this process's one connection to one TPM, shared by every key
// opened on it and reconnected after a transport failure. mu serialises all
// use of the TPM: go-tpm's transports are not safe for concurrent use, and a
// sequence such as CreatePrimary, Load, FlushContext must not interleave with
// another one on a TPM with few transient object slots.
type conn struct {
	device string
	dial   dialFunc

	mu  sync.Mutex
	tpm transport.TPMCloser // nil while disconnected
	gen uint64              // bumped at every connect; loaded handles belong to one generation

	refs int // guarded by conns.mu
}

// conns holds the open connections by device.
var conns = struct {
	sync.Mutex
	m map[string]*conn
}{m: map[string]*conn{}}

// acquire returns the shared connection to device, connected, with one more
// reference; release gives the reference back.
func acquire(device string, dial dialFunc) (*conn, error) {
	conns.Lock()
	c := conns.m[device]
	if c == nil {
		c = &conn{device: device, dial: dial}
		conns.m[device] = c
	}
	c.refs++
	conns.Unlock()

	c.mu.Lock()
	err := c.connectLocked()
	c.mu.Unlock()
	if err != nil {
		release(c)
		return nil, err
	}
	return c, nil
}

// release drops one reference and closes the connection after the last,
// before another acquire can dial the device again (swtpm and /dev/tpm0
// admit one client at a time). Lock order: conns.mu, then conn.mu.
func release(c *conn) {
	conns.Lock()
	defer conns.Unlock()
	c.refs--
	if c.refs > 0 {
		return
	}
	if conns.m[c.device] == c {
		delete(conns.m, c.device)
	}
	c.mu.Lock()
	c.disconnectLocked()
	c.mu.Unlock()
}

func (c *conn) connectLocked() error {
	if c.tpm != nil {
		return nil
	}
	t, err := c.dial()
	if err != nil {
		return err
	}
	c.tpm = t
	c.gen++
	return nil
}

func (c *conn) disconnectLocked() {
	if c.tpm != nil {
		_ = c.tpm.Close()
		c.tpm = nil
	}
}

// do runs fn with the connected TPM while holding the lock. A transport
// failure inside fn drops the connection so that the next call reconnects.
func (c *conn) do(fn func(t transport.TPM, gen uint64) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.doLocked(fn)
}

func (c *conn) doLocked(fn func(t transport.TPM, gen uint64) error) error {
	if err := c.connectLocked(); err != nil {
		return err
	}
	err := fn(&sender{c: c, tpm: c.tpm}, c.gen)
	var te *transportError
	if errors.As(err, &te) {
		c.disconnectLocked()
	}
	return err
}

// sender is the transport.TPM handed to go-tpm. It marks I/O failures as
// transport errors, starts up a TPM that has not been (swtpm without
// startup-clear, a simulator after a reset), and waits out TPM_RC_RETRY,
// TPM_RC_YIELDED and TPM_RC_TESTING.
type sender struct {
	c   *conn
	tpm transport.TPM
}

func (s *sender) Send(cmd []byte) ([]byte, error) {
	started := false
	for attempt := 0; ; attempt++ {
		rsp, err := s.tpm.Send(cmd)
		if err != nil {
			return nil, &transportError{device: s.c.device, err: err}
		}
		if len(rsp) < 10 {
			return nil, &transportError{device: s.c.device, err: fmt.Errorf("short TPM response (%d bytes)", len(rsp))}
		}
		rc := tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:10]))
		switch {
		case rc == tpm2.TPMRCInitialize && !started && !isStartup(cmd):
			started = true
			if _, err := (tpm2.Startup{StartupType: tpm2.TPMSUClear}).Execute(s.tpm); err != nil {
				return nil, fmt.Errorf("TPM at %s needed TPM2_Startup, which failed: %w", s.c.device, err)
			}
			continue
		case (rc == tpm2.TPMRCRetry || rc == tpm2.TPMRCYielded || rc == tpm2.TPMRCTesting) && attempt < 12:
			time.Sleep(time.Duration(1<<min(attempt, 9)) * time.Millisecond)
			continue
		}
		return rsp, nil
	}
}

func isStartup(cmd []byte) bool {
	return len(cmd) >= 10 && tpm2.TPMCC(binary.BigEndian.Uint32(cmd[6:10])) == tpm2.TPMCCStartup
}
