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
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/pki"
)

// TLS alert numbers that verdicts depend on (RFC 8446 §6).
const (
	alertCloseNotify            = 0
	alertHandshakeFailure       = 40
	alertBadCertificate         = 42
	alertUnsupportedCertificate = 43
	alertCertificateRevoked     = 44
	alertCertificateExpired     = 45
	alertCertificateUnknown     = 46
	alertUnknownCA              = 48
	alertAccessDenied           = 49
	alertProtocolVersion        = 70
	alertInsufficientSecurity   = 71
	alertUserCanceled           = 90
	alertUnrecognizedName       = 112
	alertCertificateRequired    = 116
	alertNoApplicationProtocol  = 120
)

// alertByText maps crypto/tls's alert texts back to alert numbers: a remote
// alert reaches callers only as an unexported type inside a *net.OpError
// whose text is exactly tls.AlertError(n).Error().
var alertByText = func() map[string]uint8 {
	m := make(map[string]uint8, 256)
	for i := 0; i < 256; i++ {
		m[tls.AlertError(uint8(i)).Error()] = uint8(i)
	}
	return m
}()

// alertOf returns the number of the TLS alert the peer sent, if err is one.
func alertOf(err error) (uint8, bool) {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" && op.Err != nil {
		n, ok := alertByText[op.Err.Error()]
		return n, ok
	}
	var ae tls.AlertError
	if errors.As(err, &ae) {
		return uint8(ae), true
	}
	return 0, false
}

// alertNames are the RFC 8446 names of the alerts users meet most.
var alertNames = map[uint8]string{
	alertCloseNotify: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
	alertHandshakeFailure: "handshake_failure", alertBadCertificate: "bad_certificate",
	alertUnsupportedCertificate: "unsupported_certificate", alertCertificateRevoked: "certificate_revoked",
	alertCertificateExpired: "certificate_expired", alertCertificateUnknown: "certificate_unknown",
	47: "illegal_parameter", alertUnknownCA: "unknown_ca", alertAccessDenied: "access_denied",
	50: "decode_error", 51: "decrypt_error", alertProtocolVersion: "protocol_version",
	alertInsufficientSecurity: "insufficient_security", 80: "internal_error", 86: "inappropriate_fallback",
	alertUserCanceled: "user_canceled", 109: "missing_extension", 110: "unsupported_extension",
	alertUnrecognizedName: "unrecognized_name", alertCertificateRequired: "certificate_required",
	alertNoApplicationProtocol: "no_application_protocol",
}

// alertName renders an alert as "certificate_required (116)".
func alertName(n uint8) string {
	name, ok := alertNames[n]
	if !ok {
		name = strings.ReplaceAll(strings.TrimPrefix(tls.AlertError(n).Error(), "tls: "), " ", "_")
	}
	return fmt.Sprintf("%s (%d)", name, n)
}

// rejectedReasons says, per alert, why a server refuses a client
// certificate, and what fixes it.
var rejectedReasons = map[uint8][2]string{
	alertBadCertificate:         {"the server refused it (Go servers send this when their own checks fail: wrong cluster, wrong role, revoked; the server's log names the reason)", "check the server's log line for this connection; `ward cert inspect` shows what the certificate names"},
	alertUnsupportedCertificate: {"its type or key usage is not acceptable (for example, it lacks the clientAuth extended key usage)", "use a client certificate issued by Ward (agents and users get clientAuth certificates)"},
	alertCertificateRevoked:     {"it is revoked", "it was revoked on purpose; get a new one (an agent rejoins with a new token; a CLI user needs a renewed context: the coordinator renews its admin context at start)"},
	alertCertificateExpired:     {"it has expired by the server's clock", "renew it (an agent renews by itself while connected; one offline past expiry heals within its grace window or rejoins; a CLI user needs a renewed context: the coordinator renews its admin context at start), and check both clocks"},
	alertCertificateUnknown:     {"the server could not verify it", "use a certificate issued by this cluster's CA; the server's log names the reason"},
	alertUnknownCA:              {"it is not signed by a CA the server trusts", "use a certificate issued by this cluster's CA (`ward cert inspect FILE` shows its issuer); a node of another cluster must join this one"},
	alertAccessDenied:           {"the server's access control refused this identity", "use an identity allowed on this port; the server's log names the rule"},
}

