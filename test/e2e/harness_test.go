// Package e2e starts real ward processes (coordinators and agents) over
// real TLS on loopback and drives them with the real CLI.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/transport"
)

var wardBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ward-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Others may run it: an agent with --run-as-user runs its staging
	// helper as the task's account.
	os.Chmod(dir, 0o755)
	wardBin = filepath.Join(dir, "ward")
	build := exec.Command("go", "build", "-o", wardBin, "../../cmd/ward")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build ward:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running ward process with its output in files.
type proc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdout string
	stderr string
	done   chan struct{}
	err    error
}

func startProc(t *testing.T, dir, name string, stdin io.Reader, args ...string) *proc {
	t.Helper()
	return startProcBin(t, wardBin, dir, name, stdin, args...)
}

// startProcBin starts another ward binary (such as one built with a
// release version).
func startProcBin(t *testing.T, bin, dir, name string, stdin io.Reader, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, stdout: filepath.Join(dir, name+".out"), stderr: filepath.Join(dir, name+".err"), done: make(chan struct{})}
	outF, err := os.OpenFile(p.stdout, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	errF, err := os.OpenFile(p.stderr, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr, p.cmd.Stdin = outF, errF, stdin
	p.cmd.Env = append(os.Environ(), "WARD_CONTEXT=")
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		outF.Close()
		errF.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill9()
		if t.Failed() {
			b, _ := os.ReadFile(p.stderr)
			t.Logf("--- %s stderr (last 4 KiB) ---\n%s", name, tail(b, 4096))
		}
	})
	return p
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func (p *proc) kill9() {
	if p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

func (p *proc) interrupt() {
	p.cmd.Process.Signal(os.Interrupt)
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %s", p.name, timeout)
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proc) stderrText() string {
	b, _ := os.ReadFile(p.stderr)
	return string(b)
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cluster is a coordinator process and its agents.
type cluster struct {
	t       *testing.T
	dir     string
	data    string
	args    []string
	coord   *proc
	ctxPath string
	cluster string // cluster listener address
	public  string // public listener address
	agents  map[string]*proc
	starts  int
	bin     string // the coordinator's binary ("" for wardBin)
	// launcher, when set, starts the coordinator: launcher[0] with
	// launcher[1:], then the coordinator's binary and its arguments.
	launcher []string
}

// newCluster starts a coordinator on free loopback ports.
func newCluster(t *testing.T, extra ...string) *cluster {
	t.Helper()
	return newClusterBin(t, "", extra...)
}

// newClusterBin starts a coordinator from another ward binary.
func newClusterBin(t *testing.T, bin string, extra ...string) *cluster {
	t.Helper()
	dir := t.TempDir()
	c := &cluster{t: t, dir: dir, data: filepath.Join(dir, "coord"), agents: map[string]*proc{}, bin: bin}
	c.args = append([]string{"coordinator", "--data", c.data, "--advertise", "127.0.0.1"}, extra...)
	c.startCoordinator("127.0.0.1:0", "127.0.0.1:0")
	return c
}

func (c *cluster) startCoordinator(clusterAddr, publicAddr string) {
	c.t.Helper()
	c.launch(clusterAddr, publicAddr)
	c.awaitUp()
}

// launch starts the coordinator process without waiting for it (awaitUp
// waits), so a test can start several at once.
func (c *cluster) launch(clusterAddr, publicAddr string) {
	c.t.Helper()
	c.starts++
	args := append(append([]string{}, c.args...), "--cluster-addr", clusterAddr, "--public-addr", publicAddr)
	bin := c.bin
	if bin == "" {
		bin = wardBin
	}
	name := fmt.Sprintf("coordinator-%d", c.starts)
	if len(c.launcher) > 0 {
		c.coord = startProcBin(c.t, c.launcher[0], c.dir, name, nil, append(append(c.launcher[1:len(c.launcher):len(c.launcher)], bin), args...)...)
	} else {
		c.coord = startProcBin(c.t, bin, c.dir, name, nil, args...)
	}
}

// awaitUp waits until the launched coordinator prints its context and
// answers the CLI.
func (c *cluster) awaitUp() {
	c.t.Helper()
	var line string
	waitFor(c.t, 20*time.Second, "the coordinator's export line", func() bool {
		b, _ := os.ReadFile(c.coord.stdout)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "export WARD_CONTEXT=") {
				line = l
			}
		}
		if !c.coord.running() {
			c.t.Fatalf("coordinator exited: %s", c.coord.stderrText())
		}
		return line != ""
	})
	c.ctxPath = strings.TrimPrefix(line, "export WARD_CONTEXT=")
	ctx, err := config.LoadContext(c.ctxPath)
	if err != nil {
		c.t.Fatal(err)
	}
	c.cluster, c.public = ctx.Server, ctx.Public
	// A coordinator on etcd decrypts the shared CA (scrypt) and, as a
	// follower, answers through a leader that may have just been elected:
	// on a machine busy with the whole suite that took over 10 s once.
	waitFor(c.t, 30*time.Second, "the coordinator to answer", func() bool {
		_, _, code := c.ward("node", "ls")
		return code == 0
	})
}

