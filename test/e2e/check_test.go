package e2e

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/pki/pkitest"
)

// checkWard runs the CLI with no context in the environment, so that only
// the flags given count, and with stdin from in.
func checkWard(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(wardBin, args...)
	cmd.Env = append(os.Environ(), "WARD_CONTEXT=", "HOME="+t.TempDir())
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	_ = cmd.Run()
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// checkVerdict fails unless the command exited with want's status and
// printed "verdict: want".
func checkVerdict(t *testing.T, want string, stdout, stderr string, code int) {
	t.Helper()
	wantCode := 1
	if want == "ok" {
		wantCode = 0
	}
	if code != wantCode || !strings.Contains(stdout, "verdict: "+want+"\n") {
		t.Fatalf("want verdict %s (exit %d), got exit %d\nstdout:\n%s\nstderr:\n%s", want, wantCode, code, stdout, stderr)
	}
}

func checkWriteFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkContextFiles writes the admin context's CA bundle, certificate and key to
// files, as a user would pass them to `ward check`.
func checkContextFiles(t *testing.T, c *cluster) (ctx *config.Context, ca, cert, key string) {
	t.Helper()
	ctx, err := config.LoadContext(c.ctxPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	return ctx, checkWriteFile(t, dir, "ca.pem", []byte(ctx.BundlePEM)), checkWriteFile(t, dir, "admin.crt", []byte(ctx.CertPEM)), checkWriteFile(t, dir, "admin.key", []byte(ctx.KeyPEM))
}

// checkStrangerContext copies the admin context with another cluster's CA as its
// trust bundle and pin: everything but trust is right.
func checkStrangerContext(t *testing.T, admin *config.Context) string {
	t.Helper()
	other := pkitest.NewCluster(t, "other")
	cp := *admin
	cp.BundlePEM = string(other.Bundle().PEM())
	cp.Pins = []string{pki.SPKIPin(other.Root.Cert).String()}
	p := filepath.Join(t.TempDir(), "context")
	if err := cp.Save(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckAgainstCoordinator(t *testing.T) {
	c := newCluster(t)
	admin, ca, cert, key := checkContextFiles(t, c)
	root, err := pki.ParseCertsPEM([]byte(admin.BundlePEM))
	if err != nil {
		t.Fatal(err)
	}
	rootPin := pki.SPKIPin(root[0]).String()

	t.Run("ok with the admin certificate", func(t *testing.T) {
		out, errOut, code := checkWard(t, "", "check", c.cluster, "--ca", ca, "--cert", cert, "--key", key)
		checkVerdict(t, "ok", out, errOut, code)
		for _, want := range []string{"tls version:   TLS 1.3", "cipher:", "key exchange:", "client cert:   sent", "spki pin: " + rootPin, pki.Fingerprint(root[0])} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("no client certificate", func(t *testing.T) {
		out, errOut, code := checkWard(t, "", "check", c.cluster, "--ca", ca)
		checkVerdict(t, "client_cert_required", out, errOut, code)
	})
	t.Run("no CA", func(t *testing.T) {
		out, errOut, code := checkWard(t, "", "check", c.cluster, "--cert", cert, "--key", key)
		checkVerdict(t, "unknown_authority", out, errOut, code)
		// The check stopped at the server's certificate: whether the server
		// wants a client certificate is unknown, not "not asked for".
		if !strings.Contains(out, "client cert:   not reached") {
			t.Errorf("output:\n%s", out)
		}
	})
	// A pin alone is enough when the chain leads to the pinned CA, as in an
	// agent's join, and the CRL is fetched with the same trust.
	t.Run("pin alone", func(t *testing.T) {
		out, errOut, code := checkWard(t, "", "check", c.public, "--pin", rootPin)
		checkVerdict(t, "ok", out, errOut, code)
		if !strings.Contains(out, "revocation:    checked") || !strings.Contains(out, "verified up to the pinned certificate") {
			t.Errorf("output:\n%s", out)
		}
		out, errOut, code = checkWard(t, "", "check", c.cluster, "--pin", rootPin, "--cert", cert, "--key", key)
		checkVerdict(t, "ok", out, errOut, code)
	})
	t.Run("insecure still checks revocation", func(t *testing.T) {
		out, errOut, code := checkWard(t, "", "check", c.public, "--insecure-skip-verify")
		checkVerdict(t, "ok", out, errOut, code)
		if !strings.Contains(out, "revocation:    checked") || !strings.Contains(out, "without verifying that server") {
			t.Errorf("output:\n%s", out)
		}
	})
	t.Run("use the context", func(t *testing.T) {
		out, errOut, code := checkWard(t, "", "check", "--use-context", "--context", c.ctxPath)
		checkVerdict(t, "ok", out, errOut, code)
		if !strings.Contains(out, "address:       "+c.cluster) || !strings.Contains(out, "client cert:   sent") {
			t.Errorf("output:\n%s", out)
		}
		// A flag given next to it wins over the context.
		out, errOut, code = checkWard(t, "", "check", "--use-context", "--context", c.ctxPath, "--pin", "sha256:"+strings.Repeat("ab", 32))
		checkVerdict(t, "pin_mismatch", out, errOut, code)
	})
	t.Run("wrong pin", func(t *testing.T) {
		wrong := "sha256:" + strings.Repeat("ab", 32)
		out, errOut, code := checkWard(t, "", "check", c.cluster, "--ca", ca, "--cert", cert, "--key", key, "--pin", wrong)
		checkVerdict(t, "pin_mismatch", out, errOut, code)
		if !strings.Contains(out, wrong) || !strings.Contains(out, rootPin) {
			t.Errorf("the output does not show both the expected pin %s and the actual root pin %s:\n%s", wrong, rootPin, out)
		}
	})
	t.Run("public port without client certificate", func(t *testing.T) {
		out, errOut, code := checkWard(t, "", "check", c.public, "--ca", ca)
		checkVerdict(t, "ok", out, errOut, code)
	})
	t.Run("json", func(t *testing.T) {
		out, errOut, code := checkWard(t, "", "check", c.cluster, "--ca", ca, "--cert", cert, "--key", key, "-o", "json")
		var got struct {
			Verdict string `json:"verdict"`
			Message string `json:"message"`
			Fix     *string
			TLS     string `json:"tls_version"`
			Chain   []struct {
				Subject string   `json:"subject"`
				SANs    []string `json:"sans"`
				SHA256  string   `json:"sha256"`
				SPKIPin string   `json:"spki_pin"`
			} `json:"chain"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &got) != nil {
			t.Fatalf("exit %d, output is not the JSON report:\n%s\n%s", code, out, errOut)
		}
		if got.Verdict != "ok" || got.Message == "" || got.Fix == nil || got.TLS != "TLS 1.3" || len(got.Chain) != 3 {
			t.Fatalf("unexpected report: %+v\n%s", got, out)
		}
		if got.Chain[2].SPKIPin != rootPin || len(got.Chain[0].SANs) == 0 || got.Chain[0].SHA256 == "" {
			t.Errorf("chain not described: %+v", got.Chain)
		}

		out, errOut, code = checkWard(t, "", "check", c.cluster, "--ca", ca, "-o", "json")
		if code != 1 || json.Unmarshal([]byte(out), &got) != nil || got.Verdict != "client_cert_required" {
			t.Fatalf("exit %d, want JSON verdict client_cert_required:\n%s\n%s", code, out, errOut)
		}
		if strings.Contains(errOut, "error:") {
			t.Errorf("the verdict was printed twice, as an error too:\n%s", errOut)
		}
	})

	t.Run("trust adds the presented root", func(t *testing.T) {
		ctxPath := checkStrangerContext(t, admin)
		if _, _, code := checkWard(t, "", "node", "ls", "--context", ctxPath); code == 0 {
			t.Fatal("node ls works with a context that trusts another CA")
		}
		out, errOut, code := checkWard(t, "", "check", c.cluster, "--cert", cert, "--key", key, "--trust", "--yes", "--context", ctxPath)
		if code != 0 || !strings.Contains(out, "verdict: unknown_authority") || !strings.Contains(out, "presented root:") ||
			!strings.Contains(out, pki.Fingerprint(root[0])) || !strings.Contains(out, "re-check with the trusted CA as the only root: verdict ok") {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		got, err := config.LoadContext(ctxPath)
		if err != nil {
			t.Fatal(err)
		}
		bundle, _ := pki.ParseCertsPEM([]byte(got.BundlePEM))
		if len(bundle) != 2 || !bundle[1].Equal(root[0]) || len(got.Pins) != 2 || got.Pins[1] != rootPin {
			t.Fatalf("context not extended as expected: %d certificate(s), pins %v", len(bundle), got.Pins)
		}
		if fi, _ := os.Stat(ctxPath); fi.Mode().Perm() != 0o600 {
			t.Errorf("context mode %v, want 0600", fi.Mode().Perm())
		}
		if out, errOut, code := checkWard(t, "", "node", "ls", "--context", ctxPath); code != 0 {
			t.Fatalf("node ls with the trusting context: exit %d\n%s\n%s", code, out, errOut)
		}
		// check and the context agree: --trust names the two ways to check
		// with the new trust, and both pass.
		for _, want := range []string{"ward check " + c.cluster + " --use-context", "ward check " + c.cluster + " --pin " + rootPin} {
			if !strings.Contains(out, want) {
				t.Errorf("--trust does not say %q:\n%s", want, out)
			}
		}
		out, errOut, code = checkWard(t, "", "check", c.cluster, "--use-context", "--context", ctxPath)
		checkVerdict(t, "ok", out, errOut, code)
		out, errOut, code = checkWard(t, "", "check", c.cluster, "--pin", rootPin, "--cert", cert, "--key", key)
		checkVerdict(t, "ok", out, errOut, code)
	})
	t.Run("trust refused for another verdict", func(t *testing.T) {
		ctxPath := checkStrangerContext(t, admin)
		before, _ := os.ReadFile(ctxPath)
		out, errOut, code := checkWard(t, "", "check", c.cluster, "--ca", ca, "--trust", "--yes", "--context", ctxPath)
		if code != 1 || !strings.Contains(out, "verdict: client_cert_required") || !strings.Contains(out, "nothing added: the verdict is client_cert_required, not unknown_authority") {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		if after, _ := os.ReadFile(ctxPath); !bytes.Equal(before, after) {
			t.Error("the context changed")
		}
	})
	t.Run("trust not confirmed", func(t *testing.T) {
		ctxPath := checkStrangerContext(t, admin)
		before, _ := os.ReadFile(ctxPath)
		out, errOut, code := checkWard(t, "n\n", "check", c.cluster, "--cert", cert, "--key", key, "--trust", "--context", ctxPath)
		if code != 1 || !strings.Contains(out, "Trust this CA? [y/N]") || !strings.Contains(out, "not confirmed") {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		if after, _ := os.ReadFile(ctxPath); !bytes.Equal(before, after) {
			t.Error("the context changed although the answer was n")
		}
	})
	t.Run("trust without a context", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "nope")
		out, errOut, code := checkWard(t, "", "check", c.cluster, "--cert", cert, "--key", key, "--trust", "--yes", "--context", missing)
		if code != 1 || !strings.Contains(out, "no CLI context at "+missing) {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		if _, err := os.Stat(missing); err == nil {
			t.Error("a context was created")
		}
	})

	t.Run("inspect the coordinator's certificate", func(t *testing.T) {
		file := filepath.Join(c.data, "pki", "coordinator.crt")
		certs, err := pki.ParseCertsPEM(checkReadFile(t, file))
		if err != nil {
			t.Fatal(err)
		}
		out, errOut, code := checkWard(t, "", "cert", "inspect", file)
		if code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		for _, want := range []string{"format: pem", "role coordinator", "IP:127.0.0.1", "ext usage:   serverAuth, clientAuth",
			"spki pin:    " + pki.SPKIPin(certs[0]).String(), "sha256:      " + pki.Fingerprint(certs[0]), "status:      valid, expires in", "private key: none"} {
			if !strings.Contains(out, want) {
				t.Errorf("inspect output lacks %q:\n%s", want, out)
			}
		}
	})
}

func checkReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCertInspectPKCS12(t *testing.T) {
	ca := pkitest.New(t)
	leaf, key := ca.Leaf(t, pki.RoleAgent, "n1")
	p12, err := pki.EncodePKCS12(key, leaf.Leaf, []*x509.Certificate{ca.Issuing.Cert}, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := checkWriteFile(t, dir, "n1.p12", p12)
	pwFile := checkWriteFile(t, dir, "p12.pass", []byte("s3cret\n"))

	out, errOut, code := checkWard(t, "", "cert", "inspect", file, "--password-file", pwFile)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"format: pkcs12, 2 certificate(s)", "spiffe://test/agent/n1 (cluster test, role agent, name n1)", "intermediate CA",
		"key:         ECDSA P-256", "private key: present (ECDSA P-256), matches certificate [0]"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}

	out, _, code = checkWard(t, "", "cert", "inspect", file, "--password-file", pwFile, "-o", "json")
	var got struct {
		Format       string `json:"format"`
		Certificates []struct {
			IsCA     bool   `json:"is_ca"`
			SPKIPin  string `json:"spki_pin"`
			KeyBits  int    `json:"key_bits"`
			Status   string `json:"status"`
			Identity *struct {
				Role string `json:"role"`
			} `json:"identity"`
		} `json:"certificates"`
		PrivateKey struct {
			Present, Matches bool
		} `json:"private_key"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil {
		t.Fatalf("exit %d, not JSON:\n%s", code, out)
	}
	if got.Format != "pkcs12" || len(got.Certificates) != 2 || got.Certificates[0].Identity == nil || got.Certificates[0].Identity.Role != "agent" ||
		got.Certificates[0].SPKIPin != pki.SPKIPin(leaf.Leaf).String() || got.Certificates[0].KeyBits != 256 || got.Certificates[0].Status != "valid" ||
		!got.Certificates[1].IsCA || !got.PrivateKey.Present || !got.PrivateKey.Matches {
		t.Errorf("unexpected inspect JSON: %+v\n%s", got, out)
	}

	if out, errOut, code := checkWard(t, "", "cert", "inspect", file, "--password", "wrong"); code != 1 || !strings.Contains(errOut, "password") {
		t.Errorf("wrong password: exit %d\n%s\n%s", code, out, errOut)
	}
	// --password still works, but says why --password-file is better.
	if out, errOut, code := checkWard(t, "", "cert", "inspect", file, "--password", "s3cret"); code != 0 || !strings.Contains(errOut, "--password is deprecated") || !strings.Contains(errOut, "process list") {
		t.Errorf("--password: exit %d\n%s\n%s", code, out, errOut)
	}
}

// checkStepTimed matches a step line of `ward cert verify` with its duration.
var checkStepTimed = regexp.MustCompile(`(?m)^(parse|chain|validity)\s+\S.*\s\d+\.\d\d ms`)

func TestCertVerify(t *testing.T) {
	ca := pkitest.New(t)
	other := pkitest.NewCluster(t, "other")
	dir := t.TempDir()
	rootFile := checkWriteFile(t, dir, "root.pem", ca.Bundle().PEM())
	otherRoot := checkWriteFile(t, dir, "other-root.pem", other.Bundle().PEM())

	good, _ := ca.Leaf(t, pki.RoleCoordinator, "c1")
	goodFile := checkWriteFile(t, dir, "c1.pem", pki.EncodeCertsPEM(good.Leaf, ca.Issuing.Cert))
	old, _ := ca.LeafAt(t, pki.RoleAgent, "old", time.Now().Add(-48*time.Hour), time.Hour)
	oldFile := checkWriteFile(t, dir, "old.pem", pki.EncodeCertsPEM(old.Leaf, ca.Issuing.Cert))
	crl, err := pki.CreateCRL(ca.Issuing, []x509.RevocationListEntry{{SerialNumber: good.Leaf.SerialNumber, RevocationTime: time.Now().Add(-time.Minute), ReasonCode: 1}}, 1, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	crlFile := checkWriteFile(t, dir, "ca.crl", crl)
	emptyCRL, err := pki.CreateCRL(ca.Issuing, nil, 2, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	emptyCRLFile := checkWriteFile(t, dir, "empty.crl", emptyCRL)

	tests := []struct {
		name   string
		args   []string
		want   string
		inText []string
	}{
		{"ok", []string{goodFile, "--ca", rootFile, "--name", "127.0.0.1"}, "ok",
			[]string{"name        ok", `"c1" -> "Ward Issuing CA test 1" -> "Ward Root CA test"`, "revocation  not checked", "no CRL source"}},
		{"ok with a CRL that does not list it", []string{goodFile, "--ca", rootFile, "--crl", emptyCRLFile}, "ok",
			[]string{"revocation  ok", "not revoked per " + emptyCRLFile}},
		{"expired", []string{oldFile, "--ca", rootFile}, "expired",
			[]string{"validity    FAILED expired", "local clock"}},
		{"name mismatch", []string{goodFile, "--ca", rootFile, "--name", "elsewhere.example"}, "name_mismatch",
			[]string{"name        FAILED name_mismatch", `does not name "elsewhere.example"`}},
		{"unknown authority", []string{goodFile, "--ca", otherRoot}, "unknown_authority",
			[]string{"chain       FAILED unknown_authority", pki.SPKIPin(ca.Issuing.Cert).String()}},
		{"revoked", []string{goodFile, "--ca", rootFile, "--crl", crlFile}, "revoked",
			[]string{"revocation  FAILED revoked", "keyCompromise"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := checkWard(t, "", append([]string{"cert", "verify"}, tc.args...)...)
			checkVerdict(t, tc.want, out, errOut, code)
			if n := len(checkStepTimed.FindAllString(out, -1)); n != 3 {
				t.Errorf("want parse, chain and validity with their durations, found %d:\n%s", n, out)
			}
			for _, want := range tc.inText {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}

	t.Run("json", func(t *testing.T) {
		out, errOut, code := checkWard(t, "", "cert", "verify", goodFile, "--ca", rootFile, "--crl", crlFile, "-o", "json")
		var got struct {
			Verdict string `json:"verdict"`
			Message string `json:"message"`
			Fix     string `json:"fix"`
			Steps   []struct {
				Step     string   `json:"step"`
				Result   string   `json:"result"`
				Code     string   `json:"code"`
				Duration *float64 `json:"duration_ms"`
			} `json:"steps"`
		}
		if code != 1 || json.Unmarshal([]byte(out), &got) != nil {
			t.Fatalf("exit %d, not JSON:\n%s\n%s", code, out, errOut)
		}
		if got.Verdict != "revoked" || got.Fix == "" || len(got.Steps) != 5 {
			t.Fatalf("unexpected: %+v", got)
		}
		want := []string{"parse", "chain", "name", "validity", "revocation"}
		for i, s := range got.Steps {
			if s.Step != want[i] || s.Duration == nil {
				t.Errorf("step %d: %+v, want %s with a duration", i, s, want[i])
			}
		}
		if last := got.Steps[4]; last.Result != "failed" || last.Code != "revoked" {
			t.Errorf("revocation step: %+v", last)
		}
	})
}
