// Package castore keeps the cluster CA in the shared store, so that every
// coordinator on one etcd issues from the same CA. Each CA generation (a
// root, the issuing CA it signed, and the cross certificate of a rotation)
// is one record; its private keys are always encrypted with the CA
// passphrase (pki.EncryptKeyPEM: scrypt and AES-256-GCM) and never stored
// plain. Generations are created by compare-and-set, so coordinators that
// start at once end up with exactly one CA.
package castore

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/store"
)

// Prefix holds every record of this package.
const Prefix = "ca/"

// genPrefix holds one record per CA generation.
const genPrefix = Prefix + "generations/"

// ErrNoCA is returned by Load when the generation is not in the store.
var ErrNoCA = errors.New("the cluster CA is not in the store")

// ErrExists is wrapped by Create's error when a generation it would create
// is already in the store (another coordinator created it first).
var ErrExists = errors.New("a CA generation with that number is already in the store")

// GenKey is the store key of generation n.
func GenKey(n int) string { return genPrefix + strconv.Itoa(n) }

// Generation is one generation of the cluster CA.
type Generation struct {
	Number  int
	Root    *pki.CA // Key nil: the root key is offline (imported issuing CA) or retired
	Issuing *pki.CA // Key nil: retired, never issues again
	// Cross is the issuing CA certified by the previous generation's root
	// (nil for the first generation).
	Cross *x509.Certificate
}

// record is a generation as stored: PEM certificates and encrypted keys.
type record struct {
	Generation  int       `json:"generation"`
	RootCert    string    `json:"root_cert"`
	RootKey     string    `json:"root_key,omitempty"` // WARD ENCRYPTED PRIVATE KEY; empty: offline or retired
	IssuingCert string    `json:"issuing_cert"`
	IssuingKey  string    `json:"issuing_key,omitempty"` // WARD ENCRYPTED PRIVATE KEY; empty: retired
	CrossCert   string    `json:"cross_cert,omitempty"`
	Created     time.Time `json:"created"`
	CreatedBy   string    `json:"created_by,omitempty"` // the coordinator that stored it
}

// Keeper reads and writes CA generations in a store, encrypting and
// decrypting their keys with the CA passphrase.
type Keeper struct {
	st   store.Store
	pass []byte
	by   string
	now  func() time.Time
}

// New returns a Keeper on st. passphrase must not be empty: keys are never
// written to the store in the clear. by names the coordinator in records it
// creates.
func New(st store.Store, passphrase []byte, by string) (*Keeper, error) {
	if len(passphrase) == 0 {
		return nil, errors.New("castore: a CA passphrase is required to keep CA keys in the store")
	}
	return &Keeper{st: st, pass: passphrase, by: by, now: time.Now}, nil
}

// KeyError says that a CA key held in the store could not be opened:
// wrong passphrase (errors.Is ErrWrongPassphrase), or a damaged record.
type KeyError struct {
	Key   string // the store key of the generation
	Which string // "root key" or "issuing key"
	Err   error
}

func (e *KeyError) Error() string {
	return fmt.Sprintf("the %s of the cluster CA in store record %s: %v", e.Which, e.Key, e.Err)
}

// Unwrap exposes the pki.KeyCryptError (and its kind).
func (e *KeyError) Unwrap() error { return e.Err }

// Load reads generation n. With withKeys it decrypts the issuing key
// (required) and the root key (when stored), and checks that each key is its
// certificate's; without, it returns certificates only.
func (k *Keeper) Load(ctx context.Context, n int, withKeys bool) (*Generation, error) {
	key := GenKey(n)
	rec, err := k.st.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("CA generation %d (%s): %w", n, key, ErrNoCA)
	}
	if err != nil {
		return nil, fmt.Errorf("read CA generation %d (%s): %w", n, key, err)
	}
	var r record
	if err := json.Unmarshal(rec.Value, &r); err != nil {
		return nil, fmt.Errorf("store record %s does not decode: %w", key, err)
	}
	g := &Generation{Number: n}
	if g.Issuing, err = k.open(key, "issuing", r.IssuingCert, r.IssuingKey, withKeys, true); err != nil {
		return nil, err
	}
	if g.Root, err = k.open(key, "root", r.RootCert, r.RootKey, withKeys, false); err != nil {
		return nil, err
	}
	if r.CrossCert != "" {
		certs, err := pki.ParseCertsPEM([]byte(r.CrossCert))
		if err != nil {
			return nil, fmt.Errorf("store record %s: cross certificate: %w", key, err)
		}
		g.Cross = certs[0]
	}
	if err := g.Issuing.Cert.CheckSignatureFrom(g.Root.Cert); err != nil {
		return nil, fmt.Errorf("store record %s: the issuing CA %q is not signed by the root %q: %w", key, g.Issuing.Cert.Subject.CommonName, g.Root.Cert.Subject.CommonName, err)
	}
	return g, nil
}