// peerKnowledge is what the caller knows about the client certificate;
// Explain knows nothing, Check knows both.
type peerKnowledge struct {
	known       bool
	asked, sent bool
}

// clientAlertVerdict classifies an alert a client received from a server.
func clientAlertVerdict(n uint8, asked, sent, afterHandshake bool, addr string) Verdict {
	return alertVerdict(n, peerKnowledge{known: true, asked: asked, sent: sent}, afterHandshake, addr)
}

func alertVerdict(n uint8, k peerKnowledge, afterHandshake bool, addr string) Verdict {
	who := "the server"
	if addr != "" {
		who = addr
	}
	when := "during the handshake"
	if afterHandshake {
		when = "right after the handshake"
	}
	switch n {
	case alertCertificateRequired:
		v := requiredVerdict(who, fmt.Sprintf("answered %s with TLS alert %s", when, alertName(n)))
		if !k.known {
			v.Message += " (a Go client with a certificate configured sends none when that certificate is not from a CA the server lists as acceptable)"
		}
		return v
	case alertBadCertificate, alertUnsupportedCertificate, alertCertificateRevoked, alertCertificateExpired,
		alertCertificateUnknown, alertUnknownCA, alertAccessDenied:
		if k.known && !k.sent {
			how := fmt.Sprintf("answered %s with TLS alert %s", when, alertName(n))
			if !k.asked {
				how += " without having asked for a certificate"
			}
			return requiredVerdict(who, how)
		}
		r := rejectedReasons[n]
		msg := fmt.Sprintf("%s rejected the client certificate %s with TLS alert %s: %s", who, when, alertName(n), r[0])
		if !k.known {
			msg += " (if no client certificate was configured, that is the cause: pass --cert/--key)"
		}
		return Verdict{CodeClientCertRejected, msg, r[1]}
	case alertHandshakeFailure:
		if k.known && k.asked && !k.sent {
			return requiredVerdict(who, fmt.Sprintf("asked for a client certificate and, when none came, ended the handshake with TLS alert %s", alertName(n)))
		}
		msg := fmt.Sprintf("%s ended the handshake with TLS alert %s: it found no cipher suite, key exchange group or signature algorithm in common with this client", who, alertName(n))
		if !k.known {
			msg += "; a TLS 1.2 server also sends this when a required client certificate was not sent"
		}
		return Verdict{CodeCipherMismatch, msg, "compare the server's TLS settings with Ward's (TLS 1.3, or TLS 1.2 with ECDHE and AES-GCM or ChaCha20); an old server needs an upgrade"}
	case alertInsufficientSecurity:
		return Verdict{CodeCipherMismatch, fmt.Sprintf("%s ended the handshake with TLS alert %s: it wants stronger parameters than this client offered", who, alertName(n)), "compare the TLS settings of both sides"}
	case alertProtocolVersion:
		return Verdict{CodeProtocolVersion, fmt.Sprintf("%s refused every TLS version this client offered (TLS alert %s)", who, alertName(n)), fmt.Sprintf(fixProtocolOld, "TLS 1.2")}
	case alertUnrecognizedName:
		return Verdict{CodeNameMismatch, fmt.Sprintf("%s has no certificate for the server name this client asked for (TLS alert %s)", who, alertName(n)), "connect with the name the server is configured for (or pass --server-name)"}
	case alertNoApplicationProtocol:
		return Verdict{CodeUnclassified, fmt.Sprintf("%s supports none of the application protocols (ALPN) this client offered (TLS alert %s)", who, alertName(n)), "connect to the port that serves this protocol"}
	case alertCloseNotify, alertUserCanceled:
		return Verdict{CodeClosed, fmt.Sprintf("%s closed the connection %s (TLS alert %s) without saying why", who, when, alertName(n)), fixClosed}
	}
	return Verdict{CodeUnclassified, fmt.Sprintf("%s ended the connection %s with TLS alert %s", who, when, alertName(n)), fixClosed}
}

func requiredVerdict(who, how string) Verdict {
	return Verdict{CodeClientCertRequired, fmt.Sprintf("%s requires a client certificate and none was sent: it %s", who, how), fixClientRequired}
}

