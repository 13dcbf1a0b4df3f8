package diagnose_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/diagnose"
	"github.com/wardcluster/ward/internal/pki"
)

func TestReportJSON(t *testing.T) {
	f := newFixture(t)
	addr, _ := tlsServer(t, publicConfig(f.server))
	r := check(t, diagnose.Options{Address: addr, Roots: f.other.Bundle().Pool()})
	expect(t, r, diagnose.CodeUnknownAuthority)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["verdict"] != "unknown_authority" || m["message"] == "" || m["fix"] == "" || m["address"] != addr || m["tls_version"] != "TLS 1.3" {
		t.Errorf("top level: %s", b)
	}
	chain, ok := m["chain"].([]any)
	if !ok || len(chain) != 2 {
		t.Fatalf("chain: %s", b)
	}
	leaf := chain[0].(map[string]any)
	for _, k := range []string{"subject", "issuer", "sans", "not_before", "not_after", "serial_hex", "sha256", "spki_pin", "is_ca"} {
		if _, ok := leaf[k]; !ok {
			t.Errorf("chain[0] lacks %q: %v", k, leaf)
		}
	}
	if leaf["sha256"] != pki.Fingerprint(f.server.Leaf) {
		t.Errorf("sha256 %v", leaf["sha256"])
	}

	// A report that never reached TLS still has an empty chain, not null.
	b, _ = json.Marshal(check(t, diagnose.Options{Address: closedPort(t)}))
	if !bytes.Contains(b, []byte(`"chain":[]`)) || !bytes.Contains(b, []byte(`"verdict":"refused"`)) {
		t.Errorf("refused report: %s", b)
	}
}

func TestReportText(t *testing.T) {
	f := newFixture(t)
	addr, _ := tlsServer(t, publicConfig(f.server))
	r := check(t, diagnose.Options{Address: addr, Roots: f.roots(), Pins: []pki.Pin{pki.SPKIPin(f.other.Root.Cert)}})
	var out bytes.Buffer
	r.WriteText(&out)
	text := out.String()
	for _, want := range []string{
		"tls version:   TLS 1.3", "cipher:", "key exchange:  X25519MLKEM768",
		"[0] subject:  CN=c1", "names:    DNS:localhost, IP:127.0.0.1, URI:spiffe://test/coordinator/c1",
		"valid:", "sha256:   " + pki.Fingerprint(f.server.Leaf), "spki pin: " + pki.SPKIPin(f.server.Leaf).String(),
		"expected pins: " + pki.SPKIPin(f.other.Root.Cert).String(),
		"\nverdict: pin_mismatch\n", "\nfix: ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if n := len(lines); n < 3 || lines[n-3] != "verdict: pin_mismatch" || !strings.HasPrefix(lines[n-1], "fix: ") {
		t.Errorf("the verdict, message and fix must close the report:\n%s", text)
	}
}

func TestVerdictAPIError(t *testing.T) {
	cause := errors.New("raw")
	for code, want := range map[diagnose.Code]api.Code{
		diagnose.CodePinMismatch:        api.CodePinMismatch,
		diagnose.CodeRevoked:            api.CodeCertRevoked,
		diagnose.CodeRefused:            api.CodeUnavailable,
		diagnose.CodeClientCertRejected: api.CodeUnauthenticated,
		diagnose.CodeUnknownAuthority:   api.CodeFailedPrecondition,
	} {
		e := diagnose.Verdict{Code: code, Message: "m", Fix: "f"}.APIError(cause)
		if e.Code != want || e.Fix != "f" || !errors.Is(e, cause) || !strings.Contains(e.Message, string(code)) {
			t.Errorf("%s → %+v", code, e)
		}
	}
	if (diagnose.Verdict{Code: diagnose.CodeOK}).APIError(nil) != nil {
		t.Error("ok became an error")
	}
}
