package diagnose

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wardcluster/ward/internal/pki"
)

// DefaultTimeout bounds a whole Check: connect, handshake and first read.
const DefaultTimeout = 5 * time.Second

// Options are exactly what a check uses; nothing comes from saved
// configuration, so `ward check` shows what these flags alone would do.
type Options struct {
	// Address is host:port; the port is required.
	Address string
	// Roots verify the server's chain; nil means the system roots.
	Roots *x509.CertPool
	// Pins are checked against the presented chain and, when the chain
	// verified, the root it led to; any match passes.
	Pins []pki.Pin
	// ClientCert is sent when the server asks for one.
	ClientCert *tls.Certificate
	// ServerName is the name the certificate must cover; default: the host
	// of Address.
	ServerName string
	// MinTLS is the lowest TLS version offered: tls.VersionTLS13 (default,
	// Ward's) or tls.VersionTLS12.
	MinTLS uint16
	// InsecureSkipVerify skips chain and name verification; pins still
	// apply, and then the leaf must chain to the pinned certificate. The
	// report says the check was insecure.
	InsecureSkipVerify bool
	// Timeout covers dial, handshake, revocation fetch and first read;
	// default DefaultTimeout.
	Timeout time.Duration
	// CRL is where to get the revocation list; nil means the leaf's http(s)
	// CRL distribution points, if it names any.
	CRL *CRLSource
	// NextProtos are offered with ALPN; usually empty.
	NextProtos []string
	// Now is the clock used for validity; default time.Now.
	Now func() time.Time
}

// CRLSource says where a certificate revocation list comes from: a file
// (DER or PEM) or an http:// or https:// URL. Set one of the two.
type CRLSource struct {
	Path string
	URL  string
}

// String is the file path or the URL.
func (s CRLSource) String() string {
	if s.URL != "" {
		return s.URL
	}
	return s.Path
}

// ParseCRLSource reads a --crl flag: a URL when it starts with http:// or
// https://, otherwise a file path.
func ParseCRLSource(s string) *CRLSource {
	if strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") {
		return &CRLSource{URL: s}
	}
	return &CRLSource{Path: s}
}

// check is the state of one Check run, shared with the TLS callbacks.
type check struct {
	ctx    context.Context
	o      Options
	report *Report

	mu            sync.Mutex
	chain         []*x509.Certificate
	verified      [][]*x509.Certificate
	trust         *x509.CertPool // the roots the chain was verified to (nil: the system's)
	failed        *Verdict       // the verdict that aborted the handshake
	certAsked     bool
	acceptableCAs [][]byte
	certSent      bool
}

// errAborted is returned from VerifyConnection to stop a handshake whose
// server failed verification; the verdict is in check.failed.
var errAborted = errors.New("diagnose: server failed verification")

// Check connects to opts.Address with exactly opts and reports what it saw
// and one verdict. It never returns nil. Every failure class has its own
// code: see the Code constants.
func Check(ctx context.Context, opts Options) *Report {
	r := &Report{Address: opts.Address, Chain: []CertInfo{}}
	o, bad := normalize(opts)
	if bad != nil {
		r.Verdict = *bad
		return r
	}
	r.ServerName = o.ServerName
	r.Insecure = o.InsecureSkipVerify
	deadline := time.Now().Add(o.Timeout)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", o.Address)
	if err != nil {
		r.Verdict = dialVerdict(err, o.Address, o.Timeout)
		return r
	}
	defer raw.Close()
	rec := &recordingConn{Conn: raw}
	c := &check{ctx: ctx, o: o, report: r}
	tc := tls.Client(rec, c.config())
	_ = tc.SetDeadline(deadline)

	start := time.Now()
	err = tc.HandshakeContext(ctx)
	took := time.Since(start)
	c.fillFacts(tc.ConnectionState())
	if err != nil {
		r.Verdict = c.handshakeVerdict(err, rec)
		c.mu.Lock()
		stopped := c.failed != nil
		c.mu.Unlock()
		r.setClientCert(stopped)
		if r.Code == CodeProtocolVersion {
			c.probeVersions(ctx)
		}
		return r
	}
	r.Verdict = c.firstRead(tc, took, deadline)
	r.setClientCert(false)
	return r
}

