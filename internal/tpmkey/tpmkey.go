// Package tpmkey keeps an agent's private key inside a TPM 2.0, where it is
// created and used and which it never leaves.
//
// Under the owner hierarchy's storage root key (the TCG's standard ECC P-256
// SRK template, which the TPM derives again from its owner seed at every
// start, so nothing needs to be persisted in the TPM), Create makes an
// unrestricted ECC P-256 signing key with the scheme fixed to ECDSA over
// SHA-256, fixedTPM and fixedParent, and saves the two blobs TPM2_Create
// returns to the agent's data directory:
//
//   - tpm-key.pub: the TPM2B_PUBLIC (the public key and the key's attributes);
//   - tpm-key.priv: the TPM2B_PRIVATE, the private key encrypted and
//     integrity-protected with a key derived from the SRK's seed. Only the
//     TPM that made it, with its owner hierarchy not cleared since, can load
//     it; anywhere else it is noise.
//
// Both are stored marshalled exactly as tpm2-tools' tpm2_create -u/-r write
// them (a test loads them with tpm2_load under tpm2_createprimary's TCG
// SRK). Open re-derives the SRK, loads the blobs and returns the same key.
//
// The private key is not extractable: it is generated inside the TPM
// (sensitiveDataOrigin); it is fixedTPM and fixedParent, which TPM2_Duplicate
// refuses (and with no authorization policy its duplication role could not
// be authorised anyway); and the only form that ever leaves the TPM is the
// wrapped private blob (and, between signatures, the TPM's saved context of
// the loaded key, equally sealed to this TPM). This package has no export
// path either: a Signer can only ask the TPM for signatures.
//
// Devices: a character device path (/dev/tpmrm0, the kernel's resource
// manager, by default; /dev/tpm0 is the raw device, one process at a time),
// or tcp://HOST:PORT for swtpm's TCP server socket, which speaks raw TPM 2.0
// commands (the measurement is written up at tcpTPM).
package tpmkey

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/identity"
)

// Names of the key blob files in the agent's data directory.
const (
	PublicBlobFile  = "tpm-key.pub"
	PrivateBlobFile = "tpm-key.priv"
)

// Source keeps an agent's key in a TPM. It implements the agent's
// KeySource. The zero Device means DefaultDevice.
//
// Every Signer it returns holds a reference to one connection per device,
// shared within the process (swtpm and /dev/tpm0 serve one client at a
// time); close the Signer at shutdown to release the connection.
type Source struct {
	// Device is a TPM character device path, or tcp://HOST:PORT for swtpm.
	Device string
	// Dir is the agent's data directory, where the key blobs live.
	Dir string

	// dial, when set, replaces opening Device (tests use it to plug in an
	// in-process simulator).
	dial dialFunc
}

// Name is "tpm".
func (Source) Name() string { return "tpm" }

func (s Source) device() string {
	if s.Device == "" {
		return DefaultDevice
	}
	return s.Device
}

func (s Source) connect() (*conn, error) {
	dial := s.dial
	if dial == nil {
		var err error
		if dial, err = dialerFor(s.device()); err != nil {
			return nil, err
		}
	}
	return acquire(s.device(), dial)
}

// PublicBlobPath is where the key's public blob lives.
func (s Source) PublicBlobPath() string { return filepath.Join(s.Dir, PublicBlobFile) }

// PrivateBlobPath is where the key's TPM-wrapped private blob lives.
func (s Source) PrivateBlobPath() string { return filepath.Join(s.Dir, PrivateBlobFile) }

