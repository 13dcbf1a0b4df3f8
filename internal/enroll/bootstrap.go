package enroll

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/transport"
)

// PinnedConfig returns a client TLS config for first contact: the server's
// chain must contain a certificate that one of pins names, the leaf must
// chain to that certificate and cover serverName. Verification happens in
// the handshake, so a mismatch aborts before any request byte is sent.
func PinnedConfig(pins []pki.Pin, serverName string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: serverName,
		NextProtos: []string{transport.ALPNHTTP},
		// Chain verification is done by hand in VerifyConnection against
		// the pinned certificate, which is the only trust anchor here.
		InsecureSkipVerify: true, //nolint:gosec // complete manual verification below
		VerifyConnection: func(cs tls.ConnectionState) error {
			return VerifyPinned(cs.PeerCertificates, pins, serverName, time.Now())
		},
	}
}

// VerifyPinned checks a presented chain against pins: the anchor is the
// pinned certificate, the leaf must chain to it and be valid for name.
func VerifyPinned(chain []*x509.Certificate, pins []pki.Pin, name string, now time.Time) error {
	if len(chain) == 0 {
		return errors.New("the server presented no certificate")
	}
	anchor, ok := pki.MatchAny(pins, chain)
	if !ok {
		return &transport.PinMismatchError{Expected: pins, Chain: chain}
	}
	roots := x509.NewCertPool()
	roots.AddCert(anchor)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		DNSName:       name,
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("the server's certificate does not chain to the pinned CA for %q: %w", name, err)
	}
	return nil
}

// CreateCSR makes the request an agent sends with its token: its identity
// as a URI SAN, signed by its key (which never leaves the node).
func CreateCSR(key crypto.Signer, id pki.ID) ([]byte, error) {
	tmpl := &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: id.Name},
		URIs:    []*url.URL{id.URI()},
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("create certificate request: %w", err)
	}
	return der, nil
}

// Join sends req to the first coordinator named by js that answers, after
// verifying its CA pin at the handshake. It returns the coordinator's
// answer or an *api.Error with the refusal code.
func Join(ctx context.Context, js JoinString, req api.JoinRequest) (*api.JoinResponse, error) {
	req.TokenID, req.Secret = js.TokenID, js.Secret
	var out api.JoinResponse
	if _, err := PostAny(ctx, js.Addrs(), []pki.Pin{js.Pin}, api.PathJoin, req, &out, nil); err != nil {
		return nil, err
	}
	return &out, nil
}

// PostAny is PostPinned to the first of addrs that answers, in order, and
// returns the address that did. A coordinator's answer is final, a refusal
// too, except UNAVAILABLE (it cannot serve it right now: the next may); an
// address that cannot be reached, or whose handshake fails the pin, passes
// to the next. When none answers, the error is an UNAVAILABLE answer if
// one came (a caller may retry), else one naming each address's failure.
func PostAny(ctx context.Context, addrs []string, pins []pki.Pin, path string, in, out any, clientCert *tls.Certificate) (string, error) {
	var errs []error
	for _, addr := range addrs {
		err := PostPinned(ctx, addr, pins, path, in, out, clientCert)
		var ae *api.Error
		if err == nil || (errors.As(err, &ae) && ae.Code != api.CodeUnavailable) || ctx.Err() != nil {
			return addr, err
		}
		errs = append(errs, err)
	}
	if len(errs) == 1 {
		return "", errs[0]
	}
	for _, err := range errs {
		var ae *api.Error
		if errors.As(err, &ae) {
			return "", err // a coordinator is up but cannot serve it yet: the caller may retry
		}
	}
	return "", &UnreachableError{Addrs: addrs, Errs: errs}
}

// UnreachableError says that none of a join string's coordinators could be
// reached, with each one's failure.
type UnreachableError struct {
	Addrs []string
	Errs  []error
}

func (e *UnreachableError) Error() string {
	var parts []string
	for i, err := range e.Errs {
		parts = append(parts, fmt.Sprintf("%s: %v", e.Addrs[i], err))
	}
	return fmt.Sprintf("none of the %d coordinators the join string names answered (%s)", len(e.Addrs), strings.Join(parts, "; "))
}

// Unwrap gives each failure to errors.Is and errors.As, so a diagnosis
// finds the cause (refused, timeout, pin mismatch).
func (e *UnreachableError) Unwrap() []error { return e.Errs }

// PostPinned POSTs a JSON body to https://addr+path on a pinned connection
// and decodes the JSON answer. A non-2xx answer becomes its *api.Error.
// clientCert, when set, is presented at the handshake.
func PostPinned(ctx context.Context, addr string, pins []pki.Pin, path string, in, out any, clientCert *tls.Certificate) error {
	cfg := PinnedConfig(pins, transport.HostOf(addr))
	if clientCert != nil {
		cfg.Certificates = []tls.Certificate{*clientCert}
	}
	client := &http.Client{
		Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: false, DisableKeepAlives: true},
		Timeout:   30 * time.Second,
	}
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(hreq)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("read answer from %s: %w", addr, err)
	}
	if resp.StatusCode/100 != 2 {
		var eb api.ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error != nil {
			return eb.Error
		}
		return fmt.Errorf("%s%s answered %s", addr, path, resp.Status)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer from %s%s: %w", addr, path, err)
	}
	return nil
}
