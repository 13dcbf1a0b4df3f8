package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/store/etcd/etcdtest"
)

// peerCluster is a coordinator on a shared etcd store, with its own data
// directory and coordinator id, not yet started.
func peerCluster(t *testing.T, srv *etcdtest.Server, id string, extra ...string) *cluster {
	t.Helper()
	dir := t.TempDir()
	c := &cluster{t: t, dir: dir, data: filepath.Join(dir, "coord"), agents: map[string]*proc{}}
	c.args = append(append([]string{"coordinator", "--data", c.data, "--advertise", "127.0.0.1", "--coordinator-id", id}, etcdArgs(srv)...), extra...)
	return c
}

// startPeers starts coordinators on one store at the same moment and waits
// until each answers.
func startPeers(cs ...*cluster) {
	for _, c := range cs {
		c.launch("127.0.0.1:0", "127.0.0.1:0")
	}
	for _, c := range cs {
		c.awaitUp()
	}
}

// contextAt is a copy of c's admin context that talks to another
// coordinator's cluster port.
func contextAt(t *testing.T, c *cluster, server string) string {
	t.Helper()
	ctx, err := config.LoadContext(c.ctxPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx.Server = server
	path := filepath.Join(t.TempDir(), "at.context")
	if err := ctx.Save(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// ownCert is the coordinator's own certificate, read from its data
// directory, whose key file must be 0600.
func ownCert(t *testing.T, c *cluster) *pki.ID {
	t.Helper()
	fi, err := os.Stat(filepath.Join(c.data, "pki", "coordinator.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: coordinator key has mode %04o, want 0600", c.data, fi.Mode().Perm())
	}
	b, err := os.ReadFile(filepath.Join(c.data, "pki", "coordinator.crt"))
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCertsPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	id, err := pki.IDFromCert(certs[0])
	if err != nil {
		t.Fatal(err)
	}
	return &id
}

// TestSharedCA: two coordinators started at once on one etcd end up with
// one cluster CA, held in etcd with its keys encrypted; each issues itself
// its own coordinator certificate; a client of one is trusted by the other;
// a wrong or missing passphrase and a taken id are refused by name, and no
// second CA is ever made.
func TestSharedCA(t *testing.T) {
	srv := etcdtest.StartT(t, etcdtest.Options{})
	a, b := peerCluster(t, srv, "coord-a"), peerCluster(t, srv, "coord-b")
	startPeers(a, b)

	created := 0
	for _, c := range []*cluster{a, b} {
		if strings.Contains(c.coord.stderrText(), "Created a new cluster CA in the etcd store") {
			created++
		}
	}
	if created != 1 {
		t.Fatalf("%d coordinators say they created the CA, want exactly 1", created)
	}
	gens := etcdRecords(t, srv, "ca/generations/")
	if len(gens) != 1 || gens[0].Key != "ca/generations/1" {
		t.Fatalf("CA records in etcd: %v", gens)
	}
	raw := string(gens[0].Value)
	if strings.Count(raw, pki.EncryptedKeyPEMType) < 2 || strings.Contains(raw, "BEGIN PRIVATE KEY") || strings.Contains(raw, "BEGIN EC PRIVATE KEY") {
		t.Fatalf("the CA keys in etcd are not (all) encrypted: %.300s", raw)
	}
	var ctxA, ctxB config.Context
	for c, ctx := range map[*cluster]*config.Context{a: &ctxA, b: &ctxB} {
		l, err := config.LoadContext(c.ctxPath)
		if err != nil {
			t.Fatal(err)
		}
		*ctx = *l
		if _, err := os.Stat(filepath.Join(c.data, "pki", "root-ca.key")); err == nil {
			t.Errorf("%s holds a CA key on disk; with etcd the CA lives in the store", c.data)
		}
	}
	if fmt.Sprint(ctxA.Pins) != fmt.Sprint(ctxB.Pins) {
		t.Fatalf("the coordinators pin different CAs: %v and %v", ctxA.Pins, ctxB.Pins)
	}
	for c, want := range map[*cluster]string{a: "spiffe://ward/coordinator/coord-a", b: "spiffe://ward/coordinator/coord-b"} {
		if id := ownCert(t, c); id.String() != want {
			t.Errorf("%s's own certificate names %s, want %s", c.data, id, want)
		}
	}
	// A's admin is trusted by B (one CA), and B is trusted by A's context.
	out, errOut, code := wardWithContext(contextAt(t, a, b.cluster), "ca", "status")
	if code != 0 || !strings.Contains(out, ctxA.Pins[0]) {
		t.Fatalf("A's admin against B: exit %d\n%s%s", code, out, errOut)
	}

	// A join token made on A joins an agent; the agent's certificate is from
	// the shared CA, so B lists it too once it reads the store.
	a.startAgent("n1", 1)

	// B restarts with the same id and keeps its certificate.
	before, _ := os.ReadFile(filepath.Join(b.data, "pki", "coordinator.crt"))
	b.coord.interrupt()
	b.coord.wait(20 * time.Second)
	b.restartCoordinator()
	after, _ := os.ReadFile(filepath.Join(b.data, "pki", "coordinator.crt"))
	if string(before) != string(after) {
		t.Fatal("B reissued its certificate on a plain restart")
	}
	if strings.Contains(b.coord.stderrText(), "Created a new cluster CA") {
		t.Fatal("B made a CA again on restart")
	}

	wrong := filepath.Join(t.TempDir(), "wrong-passphrase")
	os.WriteFile(wrong, []byte("not the cluster passphrase\n"), 0o600)
	refusals := []struct {
		name string
		args []string
		want []string
	}{
		{"WrongPassphrase", append(etcdArgs(srv), "--coordinator-id", "coord-c", "--ca-passphrase-file", wrong),
			[]string{"does not decrypt", wrong, "--ca-passphrase-file", "no new CA is made"}},
		{"TakenID", append(etcdArgs(srv), "--coordinator-id", "coord-a"),
			[]string{`coordinator id "coord-a" is already used by another coordinator`, a.data, "--coordinator-id"}},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "coord")
			p := startProc(t, t.TempDir(), "coordinator", nil, append([]string{"coordinator", "--data", data, "--cluster-addr", "127.0.0.1:0", "--public-addr", "127.0.0.1:0"}, tc.args...)...)
			if code := p.wait(30 * time.Second); code == 0 {
				t.Fatalf("coordinator started:\n%s", p.stderrText())
			}
			msg := p.stderrText()
			t.Logf("%s", msg)
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not mention %q", w)
				}
			}
		})
	}
	if gens := etcdRecords(t, srv, "ca/generations/"); len(gens) != 1 || string(gens[0].Value) != raw {
		t.Fatal("the CA in etcd changed after the refusals")
	}
	var claims []string
	for _, r := range etcdRecords(t, srv, "ca/coordinators/") {
		var cl struct {
			DataDir string `json:"data_dir"`
		}
		json.Unmarshal(r.Value, &cl)
		claims = append(claims, strings.TrimPrefix(r.Key, "ca/coordinators/")+"="+cl.DataDir)
	}
	if want := fmt.Sprintf("[coord-a=%s coord-b=%s]", a.data, b.data); fmt.Sprint(claims) != want {
		t.Fatalf("coordinator id claims %v, want %s", claims, want)
	}
}