// Create makes a new signing key inside the TPM, replacing any previous one,
// saves its blobs to Dir (mode 0600, atomically) and returns it ready to
// sign.
func (s Source) Create() (crypto.Signer, error) {
	c, err := s.connect()
	if err != nil {
		return nil, err
	}
	var pubBlob, privBlob []byte
	sg := &Signer{c: c, dir: s.Dir}
	err = c.do(func(t transport.TPM, gen uint64) error {
		srk, err := createSRK(t, c.device)
		if err != nil {
			return err
		}
		defer flush(t, srk.Handle)
		created, err := tpm2.Create{
			ParentHandle: srk,
			InPublic:     tpm2.New2B(signingTemplate),
		}.Execute(t)
		if err != nil {
			return tpmError(c.device, "create the signing key", err)
		}
		pubBlob = tpm2.Marshal(created.OutPublic)
		privBlob = tpm2.Marshal(created.OutPrivate)
		sg.pubBlob, sg.privBlob = pubBlob, privBlob
		if sg.pub, err = parsePublic(pubBlob); err != nil {
			return fmt.Errorf("TPM at %s returned an unexpected key: %w", c.device, err)
		}
		// Load it now: this proves the blobs load before they replace the
		// old ones, and the signer is ready to use.
		return sg.loadUnderLocked(t, srk, gen)
	})
	if err != nil {
		release(c)
		return nil, err
	}
	// The private blob first: a crash between the two writes leaves a pair
	// that does not load, which Open reports as a lost identity, the same
	// outcome as a crash before Create finished.
	if err := identity.WriteSecret(s.PrivateBlobPath(), privBlob); err != nil {
		sg.Close()
		return nil, err
	}
	if err := identity.WriteSecret(s.PublicBlobPath(), pubBlob); err != nil {
		sg.Close()
		return nil, err
	}
	return sg, nil
}

// Open loads the key that Create saved in Dir into the TPM and returns it.
func (s Source) Open() (crypto.Signer, error) {
	pubBlob, err := s.readBlob(s.PublicBlobPath())
	if err != nil {
		return nil, err
	}
	privBlob, err := s.readBlob(s.PrivateBlobPath())
	if err != nil {
		return nil, err
	}
	pub, err := parsePublic(pubBlob)
	if err != nil {
		return nil, s.corrupt(s.PublicBlobPath(), err)
	}
	if _, err := unmarshalExact[tpm2.TPM2BPrivate](privBlob); err != nil {
		return nil, s.corrupt(s.PrivateBlobPath(), err)
	}
	c, err := s.connect()
	if err != nil {
		return nil, err
	}
	sg := &Signer{c: c, pub: pub, pubBlob: pubBlob, privBlob: privBlob, dir: s.Dir}
	if err := c.do(sg.loadLocked); err != nil {
		release(c)
		return nil, err
	}
	return sg, nil
}

func (s Source) readBlob(path string) ([]byte, error) {
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, api.Errorf(api.CodeFailedPrecondition, "join again with a new token",
			"the TPM key blobs are missing from %s (no %s); the agent's identity cannot be recovered", s.Dir, filepath.Base(path)).WithCause(err)
	}
	return identity.ReadSecret(path)
}

func (s Source) corrupt(path string, err error) error {
	return api.Errorf(api.CodeFailedPrecondition, "join again with a new token",
		"the TPM key blob %s is damaged; the agent's identity cannot be recovered", path).WithCause(err)
}

// signingTemplate is the agent key: unrestricted (it signs any digest, as
// TLS and CSRs need), ECDSA P-256 with SHA-256 fixed by the TPM, born and
// kept in this TPM under this parent, usable with an empty password, and
// exempt from dictionary-attack lockout (it has no password to guess).
var signingTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
		SignEncrypt:         true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Scheme: tpm2.TPMTECCScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
		},
		CurveID: tpm2.TPMECCNistP256,
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
		Y: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
	}),
}

// createSRK derives the owner hierarchy's storage root key from the TCG
// template. The same template on the same owner seed gives the same key, so
// it is re-created at every start instead of being made persistent.
func createSRK(t transport.TPM, device string) (tpm2.NamedHandle, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(t)
	if err != nil {
		return tpm2.NamedHandle{}, tpmError(device, "create the storage root key", err)
	}
	return tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}, nil
}

func flush(t transport.TPM, h tpm2.TPMHandle) {
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(t)
}

