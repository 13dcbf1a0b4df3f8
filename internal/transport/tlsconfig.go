// Package transport builds Ward's TLS configurations and reads who is on the
// other end of a connection: the peer's identity from its certificate, its
// link status and its TLS facts.
package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"

	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
)

// ALPNAgent selects the agent session protocol on the cluster port; any
// other protocol (http/1.1) reaches the HTTP API.
const ALPNAgent = "ward-agent/1"

// ALPNRelay selects a relayed agent session on the cluster port: a
// follower coordinator carrying an agent's session to the leader (only a
// coordinator certificate may open one).
const ALPNRelay = "ward-relay/1"

// ALPNHTTP is the HTTP API's protocol on Ward's TLS ports.
const ALPNHTTP = "http/1.1"

// ALPNRelayMux selects a follower's multiplexed relay connection on the
// cluster port: HTTP/2, one stream per relayed agent session (only a
// coordinator certificate may open one). It is listed last, so a client
// offering h2 beside http/1.1 gets http/1.1 (the server's order wins).
const ALPNRelayMux = "h2"

// tls12Suites are the only TLS 1.2 suites Ward allows when an operator opts
// into TLS 1.2: ECDHE key exchange with AEAD ciphers.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,
}

// ParseMinVersion reads "1.2" or "1.3".
func ParseMinVersion(s string) (uint16, error) {
	switch strings.TrimSpace(s) {
	case "", "1.3":
		return tls.VersionTLS13, nil
	case "1.2":
		return tls.VersionTLS12, nil
	}
	return 0, fmt.Errorf("TLS version %q is not allowed: use 1.3 (default) or 1.2", s)
}

// VersionName returns "TLS 1.3" and the like.
func VersionName(v uint16) string {
	switch v {
	case 0:
		return "none"
	case tls.VersionTLS10:
		return "TLS 1.0"
	case tls.VersionTLS11:
		return "TLS 1.1"
	}
	return tls.VersionName(v)
}

// ServerOptions are the cluster-wide settings behind the server configs.
type ServerOptions struct {
	Cluster    string
	MinVersion uint16 // tls.VersionTLS13 unless TLS 1.2 is allowed
	// Revoked is consulted on every handshake, resumed or not. It must be an
	// in-memory lookup: no file or store I/O on the accept path.
	Revoked *RevocationSet
}

func (o ServerOptions) base(src *identity.Source) *tls.Config {
	cfg := &tls.Config{
		MinVersion:     o.MinVersion,
		GetCertificate: src.GetCertificate,
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS13
	}
	if cfg.MinVersion < tls.VersionTLS13 {
		cfg.CipherSuites = tls12Suites
	}
	return cfg
}

// ClusterServerConfig is the cluster port: a client certificate from the
// current trust bundle is required at the handshake, its identity must be a
// Ward identity of this cluster, and it must not be revoked. The config is
// rebuilt per handshake from src, so trust swaps need no restart.
func ClusterServerConfig(src *identity.Source, o ServerOptions) *tls.Config {
	outer := o.base(src)
	outer.NextProtos = []string{ALPNAgent, ALPNRelay, ALPNHTTP, ALPNRelayMux}
	// One config per trust bundle: rebuilt only when the bundle is swapped,
	// not per handshake (each connection keeps the config it was served).
	type cached struct {
		pool *x509.CertPool
		cfg  *tls.Config
	}
	var cache atomic.Pointer[cached]
	outer.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		pool := src.Trust()
		if c := cache.Load(); c != nil && c.pool == pool {
			return c.cfg, nil
		}
		cfg := o.base(src)
		cfg.NextProtos = []string{ALPNAgent, ALPNRelay, ALPNHTTP, ALPNRelayMux}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = pool
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			_, err := VerifyPeer(cs, o.Cluster, o.Revoked)
			return err
		}
		cache.Store(&cached{pool: pool, cfg: cfg})
		return cfg, nil
	}
	return outer
}