// plaintextVerdict classifies a non-TLS answer from its first bytes.
func plaintextVerdict(b []byte, addr string) Verdict {
	who := "the server"
	if addr != "" {
		who = addr
	}
	line := b
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i+1]
	}
	switch {
	case bytes.HasPrefix(b, []byte("WARD/")):
		return Verdict{CodeTLSToPlaintext,
			fmt.Sprintf("%s is a Ward plaintext listener: it answered the TLS hello with %s", who, printable(line, 80)),
			"this port expects plaintext (the legacy listener, loopback-only unless --insecure-plaintext); use the TLS cluster port (7443) instead"}
	case bytes.HasPrefix(b, []byte("HTTP/")):
		return Verdict{CodeNotTLS,
			fmt.Sprintf("%s answered in plaintext HTTP (%s): it is an HTTP server, not a TLS one", who, printable(line, 80)),
			"use the TLS port (Ward: cluster 7443, public 8443), or http:// if plaintext HTTP is what you meant"}
	case bytes.HasPrefix(b, []byte("SSH-")):
		return Verdict{CodeNotTLS, fmt.Sprintf("%s is an SSH server (%s), not a TLS one", who, printable(line, 80)), "use the TLS port (Ward: cluster 7443, public 8443)"}
	}
	return Verdict{CodeNotTLS, fmt.Sprintf("%s answered with bytes that are not TLS: %s", who, printable(b, 64)), "use the TLS port (Ward: cluster 7443, public 8443); this one speaks another protocol"}
}

// printable quotes b for a message, with invisible bytes escaped, cut at
// max bytes.
func printable(b []byte, max int) string {
	cut := ""
	if len(b) > max {
		b, cut = b[:max], fmt.Sprintf("… (%d bytes shown)", max)
	}
	return strconv.QuoteToASCII(string(b)) + cut
}

// dialVerdict classifies a failed TCP connect.
func dialVerdict(err error, addr string, timeout time.Duration) Verdict {
	if v, ok := netVerdict(err, addr); ok {
		return v
	}
	if isTimeout(err) {
		return Verdict{CodeTimeout, fmt.Sprintf("no TCP answer from %s within %s", addr, timeout), fixTimeout}
	}
	return Verdict{CodeUnclassified, fmt.Sprintf("connecting to %s failed: %v", addr, err), fixRefused}
}

// netVerdict recognizes DNS, refused and unreachable failures.
func netVerdict(err error, addr string) (Verdict, bool) {
	if addr == "" {
		addr = addrOf(err)
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		why := dnsErr.Err
		switch {
		case dnsErr.IsNotFound:
			why = "no such host"
		case dnsErr.IsTimeout:
			why = "the DNS lookup timed out"
		}
		return Verdict{CodeDNS, fmt.Sprintf("the host name %q does not resolve (%s)", dnsErr.Name, why), fixDNS}, true
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return Verdict{CodeRefused, fmt.Sprintf("nothing accepts connections at %s (connection refused)", addr), fixRefused}, true
	}
	if errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return Verdict{CodeUnreachable, fmt.Sprintf("there is no route to %s (%v)", addr, err), "check the address, this machine's network and routes, and any firewall between"}, true
	}
	return Verdict{}, false
}

func addrOf(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Addr != nil {
		return op.Addr.String()
	}
	return ""
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE)
}