// parsePublic reads a TPM2B_PUBLIC blob and checks that it is a key of the
// kind Create makes.
func parsePublic(blob []byte) (*ecdsa.PublicKey, error) {
	b, err := unmarshalExact[tpm2.TPM2BPublic](blob)
	if err != nil {
		return nil, err
	}
	pub, err := b.Contents()
	if err != nil {
		return nil, err
	}
	a := pub.ObjectAttributes
	if pub.Type != tpm2.TPMAlgECC || !a.SignEncrypt || a.Restricted || a.Decrypt || !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin {
		return nil, errors.New("not an unrestricted, fixed, TPM-generated ECC signing key")
	}
	parms, err := pub.Parameters.ECCDetail()
	if err != nil {
		return nil, err
	}
	if parms.CurveID != tpm2.TPMECCNistP256 {
		return nil, fmt.Errorf("curve %v, want NIST P-256", parms.CurveID)
	}
	point, err := pub.Unique.ECC()
	if err != nil {
		return nil, err
	}
	key, err := tpm2.ECDSAPub(parms, point)
	if err != nil {
		return nil, err
	}
	if _, err := key.ECDH(); err != nil || key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("invalid public point: %v", err)
	}
	return key, nil
}

// unmarshalExact unmarshals a whole blob, refusing trailing bytes.
func unmarshalExact[T tpm2.Marshallable, P interface {
	*T
	tpm2.Unmarshallable
}](blob []byte) (*T, error) {
	v, err := tpm2.Unmarshal[T, P](blob)
	if err != nil {
		return nil, fmt.Errorf("not a TPM blob: %w", err)
	}
	if n := len(tpm2.Marshal(*v)); n != len(blob) {
		return nil, fmt.Errorf("not a TPM blob: %d trailing bytes", len(blob)-n)
	}
	return v, nil
}

// tpmError turns a failed TPM command into an error that says what to do.
// Transport errors pass through unchanged, so the connection logic still
// recognises them.
func tpmError(device, what string, err error) error {
	var te *transportError
	if errors.As(err, &te) {
		return err
	}
	var rc tpm2.TPMRC
	if !errors.As(err, &rc) {
		return fmt.Errorf("TPM at %s: %s: %w", device, what, err)
	}
	switch {
	case errors.Is(rc, tpm2.TPMRCBadAuth), errors.Is(rc, tpm2.TPMRCAuthFail):
		return api.Errorf(api.CodeFailedPrecondition, "clear the owner password (tpm2_changeauth -c owner -p OLD), or use --key file",
			"the TPM at %s refused to %s: its owner hierarchy has a password, and Ward uses it with the empty one", device, what).WithCause(err)
	case errors.Is(rc, tpm2.TPMRCObjectMemory):
		return api.Errorf(api.CodeUnavailable, "use /dev/tpmrm0, whose resource manager swaps objects out, or restart the simulator to clear objects a crashed client left",
			"the TPM at %s has no free slot for another key and refused to %s: other clients' objects fill it", device, what).WithCause(err)
	case errors.Is(rc, tpm2.TPMRCLockout):
		return api.Errorf(api.CodeUnavailable, "wait for the lockout to expire, or reset it (tpm2_dictionarylockout -c -p LOCKOUT_PASSWORD)",
			"the TPM at %s is in dictionary-attack lockout and refused to %s", device, what).WithCause(err)
	case errors.Is(rc, tpm2.TPMRCFailure) && strings.HasPrefix(device, "tcp://"):
		return api.Errorf(api.CodeUnavailable, "start swtpm with --flags not-need-init,startup-clear",
			"the TPM simulator at %s is not initialised (TPM_RC_FAILURE): swtpm started without not-need-init waits for CMD_INIT on its control channel", device).WithCause(err)
	case errors.Is(rc, tpm2.TPMRCHierarchy), errors.Is(rc, tpm2.TPMRCDisabled):
		return api.Errorf(api.CodeFailedPrecondition, "enable the owner (storage) hierarchy in the firmware settings, or use --key file",
			"the TPM at %s refused to %s: its owner hierarchy is disabled", device, what).WithCause(err)
	}
	return fmt.Errorf("TPM at %s: %s: %w", device, what, err)
}

// closer is satisfied by the Signer; the agent closes the key at shutdown.
var _ io.Closer = (*Signer)(nil)
