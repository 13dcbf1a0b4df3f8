package tpmkey

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"net"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// keySource is agent.KeySource (internal/agent/state.go), restated here:
// the agent will import this package, so its tests cannot import the agent.
type keySource interface {
	Create() (crypto.Signer, error)
	Open() (crypto.Signer, error)
	Name() string
}

var (
	_ keySource = Source{}
	_ keySource = &Source{}
)

func transientHandles(t *testing.T, tpm transport.TPM) []tpm2.TPMHandle {
	t.Helper()
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: uint32(tpm2.TPMHTTransient) << 24, PropertyCount: 64}.Execute(tpm)
	if err != nil {
		t.Fatal(err)
	}
	h, err := rsp.CapabilityData.Data.Handles()
	if err != nil {
		t.Fatal(err)
	}
	return h.Handle
}

func closeAtEnd(t *testing.T, k crypto.Signer) *Signer {
	t.Helper()
	sg, ok := k.(*Signer)
	if !ok {
		t.Fatalf("signer is %T, want *tpmkey.Signer", k)
	}
	t.Cleanup(func() { sg.Close() })
	return sg
}

func mustVerify(t *testing.T, k crypto.Signer, msg string) {
	t.Helper()
	digest := sha256.Sum256([]byte(msg))
	sig, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	pub, ok := k.Public().(*ecdsa.PublicKey)
	if !ok {
		t.Fatalf("Public() is %T, want *ecdsa.PublicKey", k.Public())
	}
	if !ecdsa.VerifyASN1(pub, digest[:], sig) {
		t.Fatalf("signature over %q does not verify", msg)
	}
	if bad := sha256.Sum256([]byte(msg + "!")); ecdsa.VerifyASN1(pub, bad[:], sig) {
		t.Fatal("signature verifies over another digest")
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}
