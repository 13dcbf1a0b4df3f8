// Package etcdtest starts real etcd servers for Ward's tests and
// benchmarks: the etcd server code (go.etcd.io/etcd/server/v3/embed) built
// from the nested module in ./server into its own binary, run as its own
// process with its own data directory, fsync on, over mutual TLS with
// certificates from etcdcerts (or plaintext when asked). Building needs the
// go command and the module proxy, as every Ward build does.
package etcdtest

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/store/etcd"
	"github.com/wardcluster/ward/internal/store/etcd/etcdcerts"
)

// StartTimeout bounds a server's start (building excluded).
const StartTimeout = 60 * time.Second

// Options configure Start.
type Options struct {
	// Plaintext serves clients without TLS.
	Plaintext bool
	// MaxTxnOps and MaxRequestBytes are etcd's --max-txn-ops and
	// --max-request-bytes; zero: what Ward requires
	// (etcd.DefaultLimits).
	MaxTxnOps       uint
	MaxRequestBytes uint
	// ServerCert, ServerKey and ClientCA serve TLS with these files
	// instead of fresh ones (then CA, ClientCert and ClientKey of the
	// Server stay empty: the caller has its own).
	ServerCert, ServerKey, ClientCA string
}

// Server is one running etcd member.
type Server struct {
	// Endpoint is the client address, HOST:PORT.
	Endpoint string
	// Dir holds the member's data (Dir/data), log (Dir/etcd.log) and
	// certificates (Dir/certs).
	Dir string
	// CA, ClientCert and ClientKey are the files a coordinator passes as
	// --etcd-ca, --etcd-cert and --etcd-key (empty with Plaintext).
	CA, ClientCert, ClientKey string

	bin  string
	args []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

var build struct {
	once sync.Once
	path string
	err  error
}

// Binary builds the etcd server helper once per process (the go build cache
// makes later builds cheap) and returns its path, shared by processes
// through a file named for the helper's sources.
func Binary() (string, error) {
	build.once.Do(func() { build.path, build.err = buildBinary() })
	return build.path, build.err
}

func buildBinary() (string, error) {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("etcdtest: cannot locate its own source")
	}
	src := filepath.Join(filepath.Dir(self), "server")
	h := sha256.New()
	for _, f := range []string{"main.go", "go.mod", "go.sum"} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", fmt.Errorf("etcdtest: read the etcd helper's source: %w", err)
		}
		h.Write(data)
	}
	dir := filepath.Join(os.TempDir(), "ward-etcdtest-"+hex.EncodeToString(h.Sum(nil))[:16])
	bin := filepath.Join(dir, "etcd-server")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	tmp := fmt.Sprintf("%s.%d", bin, os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, ".")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("etcdtest: build the etcd server helper in %s (go build needs the module proxy): %v\n%s", src, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	return bin, nil
}

// Start builds (once) and starts an etcd member in dir, with fresh
// certificates for 127.0.0.1 and localhost unless o.Plaintext.
func Start(dir string, o Options) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	if o.MaxTxnOps == 0 {
		o.MaxTxnOps = uint(etcd.DefaultLimits.MaxOps)
	}
	if o.MaxRequestBytes == 0 {
		o.MaxRequestBytes = uint(etcd.DefaultLimits.MaxBytes + 2<<20)
	}
	s := &Server{Dir: dir, bin: bin}
	s.args = []string{"-data", filepath.Join(dir, "data"),
		"-max-txn-ops", strconv.FormatUint(uint64(o.MaxTxnOps), 10),
		"-max-request-bytes", strconv.FormatUint(uint64(o.MaxRequestBytes), 10)}
	switch {
	case o.ServerCert != "":
		s.args = append(s.args, "-cert", o.ServerCert, "-key", o.ServerKey, "-ca", o.ClientCA)
	case !o.Plaintext:
		certs := filepath.Join(dir, "certs")
		if err := WriteCerts(certs, "etcd", "ward-coordinator"); err != nil {
			return nil, err
		}
		s.CA = filepath.Join(certs, etcdcerts.FileCA)
		s.ClientCert = filepath.Join(certs, "ward-coordinator.pem")
		s.ClientKey = filepath.Join(certs, "ward-coordinator-key.pem")
		s.args = append(s.args, "-cert", filepath.Join(certs, "etcd.pem"), "-key", filepath.Join(certs, "etcd-key.pem"), "-ca", s.CA)
	}
	if err := s.start("127.0.0.1:0"); err != nil {
		return nil, err
	}
	return s, nil
}