// normalize applies defaults and refuses impossible options.
func normalize(o Options) (Options, *Verdict) {
	host, port, err := net.SplitHostPort(o.Address)
	if err != nil || port == "" {
		return o, &Verdict{CodeInvalidOptions,
			fmt.Sprintf("address %q is not host:port (%v)", o.Address, errText(err, "the port is empty")),
			"give the port too, e.g. coordinator.example:7443 (cluster port) or :8443 (public port); write IPv6 addresses as [::1]:7443"}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		if _, lerr := net.LookupPort("tcp", port); lerr != nil {
			return o, &Verdict{CodeInvalidOptions, fmt.Sprintf("port %q in address %q is not a port number", port, o.Address), "use a number from 1 to 65535"}
		}
	}
	if host == "" {
		host = "localhost"
		o.Address = net.JoinHostPort(host, port)
	}
	if o.ServerName == "" {
		o.ServerName = host
	}
	switch o.MinTLS {
	case 0:
		o.MinTLS = tls.VersionTLS13
	case tls.VersionTLS12, tls.VersionTLS13:
	default:
		return o, &Verdict{CodeInvalidOptions, fmt.Sprintf("minimum TLS version %s is not allowed", versionName(o.MinTLS)), "use --min-tls 1.3 (default) or 1.2"}
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CRL != nil && o.CRL.Path == "" && o.CRL.URL == "" {
		o.CRL = nil
	}
	return o, nil
}

func errText(err error, otherwise string) string {
	if err != nil {
		return err.Error()
	}
	return otherwise
}

func (c *check) config() *tls.Config {
	return &tls.Config{
		ServerName: c.o.ServerName,
		// Verification is done by hand in VerifyConnection, completely (chain,
		// validity, name, pins, revocation), so that a failing chain is still
		// shown and the handshake stops before a client certificate is sent.
		InsecureSkipVerify:   true, //nolint:gosec // see above; covered by tests of every verdict
		MinVersion:           c.o.MinTLS,
		NextProtos:           c.o.NextProtos,
		VerifyConnection:     c.verifyConnection,
		GetClientCertificate: c.clientCertificate,
	}
}

func (c *check) clientCertificate(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.certAsked = true
	c.acceptableCAs = cri.AcceptableCAs
	if c.o.ClientCert == nil || len(c.o.ClientCert.Certificate) == 0 {
		return &tls.Certificate{}, nil
	}
	if err := cri.SupportsCertificate(c.o.ClientCert); err != nil {
		c.report.addDetail("the server may refuse this client certificate: %v", err)
	}
	c.certSent = true
	return c.o.ClientCert, nil
}

// fillFacts copies what the handshake negotiated into the report; after a
// failed handshake some fields are empty.
func (c *check) fillFacts(cs tls.ConnectionState) {
	r := c.report
	if cs.Version != 0 {
		r.TLSVersion = versionName(cs.Version)
	}
	if cs.CipherSuite != 0 {
		r.Cipher = tls.CipherSuiteName(cs.CipherSuite)
		for _, s := range tls.InsecureCipherSuites() {
			if s.ID == cs.CipherSuite {
				r.addDetail("warning: cipher %s is considered insecure", s.Name)
			}
		}
	}
	if cs.CurveID != 0 {
		r.KeyExchange = cs.CurveID.String()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	chain := c.chain
	if len(chain) == 0 {
		chain = cs.PeerCertificates
	}
	r.Chain = r.Chain[:0]
	r.Presented = chain
	for _, cert := range chain {
		r.Chain = append(r.Chain, NewCertInfo(cert))
	}
	r.ClientCertAsked = c.certAsked
	r.ClientCertSent = c.certSent
	if c.certAsked && len(c.acceptableCAs) > 0 {
		r.addDetail("the server asks for a client certificate issued by: %s", strings.Join(dnNames(c.acceptableCAs), "; "))
	}
}

// handshakeVerdict classifies a failed handshake, using what this check
// knows beyond the error: whether the server asked for a certificate,
// whether one was sent, and the raw bytes the server sent.
func (c *check) handshakeVerdict(err error, rec *recordingConn) Verdict {
	c.mu.Lock()
	failed := c.failed
	asked, sent := c.certAsked, c.certSent
	c.mu.Unlock()
	if failed != nil {
		return *failed
	}
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) && rhe.Conn != nil {
		// Read what follows the record header, briefly: a plaintext server's
		// line is usually there already.
		_ = rhe.Conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		buf := make([]byte, 256)
		for rec.Len() < 256 {
			n, rerr := rhe.Conn.Read(buf)
			if n == 0 || rerr != nil || bytes.IndexByte(buf[:n], '\n') >= 0 {
				break
			}
		}
		return plaintextVerdict(rec.Bytes(), c.o.Address)
	}
	if code, ok := alertOf(err); ok {
		return clientAlertVerdict(code, asked, sent, false, c.o.Address)
	}
	if isTimeout(err) {
		got := rec.Len()
		msg := fmt.Sprintf("connected to %s, but the TLS handshake got no answer within %s", c.o.Address, c.o.Timeout)
		if got > 0 {
			msg = fmt.Sprintf("connected to %s, but the TLS handshake did not finish within %s (%d bytes received)", c.o.Address, c.o.Timeout, got)
		}
		return Verdict{CodeTimeout, msg + "; the port may not be a TLS server (a server that waits for the client to speak first looks like this), or something in between holds the connection", fixTimeout}
	}
	if isClosed(err) {
		if asked && !sent {
			return requiredVerdict(c.o.Address, "closed the connection after asking for a client certificate that was not sent")
		}
		return Verdict{CodeClosed, fmt.Sprintf("%s closed the connection during the TLS handshake without a TLS alert (%v); it may not speak TLS on this port, or it refused this client before the handshake", c.o.Address, err), fixClosed}
	}
	return Explain(err)
}

// firstRead waits briefly for the server's first record. In TLS 1.3 a
// server's rejection of the client certificate arrives only here; silence
// until the deadline means the server accepted the connection.
func (c *check) firstRead(tc *tls.Conn, took time.Duration, deadline time.Time) Verdict {
	wait := 2*took + 500*time.Millisecond
	if rd := time.Now().Add(wait); rd.Before(deadline) {
		deadline = rd
	}
	_ = tc.SetReadDeadline(deadline)
	buf := make([]byte, 512)
	n, err := tc.Read(buf)
	c.mu.Lock()
	asked, sent := c.certAsked, c.certSent
	c.mu.Unlock()
	c.report.ClientCertAsked, c.report.ClientCertSent = asked, sent
	switch {
	case n > 0:
		c.report.addDetail("the server spoke first: %s", printable(buf[:n], 64))
	case err == nil || isTimeout(err):
	default:
		if code, ok := alertOf(err); ok {
			return clientAlertVerdict(code, asked, sent, true, c.o.Address)
		}
		if isClosed(err) {
			if asked && !sent {
				return requiredVerdict(c.o.Address, "closed the connection after the handshake; it had asked for a client certificate and none was sent")
			}
			return Verdict{CodeClosed, fmt.Sprintf("the TLS handshake with %s completed, but the server closed the connection at once without saying why (%v)", c.o.Address, err), fixClosed}
		}
		return Explain(err)
	}
	msg := fmt.Sprintf("%s answered with %s, its certificate verified", c.o.Address, c.report.TLSVersion)
	switch {
	case !c.o.InsecureSkipVerify && c.o.Roots == nil && len(c.o.Pins) > 0:
		msg = fmt.Sprintf("%s answered with %s, its certificate verified up to the pinned certificate", c.o.Address, c.report.TLSVersion)
	case c.o.InsecureSkipVerify && len(c.o.Pins) > 0:
		msg = fmt.Sprintf("%s answered with %s and its chain matches a pin; the chain and name were NOT verified against roots (insecure)", c.o.Address, c.report.TLSVersion)
	case c.o.InsecureSkipVerify:
		msg = fmt.Sprintf("%s answered with %s; NOTHING about its certificate was verified (insecure)", c.o.Address, c.report.TLSVersion)
	}
	if sent {
		msg += ", and it accepted the client certificate"
	} else if asked {
		msg += "; it asked for a client certificate but went on without one"
	}
	fix := ""
	if c.o.InsecureSkipVerify {
		fix = "drop --insecure-skip-verify and pass --ca (from `ward ca export`) so the server is verified"
	}
	return Verdict{CodeOK, msg, fix}
}

// probeVersions makes a second, unverified connection offering only the
// versions below MinTLS, to say which version the server does speak. It
// stops in VerifyConnection: nothing is sent to the unverified server.
func (c *check) probeVersions(ctx context.Context) {
	offered := versionName(c.o.MinTLS) + " only"
	if c.o.MinTLS == tls.VersionTLS12 {
		offered = "TLS 1.2 and 1.3"
	}
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", c.o.Address)
	if err != nil {
		c.report.addDetail("this check offered %s; a second connection to learn the server's versions failed: %v", offered, err)
		return
	}
	defer raw.Close()
	var got tls.ConnectionState
	stop := errors.New("probe done")
	tc := tls.Client(raw, &tls.Config{
		ServerName:         c.o.ServerName,
		InsecureSkipVerify: true, //nolint:gosec // probe only; aborted before any data is sent
		MinVersion:         tls.VersionTLS10,
		MaxVersion:         c.o.MinTLS - 1,
		CipherSuites:       allCipherSuites(),
		VerifyConnection: func(cs tls.ConnectionState) error {
			got = cs
			return stop
		},
	})
	if dl, ok := ctx.Deadline(); ok {
		_ = tc.SetDeadline(dl)
	}
	err = tc.HandshakeContext(ctx)
	if got.Version == 0 {
		c.report.addDetail("this check offered %s; the server accepted none of TLS 1.0 to %s either (%v)", offered, versionName(c.o.MinTLS-1), err)
		return
	}
	c.report.addDetail("this check offered %s; the server speaks %s (offered TLS 1.0 to %s, it chose %s with %s)",
		offered, versionName(got.Version), versionName(c.o.MinTLS-1), versionName(got.Version), tls.CipherSuiteName(got.CipherSuite))
	c.report.Fix = fmt.Sprintf(fixProtocolOld, versionName(got.Version))
	if got.Version < tls.VersionTLS12 {
		c.report.Fix = fmt.Sprintf("the server allows only %s, which Ward never accepts; upgrade the server to TLS 1.3 (or at least 1.2)", versionName(got.Version))
	}
	if len(got.PeerCertificates) > 0 && len(c.report.Chain) == 0 {
		for _, cert := range got.PeerCertificates {
			c.report.Chain = append(c.report.Chain, NewCertInfo(cert))
		}
		c.report.Presented = got.PeerCertificates
		c.report.addDetail("the chain shown came from that second, unverified connection")
	}
}

func allCipherSuites() []uint16 {
	var out []uint16
	for _, s := range tls.CipherSuites() {
		out = append(out, s.ID)
	}
	for _, s := range tls.InsecureCipherSuites() {
		out = append(out, s.ID)
	}
	return out
}

func versionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLS 1.0"
	case tls.VersionTLS11:
		return "TLS 1.1"
	case tls.VersionTLS12:
		return "TLS 1.2"
	case tls.VersionTLS13:
		return "TLS 1.3"
	case tls.VersionSSL30: //nolint:staticcheck // named for the message only
		return "SSL 3.0"
	}
	return fmt.Sprintf("version 0x%04x", v)
}

// dnNames renders the DER distinguished names a server lists as acceptable
// client-certificate issuers.
func dnNames(raw [][]byte) []string {
	var out []string
	for _, der := range raw {
		out = append(out, rdnString(der))
	}
	return out
}

// recordingConn keeps the first bytes read from the server, so that a
// non-TLS answer can be shown exactly even though crypto/tls buffers it.
type recordingConn struct {
	net.Conn
	mu  sync.Mutex
	buf []byte
}

const recordLimit = 512

func (r *recordingConn) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	if n > 0 {
		r.mu.Lock()
		if room := recordLimit - len(r.buf); room > 0 {
			r.buf = append(r.buf, p[:min(n, room)]...)
		}
		r.mu.Unlock()
	}
	return n, err
}

// Bytes returns a copy of what was recorded.
func (r *recordingConn) Bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.buf)
}

// Len is how many bytes were recorded.
func (r *recordingConn) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.buf)
}

var _ io.Reader = (*recordingConn)(nil)