// PublicServerConfig is the public port: server authentication only. It
// asks for (but does not require or verify) a client certificate, which the
// expired-certificate grace path checks by hand.
func PublicServerConfig(src *identity.Source, o ServerOptions) *tls.Config {
	cfg := o.base(src)
	cfg.NextProtos = []string{ALPNHTTP}
	cfg.ClientAuth = tls.RequestClientCert
	return cfg
}

// ClientOptions are what an outbound connection checks.
type ClientOptions struct {
	Cluster    string                                // the peer must be a coordinator of this cluster
	ServerName string                                // the name the certificate must cover
	Pins       []pki.Pin                             // when set, a chain certificate must match one
	MinVersion uint16                                // default TLS 1.3
	NextProtos []string                              // ALPN
	Revoked    func(chain []*x509.Certificate) error // optional revocation check of the server's verified chain
}

// ClientConfig is a config for dialing a coordinator with mTLS: it verifies
// the server against the current trust bundle and pins and presents the
// current client certificate. Build one per dial so trust swaps apply.
func ClientConfig(src *identity.Source, o ClientOptions) *tls.Config {
	cfg := &tls.Config{
		MinVersion:           o.MinVersion,
		RootCAs:              src.Trust(),
		ServerName:           o.ServerName,
		GetClientCertificate: src.GetClientCertificate,
		NextProtos:           o.NextProtos,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return checkServer(cs, o)
		},
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS13
	}
	if cfg.MinVersion < tls.VersionTLS13 {
		cfg.CipherSuites = tls12Suites
	}
	return cfg
}

func checkServer(cs tls.ConnectionState, o ClientOptions) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("server presented no certificate")
	}
	if len(o.Pins) > 0 {
		var chain []*x509.Certificate
		for _, c := range cs.VerifiedChains {
			chain = append(chain, c...)
		}
		if len(chain) == 0 {
			chain = cs.PeerCertificates
		}
		if _, ok := pki.MatchAny(o.Pins, chain); !ok {
			return &PinMismatchError{Expected: o.Pins, Chain: chain}
		}
	}
	if o.Cluster != "" && hasSPIFFE(cs.PeerCertificates[0]) {
		// A Ward-issued server certificate must name a coordinator of this
		// cluster. A certificate without a Ward identity is an externally
		// issued one (--tls-cert): the chain and name checks above apply,
		// and only coordinators hold server-auth certificates from the
		// bundle.
		id, err := pki.IDFromCert(cs.PeerCertificates[0])
		if err != nil {
			return fmt.Errorf("server certificate: %w", err)
		}
		if id.Cluster != o.Cluster || id.Role != pki.RoleCoordinator {
			return fmt.Errorf("server identity %s is not a coordinator of cluster %q", id, o.Cluster)
		}
	}
	if o.Revoked != nil {
		chain := cs.PeerCertificates
		if len(cs.VerifiedChains) > 0 {
			chain = cs.VerifiedChains[0]
		}
		if err := o.Revoked(chain); err != nil {
			return err
		}
	}
	return nil
}

// PinMismatchError says that no certificate in the server's chain matched
// the configured pins. It lists both sides so the user can compare.
type PinMismatchError struct {
	Expected []pki.Pin
	Chain    []*x509.Certificate
}

func (e *PinMismatchError) Error() string {
	var exp, got []string
	for _, p := range e.Expected {
		exp = append(exp, p.String())
	}
	for _, c := range e.Chain {
		got = append(got, fmt.Sprintf("%s (%s)", pki.SPKIPin(c), c.Subject.CommonName))
	}
	return fmt.Sprintf("pin mismatch: expected %s, but the server's chain has %s", strings.Join(exp, " or "), strings.Join(got, ", "))
}

// HostOf returns the host part of a host:port address.
func HostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

func hasSPIFFE(cert *x509.Certificate) bool {
	for _, u := range cert.URIs {
		if u.Scheme == "spiffe" {
			return true
		}
	}
	return false
}
