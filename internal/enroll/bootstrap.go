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
	"net"
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
// returns the address that did. It moves to the next address only when
// nothing was sent to this one (its connection or TLS handshake failed,
// the pin too: a *ConnectError) or when it answered UNAVAILABLE (it cannot
// serve it right now: the next may). Any other answer is final, a refusal
// too; so is a failure after the request went out (an *AnswerLostError):
// that coordinator may have used a one-time secret the request carries,
// and another would only answer TOKEN_USED. When none answers, the error
// is an UNAVAILABLE answer if one came (a caller may retry), else one
// naming each address's failure.
func PostAny(ctx context.Context, addrs []string, pins []pki.Pin, path string, in, out any, clientCert *tls.Certificate) (string, error) {
	var errs []error
	for _, addr := range addrs {
		err := PostPinned(ctx, addr, pins, path, in, out, clientCert)
		var ae *api.Error
		var ce *ConnectError
		unavailable := errors.As(err, &ae) && ae.Code == api.CodeUnavailable
		if err == nil || ctx.Err() != nil || !(unavailable || errors.As(err, &ce)) {
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

// ConnectError says that a coordinator could not be reached: the TCP
// connection or the TLS handshake (with its pin check) failed, so nothing
// of the request was sent to it.
type ConnectError struct {
	Addr string
	Err  error
}

func (e *ConnectError) Error() string { return fmt.Sprintf("connect to %s: %v", e.Addr, e.Err) }

// Unwrap gives the cause (refused, timeout, pin mismatch) to errors.Is and
// errors.As.
func (e *ConnectError) Unwrap() error { return e.Err }

// AnswerLostError says that a request went out to a coordinator but no
// usable answer came back (the connection broke, the answer timed out or
// was not a Ward coordinator's): it may have acted on the request, so a
// one-time secret the request carried may be used up.
type AnswerLostError struct {
	Addr string
	Err  error
}

func (e *AnswerLostError) Error() string {
	return fmt.Sprintf("the request reached %s but no usable answer came back (%v); that coordinator may have used the join string's one-time secret: "+
		"run the same command again, and if it answers TOKEN_USED, ask for a new join string", e.Addr, e.Err)
}

// Unwrap gives the cause to errors.Is and errors.As.
func (e *AnswerLostError) Unwrap() error { return e.Err }

// connectTimeout bounds the TCP connection and TLS handshake to one
// coordinator, so an address that does not answer (a host that is down, a
// firewall dropping packets) leaves the caller time for the next.
var connectTimeout = 10 * time.Second

// PostPinned POSTs a JSON body to https://addr+path on a pinned connection
// and decodes the JSON answer. A non-2xx answer becomes its *api.Error.
// clientCert, when set, is presented at the handshake. A failure before
// any of the request was sent is a *ConnectError (the connection and
// handshake get connectTimeout); one after is an *AnswerLostError.
func PostPinned(ctx context.Context, addr string, pins []pki.Pin, path string, in, out any, clientCert *tls.Certificate) error {
	cfg := PinnedConfig(pins, transport.HostOf(addr))
	if clientCert != nil {
		cfg.Certificates = []tls.Certificate{*clientCert}
	}
	client := &http.Client{
		Transport: &http.Transport{
			// The handshake is done here, so that its failure (and only
			// that) is known to have sent nothing.
			DialTLSContext: func(ctx context.Context, network, hostport string) (net.Conn, error) {
				dctx, cancel := context.WithTimeout(ctx, connectTimeout)
				defer cancel()
				conn, err := (&tls.Dialer{Config: cfg}).DialContext(dctx, network, hostport)
				if err != nil {
					if ctx.Err() == nil && dctx.Err() != nil {
						err = fmt.Errorf("no TLS connection within %s: %w", connectTimeout, err)
					}
					return nil, &ConnectError{Addr: addr, Err: err}
				}
				return conn, nil
			},
			ForceAttemptHTTP2: false, DisableKeepAlives: true,
		},
		Timeout: 30 * time.Second,
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
		var ce *ConnectError
		if errors.As(err, &ce) {
			return ce
		}
		return &AnswerLostError{Addr: addr, Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return &AnswerLostError{Addr: addr, Err: fmt.Errorf("read the answer: %w", err)}
	}
	if resp.StatusCode/100 != 2 {
		var eb api.ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error != nil {
			return eb.Error
		}
		return &AnswerLostError{Addr: addr, Err: fmt.Errorf("%s answered %s, not a Ward error", path, resp.Status)}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &AnswerLostError{Addr: addr, Err: fmt.Errorf("decode the answer to %s: %w", path, err)}
	}
	return nil
}
