package tpmkey

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/wardcluster/ward/internal/api"
)

// TLSSignatureSchemes are the only TLS signature schemes a Signer can make.
// TLS 1.3 needs nothing more for a P-256 key; for TLS 1.2, put them in
// tls.Certificate.SupportedSignatureAlgorithms, or crypto/tls may pick
// ECDSA with SHA-384 when the peer prefers it, and the Signer refuses that.
var TLSSignatureSchemes = []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}

// ErrClosed is returned by Sign after Close.
var ErrClosed = errors.New("tpmkey: the TPM key is closed")

// Signer is an ECDSA P-256 key that lives in a TPM. It implements
// crypto.Signer and io.Closer and is safe for concurrent use: signatures are
// serialised on the TPM connection.
//
// Between signatures the key occupies no TPM slot: after loading it once,
// the Signer keeps the TPM's saved context of it (TPM2_ContextSave, a blob
// only this TPM can load back until its next reset) and brings it in for
// each signature (ContextLoad, Sign, FlushContext). A raw TPM such as swtpm
// has only three transient object slots and no resource manager, so an
// agent that dies holding loaded keys would otherwise fill it. If the
// connection drops (a restarted swtpm) or the saved context no longer loads
// (a TPM reset), Sign reconnects and loads the key again from its blobs,
// once, before giving up.
type Signer struct {
	c        *conn
	pub      *ecdsa.PublicKey
	pubBlob  []byte // TPM2B_PUBLIC
	privBlob []byte // TPM2B_PRIVATE, wrapped by the TPM
	dir      string

	// Guarded by c.mu.
	saved  *tpm2.TPMSContext // the loaded key's saved context; nil until loaded
	name   tpm2.TPM2BName    // the key's TPM name
	gen    uint64            // connection generation saved was made on
	closed bool
}

// Public returns the key's *ecdsa.PublicKey.
func (sg *Signer) Public() crypto.PublicKey { return sg.pub }

// Sign asks the TPM to sign a SHA-256 digest and returns the ASN.1 DER
// ECDSA signature (as ecdsa.SignASN1 would). The TPM draws the nonce from its
// own generator, so rand is not used. Other hashes are refused: the key's
// scheme is fixed to ECDSA with SHA-256 inside the TPM.
func (sg *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil || opts.HashFunc() != crypto.SHA256 {
		h := "none"
		if opts != nil && opts.HashFunc() != 0 {
			h = opts.HashFunc().String()
		}
		return nil, fmt.Errorf("tpmkey: the TPM key signs SHA-256 digests only, not %s (for TLS 1.2, restrict the certificate to tpmkey.TLSSignatureSchemes)", h)
	}
	if len(digest) != sha256.Size {
		return nil, fmt.Errorf("tpmkey: a SHA-256 digest is %d bytes, got %d", sha256.Size, len(digest))
	}
	c := sg.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if sg.closed {
		return nil, ErrClosed
	}
	var sig []byte
	for attempt := 0; ; attempt++ {
		stale := false
		err := c.doLocked(func(t transport.TPM, gen uint64) error {
			if sg.saved == nil || sg.gen != gen {
				if err := sg.loadLocked(t, gen); err != nil {
					return err
				}
			}
			loaded, err := tpm2.ContextLoad{Context: *sg.saved}.Execute(t)
			if err != nil {
				var fmt1 tpm2.TPMFmt1Error
				if errors.As(err, &fmt1) {
					// The context predates a TPM reset: load the blobs again.
					sg.saved, stale = nil, true
				}
				return tpmError(c.device, "load the saved key context", err)
			}
			defer flush(t, loaded.LoadedHandle)
			rsp, err := tpm2.Sign{
				KeyHandle: tpm2.NamedHandle{Handle: loaded.LoadedHandle, Name: sg.name},
				Digest:    tpm2.TPM2BDigest{Buffer: digest},
				InScheme: tpm2.TPMTSigScheme{
					Scheme:  tpm2.TPMAlgECDSA,
					Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256}),
				},
				Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
			}.Execute(t)
			if err != nil {
				return tpmError(c.device, "sign", err)
			}
			sig, err = encodeSignature(&rsp.Signature)
			return err
		})
		if err == nil {
			return sig, nil
		}
		var te *transportError
		if attempt == 0 && (stale || errors.As(err, &te)) {
			continue
		}
		return nil, err
	}
}

// Close releases this Signer's share of the TPM connection (the key holds
// no TPM slot between signatures, so there is nothing to flush). Later
// Signs fail with ErrClosed; Close again is a no-op.
func (sg *Signer) Close() error {
	c := sg.c
	c.mu.Lock()
	if sg.closed {
		c.mu.Unlock()
		return nil
	}
	sg.closed = true
	sg.saved = nil
	c.mu.Unlock()
	release(c)
	return nil
}

// loadLocked loads the key blobs under a freshly derived SRK and keeps the
// saved context of the key; it leaves no object loaded. c.mu is held.
func (sg *Signer) loadLocked(t transport.TPM, gen uint64) error {
	srk, err := createSRK(t, sg.c.device)
	if err != nil {
		return err
	}
	defer flush(t, srk.Handle)
	return sg.loadUnderLocked(t, srk, gen)
}

// loadUnderLocked loads the key blobs under srk and keeps the saved context
// of the key, flushing the key itself. c.mu is held.
func (sg *Signer) loadUnderLocked(t transport.TPM, srk tpm2.NamedHandle, gen uint64) error {
	device := sg.c.device
	pub, err := unmarshalExact[tpm2.TPM2BPublic](sg.pubBlob)
	if err != nil {
		return err
	}
	priv, err := unmarshalExact[tpm2.TPM2BPrivate](sg.privBlob)
	if err != nil {
		return err
	}
	rsp, err := tpm2.Load{ParentHandle: srk, InPrivate: *priv, InPublic: *pub}.Execute(t)
	if err != nil {
		var fmt1 tpm2.TPMFmt1Error
		if errors.As(err, &fmt1) {
			// The blobs do not verify under this TPM's SRK: the integrity
			// HMAC over the private blob is keyed from the owner seed.
			return api.Errorf(api.CodeFailedPrecondition, "join again with a new token (the old identity is gone for good; revoke it on the coordinator)",
				"the TPM at %s refuses to load the key blobs in %s: they were made by a different TPM, or this TPM's owner hierarchy has been cleared since (tpm2_clear, or a firmware TPM reset)", device, sg.dir).WithCause(err)
		}
		return tpmError(device, "load the signing key", err)
	}
	defer flush(t, rsp.ObjectHandle)
	saved, err := tpm2.ContextSave{SaveHandle: rsp.ObjectHandle}.Execute(t)
	if err != nil {
		return tpmError(device, "save the signing key's context", err)
	}
	sg.saved, sg.name, sg.gen = &saved.Context, rsp.Name, gen
	return nil
}

func encodeSignature(sig *tpm2.TPMTSignature) ([]byte, error) {
	if sig.SigAlg != tpm2.TPMAlgECDSA {
		return nil, fmt.Errorf("tpmkey: the TPM returned a %v signature, want ECDSA", sig.SigAlg)
	}
	ecc, err := sig.Signature.ECDSA()
	if err != nil {
		return nil, fmt.Errorf("tpmkey: malformed ECDSA signature from the TPM: %w", err)
	}
	return asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(ecc.SignatureR.Buffer),
		new(big.Int).SetBytes(ecc.SignatureS.Buffer),
	})
}