// Explain classifies an error from a client-side dial, TLS handshake or
// first read, such as an agent's join or connect failure. It knows less
// than Check (not whether a client certificate was asked for or sent), so
// Check's verdicts are sharper; the codes are the same.
func Explain(err error) Verdict {
	if err == nil {
		return Verdict{CodeOK, "connected", ""}
	}
	var ae *api.Error
	if errors.As(err, &ae) {
		switch ae.Code {
		case api.CodePinMismatch:
			return Verdict{CodePinMismatch, ae.Message, ae.Fix}
		case api.CodeCertRevoked:
			return Verdict{CodeRevoked, ae.Message, ae.Fix}
		case api.CodeCertExpired:
			return Verdict{CodeExpired, ae.Message, ae.Fix}
		}
	}
	addr := addrOf(err)
	if v, ok := netVerdict(err, addr); ok {
		return v
	}
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) {
		if rhe.Conn == nil && rhe.Msg != "first record does not look like a TLS handshake" {
			return Verdict{CodeUnclassified, fmt.Sprintf("the server sent a malformed TLS record: %s", rhe.Msg), fixClosed}
		}
		return plaintextVerdict(rhe.RecordHeader[:], addr)
	}
	if v, ok := x509Verdict(err, time.Now()); ok {
		return v
	}
	if n, ok := alertOf(err); ok {
		return alertVerdict(n, peerKnowledge{}, false, addr)
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "server selected unsupported protocol version"):
		return Verdict{CodeProtocolVersion, fmt.Sprintf("the server chose a TLS version this client does not allow (%s)", msg), fmt.Sprintf(fixProtocolOld, "TLS 1.2")}
	case strings.Contains(msg, "no supported versions satisfy MinVersion and MaxVersion"):
		return Verdict{CodeInvalidOptions, "the client's TLS version settings exclude every version", "use --min-tls 1.3 (default) or 1.2"}
	case strings.Contains(msg, "pin mismatch"):
		return Verdict{CodePinMismatch, msg, "compare the pin with `ward ca pin` run on the coordinator; if the cluster CA was rotated, get the new pin or join string"}
	case strings.Contains(msg, "certificate is revoked"):
		return Verdict{CodeRevoked, msg, "the server must get a new certificate from the cluster CA"}
	}
	if isTimeout(err) {
		where := "the server"
		if addr != "" {
			where = addr
		}
		return Verdict{CodeTimeout, fmt.Sprintf("no answer from %s in time (%v)", where, err), fixTimeout}
	}
	if isClosed(err) {
		return Verdict{CodeClosed, fmt.Sprintf("the server closed the connection without a TLS alert (%v)", err), fixClosed}
	}
	return Verdict{CodeUnclassified, msg, "run `ward check ADDRESS` with the same flags for a full diagnosis"}
}

// x509Verdict classifies chain-verification errors from crypto/x509, as a
// standard (not Check's manual) TLS client reports them.
func x509Verdict(err error, now time.Time) (Verdict, bool) {
	var uae x509.UnknownAuthorityError
	if errors.As(err, &uae) {
		msg := "the server's certificate is signed by an authority this client does not trust"
		pin := "sha256:..."
		if uae.Cert != nil {
			pin = pki.SPKIPin(uae.Cert).String()
			msg = fmt.Sprintf("the server's certificate %q was issued by %q, which this client does not trust (SHA-256 %s)", uae.Cert.Subject, uae.Cert.Issuer, pki.Fingerprint(uae.Cert))
		}
		return Verdict{CodeUnknownAuthority, msg, fmt.Sprintf(fixUnknownAuthority, pin)}, true
	}
	var sre x509.SystemRootsError
	if errors.As(err, &sre) {
		return Verdict{CodeUnknownAuthority, "this machine has no system roots to verify the server with: " + sre.Error(), fmt.Sprintf(fixUnknownAuthority, "sha256:...")}, true
	}
	var he x509.HostnameError
	if errors.As(err, &he) && he.Certificate != nil {
		return nameVerdict(he.Certificate, he.Host, target{addr: "the server"}), true
	}
	var cie x509.CertificateInvalidError
	if errors.As(err, &cie) && cie.Cert != nil {
		if cie.Reason == x509.Expired {
			if v := validityVerdict([]*x509.Certificate{cie.Cert}, now, target{}); v != nil {
				return *v, true
			}
			return Verdict{CodeExpired, fmt.Sprintf("a certificate in the server's chain (%q) is outside its validity (%s to %s) by the verifier's clock", cie.Cert.Subject, stamp(cie.Cert.NotBefore), stamp(cie.Cert.NotAfter)), "renew it, and check the clocks of both sides"}, true
		}
		return Verdict{CodeCertificateInvalid, fmt.Sprintf("the server's chain is invalid: %v", cie), "reissue the server's certificate from the cluster CA"}, true
	}
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return Verdict{CodeCertificateInvalid, cve.Error(), "reissue the server's certificate from the cluster CA"}, true
	}
	return Verdict{}, false
}

