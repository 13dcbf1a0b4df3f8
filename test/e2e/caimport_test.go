package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/pki"
)

// caFixtures makes CA files with openssl, as an operator would.
type caFixtures struct {
	t   *testing.T
	dir string
}

func newCAFixtures(t *testing.T) *caFixtures {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	f := &caFixtures{t: t, dir: t.TempDir()}
	f.write("ca-ext.cnf", "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n")
	return f
}

func (f *caFixtures) path(name string) string { return filepath.Join(f.dir, name) }

func (f *caFixtures) write(name, data string) string {
	f.t.Helper()
	if err := os.WriteFile(f.path(name), []byte(data), 0o600); err != nil {
		f.t.Fatal(err)
	}
	return f.path(name)
}

func (f *caFixtures) read(name string) []byte {
	f.t.Helper()
	b, err := os.ReadFile(f.path(name))
	if err != nil {
		f.t.Fatal(err)
	}
	return b
}

func (f *caFixtures) openssl(args ...string) {
	f.t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = f.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		f.t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// selfSigned makes NAME.pem and NAME.key: a self-signed certificate with a
// key made by keyArgs and the given extensions.
func (f *caFixtures) selfSigned(name, subject string, keyArgs []string, exts ...string) {
	f.t.Helper()
	args := append([]string{"req", "-x509"}, keyArgs...)
	args = append(args, "-nodes", "-keyout", name+".key", "-out", name+".pem", "-days", "3650", "-subj", subject)
	for _, e := range exts {
		args = append(args, "-addext", e)
	}
	f.openssl(args...)
}

var caP256Args = []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"}

// root makes NAME.pem and NAME.key: a root CA as the docs tell operators.
func (f *caFixtures) root(name string) *x509.Certificate {
	f.t.Helper()
	f.selfSigned(name, "/CN=Example Root CA "+name+"/O=Example Corp", caP256Args, "basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign")
	return f.cert(name + ".pem")
}

// signCA has root sign the request in csrFile as a CA into NAME.pem.
func (f *caFixtures) signCA(name, csrFile, root string) *x509.Certificate {
	f.t.Helper()
	f.openssl("x509", "-req", "-in", csrFile, "-CA", root+".pem", "-CAkey", root+".key", "-CAcreateserial",
		"-days", "365", "-extfile", "ca-ext.cnf", "-out", name+".pem")
	return f.cert(name + ".pem")
}

// issuing makes NAME.pem and NAME.key: an issuing CA signed by root.
func (f *caFixtures) issuing(name, root string) *x509.Certificate {
	f.t.Helper()
	f.openssl(append(append([]string{"req", "-new"}, caP256Args...), "-nodes", "-keyout", name+".key", "-out", name+".csr",
		"-subj", "/CN=Example Ward Issuing CA "+name+"/O=Example Corp")...)
	return f.signCA(name, name+".csr", root)
}

func (f *caFixtures) cert(name string) *x509.Certificate {
	f.t.Helper()
	certs, err := pki.ParseCertsPEM(f.read(name))
	if err != nil {
		f.t.Fatal(err)
	}
	return certs[0]
}

// caWard runs the CLI with no context.
func caWard(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(wardBin, args...)
	cmd.Env = append(os.Environ(), "WARD_CONTEXT=", "HOME="+t.TempDir())
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	_ = cmd.Run()
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

func mustCAWard(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := caWard(t, args...)
	if code != 0 {
		t.Fatalf("ward %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// caStartCoordinatorOn starts a coordinator on a data directory prepared
// beforehand (by `ward ca import`).
func caStartCoordinatorOn(t *testing.T, data string, extra ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir(), data: data, agents: map[string]*proc{}}
	c.args = append([]string{"coordinator", "--data", data, "--advertise", "127.0.0.1"}, extra...)
	c.startCoordinator("127.0.0.1:0", "127.0.0.1:0")
	return c
}

// caServedChain connects to addr trusting only root and returns the chain
// the server presented.
func caServedChain(t *testing.T, addr string, root *x509.Certificate) []*x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pki.Bundle{root}.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatalf("TLS to %s trusting only the imported root: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates
}

func caFileCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	cf, err := pki.ReadCertFile(path, "")
	if err != nil {
		t.Fatal(err)
	}
	return cf.Certs[0]
}

// TestCAImportRootPEM imports an openssl root CA, runs a coordinator on it,
// and exports its trust bundle in every format.
func TestCAImportRootPEM(t *testing.T) {
	f := newCAFixtures(t)
	root := f.root("root")
	data := filepath.Join(t.TempDir(), "coord")
	out := mustCAWard(t, "ca", "import", "--data", data, "--cert", f.path("root.pem"), "--key", f.path("root.key"))
	if !strings.Contains(out, "Imported root CA") || !strings.Contains(out, pki.SPKIPin(root).String()) {
		t.Errorf("import output:\n%s", out)
	}
	if got := caFileCert(t, filepath.Join(data, "pki", "root-ca.crt")); !got.Equal(root) {
		t.Fatalf("root-ca.crt is %s, not the imported root", got.Subject)
	}

	c := caStartCoordinatorOn(t, data)
	c.mustWard("node", "ls")
	chain := caServedChain(t, c.public, root)
	if top := chain[len(chain)-1]; !top.Equal(root) {
		t.Errorf("the served chain ends with %s, not the imported root", top.Subject)
	}
	// ward check, with exactly the imported root as its CA.
	if out := c.mustWard("check", c.public, "--ca", f.path("root.pem")); !strings.Contains(out, "verdict: ok\n") {
		t.Errorf("check of the public port:\n%s", out)
	}
	ctx, err := config.LoadContext(c.ctxPath)
	if err != nil {
		t.Fatal(err)
	}
	admCert, admKey := f.write("admin.crt", ctx.CertPEM), f.write("admin.key", ctx.KeyPEM)
	if out := c.mustWard("check", c.cluster, "--ca", f.path("root.pem"), "--cert", admCert, "--key", admKey); !strings.Contains(out, "verdict: ok\n") {
		t.Errorf("check of the cluster port:\n%s", out)
	}

	t.Run("refused while the coordinator runs", func(t *testing.T) {
		for _, args := range [][]string{
			{"ca", "import", "--data", data, "--cert", f.path("root.pem"), "--key", f.path("root.key"), "--force"},
			{"ca", "csr", "--data", data},
		} {
			_, errOut, code := caWard(t, args...)
			if code == 0 || !strings.Contains(errOut, "a coordinator is running on "+data+": stop it first") {
				t.Errorf("ward %s: exit %d, stderr:\n%s", strings.Join(args, " "), code, errOut)
			}
		}
		if _, err := os.Stat(filepath.Join(data, "pki", "issuing-ca.pending.key")); err == nil {
			t.Error("ward ca csr wrote a pending key while the coordinator ran")
		}
	})

	t.Run("export pem", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "bundle.pem")
		c.mustWard("ca", "export", "--format", "pem", "--out", p)
		if got := caFileCert(t, p); !got.Equal(root) {
			t.Errorf("PEM bundle holds %s", got.Subject)
		}
		if out := c.mustWard("ca", "export"); caPEMFingerprint(t, out) != pki.Fingerprint(root) {
			t.Errorf("PEM on stdout:\n%s", out)
		}
	})
	t.Run("export der", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "root.cer")
		c.mustWard("ca", "export", "--format", "der", "--out", p)
		der, _ := os.ReadFile(p)
		if !bytes.Equal(der, root.Raw) {
			t.Error("the .cer file is not the root's DER")
		}
		if out := c.mustWard("ca", "export", "--format", "der"); out != string(root.Raw) {
			t.Error("DER on stdout is not the root's DER")
		}
	})
	t.Run("export p12", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "truststore.p12")
		_, errOut, code := c.ward("ca", "export", "--format", "p12", "--out", p)
		if code == 0 || !strings.Contains(errOut, "needs a password") || !strings.Contains(errOut, "--password") {
			t.Fatalf("p12 without a password: exit %d\n%s", code, errOut)
		}
		var sum struct {
			Format string `json:"format"`
			Source string `json:"source"`
			Roots  []struct {
				Pin         string `json:"pin"`
				Fingerprint string `json:"sha256_fingerprint"`
			} `json:"roots"`
			Files []string `json:"files"`
		}
		c.wardJSON(&sum, "ca", "export", "--format", "p12", "--password", "x", "--out", p)
		if sum.Format != "p12" || len(sum.Roots) != 1 || sum.Roots[0].Pin != pki.SPKIPin(root).String() ||
			sum.Roots[0].Fingerprint != pki.Fingerprint(root) || len(sum.Files) != 1 || !strings.HasSuffix(sum.Source, "/v1/ca") {
			t.Errorf("summary %+v", sum)
		}
		cf, err := pki.ReadCertFile(p, "x")
		if err != nil || !cf.Certs[0].Equal(root) {
			t.Fatalf("read back the trust store: %v", err)
		}
		if _, err := exec.LookPath("keytool"); err != nil {
			t.Skip("keytool is not installed")
		}
		kt, err := exec.Command("keytool", "-list", "-storetype", "PKCS12", "-keystore", p, "-storepass", "x").CombinedOutput()
		if err != nil || !strings.Contains(string(kt), "trustedCertEntry") || !strings.Contains(string(kt), "1 entry") {
			t.Fatalf("keytool: %v\n%s", err, kt)
		}
	})
	t.Run("export falls back to the context", func(t *testing.T) {
		cp := *ctx
		cp.Public = "127.0.0.1:1"
		ctxPath := filepath.Join(t.TempDir(), "context")
		if err := cp.Save(ctxPath); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "bundle.pem")
		_, errOut, code := caWard(t, "ca", "export", "--context", ctxPath, "--out", p)
		if code != 0 || !strings.Contains(errOut, "note: the coordinator's bundle could not be fetched") {
			t.Fatalf("exit %d\n%s", code, errOut)
		}
		if got := caFileCert(t, p); !got.Equal(root) {
			t.Errorf("fallback bundle holds %s", got.Subject)
		}
	})
}

