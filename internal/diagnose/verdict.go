// Package diagnose turns TLS connection failures into verdicts: a stable
// code, a message in plain words and a concrete fix. It backs `ward check`,
// the agent's join and connect error messages, and the coordinator's
// per-connection rejection log lines. It depends only on the standard
// library, internal/api and internal/pki, so every role may use it.
package diagnose

import (
	"github.com/wardcluster/ward/internal/api"
)

// Code is a stable verdict code. Scripts and log queries switch on codes,
// never on message text; adding a code is fine, renaming one breaks them.
type Code string

// Verdict codes.
const (
	// CodeOK: the connection was made, verified and accepted.
	CodeOK Code = "ok"
	// CodeExpired: a certificate's NotAfter is in the past.
	CodeExpired Code = "expired"
	// CodeNotYetValid: a certificate's NotBefore is in the future.
	CodeNotYetValid Code = "not_yet_valid"
	// CodeNameMismatch: the server's certificate does not name the address used.
	CodeNameMismatch Code = "name_mismatch"
	// CodeUnknownAuthority: the chain does not lead to a trusted root.
	CodeUnknownAuthority Code = "unknown_authority"
	// CodeCertificateInvalid: the chain leads to a trusted root but breaks a
	// rule on the way (key usage, CA constraints, signature).
	CodeCertificateInvalid Code = "certificate_invalid"
	// CodeRevoked: the CRL lists the server's certificate.
	CodeRevoked Code = "revoked"
	// CodeRevocationUnavailable: a CRL was expected but could not be fetched,
	// did not verify, or was stale.
	CodeRevocationUnavailable Code = "revocation_unavailable"
	// CodePinMismatch: no certificate in the chain matches the given pins.
	CodePinMismatch Code = "pin_mismatch"
	// CodeClientCertRequired: the server wants a client certificate and none
	// was sent.
	CodeClientCertRequired Code = "client_cert_required"
	// CodeClientCertRejected: the server refused the client certificate sent.
	CodeClientCertRejected Code = "client_cert_rejected"
	// CodeProtocolVersion: the two sides share no TLS version.
	CodeProtocolVersion Code = "protocol_version"
	// CodeCipherMismatch: the two sides share no cipher suite or key
	// exchange group.
	CodeCipherMismatch Code = "cipher_mismatch"
	// CodeNotTLS: the peer answered with something that is not TLS.
	CodeNotTLS Code = "not_tls"
	// CodeTLSToPlaintext: the peer is a Ward plaintext listener; it answered
	// a TLS hello with PlaintextRefusal.
	CodeTLSToPlaintext Code = "tls_to_plaintext_expected"
	// CodeClosed: the peer closed the connection without a TLS alert.
	CodeClosed Code = "closed"
	// CodeRefused: nothing accepts connections at the address.
	CodeRefused Code = "refused"
	// CodeUnreachable: no route to the address.
	CodeUnreachable Code = "unreachable"
	// CodeTimeout: no answer in time (connect, handshake or first read).
	CodeTimeout Code = "timeout"
	// CodeDNS: the host name does not resolve.
	CodeDNS Code = "dns"
	// CodeInvalidOptions: the check was asked for something impossible, such
	// as an address without a port.
	CodeInvalidOptions Code = "invalid_options"
	// CodeUnclassified: a failure none of the codes above describes; the
	// message carries the raw error.
	CodeUnclassified Code = "unclassified"
)

// PlaintextRefusal is what a Ward plaintext listener answers when a TLS
// ClientHello arrives, so that a TLS client can say "this port expects
// plaintext" instead of "not TLS". It is one line, sent once, then the
// listener closes the connection.
const PlaintextRefusal = "WARD/1 PLAINTEXT-ONLY this port expects plaintext, not TLS\n"

// plaintextRefusalPrefix identifies PlaintextRefusal, even if a future
// version changes the words after it.
const plaintextRefusalPrefix = "WARD/1 PLAINTEXT-ONLY"

// Verdict is the outcome of a connection attempt: a stable code, what
// happened in plain words, and what to do about it.
type Verdict struct {
	Code    Code   `json:"verdict"`
	Message string `json:"message"`
	Fix     string `json:"fix"`
}

// OK reports whether the verdict is a success.
func (v Verdict) OK() bool { return v.Code == CodeOK }

// APIError converts a failed verdict to the wire error shape, keeping the
// message and fix, with cause kept for logs. It returns nil for CodeOK.
func (v Verdict) APIError(cause error) *api.Error {
	if v.OK() {
		return nil
	}
	code := api.CodeFailedPrecondition
	switch v.Code {
	case CodePinMismatch:
		code = api.CodePinMismatch
	case CodeRevoked:
		code = api.CodeCertRevoked
	case CodeExpired:
		code = api.CodeCertExpired
	case CodeClientCertRequired, CodeClientCertRejected:
		code = api.CodeUnauthenticated
	case CodeRefused, CodeUnreachable, CodeTimeout, CodeDNS, CodeClosed, CodeRevocationUnavailable:
		code = api.CodeUnavailable
	case CodeInvalidOptions:
		code = api.CodeInvalidArgument
	case CodeUnclassified:
		code = api.CodeInternal
	}
	return &api.Error{Code: code, Message: string(v.Code) + ": " + v.Message, Fix: v.Fix, Cause: cause}
}

// Fixes shared by several classifiers.
const (
	fixUnknownAuthority = "get the cluster CA with `ward ca export` and pass --ca, or pin it with --pin %s; `ward check --trust` adds it after you confirm the fingerprint"
	fixClientRequired   = "pass --cert and --key (the CLI context holds them: `ward check --use-context`); an agent gets its certificate when it joins (`ward agent --join-file FILE`)"
	fixProtocolOld      = "the server allows only %s or older; upgrade it or, for a legacy peer only, pass --min-tls 1.2"
	fixRefused          = "check the port (Ward's cluster port is 7443, the public port 8443) and that the service runs there (the coordinator logs one line per listener at start); a firewall that rejects also looks like this"
	fixTimeout          = "check the host and port and any firewall between (one that drops packets looks like this); raise --timeout for a slow link"
	fixDNS              = "check the spelling of the host name and this machine's DNS (`getent hosts NAME`), or use the IP address"
	fixClosed           = "the server's log has the reason; check that this is the right port and that this client is allowed to connect"
)