// ServerSide classifies the error a server's TLS handshake returned, for the
// coordinator's per-connection rejection log line: what the client did
// wrong, and what the client should do.
func ServerSide(err error) Verdict {
	if err == nil {
		return Verdict{CodeOK, "handshake completed", ""}
	}
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) {
		if rhe.Msg == "unsupported SSLv2 handshake received" {
			return Verdict{CodeProtocolVersion, "the client sent an SSL 2.0 hello", "upgrade the client to TLS 1.3 (or at least 1.2)"}
		}
		h := rhe.RecordHeader[:]
		if isHTTPMethod(h) {
			return Verdict{CodeNotTLS, fmt.Sprintf("the client spoke plaintext HTTP to this TLS port (it sent %s)", printable(h, 5)), "the client must use https:// (TLS); plaintext clients belong on the plaintext listener, which is off by default"}
		}
		return Verdict{CodeNotTLS, fmt.Sprintf("the client's first bytes are not a TLS hello (%s): %s", printable(h, 5), rhe.Msg), "the client must speak TLS on this port; plaintext clients belong on the plaintext listener, which is off by default"}
	}
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return clientChainVerdict(cve)
	}
	if n, ok := alertOf(err); ok {
		return clientSentAlertVerdict(n)
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "client didn't provide a certificate"), strings.Contains(msg, "presented no certificate"):
		return Verdict{CodeClientCertRequired, "the client sent no certificate; this port requires one", "the client must present its Ward certificate: an agent gets one when it joins (`ward agent --join-file FILE`); the CLI passes its context's certificate (or --cert/--key)"}
	case strings.Contains(msg, "client offered only unsupported versions"):
		return Verdict{CodeProtocolVersion, fmt.Sprintf("the client offered only %s, which this port does not allow", offeredVersions(msg)), "upgrade the client; if it can do TLS 1.2 and must stay, allow TLS 1.2 on this listener (--min-tls 1.2)"}
	case strings.Contains(msg, "no cipher suite supported by both"), strings.Contains(msg, "no ECDHE curve supported by both"),
		strings.Contains(msg, "no mutually supported"), strings.Contains(msg, "no common signature algorithm"):
		return Verdict{CodeCipherMismatch, "the client offered no cipher suite, key exchange group or signature algorithm this port accepts: " + msg, "upgrade the client; Ward accepts TLS 1.3, or TLS 1.2 with ECDHE and AES-GCM or ChaCha20"}
	case strings.Contains(msg, "revoked"):
		return Verdict{CodeClientCertRejected, "the client's certificate is revoked: " + msg, "the client must get a new certificate (an agent rejoins with a new token)"}
	case strings.Contains(msg, "failed to parse client certificate"):
		return Verdict{CodeClientCertRejected, "the client's certificate does not parse: " + msg, "reissue the client's certificate"}
	}
	if isTimeout(err) {
		return Verdict{CodeTimeout, "the client did not finish the TLS handshake in time", "a slow or stalled client, a port scan, or a client that does not speak TLS"}
	}
	if isClosed(err) {
		return Verdict{CodeClosed, "the client closed the connection during the handshake without a TLS alert (a port scan, a health check, or a client that gave up)", "nothing, unless a real client reports failures: then run `ward check` on its side"}
	}
	if strings.Contains(msg, "identity") || strings.Contains(msg, "spiffe") {
		return Verdict{CodeClientCertRejected, "the client's certificate is not acceptable here: " + msg, "use a certificate with this cluster's identity for a role allowed on this port"}
	}
	return Verdict{CodeUnclassified, msg, "compare with `ward check` run from the client's machine"}
}