// open parses one CA of a record, decrypting its key when asked.
func (k *Keeper) open(recKey, which, certPEM, keyPEM string, withKeys, keyRequired bool) (*pki.CA, error) {
	certs, err := pki.ParseCertsPEM([]byte(certPEM))
	if err != nil {
		return nil, fmt.Errorf("store record %s: %s certificate: %w", recKey, which, err)
	}
	ca := &pki.CA{Cert: certs[0]}
	if !withKeys {
		return ca, nil
	}
	if keyPEM == "" {
		if keyRequired {
			return nil, fmt.Errorf("store record %s holds no %s key: this CA generation was retired and cannot issue", recKey, which)
		}
		return ca, nil
	}
	signer, err := pki.DecryptKeyPEM([]byte(keyPEM), k.pass)
	if err != nil {
		return nil, &KeyError{Key: recKey, Which: which + " key", Err: err}
	}
	if !pki.KeyMatches(ca.Cert, signer) {
		return nil, &KeyError{Key: recKey, Which: which + " key", Err: errors.New("the key does not belong to the certificate stored with it; the record was altered")}
	}
	ca.Key = signer
	return ca, nil
}

// Create stores every generation given in one transaction, each only if
// its number is not taken yet. When one is, nothing is written and the
// error wraps ErrExists.
func (k *Keeper) Create(ctx context.Context, gens ...*Generation) error {
	conds := make([]store.Cond, 0, len(gens))
	ops := make([]store.Op, 0, len(gens))
	for _, g := range gens {
		val, err := k.encode(g)
		if err != nil {
			return err
		}
		conds = append(conds, store.Absent(GenKey(g.Number)))
		ops = append(ops, store.Put(GenKey(g.Number), val))
	}
	if _, err := k.st.Txn(ctx, conds, ops); err != nil {
		if store.IsConflict(err) {
			return fmt.Errorf("%w: %v", ErrExists, err)
		}
		return fmt.Errorf("store the cluster CA: %w", err)
	}
	return nil
}

func (k *Keeper) encode(g *Generation) ([]byte, error) {
	if g.Root == nil || g.Issuing == nil {
		return nil, fmt.Errorf("CA generation %d: a root and an issuing CA are required", g.Number)
	}
	r := record{Generation: g.Number, RootCert: string(pki.EncodeCertsPEM(g.Root.Cert)), IssuingCert: string(pki.EncodeCertsPEM(g.Issuing.Cert)),
		Created: k.now().UTC(), CreatedBy: k.by}
	var err error
	if g.Issuing.Key != nil { // nil: a retired generation
		if r.IssuingKey, err = k.seal(g.Issuing); err != nil {
			return nil, err
		}
	}
	if g.Root.Key != nil {
		if r.RootKey, err = k.seal(g.Root); err != nil {
			return nil, err
		}
	}
	if g.Cross != nil {
		r.CrossCert = string(pki.EncodeCertsPEM(g.Cross))
	}
	return json.Marshal(r)
}

func (k *Keeper) seal(ca *pki.CA) (string, error) {
	enc, err := pki.EncryptKeyPEM(ca.Key, k.pass)
	if err != nil {
		return "", fmt.Errorf("encrypt the key of %q: %w", ca.Cert.Subject.CommonName, err)
	}
	return string(enc), nil
}

// Retire removes the keys of generation n, keeping its certificates (agents
// holding certificates it issued may still heal). Retiring twice is fine.
func (k *Keeper) Retire(ctx context.Context, n int) error {
	key := GenKey(n)
	for {
		rec, err := k.st.Get(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var r record
		if err := json.Unmarshal(rec.Value, &r); err != nil {
			return fmt.Errorf("store record %s does not decode: %w", key, err)
		}
		if r.RootKey == "" && r.IssuingKey == "" {
			return nil
		}
		r.RootKey, r.IssuingKey = "", ""
		val, err := json.Marshal(r)
		if err != nil {
			return err
		}
		_, err = k.st.Txn(ctx, []store.Cond{store.Unchanged(key, rec.ModRev)}, []store.Op{store.Put(key, val)})
		if !store.IsConflict(err) {
			return err
		}
	}
}

// Drop deletes generation n: a rotation rolled back before its CA issued.
func (k *Keeper) Drop(ctx context.Context, n int) error {
	_, err := k.st.Txn(ctx, nil, []store.Op{store.Delete(GenKey(n))})
	return err
}

// Exists reports whether generation n is in the store.
func (k *Keeper) Exists(ctx context.Context, n int) (bool, error) {
	_, err := k.st.Get(ctx, GenKey(n))
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}
