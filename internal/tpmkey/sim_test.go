//go:build cgo

// The in-process simulator is the Microsoft reference TPM compiled with
// cgo against OpenSSL (gcc and libssl-dev); without cgo only the swtpm and
// error tests run.

package tpmkey

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/pki/pkitest"
)

// simTPM is the in-process Microsoft reference TPM (go-tpm-tools, cgo). One
// per test: the simulator is a process-wide singleton.
type simTPM struct {
	sim    *simulator.Simulator
	device string
}

// newSim starts a simulator and closes it at the end of the test, after
// every Signer registered for cleanup later. A non-zero seed fixes the
// hierarchy seeds (a second simulator with the same seed is "the same
// TPM"); such seeds live only in memory, so a simulated reset loses them:
// tests that reset pass 0 for seeds made at manufacture.
func newSim(t *testing.T, seed int64) *simTPM {
	t.Helper()
	get := simulator.Get
	if seed != 0 {
		get = func() (*simulator.Simulator, error) { return simulator.GetWithFixedSeedInsecure(seed) }
	}
	sim, err := get()
	if err != nil {
		t.Fatal(err)
	}
	s := &simTPM{sim: sim, device: "sim:" + t.Name()}
	t.Cleanup(func() {
		if !sim.IsClosed() {
			sim.Close()
		}
	})
	return s
}

// close stops the simulator now (to start another one in the same test).
func (s *simTPM) close(t *testing.T) {
	t.Helper()
	if err := s.sim.Close(); err != nil {
		t.Fatal(err)
	}
}

// source returns a Source on this simulator: every connection it opens is a
// new client of the same simulated TPM, whose Close leaves the TPM running.
func (s *simTPM) source(dir string) Source {
	return Source{Device: s.device, Dir: dir, dial: func() (transport.TPMCloser, error) {
		return transport.FromReadWriteCloser(noClose{s.sim}), nil
	}}
}

type noClose struct{ io.ReadWriter }

func (noClose) Close() error { return nil }

// transient lists the transient objects loaded in the TPM.
func (s *simTPM) transient(t *testing.T) []tpm2.TPMHandle {
	t.Helper()
	return transientHandles(t, transport.FromReadWriter(s.sim))
}

func TestCreateSignVerify(t *testing.T) {
	sim := newSim(t, 1)
	dir := t.TempDir()
	src := sim.source(dir)
	if src.Name() != "tpm" {
		t.Fatalf("Name() = %q", src.Name())
	}
	k, err := src.Create()
	if err != nil {
		t.Fatal(err)
	}
	sg := closeAtEnd(t, k)
	pub := k.Public().(*ecdsa.PublicKey)
	if pub.Curve.Params().Name != "P-256" {
		t.Fatalf("curve %s", pub.Curve.Params().Name)
	}
	mustVerify(t, k, "hello")

	for _, name := range []string{PublicBlobFile, PrivateBlobFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", name, fi.Mode().Perm())
		}
	}
	// No temp files left behind by the atomic writes.
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("data dir holds %d entries, want the 2 blobs", len(ents))
	}
	// Between signatures nothing stays loaded: the SRK and the key were
	// flushed; the Signer keeps the key's saved context.
	if h := sim.transient(t); len(h) != 0 {
		t.Errorf("transient objects after Create and Sign: %v, want none", h)
	}
	if err := sg.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sg.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	digest := sha256.Sum256([]byte("late"))
	if _, err := sg.Sign(nil, digest[:], crypto.SHA256); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sign after Close: %v, want ErrClosed", err)
	}
}

func TestSignRefusesOtherHashes(t *testing.T) {
	sim := newSim(t, 1)
	k, err := sim.source(t.TempDir()).Create()
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, k)
	d384 := sha512.Sum384([]byte("x"))
	if _, err := k.Sign(nil, d384[:], crypto.SHA384); err == nil || !strings.Contains(err.Error(), "SHA-256 digests only") {
		t.Fatalf("SHA-384: %v", err)
	}
	d256 := sha256.Sum256([]byte("x"))
	if _, err := k.Sign(nil, d256[:16], crypto.SHA256); err == nil || !strings.Contains(err.Error(), "32 bytes") {
		t.Fatalf("short digest: %v", err)
	}
	if _, err := k.Sign(nil, d256[:], nil); err == nil {
		t.Fatal("nil opts accepted")
	}
}

