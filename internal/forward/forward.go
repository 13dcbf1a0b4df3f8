// Package forward carries what a follower coordinator receives to the
// leader, over a mutual TLS connection of the follower's own coordinator
// certificate: HTTP requests (the API, joins, the web console) through a
// reverse proxy, and agent sessions through a byte relay. The caller's
// identity travels with it (its certificate chain), and the leader accepts
// it only from a peer whose verified certificate is a coordinator's, then
// verifies the carried chain itself against its trust bundle and
// revocation set, as if the caller had connected directly.
package forward

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/transport"
)

// The headers a follower sets on a forwarded request. Any incoming
// header of these names is removed first, so a client cannot smuggle one.
const (
	// HeaderListener names the listener the request arrived on:
	// "cluster" (mutual TLS) or "public" (server authentication only).
	HeaderListener = "X-Ward-Forwarded-Listener"
	// HeaderCert is the caller's certificate chain, leaf first: each
	// certificate's DER in standard base64, separated by commas.
	HeaderCert = "X-Ward-Forwarded-Cert"
	// HeaderFor is the caller's address as the follower saw it.
	HeaderFor = "X-Ward-Forwarded-For"
	// HeaderBy is the follower's coordinator ID, for logs.
	HeaderBy = "X-Ward-Forwarded-By"
)

// Listener values of HeaderListener.
const (
	ListenerCluster = "cluster"
	ListenerPublic  = "public"
)

// Forwarded reports whether r claims to be forwarded by a follower.
func Forwarded(r *http.Request) bool { return r.Header.Get(HeaderListener) != "" }

// encodeChain is HeaderCert's value for certs.
func encodeChain(certs []*x509.Certificate) string {
	parts := make([]string, len(certs))
	for i, c := range certs {
		parts[i] = base64.StdEncoding.EncodeToString(c.Raw)
	}
	return strings.Join(parts, ",")
}

// decodeChain parses HeaderCert's value.
func decodeChain(v string) ([]*x509.Certificate, error) {
	if v == "" {
		return nil, nil
	}
	var out []*x509.Certificate
	for _, p := range strings.Split(v, ",") {
		der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("%s: not base64: %w", HeaderCert, err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", HeaderCert, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// Verifier checks a carried client certificate chain as the cluster
// listener's handshake would: it chains to the trust bundle for client
// authentication, names a Ward identity of the cluster, and is not revoked.
type Verifier struct {
	Cluster string
	Trust   func() *x509.CertPool
	Revoked *transport.RevocationSet
	Now     func() time.Time
}

// Verify checks chain (leaf first) and returns its identity.
func (v Verifier) Verify(chain []*x509.Certificate) (pki.ID, [][]*x509.Certificate, error) {
	if len(chain) == 0 {
		return pki.ID{}, nil, errors.New("the forwarded caller presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	verified, err := chain[0].Verify(x509.VerifyOptions{Roots: v.Trust(), Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return pki.ID{}, nil, fmt.Errorf("the forwarded caller's certificate (serial %s, issued by %q, %d certificate(s) in its chain) does not verify against this coordinator's trust bundle: %w",
			pki.SerialHex(chain[0]), chain[0].Issuer.CommonName, len(chain), err)
	}
	id, err := transport.VerifyPeer(tls.ConnectionState{PeerCertificates: chain}, v.Cluster, v.Revoked)
	return id, verified, err
}

// FromCoordinator checks that the connection r came on is a coordinator's
// of cluster: only coordinators may forward.
func FromCoordinator(cs *tls.ConnectionState, cluster string) (pki.ID, error) {
	peer, err := transport.PeerFromState(cs, cluster)
	if err != nil {
		return pki.ID{}, err
	}
	if peer.ID.Role != pki.RoleCoordinator {
		return pki.ID{}, fmt.Errorf("%s may not forward requests: only coordinators can", peer.ID)
	}
	return peer.ID, nil
}

// Accept turns a forwarded request into the request the caller made: its
// TLS state carries the caller's certificate chain (verified by v for the
// cluster listener; as presented for the public one, which verifies by
// hand where it must) and its RemoteAddr is the caller's. It returns the
// listener the request arrived on. r must come from a coordinator
// (FromCoordinator).
func Accept(r *http.Request, v Verifier) (*http.Request, string, error) {
	listener := r.Header.Get(HeaderListener)
	chain, err := decodeChain(r.Header.Get(HeaderCert))
	if err != nil {
		return nil, "", err
	}
	cs := *r.TLS
	cs.PeerCertificates, cs.VerifiedChains = chain, nil
	switch listener {
	case ListenerCluster:
		_, verified, err := v.Verify(chain)
		if err != nil {
			return nil, "", err
		}
		cs.VerifiedChains = verified
	case ListenerPublic:
	default:
		return nil, "", fmt.Errorf("%s: unknown listener %q", HeaderListener, listener)
	}
	out := r.Clone(r.Context())
	out.TLS = &cs
	if src := r.Header.Get(HeaderFor); src != "" {
		if _, _, err := net.SplitHostPort(src); err == nil {
			out.RemoteAddr = src
		}
	}
	for _, h := range []string{HeaderListener, HeaderCert, HeaderFor, HeaderBy} {
		out.Header.Del(h)
	}
	return out, listener, nil
}