// wardWithContext runs the CLI with a given context file.
func wardWithContext(ctxPath string, args ...string) (string, string, int) {
	c := &cluster{ctxPath: ctxPath}
	return c.ward(args...)
}

// TestSharedCAImported: a CA brought with `ward ca import` into the first
// coordinator's data directory moves into etcd (keys encrypted) at its first
// start on the store, and every other coordinator uses it; a data directory
// holding another CA is refused by name.
func TestSharedCAImported(t *testing.T) {
	f := newCAFixtures(t)
	corp := f.root("corp")
	srv := etcdtest.StartT(t, etcdtest.Options{})
	a := peerCluster(t, srv, "coord-a")
	mustCAWard(t, "ca", "import", "--data", a.data, "--cert", f.path("corp.pem"), "--key", f.path("corp.key"), "--passphrase-file", caPassFile(srv))
	startPeers(a)
	if !strings.Contains(a.coord.stderrText(), "moved the CA of the data directory into the store") {
		t.Fatalf("no line about moving the imported CA into etcd:\n%s", a.coord.stderrText())
	}
	if _, err := os.Stat(filepath.Join(a.data, "pki", "root-ca.crt")); err == nil {
		t.Fatal("the imported CA files are still where the coordinator reads a CA")
	}
	if moved, _ := filepath.Glob(filepath.Join(a.data, "pki", "moved-to-store-*", "root-ca.crt")); len(moved) != 1 {
		t.Fatalf("the imported CA files were not moved aside: %v", moved)
	}
	gens := etcdRecords(t, srv, "ca/generations/")
	if len(gens) != 1 || !strings.Contains(string(gens[0].Value), pki.EncryptedKeyPEMType) || strings.Contains(string(gens[0].Value), "BEGIN PRIVATE KEY") {
		t.Fatalf("CA records in etcd: %d, keys encrypted: %v", len(gens), len(gens) > 0 && strings.Contains(string(gens[0].Value), pki.EncryptedKeyPEMType))
	}
	b := peerCluster(t, srv, "coord-b")
	startPeers(b)
	want := pki.SPKIPin(corp).String()
	for _, c := range []*cluster{a, b} {
		ctx, err := config.LoadContext(c.ctxPath)
		if err != nil {
			t.Fatal(err)
		}
		if len(ctx.Pins) != 1 || ctx.Pins[0] != want {
			t.Fatalf("%s pins %v, want the imported root %s", c.data, ctx.Pins, want)
		}
	}
	// A restart of A reads the CA from etcd and finds nothing to move.
	a.coord.interrupt()
	a.coord.wait(20 * time.Second)
	a.restartCoordinator()
	if strings.Contains(a.coord.stderrText(), "moved") {
		t.Fatalf("a restart moved CA files again:\n%s", a.coord.stderrText())
	}

	// A data directory with another CA, for a store that has one: refused.
	f.root("other")
	c := peerCluster(t, srv, "coord-c")
	mustCAWard(t, "ca", "import", "--data", c.data, "--cert", f.path("other.pem"), "--key", f.path("other.key"), "--passphrase-file", caPassFile(srv))
	c.launch("127.0.0.1:0", "127.0.0.1:0")
	if code := c.coord.wait(30 * time.Second); code == 0 {
		t.Fatal("a coordinator with another CA in its data directory started")
	}
	msg := c.coord.stderrText()
	for _, w := range []string{"other than the cluster CA in the etcd store", want, "empty data directory", "not supported yet"} {
		if !strings.Contains(msg, w) {
			t.Errorf("refusal does not mention %q:\n%s", w, msg)
		}
	}
}