func TestOpenAfterCreate(t *testing.T) {
	sim := newSim(t, 1)
	dir := t.TempDir()
	src := sim.source(dir)
	created, err := src.Create()
	if err != nil {
		t.Fatal(err)
	}
	cs := closeAtEnd(t, created)

	// Opened while the created key is still in use: they share the one
	// connection, and both sign.
	opened, err := src.Open()
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, opened)
	if !created.Public().(*ecdsa.PublicKey).Equal(opened.Public()) {
		t.Fatal("Open returned a different key than Create")
	}
	mustVerify(t, opened, "opened")
	mustVerify(t, created, "created")
	cs.Close()
	opened.(*Signer).Close()
	if h := sim.transient(t); len(h) != 0 {
		t.Errorf("transient objects after closing both: %v", h)
	}

	// A new connection (the agent restarted): the SRK is derived again
	// from the owner seed and the blobs load.
	again, err := src.Open()
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, again)
	if !created.Public().(*ecdsa.PublicKey).Equal(again.Public()) {
		t.Fatal("second Open returned a different key")
	}
	mustVerify(t, again, "again")

	// Create replaces the key.
	replaced, err := src.Create()
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, replaced)
	if created.Public().(*ecdsa.PublicKey).Equal(replaced.Public()) {
		t.Fatal("Create returned the old key")
	}
	reopened, err := src.Open()
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, reopened)
	if !replaced.Public().(*ecdsa.PublicKey).Equal(reopened.Public()) {
		t.Fatal("Open after a second Create does not return the new key")
	}
}

func TestConcurrentSign(t *testing.T) {
	sim := newSim(t, 1)
	src := sim.source(t.TempDir())
	a, err := src.Create()
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, a)
	b, err := src.Open()
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, b)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 8 {
		for _, k := range []crypto.Signer{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range 5 {
					d := sha256.Sum256([]byte{byte(i), byte(j)})
					sig, err := k.Sign(nil, d[:], crypto.SHA256)
					if err != nil {
						errs <- err
						return
					}
					if !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), d[:], sig) {
						errs <- errors.New("bad signature")
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestTLSClientKey uses the TPM key as the client key of real mTLS
// handshakes with a Go server that requires and verifies client certs.
func TestTLSClientKey(t *testing.T) {
	sim := newSim(t, 1)
	k, err := sim.source(t.TempDir()).Create()
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, k)
	ca := pkitest.New(t)
	id := pki.ID{Cluster: ca.Cluster, Role: pki.RoleAgent, Name: "node-1"}
	leaf, err := ca.Issuer.Issue(pki.LeafSpec{ID: id, PublicKey: k.Public(), Lifetime: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	clientCert := tls.Certificate{
		Certificate:                  [][]byte{leaf.Raw, ca.Issuing.Cert.Raw},
		PrivateKey:                   k,
		Leaf:                         leaf,
		SupportedSignatureAlgorithms: TLSSignatureSchemes,
	}
	serverCert, _ := ca.Leaf(t, pki.RoleCoordinator, "coord")
	pool := x509.NewCertPool()
	pool.AddCert(ca.Root.Cert)

	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
				Certificates: []tls.Certificate{serverCert},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    pool,
				MinVersion:   version,
				MaxVersion:   version,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			got := make(chan string, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					got <- "accept: " + err.Error()
					return
				}
				defer c.Close()
				tc := c.(*tls.Conn)
				if err := tc.Handshake(); err != nil {
					got <- "handshake: " + err.Error()
					return
				}
				peer := tc.ConnectionState().PeerCertificates
				_, _ = tc.Write([]byte("ok"))
				got <- peer[0].Subject.CommonName
			}()
			conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
				Certificates: []tls.Certificate{clientCert},
				RootCAs:      pool,
				ServerName:   "localhost",
				MinVersion:   version,
				MaxVersion:   version,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// In TLS 1.3 the server's verdict on the client certificate
			// arrives after the client's handshake returns: read.
			buf := make([]byte, 2)
			if _, err := io.ReadFull(conn, buf); err != nil {
				t.Fatalf("read: %v (server: %s)", err, <-got)
			}
			if cn := <-got; cn != "node-1" {
				t.Fatalf("server saw %q", cn)
			}
			if v := conn.ConnectionState().Version; v != version {
				t.Fatalf("negotiated %s", tls.VersionName(v))
			}
		})
	}
}

