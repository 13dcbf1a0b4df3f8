package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/store"
	"github.com/wardcluster/ward/internal/store/etcd"
	"github.com/wardcluster/ward/internal/store/etcd/etcdtest"
)

// etcdArgs are the coordinator flags for a store on srv over mutual TLS,
// with the CA passphrase every coordinator on srv shares.
func etcdArgs(srv *etcdtest.Server) []string {
	return []string{"--store", "etcd://" + srv.Endpoint, "--etcd-ca", srv.CA, "--etcd-cert", srv.ClientCert, "--etcd-key", srv.ClientKey,
		"--ca-passphrase-file", caPassFile(srv)}
}

// caPassFile is the CA passphrase file of the coordinators on srv (0600).
func caPassFile(srv *etcdtest.Server) string {
	path := filepath.Join(srv.Dir, "ca-passphrase")
	if _, err := os.Stat(path); err != nil {
		if err := os.WriteFile(path, []byte("shared cluster CA passphrase\n"), 0o600); err != nil {
			panic(err)
		}
	}
	return path
}

// etcdRecords lists what the coordinator wrote under prefix in etcd,
// read back with a client of our own.
func etcdRecords(t *testing.T, srv *etcdtest.Server, prefix string) []store.Record {
	t.Helper()
	tl, err := srv.TLS()
	if err != nil {
		t.Fatal(err)
	}
	s, err := etcd.Open(context.Background(), etcd.Options{Endpoints: []string{srv.Endpoint}, TLS: tl, Prefix: "/ward/ward/", CompactEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs, err := s.List(t.Context(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func status(t *testing.T, c *cluster) api.Status {
	t.Helper()
	cert, key := certAndKey(t, c)
	resp, err := c.httpClient(cert, key).Get("https://" + c.cluster + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st api.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestEtcdStoreCoordinator runs one coordinator on a real etcd over mutual
// TLS: joins, jobs, tokens and revocation as on bolt, state in etcd and
// none on local disk, and a restart that finds it all again.
func TestEtcdStoreCoordinator(t *testing.T) {
	srv := etcdtest.StartT(t, etcdtest.Options{})
	c := newCluster(t, append(etcdArgs(srv), "--node-lost-timeout", "60s")...)
	if _, err := os.Stat(filepath.Join(c.data, "ward.db")); err == nil {
		t.Fatal("a coordinator on etcd created a local bolt store")
	}
	if !strings.Contains(c.coord.stderrText(), `msg="etcd store connected" endpoints=`+srv.Endpoint) {
		t.Fatalf("no etcd connect line in the log:\n%s", c.coord.stderrText())
	}
	if st := status(t, c); !strings.Contains(st.Store, "etcd store etcd://"+srv.Endpoint) || len(st.Insecure) != 0 {
		t.Fatalf("status store %q insecure %v", st.Store, st.Insecure)
	}

	c.startAgent("a", 2)
	b := c.startAgent("b", 2)
	id := strings.TrimSpace(c.mustWard("submit", "--count", "20", "--", "echo", "task-{index}"))
	if d := c.waitJob(id, 30*time.Second); d.State != "completed" || d.Counts[api.TaskCompleted] != 20 {
		t.Fatalf("job %s: %s %v", id, d.State, d.Counts)
	}
	if out := c.mustWard("logs", id, "--task", "7"); !strings.Contains(out, "task-7") {
		t.Fatalf("logs of task 7: %q", out)
	}
	// The records are in etcd.
	for _, prefix := range []string{"jobs/", "tasks/", "nodes/", "tokens/", "certs/"} {
		if len(etcdRecords(t, srv, prefix)) == 0 {
			t.Errorf("no %s records in etcd", prefix)
		}
	}

	// A job of sleeps on b, then revoke b: its session ends within a
	// second and its tasks are requeued, as on bolt.
	long := strings.TrimSpace(c.mustWard("submit", "--count", "4", "--", "sleep", "30"))
	waitFor(t, 10*time.Second, "4 running tasks", func() bool { return c.job(long).Counts[api.TaskRunning] == 4 })
	before := len(b.stderrText())
	start := time.Now()
	out := c.mustWard("node", "revoke", "b", "--reason", "key-compromise")
	t.Logf("revocation to disconnect: %s", sessionEnds(t, b, before, start, time.Second))
	if !strings.Contains(out, "1 session(s) closed") {
		t.Fatalf("node revoke: %s", out)
	}
	revoked := 0
	for _, r := range etcdRecords(t, srv, "certs/") {
		if strings.Contains(string(r.Value), `"revoked":true`) {
			revoked++
		}
	}
	if revoked != 1 {
		t.Fatalf("%d revoked certificate records in etcd, want 1", revoked)
	}
	c.mustWard("job", "cancel", long)

	// A token made before the restart joins an agent after it.
	join := c.token()
	c.coord.interrupt()
	if code := c.coord.wait(20 * time.Second); code != 0 {
		t.Fatalf("coordinator exit %d", code)
	}
	c.restartCoordinator()
	if d := c.job(id); d.State != "completed" || d.Counts[api.TaskCompleted] != 20 {
		t.Fatalf("after restart job %s: %s %v", id, d.State, d.Counts)
	}
	if n, _ := c.node("b"); n.State != "revoked" {
		t.Fatalf("after restart node b is %s, want revoked", n.State)
	}
	args := []string{"agent", "--data", c.agentDir("c"), "--name", "c", "--slots", "2", "--join-file", c.writeJoinFile(join)}
	c.agents["c"] = startProc(t, c.dir, "agent-c", nil, args...)
	waitFor(t, 20*time.Second, "agent c to join with the token made before the restart", func() bool {
		n, ok := c.node("c")
		return ok && n.State == "ready"
	})
	id2 := strings.TrimSpace(c.mustWard("submit", "--count", "10", "--", "true"))
	if d := c.waitJob(id2, 30*time.Second); d.State != "completed" {
		t.Fatalf("job after restart: %s %v", d.State, d.Counts)
	}
}

// TestEtcdStoreRefusals: a coordinator that cannot use its etcd store
// refuses to start with the endpoint, the setting and the fix, and never
// falls back to a local store.
func TestEtcdStoreRefusals(t *testing.T) {
	srv := etcdtest.StartT(t, etcdtest.Options{})
	other := t.TempDir()
	if err := etcdtest.WriteCerts(other, "etcd", "client"); err != nil {
		t.Fatal(err)
	}
	stopped := etcdtest.StartT(t, etcdtest.Options{})
	stopped.Stop()
	pass := caPassFile(srv)
	loosePass := filepath.Join(t.TempDir(), "loose-passphrase")
	if err := os.WriteFile(loosePass, []byte("shared cluster CA passphrase\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"WrongCA", []string{"--store", "etcd://" + srv.Endpoint, "--etcd-ca", filepath.Join(other, "ca.pem"), "--etcd-cert", srv.ClientCert, "--etcd-key", srv.ClientKey, "--ca-passphrase-file", pass},
			[]string{srv.Endpoint, "unknown_authority", "--etcd-ca", "never falls back"}},
		{"ClientCertOfAnotherCA", []string{"--store", "etcd://" + srv.Endpoint, "--etcd-ca", srv.CA, "--etcd-cert", filepath.Join(other, "client.pem"), "--etcd-key", filepath.Join(other, "client-key.pem"), "--ca-passphrase-file", pass},
			[]string{srv.Endpoint, "client_cert_rejected", "--etcd-cert", "--trusted-ca-file"}},
		{"NoClientCert", []string{"--store", "etcd://" + srv.Endpoint, "--etcd-ca", srv.CA, "--ca-passphrase-file", pass},
			[]string{"etcd_cert (--etcd-cert): is required", "etcd_key (--etcd-key): is required", "ward etcd certs"}},
		{"PlaintextNotOptedIn", []string{"--store", "etcd://" + srv.Endpoint},
			[]string{"etcd_ca (--etcd-ca): is required", "--insecure-etcd-plaintext"}},
		{"PlaintextToTLSEtcd", []string{"--store", "etcd://" + srv.Endpoint, "--insecure-etcd-plaintext", "--ca-passphrase-file", pass},
			[]string{srv.Endpoint, "speaks TLS", "drop --insecure-etcd-plaintext"}},
		{"Unreachable", append(etcdArgs(stopped), "--node-lost-timeout", "1s"),
			[]string{stopped.Endpoint, "refused", "--store", "never falls back"}},
		{"NoCAPassphrase", []string{"--store", "etcd://" + srv.Endpoint, "--etcd-ca", srv.CA, "--etcd-cert", srv.ClientCert, "--etcd-key", srv.ClientKey},
			[]string{"ca_passphrase_file (--ca-passphrase-file): is required with an etcd store", "the same file", "openssl rand"}},
		{"CAPassphraseFileReadableByOthers", []string{"--store", "etcd://" + srv.Endpoint, "--etcd-ca", srv.CA, "--etcd-cert", srv.ClientCert, "--etcd-key", srv.ClientKey, "--ca-passphrase-file", loosePass},
			[]string{loosePass, "0644", "chmod 600 " + loosePass}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "coord")
			p := startProc(t, t.TempDir(), "coordinator", nil, append([]string{"coordinator", "--data", data, "--cluster-addr", "127.0.0.1:0", "--public-addr", "127.0.0.1:0"}, tc.args...)...)
			if code := p.wait(30 * time.Second); code == 0 {
				t.Fatalf("coordinator started (exit 0):\n%s", p.stderrText())
			}
			msg := p.stderrText()
			t.Logf("%s", msg)
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not mention %q", w)
				}
			}
			if _, err := os.Stat(filepath.Join(data, "ward.db")); err == nil {
				t.Error("the coordinator fell back to a local bolt store")
			}
		})
	}
}

// TestEtcdStorePlaintextOptIn: plaintext etcd works only when asked for,
// and is then logged at every start, listed in status and reported by
// doctor.
func TestEtcdStorePlaintextOptIn(t *testing.T) {
	srv := etcdtest.StartT(t, etcdtest.Options{Plaintext: true})
	c := newCluster(t, "--store", "etcd://"+srv.Endpoint, "--insecure-etcd-plaintext", "--ca-passphrase-file", caPassFile(srv))
	for start := 1; start <= 2; start++ {
		if start == 2 {
			c.coord.interrupt()
			c.coord.wait(20 * time.Second)
			c.restartCoordinator()
		}
		if !strings.Contains(c.coord.stderrText(), "INSECURE setting in effect: the link to etcd is plaintext") {
			t.Fatalf("start %d: no INSECURE line:\n%s", start, c.coord.stderrText())
		}
	}
	st := status(t, c)
	if !strings.Contains(strings.Join(st.Insecure, "\n"), "insecure_etcd_plaintext") {
		t.Fatalf("status insecure settings %v lack insecure_etcd_plaintext", st.Insecure)
	}
	out, _, _ := c.ward("doctor")
	if !strings.Contains(out, "INSECURE_ETCD_PLAINTEXT") {
		t.Fatalf("doctor does not report the plaintext etcd link:\n%s", out)
	}
}

// TestEtcdCertsVerb: the files `ward etcd certs` writes are 0600, verify
// with openssl, and serve a real etcd that a coordinator then uses.
func TestEtcdCertsVerb(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etcd-certs")
	out := mustCAWard(t, "etcd", "certs", "--out", dir, "--host", "127.0.0.1", "--host", "localhost", "--cluster", "prod")
	if !strings.Contains(out, "--client-cert-auth") || !strings.Contains(out, "--ca-passphrase-file") || !strings.Contains(out, "--max-txn-ops 16384") || !strings.Contains(out, "--etcd-cert "+filepath.Join(dir, "ward-coordinator.pem")) {
		t.Fatalf("ward etcd certs printed:\n%s", out)
	}
	for _, f := range []string{"ca.pem", "ca-key.pem", "etcd.pem", "etcd-key.pem", "ward-coordinator.pem", "ward-coordinator-key.pem"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", f, fi.Mode().Perm())
		}
	}
	ca := filepath.Join(dir, "ca.pem")
	for _, v := range [][]string{{"sslserver", "etcd.pem"}, {"sslclient", "ward-coordinator.pem"}} {
		cmd := exec.Command("openssl", "verify", "-CAfile", ca, "-purpose", v[0], filepath.Join(dir, v[1]))
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl verify %s: %v\n%s", v[1], err, b)
		}
	}
	// A second run reuses the CA and refuses to overwrite without --force.
	if _, errOut, code := caWard(t, "etcd", "certs", "--out", dir, "--client", "ward-coordinator"); code == 0 || !strings.Contains(errOut, "--force") {
		t.Fatalf("second run over existing files: exit %d: %s", code, errOut)
	}
	second := mustCAWard(t, "etcd", "certs", "--out", dir, "--client", "coordinator-b")
	if !strings.Contains(second, "Used the etcd CA") {
		t.Fatalf("second run did not reuse the CA:\n%s", second)
	}

	srv := etcdtest.StartT(t, etcdtest.Options{ServerCert: filepath.Join(dir, "etcd.pem"), ServerKey: filepath.Join(dir, "etcd-key.pem"), ClientCA: ca})
	c := newCluster(t, "--store", "etcd://localhost:"+srv.Endpoint[strings.LastIndex(srv.Endpoint, ":")+1:],
		"--etcd-ca", ca, "--etcd-cert", filepath.Join(dir, "coordinator-b.pem"), "--etcd-key", filepath.Join(dir, "coordinator-b-key.pem"), "--ca-passphrase-file", caPassFile(srv))
	c.startAgent("a", 1)
	id := strings.TrimSpace(c.mustWard("submit", "--count", "3", "--", "true"))
	if d := c.waitJob(id, 30*time.Second); d.State != "completed" {
		t.Fatalf("job on an etcd with `ward etcd certs` certificates: %s", d.State)
	}
}
