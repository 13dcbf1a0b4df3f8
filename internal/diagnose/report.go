package diagnose

import (
	"crypto/x509"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/pki"
)

// CertInfo is what a user needs to recognize a certificate: who it names,
// who issued it, when it is valid, and the fingerprint and pin to compare.
type CertInfo struct {
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	SANs      []string  `json:"sans,omitempty"` // "DNS:x", "IP:x", "URI:x", "email:x"
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	SerialHex string    `json:"serial_hex"`
	SHA256    string    `json:"sha256"`   // certificate fingerprint, lower hex
	SPKIPin   string    `json:"spki_pin"` // sha256:<hex> of the public key
	IsCA      bool      `json:"is_ca"`
}

// NewCertInfo describes cert.
func NewCertInfo(cert *x509.Certificate) CertInfo {
	return CertInfo{
		Subject:   cert.Subject.String(),
		Issuer:    cert.Issuer.String(),
		SANs:      sanStrings(cert),
		NotBefore: cert.NotBefore.UTC(),
		NotAfter:  cert.NotAfter.UTC(),
		SerialHex: pki.SerialHex(cert),
		SHA256:    pki.Fingerprint(cert),
		SPKIPin:   pki.SPKIPin(cert).String(),
		IsCA:      cert.IsCA,
	}
}

func sanStrings(c *x509.Certificate) []string {
	var out []string
	for _, d := range c.DNSNames {
		out = append(out, "DNS:"+d)
	}
	for _, ip := range c.IPAddresses {
		out = append(out, "IP:"+ip.String())
	}
	for _, u := range c.URIs {
		out = append(out, "URI:"+u.String())
	}
	for _, e := range c.EmailAddresses {
		out = append(out, "email:"+e)
	}
	return out
}

// Report is the outcome of Check: the verdict, and the TLS facts seen on
// the way, so that a failure can be understood without a second tool.
type Report struct {
	Verdict
	Address         string     `json:"address"`
	ServerName      string     `json:"server_name,omitempty"`
	TLSVersion      string     `json:"tls_version,omitempty"`
	Cipher          string     `json:"cipher,omitempty"`
	KeyExchange     string     `json:"key_exchange,omitempty"` // e.g. X25519MLKEM768
	Chain           []CertInfo `json:"chain"`                  // as presented, leaf first
	ClientCertAsked bool       `json:"client_cert_asked"`
	ClientCertSent  bool       `json:"client_cert_sent"`
	// ClientCert is the client certificate's fate in one word: sent,
	// asked_none_sent, not_asked, or not_reached when the check stopped the
	// handshake (the server failed verification) before the server's
	// request, if any, was acted on. Empty when there was no handshake.
	ClientCert        string   `json:"client_cert,omitempty"`
	RevocationChecked bool     `json:"revocation_checked"`
	Insecure          bool     `json:"insecure"` // chain and name were not verified
	Details           []string `json:"details,omitempty"`
	// Presented is the chain as parsed certificates, in the order of Chain,
	// for callers that act on it (`ward check --trust`); JSON shows Chain.
	Presented []*x509.Certificate `json:"-"`
}

// Values of Report.ClientCert.
const (
	ClientCertSent       = "sent"
	ClientCertNoneSent   = "asked_none_sent"
	ClientCertNotAsked   = "not_asked"
	ClientCertNotReached = "not_reached"
)

// setClientCert fills ClientCert from the booleans; stopped says the
// check aborted the handshake at server verification.
func (r *Report) setClientCert(stopped bool) {
	switch {
	case r.TLSVersion == "":
		r.ClientCert = ""
	case r.ClientCertSent:
		r.ClientCert = ClientCertSent
	case r.ClientCertAsked:
		r.ClientCert = ClientCertNoneSent
	case stopped:
		r.ClientCert = ClientCertNotReached
	default:
		r.ClientCert = ClientCertNotAsked
	}
}

func (r *Report) addDetail(format string, args ...any) {
	r.Details = append(r.Details, fmt.Sprintf(format, args...))
}

// WriteText prints the report for people: the TLS facts, each certificate
// of the chain, the details, then the verdict, its message and the fix.
func (r *Report) WriteText(w io.Writer) {
	var b strings.Builder
	row := func(k, v string) { fmt.Fprintf(&b, "%-14s %s\n", k+":", v) }
	row("address", r.Address)
	if r.ServerName != "" {
		row("server name", r.ServerName)
	}
	if r.TLSVersion != "" {
		row("tls version", r.TLSVersion)
	}
	if r.Cipher != "" {
		row("cipher", r.Cipher)
	}
	if r.KeyExchange != "" {
		row("key exchange", r.KeyExchange)
	}
	if r.TLSVersion != "" {
		switch r.ClientCert {
		case ClientCertSent:
			row("client cert", "sent")
		case ClientCertNoneSent:
			row("client cert", "asked for, none sent")
		case ClientCertNotReached:
			row("client cert", "not reached (the check stopped at the server's certificate)")
		default:
			row("client cert", "not asked for")
		}
		if r.RevocationChecked {
			row("revocation", "checked")
		} else {
			row("revocation", "not checked")
		}
	}
	if r.Insecure {
		row("insecure", "yes: chain and name NOT verified (pins still apply)")
	}
	if len(r.Chain) > 0 {
		b.WriteString("chain:\n")
		for i, c := range r.Chain {
			ca := ""
			if c.IsCA {
				ca = " (CA)"
			}
			fmt.Fprintf(&b, "  [%d] subject:  %s%s\n", i, c.Subject, ca)
			fmt.Fprintf(&b, "      issuer:   %s\n", c.Issuer)
			if len(c.SANs) > 0 {
				fmt.Fprintf(&b, "      names:    %s\n", strings.Join(c.SANs, ", "))
			}
			fmt.Fprintf(&b, "      valid:    %s to %s\n", c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339))
			fmt.Fprintf(&b, "      serial:   %s\n", c.SerialHex)
			fmt.Fprintf(&b, "      sha256:   %s\n", c.SHA256)
			fmt.Fprintf(&b, "      spki pin: %s\n", c.SPKIPin)
		}
	}
	if len(r.Details) > 0 {
		b.WriteString("details:\n")
		for _, d := range r.Details {
			fmt.Fprintf(&b, "  - %s\n", d)
		}
	}
	fmt.Fprintf(&b, "verdict: %s\n", r.Code)
	if r.Message != "" {
		b.WriteString(r.Message)
		b.WriteString("\n")
	}
	if r.Fix != "" {
		fmt.Fprintf(&b, "fix: %s\n", r.Fix)
	}
	_, _ = io.WriteString(w, b.String())
}
