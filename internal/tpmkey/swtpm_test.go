package tpmkey

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
)

// swtpm is a real swtpm process serving TPM 2.0 on a TCP port, with its
// control channel on a unix socket (so one free TCP port suffices and no
// adjacent port can clash with another test's).
type swtpm struct {
	state, log, ctrl string
	port             int
	flags            string
	cmd              *exec.Cmd
	exited           chan struct{}
}

// startSwtpm starts swtpm on free ports with its state in stateDir and stops
// it when the test ends. The test is skipped only when swtpm is not
// installed.
func startSwtpm(t *testing.T, stateDir, flags string) *swtpm {
	return startSwtpmCtrl(t, stateDir, flags, false)
}

// startSwtpmCtrl is startSwtpm with, when tcpCtrl is set, the control
// channel on the TCP port after the server port: the layout tpm2-tss's
// swtpm TCTI requires.
func startSwtpmCtrl(t *testing.T, stateDir, flags string, tcpCtrl bool) *swtpm {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		t.Skip("swtpm is not installed (apt-get install swtpm swtpm-tools)")
	}
	dir := t.TempDir()
	port, _ := strconv.Atoi(freePort(t))
	s := &swtpm{state: stateDir, log: filepath.Join(dir, "swtpm.log"), ctrl: filepath.Join(dir, "ctrl.sock"), port: port, flags: flags}
	if tcpCtrl {
		s.port = portPairBelowEphemeral(t)
		s.ctrl = ""
	}
	s.start(t)
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (s *swtpm) device() string { return "tcp://127.0.0.1:" + strconv.Itoa(s.port) }

// start runs swtpm (again, on the same ports and state) and waits until its
// server port accepts connections.
func (s *swtpm) start(t *testing.T) {
	t.Helper()
	args := []string{"socket", "--tpm2",
		"--server", "type=tcp,bindaddr=127.0.0.1,port=" + strconv.Itoa(s.port),
	}
	if s.ctrl != "" {
		args = append(args, "--ctrl", "type=unixio,path="+s.ctrl)
	} else {
		args = append(args, "--ctrl", "type=tcp,bindaddr=127.0.0.1,port="+strconv.Itoa(s.port+1))
	}
	args = append(args,
		"--tpmstate", "dir="+s.state,
		"--log", "file="+s.log+",level=1",
	)
	if s.flags != "" {
		args = append(args, "--flags", s.flags)
	}
	s.cmd = exec.Command("swtpm", args...)
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(s.cmd, s.exited)
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-s.exited:
			b, _ := os.ReadFile(s.log)
			t.Fatalf("swtpm exited at start: %s\n%s", s.cmd.ProcessState, b)
		default:
		}
		// A probe connection holds swtpm's one client slot only until it
		// closes.
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(s.port), time.Second); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("swtpm did not listen within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends swtpm with SIGTERM (it saves its state), or SIGKILL after 5s.
func (s *swtpm) stop(t *testing.T) {
	t.Helper()
	if s.cmd == nil {
		return
	}
	select {
	case <-s.exited:
	default:
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	}
	s.cmd = nil
}

// transient lists the transient objects swtpm holds, over a connection of
// its own (so none of ours may be open: swtpm serves one at a time).
func (s *swtpm) transient(t *testing.T) []tpm2.TPMHandle {
	t.Helper()
	tpm, err := dialTCP(s.device(), "127.0.0.1:"+strconv.Itoa(s.port))
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Close()
	return transientHandles(t, tpm)
}

func TestSwtpm(t *testing.T) {
	state := t.TempDir()
	sw := startSwtpm(t, state, "not-need-init,startup-clear")
	dir := t.TempDir()
	src := Source{Device: sw.device(), Dir: dir}

	k, err := src.Create()
	if err != nil {
		t.Fatal(err)
	}
	sg := closeAtEnd(t, k)
	want := k.Public().(*ecdsa.PublicKey)
	mustVerify(t, k, "swtpm")
	sg.Close()
	if h := sw.transient(t); len(h) != 0 {
		t.Fatalf("swtpm holds transient objects after Close: %v", h)
	}

	// Restart swtpm on the same state: the owner seed persisted, the SRK
	// is derived again and the blobs load.
	sw.stop(t)
	sw.start(t)
	k2, err := src.Open()
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, k2)
	if !want.Equal(k2.Public()) {
		t.Fatal("Open after a swtpm restart returned another key")
	}
	mustVerify(t, k2, "after restart")

	// Restart it under a live Signer: the next Sign reconnects and loads
	// the key again.
	sw.stop(t)
	sw.start(t)
	mustVerify(t, k2, "reconnected")

	// A stopped simulator is an error naming it, not a hang.
	sw.stop(t)
	d := sha256.Sum256([]byte("down"))
	if _, err := k2.Sign(nil, d[:], nil); err == nil {
		t.Fatal("nil opts accepted")
	}
	_, err = k2.(*Signer).Sign(nil, d[:], crypto.SHA256)
	if err == nil || !strings.Contains(err.Error(), "no TPM simulator listening at "+sw.device()) {
		t.Fatalf("Sign with swtpm stopped: %v", err)
	}
	k2.(*Signer).Close()

	// swtpm's state dir holds its NV (seeds), not our key: the key is only
	// in the blobs, and without them the identity is gone.
	sw.start(t)
	if err := os.Remove(src.PrivateBlobPath()); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Open(); err == nil || !strings.Contains(err.Error(), "missing from "+dir) {
		t.Fatalf("Open without the private blob: %v", err)
	}
}

