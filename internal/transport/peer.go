package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardcluster/ward/internal/pki"
)

// LinkStatus says how well a connection is protected.
type LinkStatus string

// The three link statuses shown everywhere a connection is listed.
const (
	// LinkYes: encrypted, and both sides authenticated.
	LinkYes LinkStatus = "YES"
	// LinkPartly: encrypted, but one side did not authenticate the other
	// (an agent with --insecure-skip-verify).
	LinkPartly LinkStatus = "PARTLY"
	// LinkNo: plaintext.
	LinkNo LinkStatus = "NO"
)

// ErrRevoked is returned for a peer whose certificate serial is revoked.
var ErrRevoked = errors.New("certificate is revoked")

// RevocationSet is the in-memory set of revoked serials, consulted on every
// handshake. Reads are lock-free; updates copy and swap, which suits a set
// that changes rarely and is read on every connection.
type RevocationSet struct {
	mu sync.Mutex // serializes writers
	m  atomic.Pointer[map[string]time.Time]
}

// NewRevocationSet returns an empty set.
func NewRevocationSet() *RevocationSet {
	r := &RevocationSet{}
	m := map[string]time.Time{}
	r.m.Store(&m)
	return r
}

// Add marks serials (lower-case hex) revoked at t.
func (r *RevocationSet) Add(t time.Time, serials ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := maps.Clone(*r.m.Load())
	for _, s := range serials {
		next[s] = t
	}
	r.m.Store(&next)
}

// Contains reports whether the serial is revoked.
func (r *RevocationSet) Contains(serial *big.Int) bool {
	if r == nil {
		return false
	}
	_, ok := (*r.m.Load())[fmt.Sprintf("%x", serial)]
	return ok
}

// Len returns how many serials are revoked.
func (r *RevocationSet) Len() int { return len(*r.m.Load()) }

// VerifyPeer checks a verified client connection: the leaf names exactly one
// Ward identity of cluster and is not revoked. It runs on every handshake,
// including resumed ones, and does no I/O.
func VerifyPeer(cs tls.ConnectionState, cluster string, revoked *RevocationSet) (pki.ID, error) {
	if len(cs.PeerCertificates) == 0 {
		return pki.ID{}, errors.New("client presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	if revoked.Contains(leaf.SerialNumber) {
		return pki.ID{}, fmt.Errorf("%w: serial %s (%s)", ErrRevoked, pki.SerialHex(leaf), leaf.Subject.CommonName)
	}
	id, err := pki.IDFromCert(leaf)
	if err != nil {
		return pki.ID{}, err
	}
	if id.Cluster != cluster {
		return pki.ID{}, fmt.Errorf("identity %s belongs to cluster %q, not %q", id, id.Cluster, cluster)
	}
	return id, nil
}

// Peer is what a server knows about an authenticated connection.
type Peer struct {
	ID         pki.ID
	Cert       *x509.Certificate
	TLSVersion uint16
	Cipher     uint16
	Link       LinkStatus
	// Via is the coordinator that relays this peer's session to the
	// leader; empty when the peer connected here directly.
	Via string
}

// PeerFromState reads the peer of a completed, verified handshake.
func PeerFromState(cs *tls.ConnectionState, cluster string) (Peer, error) {
	if cs == nil {
		return Peer{}, errors.New("connection is not TLS")
	}
	id, err := pki.IDFromCert(cs.PeerCertificates[0])
	if err != nil {
		return Peer{}, err
	}
	if id.Cluster != cluster {
		return Peer{}, fmt.Errorf("identity %s belongs to another cluster", id)
	}
	return Peer{ID: id, Cert: cs.PeerCertificates[0], TLSVersion: cs.Version, Cipher: cs.CipherSuite, Link: LinkYes}, nil
}