// clientChainVerdict explains why a client's certificate chain failed the
// server's verification.
func clientChainVerdict(cve *tls.CertificateVerificationError) Verdict {
	who := "the client's certificate"
	if len(cve.UnverifiedCertificates) > 0 {
		leaf := cve.UnverifiedCertificates[0]
		who = fmt.Sprintf("the client's certificate %q (serial %s)", leaf.Subject, pki.SerialHex(leaf))
	}
	var uae x509.UnknownAuthorityError
	var cie x509.CertificateInvalidError
	switch {
	case errors.As(cve.Err, &uae):
		issuer := ""
		if uae.Cert != nil {
			issuer = fmt.Sprintf(" (issuer %q)", uae.Cert.Issuer)
		}
		return Verdict{CodeClientCertRejected, fmt.Sprintf("%s is not signed by a CA this port trusts%s", who, issuer), "the client must use a certificate issued by this cluster's CA; a node of another cluster must join this one"}
	case errors.As(cve.Err, &cie):
		switch cie.Reason {
		case x509.Expired:
			now := time.Now()
			when := fmt.Sprintf("valid %s to %s; this server's clock says %s", stamp(cie.Cert.NotBefore), stamp(cie.Cert.NotAfter), stamp(now))
			if now.Before(cie.Cert.NotBefore) {
				return Verdict{CodeClientCertRejected, fmt.Sprintf("%s is not yet valid (%s)", who, when), "compare the clocks of client and server (both should use NTP)"}
			}
			return Verdict{CodeClientCertRejected, fmt.Sprintf("%s has expired (%s)", who, when), "the client must renew: an agent renews by itself while connected, and heals within its grace window or rejoins; a CLI user needs a renewed context: the coordinator renews its admin context at start"}
		case x509.IncompatibleUsage:
			return Verdict{CodeClientCertRejected, fmt.Sprintf("%s is not for client authentication (it lacks the clientAuth extended key usage)", who), "use a client certificate issued by Ward"}
		}
	}
	return Verdict{CodeClientCertRejected, fmt.Sprintf("%s failed verification: %v", who, cve.Err), "the client must use a certificate issued by this cluster's CA"}
}

// clientSentAlertVerdict explains an alert a client sent to this server:
// usually the client refusing the server's own certificate.
func clientSentAlertVerdict(n uint8) Verdict {
	switch n {
	case alertUnknownCA, alertBadCertificate, alertCertificateUnknown, alertUnsupportedCertificate:
		return Verdict{CodeUnknownAuthority, fmt.Sprintf("the client refused this server's certificate (TLS alert %s): it does not trust the CA, or the name or pin does not match", alertName(n)), "give the client the cluster CA (`ward ca export`) or the CA pin, and the address the certificate names; `ward check` on the client says which"}
	case alertCertificateExpired:
		return Verdict{CodeExpired, fmt.Sprintf("the client says this server's certificate has expired (TLS alert %s)", alertName(n)), "check this server's certificate expiry and the client's clock"}
	case alertCertificateRevoked:
		return Verdict{CodeRevoked, fmt.Sprintf("the client says this server's certificate is revoked (TLS alert %s)", alertName(n)), "issue this server a new certificate"}
	case alertProtocolVersion:
		return Verdict{CodeProtocolVersion, fmt.Sprintf("the client refused this server's TLS version (TLS alert %s)", alertName(n)), "check the TLS versions of both sides"}
	case alertHandshakeFailure, alertInsufficientSecurity:
		return Verdict{CodeCipherMismatch, fmt.Sprintf("the client ended the handshake with TLS alert %s: no common parameters", alertName(n)), "compare the TLS settings of both sides"}
	case alertCloseNotify, alertUserCanceled:
		return Verdict{CodeClosed, fmt.Sprintf("the client gave up during the handshake (TLS alert %s)", alertName(n)), "nothing, unless a real client reports failures"}
	}
	return Verdict{CodeUnclassified, fmt.Sprintf("the client ended the handshake with TLS alert %s", alertName(n)), "run `ward check` on the client's side"}
}

func isHTTPMethod(h []byte) bool {
	for _, m := range []string{"GET /", "POST ", "HEAD ", "PUT /", "DELET", "OPTIO", "PATCH", "PRI *", "CONNE"} {
		if bytes.HasPrefix(h, []byte(m)) {
			return true
		}
	}
	return false
}

// offeredVersions turns "client offered only unsupported versions: [302 301]"
// into "TLS 1.1, TLS 1.0".
func offeredVersions(msg string) string {
	i := strings.LastIndex(msg, "[")
	j := strings.LastIndex(msg, "]")
	if i < 0 || j < i {
		return "older TLS versions"
	}
	var names []string
	for _, f := range strings.Fields(msg[i+1 : j]) {
		v, err := strconv.ParseUint(f, 16, 16)
		if err != nil {
			continue
		}
		names = append(names, versionName(uint16(v)))
	}
	if len(names) == 0 {
		return "no TLS version"
	}
	return strings.Join(names, ", ")
}