// TestCARotationAcrossCoordinators: `ward ca rotate` on B moves every phase
// on A too: A pushes the new root to its agent, re-certifies itself, asks
// its agent to renew, and drops the old root; the agent's session (relayed
// by A over a connection made with A's old certificate) and tasks survive; the retired generation's keys leave etcd; a coordinator
// started afterwards issues from the new CA.
func TestCARotationAcrossCoordinators(t *testing.T) {
	srv := etcdtest.StartT(t, etcdtest.Options{})
	a, b := peerCluster(t, srv, "coord-a", "--node-lost-timeout", "60s"), peerCluster(t, srv, "coord-b", "--node-lost-timeout", "60s")
	// B starts first, so B leads and moves the phases; A follows them
	// from the store.
	startPeers(b)
	startPeers(a)
	a.startAgent("n1", 2)
	id := strings.TrimSpace(a.mustWard("submit", "--count", "40", "--", "sh", "-c", "sleep 0.2; echo {index}"))

	if out := b.mustWard("ca", "rotate"); !strings.Contains(out, "phase 1 of 3: trust") {
		t.Fatalf("rotate 1 on B: %s", out)
	}
	waitFor(t, 20*time.Second, "A to push the new root to its agent", func() bool { return len(agentRoots(t, a.agentDir("n1"))) == 2 })
	b.mustWard("ca", "rotate")
	waitFor(t, 20*time.Second, "A to issue from the new issuing CA", func() bool {
		st, ok := a.caStatusNow()
		return ok && st.Phase == 2 && strings.HasSuffix(st.Issuing.Subject, " 2")
	})
	// B counts the agent A serves: it is still on the old CA, so B would
	// refuse to retire the old CA without --force.
	if st := b.caStatus(); len(st.OnOldCA) != 1 || st.OnOldCA[0] != "n1" {
		t.Fatalf("B's CA status before renewal: on the old CA %v, agents %v", st.OnOldCA, st.Agents)
	}
	if out := b.mustWard("ca", "rotate", "--spread", "1s"); !strings.Contains(out, "phase 3 of 3: renew") {
		t.Fatalf("rotate 3 on B: %s", out)
	}
	waitFor(t, 30*time.Second, "A's agent to renew from the new CA", func() bool {
		n, _ := a.node("n1")
		return strings.HasSuffix(n.CertIssuer, " 2")
	})
	waitFor(t, 10*time.Second, "B to see A's agent on the new CA", func() bool { return len(b.caStatus().OnOldCA) == 0 })
	b.mustWard("ca", "rotate")
	// Once the old CA is retired, A's admin context holds a certificate of
	// it, and A forwards the caller's chain to the leader, which verifies
	// it against its current trust and refuses it. So the checks after the
	// retirement go to B.
	waitFor(t, 20*time.Second, "the old CA retired", func() bool {
		st, ok := b.caStatusNow()
		return ok && st.Phase == 0 && st.Generation == 2 && len(st.Roots) == 1
	})
	waitFor(t, 20*time.Second, "A's agent to drop the old root", func() bool {
		r := agentRoots(t, a.agentDir("n1"))
		return len(r) == 1 && strings.HasSuffix(r[0], " 2")
	})
	waitFor(t, 20*time.Second, "A to re-certify itself from the new issuing CA", func() bool {
		return strings.Contains(a.coord.stderrText(), `msg="coordinator certificate renewed"`)
	})
	if !strings.Contains(a.coord.stderrText(), `msg="CA rotation followed from the store"`) {
		t.Fatal("A logged no rotation followed from the store")
	}
	if d := b.waitJob(id, 120*time.Second); d.State != api.JobCompleted || d.Counts[api.TaskCompleted] != 40 {
		t.Fatalf("job during the rotation: %s %v", d.State, d.Counts)
	}
	// A's connections to B made with its certificate of the old CA (its
	// relay connection among them) stay open: B knows that certificate as
	// one the cluster issued to A.
	for _, l := range strings.Split(b.coord.stderrText(), "\n") {
		if strings.Contains(l, "no longer trusted") && strings.Contains(l, "/coordinator/coord-a") {
			t.Errorf("B closed a connection of A at the retirement: %s", l)
		}
	}
	// The session A relays runs on the leader, B.
	if n := strings.Count(b.coord.stderrText(), `msg="agent session open" node=n1 `); n != 1 {
		t.Errorf("the agent's session opened %d times during the rotation, want once", n)
	}
	for _, r := range etcdRecords(t, srv, "ca/generations/") {
		retired := r.Key == "ca/generations/1"
		if has := strings.Contains(string(r.Value), pki.EncryptedKeyPEMType); has == retired {
			t.Errorf("%s: holds keys %v, want %v", r.Key, has, !retired)
		}
	}

	// A coordinator that starts now issues from generation 2.
	c := peerCluster(t, srv, "coord-c")
	startPeers(c)
	ctx, err := config.LoadContext(c.ctxPath)
	if err != nil {
		t.Fatal(err)
	}
	st := c.caStatus()
	if st.Generation != 2 || !strings.HasSuffix(st.Issuing.Subject, " 2") || len(ctx.Pins) != 1 || ctx.Pins[0] != st.Roots[0].Pin {
		t.Fatalf("a coordinator started after the rotation: %+v, pins %v", st, ctx.Pins)
	}
}