// restartCoordinator starts the coordinator again on the same ports.
func (c *cluster) restartCoordinator() {
	c.startCoordinator(c.cluster, c.public)
}

// ward runs the CLI against this cluster.
func (c *cluster) ward(args ...string) (stdout, stderr string, code int) {
	return c.wardIn(nil, args...)
}

func (c *cluster) wardIn(stdin io.Reader, args ...string) (string, string, int) {
	cmd := exec.Command(wardBin, args...)
	cmd.Env = append(os.Environ(), "WARD_CONTEXT="+c.ctxPath)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Run()
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// mustWard runs the CLI and fails the test on a non-zero exit.
func (c *cluster) mustWard(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.ward(args...)
	if code != 0 {
		c.t.Fatalf("ward %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// wardJSON runs a CLI command with -o json and decodes its output.
func (c *cluster) wardJSON(v any, args ...string) {
	c.t.Helper()
	out := c.mustWard(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("ward %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// token creates a join token and returns the join string (the last line).
func (c *cluster) token(args ...string) string {
	c.t.Helper()
	out := c.mustWard(append([]string{"token", "create"}, args...)...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}

func (c *cluster) writeJoinFile(join string) string {
	f, err := os.CreateTemp(c.dir, "join-*")
	if err != nil {
		c.t.Fatal(err)
	}
	f.WriteString(join + "\n")
	f.Close()
	return f.Name()
}

// agentDir is the data directory of a named agent.
func (c *cluster) agentDir(name string) string { return filepath.Join(c.dir, "agent-"+name) }

// startAgent joins (first time) or restarts a named agent and waits until
// the coordinator lists it as ready.
func (c *cluster) startAgent(name string, slots int, extra ...string) *proc {
	c.t.Helper()
	return c.startAgentBin(wardBin, name, slots, extra...)
}

// startAgentBin starts a named agent from another ward binary.
func (c *cluster) startAgentBin(bin, name string, slots int, extra ...string) *proc {
	c.t.Helper()
	args := []string{"agent", "--data", c.agentDir(name), "--name", name, "--slots", fmt.Sprint(slots), "--kill-grace", "2s"}
	if _, err := os.Stat(filepath.Join(c.agentDir(name), "agent.json")); err != nil {
		args = append(args, "--join-file", c.writeJoinFile(c.token()))
	}
	args = append(args, extra...)
	p := startProcBin(c.t, bin, c.dir, "agent-"+name, nil, args...)
	c.agents[name] = p
	waitFor(c.t, 20*time.Second, "agent "+name+" to be ready", func() bool {
		if !p.running() {
			c.t.Fatalf("agent %s exited: %s", name, p.stderrText())
		}
		n, ok := c.node(name)
		return ok && (n.State == "ready" || n.State == "draining" || n.State == "drained")
	})
	return p
}

func (c *cluster) nodes() []api.Node {
	out, _, code := c.ward("node", "ls", "-o", "json")
	if code != 0 {
		return nil
	}
	var ns []api.Node
	json.Unmarshal([]byte(out), &ns)
	return ns
}

func (c *cluster) node(name string) (api.Node, bool) {
	for _, n := range c.nodes() {
		if n.Name == name {
			return n, true
		}
	}
	return api.Node{}, false
}

func (c *cluster) job(id string) api.JobDetail {
	c.t.Helper()
	var d api.JobDetail
	c.wardJSON(&d, "job", "status", id)
	return d
}

// waitJob waits until the job reaches a final state.
func (c *cluster) waitJob(id string, timeout time.Duration) api.JobDetail {
	c.t.Helper()
	var d api.JobDetail
	waitFor(c.t, timeout, "job "+id+" to finish", func() bool {
		out, _, code := c.ward("job", "status", id, "-o", "json")
		if code != 0 {
			return false
		}
		d = api.JobDetail{}
		json.Unmarshal([]byte(out), &d)
		return d.State == api.JobCompleted || d.State == api.JobFailed || d.State == api.JobCanceled
	})
	return d
}

// auditEvents reads the coordinator's audit log.
func (c *cluster) auditEvents() []audit.Event {
	c.t.Helper()
	return auditEventsIn(c.t, c.data)
}

// auditEventsIn reads the audit log of the coordinator with data directory
// data.
func auditEventsIn(t *testing.T, data string) []audit.Event {
	t.Helper()
	f, err := os.Open(filepath.Join(data, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ev, err := audit.Read(f, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// hasAudit reports whether an event of type typ with result exists.
func (c *cluster) hasAudit(typ, result string) bool {
	for _, e := range c.auditEvents() {
		if e.Type == typ && e.Result == result {
			return true
		}
	}
	return false
}

// adminHTTP is an HTTP client presenting the admin context's certificate.
func (c *cluster) httpClient(certPath, keyPath string) *http.Client {
	c.t.Helper()
	ctx, err := config.LoadContext(c.ctxPath)
	if err != nil {
		c.t.Fatal(err)
	}
	_, bundle, _, err := ctx.Credential()
	if err != nil {
		c.t.Fatal(err)
	}
	cred, err := identity.LoadCredential(certPath, keyPath)
	if err != nil {
		c.t.Fatal(err)
	}
	src := identity.NewSource(cred, bundle)
	cfg := transport.ClientConfig(src, transport.ClientOptions{ServerName: "127.0.0.1", NextProtos: []string{transport.ALPNHTTP}})
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
}

// publicClient trusts the cluster CA and presents no certificate.
func (c *cluster) publicClient() *http.Client {
	ctx, _ := config.LoadContext(c.ctxPath)
	_, bundle, _, _ := ctx.Credential()
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: bundle.Pool(), MinVersion: tls.VersionTLS13}}, Timeout: 10 * time.Second}
}

// decodeAPIError reads an *api.Error body.
func decodeAPIError(t *testing.T, resp *http.Response) *api.Error {
	t.Helper()
	defer resp.Body.Close()
	var eb api.ErrorBody
	if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil || eb.Error == nil {
		t.Fatalf("status %s: body is not an API error: %v", resp.Status, err)
	}
	return eb.Error
}

// lines returns the non-empty lines of s.
func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}

var _ = context.Background

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// lastJobID is the ID of the job submitted last.
func (c *cluster) lastJobID() string {
	c.t.Helper()
	var jobs []api.Job
	c.wardJSON(&jobs, "job", "ls")
	last := 0
	for _, j := range jobs {
		if n, err := strconv.Atoi(j.ID); err == nil && n > last {
			last = n
		}
	}
	return strconv.Itoa(last)
}
