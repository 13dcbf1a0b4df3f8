package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/enroll"
	"github.com/wardcluster/ward/internal/pki"
)

// TestRequestLimits: every body is bounded, decoded strictly, and a
// request over a limit gets a stable code and a message naming the limit's
// setting, on both ports.
func TestRequestLimits(t *testing.T) {
	c := newCluster(t)
	pub := c.publicClient()
	admin := c.httpClient(certAndKey(t, c))
	join := func(body string) *http.Response {
		resp, err := pub.Post("https://"+c.public+api.PathJoin, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	js, _ := enroll.ParseJoinString(c.token())
	good := func(name string) string {
		b, _ := json.Marshal(api.JoinRequest{TokenID: js.TokenID, Secret: js.Secret, Name: name, Slots: 1})
		return string(b)
	}
	tests := []struct {
		name   string
		do     func() *http.Response
		status int
		code   api.Code
		msg    string
	}{
		{"an oversized join body", func() *http.Response {
			return join(`{"name":"big","hostname":"` + strings.Repeat("h", 80<<10) + `"}`)
		}, http.StatusRequestEntityTooLarge, api.CodeRequestTooLarge, "over public_max_request_bytes (65536 bytes)"},
		{"a join followed by more data", func() *http.Response { return join(good("trail") + `{"name":"other"}`) },
			http.StatusBadRequest, api.CodeInvalidArgument, "goes on after its value"},
		{"a join with a name that is not UTF-8", func() *http.Response { return join(strings.Replace(good("bad"), `"bad"`, "\"b\xffd\"", 1)) },
			http.StatusBadRequest, api.CodeInvalidArgument, "not valid UTF-8"},
		{"headers over max_header_bytes", func() *http.Response {
			req, _ := http.NewRequest("GET", "https://"+c.public+api.PathCA, nil)
			req.Header.Set("X-Padding", strings.Repeat("p", 40<<10))
			resp, err := pub.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			return resp
		}, http.StatusRequestHeaderFieldsTooLarge, api.CodeHeadersTooLarge, "over max_header_bytes (32768 bytes)"},
		{"an oversized API body", func() *http.Response {
			resp, err := admin.Post("https://"+c.cluster+"/v1/tokens", "application/json",
				strings.NewReader(`{"labels":{"k":"`+strings.Repeat("v", 2<<20)+`"}}`))
			if err != nil {
				t.Fatal(err)
			}
			return resp
		}, http.StatusRequestEntityTooLarge, api.CodeRequestTooLarge, "over max_request_bytes (1048576 bytes)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := tt.do()
			if resp.StatusCode != tt.status {
				t.Errorf("status %s, want %d", resp.Status, tt.status)
			}
			e := decodeAPIError(t, resp)
			if e.Code != tt.code || !strings.Contains(e.Message, tt.msg) || e.Fix == "" {
				t.Fatalf("got %s %q (fix %q), want %s with %q", e.Code, e.Message, e.Fix, tt.code, tt.msg)
			}
		})
	}
	// Nothing of the refused joins was registered.
	if _, ok := c.node("trail"); ok {
		t.Error("a join with trailing data registered a node")
	}
}

// TestListenerTimeouts: a peer that connects and says nothing, one that
// sends half a request, and an idle keep-alive connection are all closed
// by the coordinator, each after its setting.
func TestListenerTimeouts(t *testing.T) {
	c := newCluster(t, "--handshake-timeout", "500ms", "--read-header-timeout", "500ms", "--public-idle-timeout", "500ms")
	closedWithin := func(conn net.Conn, within time.Duration) bool {
		conn.SetReadDeadline(time.Now().Add(within))
		_, err := io.ReadAll(conn)
		return err == nil // EOF: the server closed it; a timeout is an error
	}
	for _, addr := range []string{c.public, c.cluster} {
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if !closedWithin(raw, 5*time.Second) {
			t.Errorf("%s: a connection that never started its handshake stayed open past handshake_timeout", addr)
		}
		raw.Close()
	}
	ctx, _ := config.LoadContext(c.ctxPath)
	_, bundle, _, _ := ctx.Credential()
	dial := func() *tls.Conn {
		tc, err := tls.Dial("tcp", c.public, &tls.Config{RootCAs: bundle.Pool(), ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		return tc
	}
	half := dial()
	fmt.Fprintf(half, "GET %s HTTP/1.1\r\nHost: x\r\nX-Slow: ", api.PathCA)
	if !closedWithin(half, 5*time.Second) {
		t.Error("half a request header stayed open past read_header_timeout")
	}
	idle := dial()
	fmt.Fprintf(idle, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", api.PathReady)
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("ready: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	if !closedWithin(idle, 5*time.Second) {
		t.Error("an idle keep-alive connection stayed open past public_idle_timeout")
	}
}

// TestIdleConnectionsDoNotStarveJoins is the attack: 10,000 TCP
// connections opened to the public port and left idle, from many source
// addresses and from the joining agent's own. The coordinator runs with an
// open-files limit of 4,096, below the flood, and a real join must still
// succeed within 2 s; the CLI on the cluster port keeps working.
func TestIdleConnectionsDoNotStarveJoins(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 10,000 connections")
	}
	raiseOpenFiles(t, 10_000+2_000)
	// The coordinator process gets a limit below the flood, as a service
	// might: without caps it runs out of descriptors and accepts nothing.
	dir := t.TempDir()
	c := &cluster{t: t, dir: dir, data: dir + "/coord", agents: map[string]*proc{},
		launcher: []string{"sh", "-c", `ulimit -n 4096 && exec "$0" "$@"`}}
	c.args = []string{"coordinator", "--data", c.data, "--advertise", "127.0.0.1"}
	c.startCoordinator("127.0.0.1:0", "127.0.0.1:0")
	join := c.token()
	js, _ := enroll.ParseJoinString(join)

	var flood []net.Conn
	defer func() {
		for _, conn := range flood {
			conn.Close()
		}
	}()
	const n = 10_000
	for i := range n {
		// 40 source addresses, the joining agent's own (127.0.0.1) among them.
		src := net.IPv4(127, 0, 0, byte(1+i%40))
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: time.Second}
		conn, err := d.Dial("tcp", c.public)
		if err != nil {
			// A coordinator out of descriptors stops accepting and its
			// backlog fills: the join below shows what that means.
			t.Logf("idle connection %d: %v", i, err)
			break
		}
		flood = append(flood, conn)
	}
	key, _ := pki.GenerateKey()
	csr, _ := enroll.CreateCSR(key, pki.ID{Cluster: js.Cluster, Role: pki.RoleAgent, Name: "through"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := enroll.Join(ctx, js, api.JoinRequest{Name: "through", CSR: csr, Slots: 1}); err != nil {
		t.Fatalf("a real join during the flood failed after %s: %v\ncoordinator log:\n%s", time.Since(start), err, tail([]byte(c.coord.stderrText()), 2048))
	}
	t.Logf("join during %d idle connections: %s", len(flood), time.Since(start).Round(time.Millisecond))
	if len(flood) != n {
		t.Errorf("only %d of %d idle connections could be opened", len(flood), n)
	}
	if _, errOut, code := c.ward("node", "ls"); code != 0 {
		t.Fatalf("the CLI on the cluster port failed during the flood: %s", errOut)
	}
	if log := c.coord.stderrText(); !strings.Contains(log, "listener limit reached") || !strings.Contains(log, "public_max_handshakes") {
		t.Errorf("the coordinator did not log the cap it reached")
	}
	if fds := openFiles(t, c.coord.cmd.Process.Pid); fds > 2048 {
		t.Errorf("the coordinator holds %d open files during the flood", fds)
	}
}

// raiseOpenFiles raises this process's open-files limit to at least n, or
// skips the test when the hard limit is lower.
func raiseOpenFiles(t *testing.T, n uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Max < n {
		t.Skipf("the open-files hard limit is %d; this test needs %d", lim.Max, n)
	}
	if lim.Cur < n {
		saved := lim
		lim.Cur = n
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved) })
	}
}

// openFiles counts a process's open file descriptors.
func openFiles(t *testing.T, pid int) int {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Logf("count open files: %v", err)
		return 0
	}
	return len(ents)
}

// TestSessionFrameLimit: an agent frame over max_frame_bytes ends the
// session with a Bye that names the setting; nothing of its body is read.
func TestSessionFrameLimit(t *testing.T) {
	c := newCluster(t, "--max-frame-bytes", "2097152")
	f := newScriptedAgent(t, c, "f")
	f.connect(api.Hello{})
	// Only the header of a 3 MiB frame.
	if _, err := f.conn.Write([]byte{0, 0x30, 0, 0, byte(api.FrameOutput)}); err != nil {
		t.Fatal(err)
	}
	var bye api.Bye
	f.expect(api.FrameBye, &bye)
	if bye.Error == nil || bye.Error.Code != api.CodeFrameTooLarge || !strings.Contains(bye.Error.Message, "over max_frame_bytes (2097152 bytes)") {
		t.Fatalf("bye %+v, want FRAME_TOO_LARGE naming max_frame_bytes", bye)
	}
	if !sessionClosed(f) {
		t.Fatal("the session stayed open after the oversized frame")
	}
}