// WriteCerts makes an etcd CA in dir (ca.pem) with a server certificate for
// 127.0.0.1 and localhost (SERVER.pem, SERVER-key.pem) and a client
// certificate (CLIENT.pem, CLIENT-key.pem).
func WriteCerts(dir, server, client string) error {
	now := time.Now()
	ca, _, err := etcdcerts.LoadOrCreateCA(dir, "test", now)
	if err != nil {
		return err
	}
	for _, leaf := range []struct {
		kind  etcdcerts.Kind
		name  string
		hosts []string
	}{{etcdcerts.Server, server, []string{"127.0.0.1", "localhost"}}, {etcdcerts.Client, client, nil}} {
		cred, err := etcdcerts.Issue(ca, leaf.kind, leaf.name, leaf.hosts, now, time.Hour)
		if err != nil {
			return err
		}
		if err := etcdcerts.Save(cred, filepath.Join(dir, leaf.name+".pem"), filepath.Join(dir, leaf.name+"-key.pem")); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) start(addr string) error {
	logf, err := os.OpenFile(filepath.Join(s.Dir, "etcd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(s.bin, append(s.args, "-client-addr", addr)...)
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("etcdtest: start %s: %w", s.bin, err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "ready "); ok {
				ready <- u
				break
			}
		}
		io.Copy(io.Discard, out)
	}()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case u := <-ready:
		pu, err := url.Parse(u)
		if err != nil {
			cmd.Process.Kill()
			return fmt.Errorf("etcdtest: bad ready line %q", u)
		}
		s.mu.Lock()
		s.Endpoint, s.cmd, s.done = pu.Host, cmd, done
		s.mu.Unlock()
		return nil
	case <-done:
		return fmt.Errorf("etcdtest: etcd exited at start (%v); its log: %s", cmd.ProcessState, s.logTail())
	case <-time.After(StartTimeout):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("etcdtest: etcd not ready within %v; its log: %s", StartTimeout, s.logTail())
	}
}

func (s *Server) logTail() string {
	data, _ := os.ReadFile(filepath.Join(s.Dir, "etcd.log"))
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return string(data)
}

// Stop ends the server with SIGTERM and waits for it (SIGKILL after 10 s).
func (s *Server) Stop() { s.signal(syscall.SIGTERM, 10*time.Second) }

// Kill ends the server with SIGKILL and waits for it.
func (s *Server) Kill() { s.signal(syscall.SIGKILL, 10*time.Second) }

func (s *Server) signal(sig syscall.Signal, wait time.Duration) {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGCONT) // a paused server cannot act on SIGTERM
	cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(wait):
		cmd.Process.Kill()
		<-done
	}
}

// Pause stops the server's process (SIGSTOP): it keeps its connections but
// answers nothing, as behind a partition. Resume continues it.
func (s *Server) Pause() error { return s.send(syscall.SIGSTOP) }

// Resume continues a paused server.
func (s *Server) Resume() error { return s.send(syscall.SIGCONT) }

func (s *Server) send(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return errors.New("etcdtest: server not running")
	}
	return s.cmd.Process.Signal(sig)
}

// Restart starts a stopped server again on the same data and address.
func (s *Server) Restart() error {
	s.mu.Lock()
	running, addr := s.cmd != nil, s.Endpoint
	s.mu.Unlock()
	if running {
		return errors.New("etcdtest: server still running")
	}
	return s.start(addr)
}

// TLS loads the client side of the link, as the coordinator would.
func (s *Server) TLS() (*etcd.TLS, error) {
	if s.CA == "" {
		return nil, nil
	}
	return etcd.LoadTLS(s.CA, s.ClientCert, s.ClientKey)
}

// StartT starts a server in a test's temp dir and stops it at cleanup. A
// server that cannot be built or started fails the test: it never skips.
func StartT(t testing.TB, o Options) *Server {
	t.Helper()
	dir := t.TempDir()
	s, err := Start(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Pid is the running server's process ID (0 when stopped).
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Main starts one server that a package's tests share, stores it in *srv,
// runs the tests and stops the server; a TestMain returns os.Exit(Main(m,
// &server)). A server that cannot start fails the run (exit 1).
func Main(m *testing.M, srv **Server) int {
	dir, err := os.MkdirTemp("", "ward-etcd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if *srv, err = Start(dir, Options{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer (*srv).Stop()
	return m.Run()
}

var prefixSeq atomic.Int64

// Prefix is a key prefix no other test uses, under /ward-<kind>/, so tests
// can share one etcd member.
func Prefix(kind string) string {
	return fmt.Sprintf("/ward-%s/%d-%d/", kind, time.Now().UnixNano(), prefixSeq.Add(1))
}
