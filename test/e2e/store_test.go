package e2e

import (
	"crypto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/pki"
)

// TestDamagedStoreRefusedAndRestored: a coordinator whose store file is
// truncated, overwritten, emptied, missing, another cluster's, or whose
// CA is gone while its state is not, refuses to start: it names the file
// and the way back, and never panics. `ward store backup` made while it
// ran, restored with `ward store restore`, brings the cluster back, with
// the revocations made after the backup applied again.
func TestDamagedStoreRefusedAndRestored(t *testing.T) {
	c := newCluster(t)
	c.startAgent("a", 1)
	id := strings.TrimSpace(c.mustWard("submit", "--", "echo", "before-backup"))
	c.waitJob(id, 20*time.Second)
	bundle := clusterBundle(t, c)
	b := newScriptedAgent(t, c, "b")
	bCert, bKey, bIssuing := b.cert(), b.src.Certificate().PrivateKey.(crypto.Signer), parseChain(t, b.src.Certificate())[1]
	c.mustWard("cert", "revoke", pki.SerialHex(bCert))

	backup := filepath.Join(c.dir, "backup.db")
	if out := c.mustWard("store", "backup", "--out", backup); !strings.Contains(out, "Store backed up to "+backup) {
		t.Fatalf("store backup: %s", out)
	}
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the backup file: %v, %v", fi, err)
	}
	// A revocation after the backup: it must survive the restore.
	na, _ := c.node("a")
	c.mustWard("node", "revoke", "a")
	c.coord.interrupt()
	if code := c.coord.wait(20 * time.Second); code != 0 {
		t.Fatalf("the coordinator exited %d on SIGINT", code)
	}

	db := filepath.Join(c.data, "ward.db")
	good, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	rootCert := filepath.Join(c.data, "pki", "root-ca.crt")
	tests := []struct {
		name   string
		damage func()
		extra  []string
		want   []string
	}{
		{"truncated", func() { os.Truncate(db, int64(len(good)/2)) }, nil, []string{db + " is damaged", "truncated"}},
		{"the pages after the meta pages overwritten", func() {
			bad := append([]byte{}, good...)
			for i := 2 * 4096; i < len(bad); i++ {
				bad[i] = byte(i * 7)
			}
			os.WriteFile(db, bad, 0o600)
		}, nil, []string{db + " is damaged"}},
		{"not a store file", func() { os.WriteFile(db, []byte(strings.Repeat("garbage ", 2000)), 0o600) }, nil, []string{db + " is damaged", "neither meta page is valid"}},
		{"emptied", func() { os.Truncate(db, 0) }, nil, []string{db + " is empty (0 bytes)", "revoked certificates would work again"}},
		{"missing", func() { os.Remove(db) }, nil, []string{db + " is missing", "revoked certificates would work again"}},
		{"another cluster's", func() {}, []string{"--cluster", "other"}, []string{db + ` belongs to cluster "ward", not "other"`}},
		{"CA gone, state kept", func() { os.Rename(rootCert, rootCert+".away") }, nil, []string{"the CA file " + rootCert + " is missing"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(db, good, 0o600); err != nil {
				t.Fatal(err)
			}
			tt.damage()
			defer os.Rename(rootCert+".away", rootCert)
			args := append(append(append([]string{}, c.args...), tt.extra...), "--cluster-addr", "127.0.0.1:0", "--public-addr", "127.0.0.1:0")
			p := startProc(t, c.dir, "damaged-"+string(rune('a'+i)), nil, args...)
			if code := p.wait(30 * time.Second); code == 0 {
				t.Fatal("the coordinator started on a damaged store")
			}
			msg := p.stderrText()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("the error does not say %q:\n%s", w, msg)
				}
			}
			if tt.name != "another cluster's" && !strings.Contains(msg, "ward store restore --data "+c.data) && !strings.Contains(msg, "restore "+filepath.Join(c.data, "pki")) {
				t.Errorf("the error does not give the recovery step:\n%s", msg)
			}
			for _, crash := range []string{"panic:", "goroutine ", "SIGSEGV", "SIGBUS", "fatal error"} {
				if strings.Contains(msg, crash) {
					t.Fatalf("the coordinator crashed (%s) instead of refusing:\n%s", crash, msg)
				}
			}
		})
	}

	// Restore: the damaged file is kept aside, the backup goes in place,
	// and node a's revocation (after the backup) is applied again.
	os.Truncate(db, int64(len(good)/3))
	out := c.mustWard("store", "restore", "--data", c.data, "--from", backup)
	if !strings.Contains(out, "Restored "+db) || !strings.Contains(out, "1 revocation(s) made after the backup were applied again") || !strings.Contains(out, na.CertSerial) {
		t.Fatalf("store restore: %s", out)
	}
	if matches, _ := filepath.Glob(db + ".replaced-*"); len(matches) != 1 {
		t.Fatalf("the replaced file was not kept: %v", matches)
	}
	c.restartCoordinator()
	if d := c.job(id); d.State != api.JobCompleted {
		t.Fatalf("the job from before the backup: %+v", d)
	}
	if handshakeOK(t, c, bundle, bCert, bIssuing, bKey) {
		t.Fatal("a certificate revoked before the backup works after the restore")
	}
	if n, _ := c.node("a"); n.State != "revoked" {
		t.Fatalf("node a, revoked after the backup, is %q after the restore", n.State)
	}
	for _, ce := range []string{na.CertSerial, pki.SerialHex(bCert)} {
		if rec := certBySerial(t, c, ce); !rec.Revoked {
			t.Errorf("certificate %s is not revoked after the restore", ce)
		}
	}
	// A backup of a stopped coordinator's store works offline too; a
	// running one's is refused with the way to do it.
	if _, errOut, code := c.ward("store", "backup", "--data", c.data, "--out", filepath.Join(c.dir, "offline.db")); code == 0 || !strings.Contains(errOut, "leave out --data") {
		t.Fatalf("an offline backup of a running coordinator: exit %d, %s", code, errOut)
	}
}