func caPEMFingerprint(t *testing.T, s string) string {
	certs, err := pki.ParseCertsPEM([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return pki.Fingerprint(certs[0])
}

// TestCAImportPKCS12Issuing imports an issuing CA (and its root) from a
// PKCS#12 file; the root key stays outside; an agent joins.
func TestCAImportPKCS12Issuing(t *testing.T) {
	f := newCAFixtures(t)
	root := f.root("root")
	iss := f.issuing("issuing", "root")
	f.openssl("pkcs12", "-export", "-inkey", "issuing.key", "-in", "issuing.pem", "-certfile", "root.pem", "-passout", "pass:s3cret", "-out", "issuing.p12")
	pw := f.write("p12.pass", "s3cret\n")
	data := filepath.Join(t.TempDir(), "coord")
	out := mustCAWard(t, "ca", "import", "--data", data, "--cert", f.path("issuing.p12"), "--password-file", pw)
	if !strings.Contains(out, "Imported issuing CA") || !strings.Contains(out, "offline") {
		t.Errorf("import output:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(data, "pki", "root-ca.key")); err == nil {
		t.Error("a root key was written for an offline root")
	}

	c := caStartCoordinatorOn(t, data)
	c.startAgent("n1", 1)
	chain := caServedChain(t, c.public, root)
	if !chain[len(chain)-1].Equal(root) || len(chain) < 3 || !chain[1].Equal(iss) {
		t.Errorf("served chain: %d certificates, want leaf, the imported issuing CA, the root", len(chain))
	}
	if n, ok := c.node("n1"); !ok || n.Link != "YES" {
		t.Errorf("node n1: %+v", n)
	}
}

// TestCAImportSignedCSR: ward ca csr, openssl signs, ward ca import installs
// it, and a coordinator runs on it.
func TestCAImportSignedCSR(t *testing.T) {
	f := newCAFixtures(t)
	root := f.root("root")
	data := filepath.Join(t.TempDir(), "coord")
	csr := f.path("ward.csr")
	out := mustCAWard(t, "ca", "csr", "--data", data, "--out", csr)
	if !strings.Contains(out, "ward ca import --data "+data) {
		t.Errorf("csr output lacks the next step:\n%s", out)
	}
	f.signCA("signed", "ward.csr", "root")
	// The signed certificate alone is not enough: its root is needed.
	if _, errOut, code := caWard(t, "ca", "import", "--data", data, "--cert", f.path("signed.pem")); code == 0 || !strings.Contains(errOut, "root CA certificate is missing") {
		t.Fatalf("import without --chain: exit %d\n%s", code, errOut)
	}
	mustCAWard(t, "ca", "import", "--data", data, "--cert", f.path("signed.pem"), "--chain", f.path("root.pem"))
	for _, p := range []string{"issuing-ca.pending.key", "issuing-ca.pending.csr", "root-ca.key"} {
		if _, err := os.Stat(filepath.Join(data, "pki", p)); err == nil {
			t.Errorf("pki/%s is left after the import", p)
		}
	}
	c := caStartCoordinatorOn(t, data)
	c.mustWard("node", "ls")
	chain := caServedChain(t, c.public, root)
	if !chain[len(chain)-1].Equal(root) || !strings.HasPrefix(chain[1].Subject.CommonName, "Ward Issuing CA ward") {
		t.Errorf("served chain: %v", chain[1].Subject)
	}
}

// TestCAImportRefusals: every kind of bad import has its own message, a
// non-zero exit, and leaves the data directory without a CA.
func TestCAImportRefusals(t *testing.T) {
	f := newCAFixtures(t)
	f.root("root")
	f.root("other")
	f.issuing("issuing", "root")
	f.openssl("pkcs12", "-export", "-inkey", "issuing.key", "-in", "issuing.pem", "-certfile", "root.pem", "-passout", "pass:s3cret", "-out", "issuing.p12")
	f.selfSigned("leaf", "/CN=server.example", caP256Args, "basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature", "subjectAltName=DNS:server.example")
	f.selfSigned("p224", "/CN=P-224 CA", []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-224"}, "basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign")
	f.openssl("genpkey", "-algorithm", "ed448", "-out", "ed448.key")
	f.openssl("req", "-x509", "-key", "ed448.key", "-out", "ed448.pem", "-days", "30", "-subj", "/CN=Ed448 CA", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
	f.write("ed448.both.pem", string(f.read("ed448.pem"))+string(f.read("ed448.key")))

	now := time.Now()
	old, err := pki.NewRootCA("old", now.Add(-11*365*24*time.Hour), 10*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	oldKey, _ := pki.MarshalKeyPEM(old.Key)
	f.write("expired.pem", string(pki.EncodeCertsPEM(old.Cert))+string(oldKey))
	rootPEM := f.read("root.pem")
	f.write("root.cut.pem", string(rootPEM[:len(rootPEM)/2]))
	p12 := f.read("issuing.p12")
	f.write("issuing.cut.p12", string(p12[:len(p12)*2/3]))
	f.write("loose.pass", "a-long-enough-passphrase\n")
	os.Chmod(f.path("loose.pass"), 0o644)

	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"wrong password", []string{"--cert", "issuing.p12", "--password", "nope"}, []string{"the PKCS#12 password is wrong", "--password"}},
		{"key does not match", []string{"--cert", "root.pem", "--key", "other.key"}, []string{"does not match the certificate", "Example Root CA root"}},
		{"not a CA", []string{"--cert", "leaf.pem", "--key", "leaf.key"}, []string{"is not a CA certificate", "CN=server.example", "CA:FALSE", "basicConstraints=critical,CA:TRUE"}},
		{"expired", []string{"--cert", "expired.pem"}, []string{"has expired", "Ward Root CA old", "expired at " + old.Cert.NotAfter.UTC().Format(time.RFC3339), "the clock here says"}},
		{"Ed448 key", []string{"--cert", "ed448.both.pem"}, []string{"not supported", "Ed448"}},
		{"Ed448 key file", []string{"--cert", "ed448.pem", "--key", "ed448.key"}, []string{"--key", "not supported", "Ed448"}},
		{"P-224 key", []string{"--cert", "p224.pem", "--key", "p224.key"}, []string{"too weak", "ECDSA P-224", "P-256"}},
		{"truncated PEM", []string{"--cert", "root.cut.pem", "--key", "root.key"}, []string{"truncated", "-----END"}},
		{"truncated PKCS#12", []string{"--cert", "issuing.cut.p12", "--password", "s3cret"}, []string{"truncated", "cut short"}},
		{"no key", []string{"--cert", "root.pem"}, []string{"no private key", "--key", "ward ca csr"}},
		{"issuing CA without its root", []string{"--cert", "issuing.pem", "--key", "issuing.key"}, []string{"root CA certificate is missing", "--chain"}},
		{"issuing CA with another root", []string{"--cert", "issuing.pem", "--key", "issuing.key", "--chain", "other.pem"}, []string{"does not chain", "Example Root CA other"}},
		{"loose passphrase file", []string{"--cert", "root.pem", "--key", "root.key", "--passphrase-file", "loose.pass"}, []string{"--passphrase-file", "0644", "chmod 600"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "coord")
			args := []string{"ca", "import", "--data", data}
			for i, a := range tc.args {
				if i > 0 && strings.HasPrefix(tc.args[i-1], "--") && tc.args[i-1] != "--password" {
					a = f.path(a)
				}
				args = append(args, a)
			}
			_, errOut, code := caWard(t, args...)
			if code == 0 {
				t.Fatalf("exit 0; stderr:\n%s", errOut)
			}
			for _, w := range append(tc.want, "fix:") {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if _, err := os.Stat(filepath.Join(data, "pki", "root-ca.crt")); err == nil {
				t.Error("a refused import left a CA behind")
			}
		})
	}

	t.Run("initialized data directory", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "coord")
		mustCAWard(t, "ca", "import", "--data", data, "--cert", f.path("root.pem"), "--key", f.path("root.key"))
		_, errOut, code := caWard(t, "ca", "import", "--data", data, "--cert", f.path("other.pem"), "--key", f.path("other.key"))
		if code == 0 || !strings.Contains(errOut, "already has a CA") || !strings.Contains(errOut, "join again") {
			t.Fatalf("exit %d\n%s", code, errOut)
		}
		out := mustCAWard(t, "ca", "import", "--data", data, "--cert", f.path("other.pem"), "--key", f.path("other.key"), "--force")
		if !strings.Contains(out, "previous CA files are kept in") {
			t.Errorf("--force output:\n%s", out)
		}
		if got := caFileCert(t, filepath.Join(data, "pki", "root-ca.crt")); got.Subject.CommonName != "Example Root CA other" {
			t.Errorf("root after --force: %s", got.Subject)
		}
		// After `ward ca rotate` the current CA lives in pki/gen-N, which the
		// coordinator's store points at: --force must not pretend to replace it.
		if err := os.Mkdir(filepath.Join(data, "pki", "gen-2"), 0o700); err != nil {
			t.Fatal(err)
		}
		_, errOut, code = caWard(t, "ca", "import", "--data", data, "--cert", f.path("root.pem"), "--key", f.path("root.key"), "--force")
		if code == 0 || !strings.Contains(errOut, "holds a rotated CA") || !strings.Contains(errOut, "new, empty data directory") {
			t.Fatalf("--force on a rotated CA: exit %d\n%s", code, errOut)
		}
	})
}

// TestCAImportEncryptedKeys: with --passphrase-file every CA key lands
// encrypted; the pending key of `ward ca csr` too.
func TestCAImportEncryptedKeys(t *testing.T) {
	f := newCAFixtures(t)
	root := f.root("root")
	pass := f.write("ca.pass", "correct horse battery staple\n")
	data := filepath.Join(t.TempDir(), "coord")
	var res struct {
		Encrypted bool   `json:"keys_encrypted"`
		Start     string `json:"start"`
	}
	out := mustCAWard(t, "ca", "import", "--data", data, "--cert", f.path("root.pem"), "--key", f.path("root.key"), "--passphrase-file", pass, "-o", "json")
	if err := json.Unmarshal([]byte(out), &res); err != nil || !res.Encrypted || !strings.Contains(res.Start, "--ca-passphrase-file "+pass) {
		t.Errorf("json %v: %s", err, out)
	}
	for _, name := range []string{"root-ca.key", "issuing-ca.key"} {
		b, err := os.ReadFile(filepath.Join(data, "pki", name))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), "-----BEGIN WARD ENCRYPTED PRIVATE KEY-----") {
			t.Errorf("%s is not encrypted:\n%.80s", name, b)
		}
		if name == "root-ca.key" {
			k, err := pki.DecryptKeyPEM(b, []byte("correct horse battery staple"))
			if err != nil || !pki.KeyMatches(root, k) {
				t.Errorf("decrypt %s: %v", name, err)
			}
		}
	}

	csrData := filepath.Join(t.TempDir(), "coord")
	mustCAWard(t, "ca", "csr", "--data", csrData, "--out", f.path("ward.csr"), "--passphrase-file", pass)
	if b, _ := os.ReadFile(filepath.Join(csrData, "pki", "issuing-ca.pending.key")); !strings.HasPrefix(string(b), "-----BEGIN WARD ENCRYPTED PRIVATE KEY-----") {
		t.Errorf("the pending key is not encrypted:\n%.80s", b)
	}
	f.signCA("signed", "ward.csr", "root")
	args := []string{"ca", "import", "--data", csrData, "--cert", f.path("signed.pem"), "--chain", f.path("root.pem")}
	if _, errOut, code := caWard(t, args...); code == 0 || !strings.Contains(errOut, "encrypted and needs a passphrase") {
		t.Fatalf("import without the passphrase: exit %d\n%s", code, errOut)
	}
	wrong := f.write("wrong.pass", "not the passphrase at all\n")
	if _, errOut, code := caWard(t, append(args, "--passphrase-file", wrong)...); code == 0 || !strings.Contains(errOut, "passphrase does not decrypt the key") {
		t.Fatalf("import with a wrong passphrase: exit %d\n%s", code, errOut)
	}
	mustCAWard(t, append(args, "--passphrase-file", pass)...)
	if b, _ := os.ReadFile(filepath.Join(csrData, "pki", "issuing-ca.key")); !strings.HasPrefix(string(b), "-----BEGIN WARD ENCRYPTED PRIVATE KEY-----") {
		t.Errorf("the installed issuing key is not encrypted:\n%.80s", b)
	}
}