func TestCSR(t *testing.T) {
	sim := newSim(t, 1)
	k, err := sim.source(t.TempDir()).Create()
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, k)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: "node-1"},
		DNSNames: []string{"node-1.example"},
	}, k)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatal(err)
	}
	if csr.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		t.Fatalf("CSR signed with %v", csr.SignatureAlgorithm)
	}
	if !k.Public().(*ecdsa.PublicKey).Equal(csr.PublicKey) {
		t.Fatal("CSR carries another key")
	}
}

// TestPrivateKeyNotExtractable: the key is born in the TPM
// (sensitiveDataOrigin) and bound to it and its parent (fixedTPM,
// fixedParent: TPM2_Duplicate refuses such objects, and with no
// authorization policy the duplication role can never be satisfied anyway).
// What leaves the TPM is the private blob, encrypted and integrity-protected
// under the SRK, whose seed never leaves the TPM: another TPM, or this one
// after its owner hierarchy is cleared, refuses it. The Signer offers
// signatures and nothing else.
func TestPrivateKeyNotExtractable(t *testing.T) {
	sim := newSim(t, 1)
	dir := t.TempDir()
	k, err := sim.source(dir).Create()
	if err != nil {
		t.Fatal(err)
	}
	sg := closeAtEnd(t, k)

	pub, err := unmarshalExact[tpm2.TPM2BPublic](sg.pubBlob)
	if err != nil {
		t.Fatal(err)
	}
	area, err := pub.Contents()
	if err != nil {
		t.Fatal(err)
	}
	a := area.ObjectAttributes
	if !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin || a.EncryptedDuplication || len(area.AuthPolicy.Buffer) != 0 {
		t.Fatalf("key attributes allow export: %+v, policy %x", a, area.AuthPolicy.Buffer)
	}

	// Nothing on disk is a usable private key.
	priv, err := os.ReadFile(filepath.Join(dir, PrivateBlobFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509.ParsePKCS8PrivateKey(priv); err == nil {
		t.Fatal("the private blob parses as PKCS#8")
	}
	if _, err := x509.ParseECPrivateKey(priv); err == nil {
		t.Fatal("the private blob parses as an EC private key")
	}

	// The Signer's exported surface is Public, Sign and Close.
	var methods []string
	typ := reflect.TypeOf(sg)
	for i := range typ.NumMethod() {
		methods = append(methods, typ.Method(i).Name)
	}
	if strings.Join(methods, ",") != "Close,Public,Sign" {
		t.Fatalf("Signer methods: %v", methods)
	}
	for i := range typ.Elem().NumField() {
		if f := typ.Elem().Field(i); f.IsExported() {
			t.Fatalf("Signer has an exported field %s", f.Name)
		}
	}
}

// TestOtherTPMRefusesBlobs: the same blobs on a TPM with another owner seed
// (another machine, or this one after TPM2_Clear) do not load.
func TestOtherTPMRefusesBlobs(t *testing.T) {
	dir := t.TempDir()
	first := newSim(t, 1)
	k, err := first.source(dir).Create()
	if err != nil {
		t.Fatal(err)
	}
	k.(*Signer).Close()
	first.close(t)

	t.Run("different TPM", func(t *testing.T) {
		other := newSim(t, 2)
		defer other.close(t)
		_, err := other.source(dir).Open()
		wantRefused(t, err, dir)
	})
	t.Run("same TPM", func(t *testing.T) {
		same := newSim(t, 1)
		defer same.close(t)
		k, err := same.source(dir).Open()
		if err != nil {
			t.Fatal(err)
		}
		mustVerify(t, k, "same seed, same SRK")
		k.(*Signer).Close()
	})
	t.Run("owner hierarchy cleared", func(t *testing.T) {
		same := newSim(t, 1)
		defer same.close(t)
		if _, err := (tpm2.Clear{AuthHandle: tpm2.TPMRHLockout}).Execute(transport.FromReadWriter(same.sim)); err != nil {
			t.Fatal(err)
		}
		_, err := same.source(dir).Open()
		wantRefused(t, err, dir)
		if h := same.transient(t); len(h) != 0 {
			t.Errorf("transient objects after a refused Open: %v", h)
		}
	})
}

func wantRefused(t *testing.T, err error, dir string) {
	t.Helper()
	if err == nil {
		t.Fatal("the blobs loaded")
	}
	msg := err.Error()
	for _, want := range []string{"refuses to load the key blobs in " + dir, "different TPM", "cleared", "join again"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	if api.CodeOf(err) != api.CodeFailedPrecondition {
		t.Errorf("code %s", api.CodeOf(err))
	}
}

// TestSignReloadsAfterTPMReset: a TPM reset drops loaded objects; the next
// Sign loads the key again from its blobs.
func TestSignReloadsAfterTPMReset(t *testing.T) {
	sim := newSim(t, 0)
	k, err := sim.source(t.TempDir()).Create()
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, k)
	mustVerify(t, k, "before")
	if err := sim.sim.Reset(); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, k, "after reset")
}

func TestOpenErrors(t *testing.T) {
	sim := newSim(t, 1)
	dir := t.TempDir()
	src := sim.source(dir)

	t.Run("missing blobs", func(t *testing.T) {
		_, err := src.Open()
		if err == nil || !strings.Contains(err.Error(), "the TPM key blobs are missing from "+dir) ||
			!strings.Contains(err.Error(), "join again with a new token") {
			t.Fatalf("error %v", err)
		}
	})

	k, err := src.Create()
	if err != nil {
		t.Fatal(err)
	}
	k.(*Signer).Close()

	t.Run("loose permissions", func(t *testing.T) {
		for _, name := range []string{PrivateBlobFile, PublicBlobFile} {
			p := filepath.Join(dir, name)
			if err := os.Chmod(p, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := src.Open()
			if api.CodeOf(err) != api.CodeKeyPermissions || !strings.Contains(err.Error(), "chmod 600 "+p) {
				t.Errorf("%s 0644: %v", name, err)
			}
			if err := os.Chmod(p, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("one blob missing", func(t *testing.T) {
		p := filepath.Join(dir, PrivateBlobFile)
		saved, _ := os.ReadFile(p)
		os.Remove(p)
		defer os.WriteFile(p, saved, 0o600)
		_, err := src.Open()
		if err == nil || !strings.Contains(err.Error(), "missing from "+dir+" (no "+PrivateBlobFile+")") {
			t.Fatalf("error %v", err)
		}
	})

	t.Run("damaged blob", func(t *testing.T) {
		p := filepath.Join(dir, PublicBlobFile)
		saved, _ := os.ReadFile(p)
		defer os.WriteFile(p, saved, 0o600)
		if err := os.WriteFile(p, saved[:len(saved)-5], 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := src.Open()
		if err == nil || !strings.Contains(err.Error(), "is damaged") {
			t.Fatalf("error %v", err)
		}
	})

	t.Run("public blob of another key", func(t *testing.T) {
		// A pair whose halves do not belong together: the TPM's integrity
		// check refuses it.
		other := t.TempDir()
		k2, err := sim.source(other).Create()
		if err != nil {
			t.Fatal(err)
		}
		k2.(*Signer).Close()
		p := filepath.Join(dir, PublicBlobFile)
		saved, _ := os.ReadFile(p)
		defer os.WriteFile(p, saved, 0o600)
		b, _ := os.ReadFile(filepath.Join(other, PublicBlobFile))
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err = src.Open()
		wantRefused(t, err, dir)
	})

	// After all that, the real pair still opens.
	k, err = src.Open()
	if err != nil {
		t.Fatal(err)
	}
	mustVerify(t, k, "still fine")
	k.(*Signer).Close()
	if h := sim.transient(t); len(h) != 0 {
		t.Errorf("transient objects left: %v", h)
	}
}