// TestSwtpmStartup: a swtpm started without startup-clear answers
// TPM_RC_INITIALIZE until someone sends TPM2_Startup; the transport does.
func TestSwtpmStartup(t *testing.T) {
	sw := startSwtpm(t, t.TempDir(), "not-need-init")
	k, err := Source{Device: sw.device(), Dir: t.TempDir()}.Create()
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, k)
	mustVerify(t, k, "started by us")
}

// TestSwtpmNotInitialised: without not-need-init swtpm waits for CMD_INIT
// on its control channel and fails every command.
func TestSwtpmNotInitialised(t *testing.T) {
	sw := startSwtpm(t, t.TempDir(), "")
	_, err := Source{Device: sw.device(), Dir: t.TempDir()}.Create()
	if err == nil || !strings.Contains(err.Error(), "not-need-init") {
		t.Fatalf("error %v", err)
	}
}

// TestSwtpmBusy: swtpm serves one connection at a time; another client
// holding it makes our commands time out with an error that says so.
func TestSwtpmBusy(t *testing.T) {
	sw := startSwtpm(t, t.TempDir(), "not-need-init,startup-clear")
	old := tcpCommandTimeout
	tcpCommandTimeout = 500 * time.Millisecond
	t.Cleanup(func() { tcpCommandTimeout = old })
	hog, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(sw.port))
	if err != nil {
		t.Fatal(err)
	}
	defer hog.Close()
	// swtpm serves the first connection it accepts; make sure that is the
	// hog by having it complete a command first.
	hogTPM := &tcpTPM{device: sw.device(), conn: hog}
	if _, err := (tpm2.GetRandom{BytesRequested: 8}).Execute(hogTPM); err != nil {
		t.Fatal(err)
	}
	_, err = Source{Device: sw.device(), Dir: t.TempDir()}.Create()
	var te *transportError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "serves one connection at a time") {
		t.Fatalf("error %v", err)
	}
}

// TestTPM2ToolsReadsBlobs: the blobs are tpm2-tools' own format, and the
// SRK is the TCG template: tpm2_createprimary, tpm2_load and tpm2_sign from
// tpm2-tools, an outside TSS talking to the same swtpm through tpm2-tss's
// swtpm TCTI, load our key and make a signature Go verifies with our public
// key.
func TestTPM2ToolsReadsBlobs(t *testing.T) {
	for _, tool := range []string{"tpm2_createprimary", "tpm2_load", "tpm2_sign", "tpm2_flushcontext"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skip("tpm2-tools is not installed")
		}
	}
	sw := startSwtpmCtrl(t, t.TempDir(), "not-need-init,startup-clear", true)
	dir := t.TempDir()
	k, err := Source{Device: sw.device(), Dir: dir}.Create()
	if err != nil {
		t.Fatal(err)
	}
	pub := k.Public().(*ecdsa.PublicKey)
	k.(*Signer).Close() // swtpm serves one client at a time

	work := t.TempDir()
	digest := sha256.Sum256([]byte("signed by tpm2-tools"))
	if err := os.WriteFile(filepath.Join(work, "digest.bin"), digest[:], 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(stdin []byte, args ...string) {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI=swtpm:host=127.0.0.1,port="+strconv.Itoa(sw.port))
		if stdin != nil {
			cmd.Stdin = strings.NewReader(string(stdin))
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// Without a resource manager, tpm2-tools leave their objects loaded
	// (their context files are saved copies); flush them between steps, as
	// swtpm has three slots.
	flushAll := func() { run(nil, "tpm2_flushcontext", "-t") }
	// The TCG ECC P-256 SRK: unique is two zero-filled 32-byte coordinates.
	run(make([]byte, 64), "tpm2_createprimary", "-C", "o", "-g", "sha256", "-G", "ecc256:null:aes128cfb",
		"-a", "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt", "-u", "-", "-c", "srk.ctx")
	flushAll()
	run(nil, "tpm2_load", "-C", "srk.ctx", "-u", filepath.Join(dir, PublicBlobFile), "-r", filepath.Join(dir, PrivateBlobFile), "-c", "key.ctx")
	flushAll()
	run(nil, "tpm2_sign", "-c", "key.ctx", "-g", "sha256", "-d", "-f", "plain", "-o", "sig.der", "digest.bin")
	sig, err := os.ReadFile(filepath.Join(work, "sig.der"))
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(pub, digest[:], sig) {
		t.Fatalf("tpm2-tools' signature %x does not verify with our public key", sig)
	}
}

// portPairBelowEphemeral finds ports P and P+1 that are free, below the
// kernel's ephemeral range (32768 and up), where the kernel never hands out
// ports on its own, so only another test doing the same could clash.
func portPairBelowEphemeral(t *testing.T) int {
	t.Helper()
	for range 20 {
		p := 20000 + 2*rand.IntN(6000)
		a, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		b, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		a.Close()
		if err != nil {
			continue
		}
		b.Close()
		return p
	}
	t.Fatal("no free port pair between 20000 and 32000")
	return 0
}
