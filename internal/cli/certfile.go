package cli

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/diagnose"
	"github.com/wardcluster/ward/internal/pki"
)

// newCertCmd is the `ward cert` group: commands about certificate files and
// the certificates the cluster issued. Other files add subcommands to it.
func newCertCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "cert", Short: "List, revoke, inspect and verify certificates"}
	cmd.AddCommand(newCertInspectCmd(g), newCertVerifyCmd(g), newCertLsCmd(g), newCertRevokeCmd(g))
	return cmd
}

func newCertInspectCmd(g *globals) *cobra.Command {
	var password, passwordFile string
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Show what a PEM, DER or PKCS#12 certificate file holds",
		Long: `Shows, for each certificate in FILE: subject, issuer, serial, validity
(and whether it is expired or not yet valid now), SANs with the Ward
identity and its role, key type and size, CA flag, key usages, SHA-256
fingerprint and SPKI pin; then whether the file holds a private key and
whether it matches. The format is detected from the content.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := readPassword(password, passwordFile)
			if err != nil {
				return err
			}
			out, err := inspectFile(args[0], pw, time.Now())
			if err != nil {
				return err
			}
			if g.json() {
				return printJSON(g.stdout, out)
			}
			out.writeText(g.stdout)
			return nil
		},
	}
	bindPassword(cmd.Flags(), g.stderr, &password, &passwordFile, "a PKCS#12 file")
	return cmd
}

// inspectedFile is `ward cert inspect` output.
type inspectedFile struct {
	File         string          `json:"file"`
	Format       string          `json:"format"`
	Certificates []inspectedCert `json:"certificates"`
	PrivateKey   inspectedKey    `json:"private_key"`
}

// inspectedCert is one certificate, described beyond diagnose.CertInfo.
type inspectedCert struct {
	diagnose.CertInfo
	Status      string       `json:"status"` // valid, expired, not_yet_valid
	SelfSigned  bool         `json:"self_signed"`
	Identity    *inspectedID `json:"identity,omitempty"`
	IdentityErr string       `json:"identity_error,omitempty"`
	KeyType     string       `json:"key_type"`
	KeyBits     int          `json:"key_bits"`
	KeyUsage    []string     `json:"key_usage"`
	ExtKeyUsage []string     `json:"ext_key_usage"`
	CRLPoints   []string     `json:"crl_distribution_points,omitempty"`

	now  time.Time
	cert *x509.Certificate
}

// inspectedID is the Ward identity in a certificate's URI SANs.
type inspectedID struct {
	URI     string `json:"uri"`
	Cluster string `json:"cluster"`
	Role    string `json:"role"`
	Name    string `json:"name"`
}

// inspectedKey says whether the file holds a private key and whose it is.
type inspectedKey struct {
	Present     bool   `json:"present"`
	Type        string `json:"type,omitempty"`
	Matches     bool   `json:"matches"`
	Certificate int    `json:"certificate"` // index of the matching certificate, -1 if none
	Detail      string `json:"detail,omitempty"`
}

func inspectFile(path, password string, now time.Time) (*inspectedFile, error) {
	cf, err := pki.ReadCertFile(path, password)
	key := inspectedKey{Certificate: -1}
	switch {
	case err == nil:
		if cf.Key != nil {
			desc, _ := pki.KeyStrength(cf.Key.Public())
			key = inspectedKey{Present: true, Type: desc, Matches: true, Certificate: 0}
		}
	case errors.Is(err, pki.ErrKeyMismatch):
		// Show the certificates anyway: a key that belongs to none of them
		// is exactly what inspect is for.
		data, rerr := os.ReadFile(path)
		certs, perr := pki.ParseCertsPEM(data)
		if rerr != nil || perr != nil {
			return nil, certFileError(err)
		}
		k, _ := pki.ParseKeyPEM(data)
		desc := "unknown"
		if k != nil {
			desc, _ = pki.KeyStrength(k.Public())
		}
		var fe *pki.FormatError
		detail := err.Error()
		if errors.As(err, &fe) {
			detail = fe.Detail
		}
		cf = &pki.CertFile{Format: pki.FormatPEM, Certs: certs}
		key = inspectedKey{Present: true, Type: desc, Certificate: -1, Detail: detail}
	default:
		return nil, certFileError(err)
	}
	out := &inspectedFile{File: path, Format: cf.Format, Certificates: []inspectedCert{}, PrivateKey: key}
	for _, c := range cf.Certs {
		out.Certificates = append(out.Certificates, describeCert(c, now))
	}
	return out, nil
}

func describeCert(c *x509.Certificate, now time.Time) inspectedCert {
	ic := inspectedCert{CertInfo: diagnose.NewCertInfo(c), Status: "valid", now: now, cert: c,
		KeyUsage: pki.KeyUsageNames(c.KeyUsage), ExtKeyUsage: extKeyUsageNames(c), CRLPoints: c.CRLDistributionPoints}
	switch {
	case now.After(c.NotAfter):
		ic.Status = "expired"
	case now.Before(c.NotBefore):
		ic.Status = "not_yet_valid"
	}
	ic.SelfSigned = bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
	ic.KeyType, ic.KeyBits = keyTypeBits(c.PublicKey)
	for _, u := range c.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		id, err := pki.IDFromCert(c)
		if err != nil {
			ic.IdentityErr = err.Error()
		} else {
			ic.Identity = &inspectedID{URI: id.String(), Cluster: id.Cluster, Role: string(id.Role), Name: id.Name}
		}
		break
	}
	return ic
}

func (f *inspectedFile) writeText(w io.Writer) {
	var b strings.Builder
	fmt.Fprintf(&b, "file:   %s\nformat: %s, %d certificate(s)\n", f.File, f.Format, len(f.Certificates))
	for i, c := range f.Certificates {
		kind := "certificate"
		switch {
		case c.IsCA && c.SelfSigned:
			kind = "root CA"
		case c.IsCA:
			kind = "intermediate CA"
		case c.SelfSigned:
			kind = "self-signed certificate"
		}
		fmt.Fprintf(&b, "\n[%d] %s\n", i, kind)
		row := func(k, v string) { fmt.Fprintf(&b, "  %-12s %s\n", k+":", v) }
		row("subject", c.Subject)
		row("issuer", c.Issuer)
		row("serial", c.SerialHex)
		row("valid from", c.NotBefore.Format(time.RFC3339))
		row("valid to", c.NotAfter.Format(time.RFC3339))
		row("status", validityStatus(c.cert, c.now))
		if len(c.SANs) > 0 {
			row("names", strings.Join(c.SANs, ", "))
		} else {
			row("names", "none")
		}
		if c.Identity != nil {
			row("identity", fmt.Sprintf("%s (cluster %s, role %s, name %s)", c.Identity.URI, c.Identity.Cluster, c.Identity.Role, c.Identity.Name))
		} else if c.IdentityErr != "" {
			row("identity", "INVALID: "+c.IdentityErr)
		}
		row("key", c.KeyType)
		row("is CA", yesNo(c.IsCA))
		row("key usage", orDash(strings.Join(c.KeyUsage, ", ")))
		row("ext usage", orDash(strings.Join(c.ExtKeyUsage, ", ")))
		if len(c.CRLPoints) > 0 {
			row("crl", strings.Join(c.CRLPoints, ", "))
		}
		row("sha256", c.SHA256)
		row("spki pin", c.SPKIPin)
	}
	b.WriteString("\n")
	switch k := f.PrivateKey; {
	case !k.Present:
		b.WriteString("private key: none in this file\n")
	case k.Matches:
		fmt.Fprintf(&b, "private key: present (%s), matches certificate [%d]\n", k.Type, k.Certificate)
	default:
		fmt.Fprintf(&b, "private key: present (%s), MATCHES NO CERTIFICATE in this file: %s\n", k.Type, k.Detail)
	}
	_, _ = io.WriteString(w, b.String())
}

// validityStatus says where now is relative to a certificate's window.
func validityStatus(c *x509.Certificate, now time.Time) string {
	switch {
	case now.After(c.NotAfter):
		return fmt.Sprintf("EXPIRED %s ago (local clock %s)", humanDur(now.Sub(c.NotAfter)), now.Local().Format(time.RFC3339))
	case now.Before(c.NotBefore):
		return fmt.Sprintf("NOT YET VALID: starts in %s (local clock %s)", humanDur(c.NotBefore.Sub(now)), now.Local().Format(time.RFC3339))
	}
	return fmt.Sprintf("valid, expires in %s", humanDur(c.NotAfter.Sub(now)))
}

func humanDur(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return d.Round(time.Second).String()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func keyTypeBits(pub crypto.PublicKey) (string, int) {
	desc, ok := pki.KeyStrength(pub)
	if !ok {
		desc += " (too weak for Ward)"
	}
	bits := 0
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		bits = k.Curve.Params().BitSize
	case *rsa.PublicKey:
		bits = k.N.BitLen()
	case ed25519.PublicKey:
		bits = 256
	}
	if bits > 0 && !strings.Contains(desc, fmt.Sprint(bits)) {
		desc = fmt.Sprintf("%s, %d bits", desc, bits)
	}
	return desc, bits
}

var extKeyUsageName = map[x509.ExtKeyUsage]string{
	x509.ExtKeyUsageAny: "any", x509.ExtKeyUsageServerAuth: "serverAuth", x509.ExtKeyUsageClientAuth: "clientAuth",
	x509.ExtKeyUsageCodeSigning: "codeSigning", x509.ExtKeyUsageEmailProtection: "emailProtection",
	x509.ExtKeyUsageTimeStamping: "timeStamping", x509.ExtKeyUsageOCSPSigning: "OCSPSigning",
	x509.ExtKeyUsageIPSECEndSystem: "ipsecEndSystem", x509.ExtKeyUsageIPSECTunnel: "ipsecTunnel",
	x509.ExtKeyUsageIPSECUser: "ipsecUser",
}

func extKeyUsageNames(c *x509.Certificate) []string {
	out := []string{}
	for _, u := range c.ExtKeyUsage {
		if n, ok := extKeyUsageName[u]; ok {
			out = append(out, n)
		} else {
			out = append(out, fmt.Sprintf("usage %d", u))
		}
	}
	for _, oid := range c.UnknownExtKeyUsage {
		out = append(out, oid.String())
	}
	return out
}

func newCertVerifyCmd(g *globals) *cobra.Command {
	var f verifyFlags
	cmd := &cobra.Command{
		Use:   "verify FILE",
		Short: "Verify a certificate file: chain, name, validity and revocation, with timings",
		Long: `Verifies the first certificate in FILE (PEM, DER or PKCS#12; the one
matching the private key when the file has one), in order, printing how
long each step took:

  parse       read the file
  chain       to the roots in --ca (else the system roots), with the other
              certificates in FILE as intermediates
  name        the certificate names --name (a DNS name or an IP), if given
  validity    now is inside every certificate's validity window
  revocation  against the CRL from --crl, else the certificate's CRL
              distribution points; the CRL must be signed by the issuer

It ends with one verdict (the codes of ` + "`ward check`" + `) and a fix, and exits 0
only when the verdict is ok.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := verifyFile(cmd.Context(), args[0], f, time.Now)
			if g.json() {
				if err := printJSON(g.stdout, out); err != nil {
					return err
				}
			} else {
				out.writeText(g.stdout)
			}
			if !out.OK() {
				return exitError{1}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.ca, "ca", "", "trusted roots: a PEM, DER or PKCS#12 file (default: the system roots)")
	fl.StringVar(&f.name, "name", "", "a DNS name or IP address the certificate must cover")
	fl.StringVar(&f.crl, "crl", "", "CRL file (DER or PEM) or http(s) URL (default: the certificate's CRL distribution points)")
	bindPassword(fl, g.stderr, &f.password, &f.passwordFile, "a PKCS#12 FILE or --ca file")
	return cmd
}

type verifyFlags struct {
	ca, name, crl, password, passwordFile string
}

// Results of one verification step.
const (
	stepOK         = "ok"
	stepFailed     = "failed"
	stepSkipped    = "skipped"
	stepNotChecked = "not checked"
)

// verifyStep is one step of `ward cert verify`, with how long it took.
type verifyStep struct {
	Step     string        `json:"step"`
	Result   string        `json:"result"`
	Code     diagnose.Code `json:"code,omitempty"`
	Detail   string        `json:"detail,omitempty"`
	Millis   float64       `json:"duration_ms"`
	duration time.Duration
	ran      bool
}

// verifyOutput is `ward cert verify` output: the verdict, each step, the
// certificates of the file, and what else was learned on the way.
type verifyOutput struct {
	diagnose.Verdict
	File    string              `json:"file"`
	Clock   time.Time           `json:"clock"`
	Steps   []verifyStep        `json:"steps"`
	Chain   []diagnose.CertInfo `json:"chain"`
	Details []string            `json:"details,omitempty"`
}

// timed runs fn as the named step and records its duration.
func (o *verifyOutput) timed(name string, fn func() (result string, v *diagnose.Verdict, detail string)) *diagnose.Verdict {
	start := time.Now()
	result, v, detail := fn()
	d := time.Since(start)
	st := verifyStep{Step: name, Result: result, Detail: detail, duration: d, Millis: float64(d.Nanoseconds()) / 1e6, ran: true}
	if v != nil {
		st.Result, st.Code = stepFailed, v.Code
	}
	o.Steps = append(o.Steps, st)
	return v
}

func (o *verifyOutput) skip(name, why string) {
	o.Steps = append(o.Steps, verifyStep{Step: name, Result: stepSkipped, Detail: why})
}

func verifyFile(ctx context.Context, path string, f verifyFlags, clock func() time.Time) *verifyOutput {
	now := clock()
	out := &verifyOutput{File: path, Clock: now, Steps: []verifyStep{}, Chain: []diagnose.CertInfo{}}
	opts := diagnose.ChainOptions{Now: func() time.Time { return now }, Source: path}
	pw, err := readPassword(f.password, f.passwordFile)
	if err != nil {
		ae := api.AsError(err)
		out.Verdict = diagnose.Verdict{Code: diagnose.CodeInvalidOptions, Message: ae.Message, Fix: ae.Fix}
		return out
	}
	f.password = pw
	if f.ca != "" {
		cf, bad := readCertFlag("--ca", f.ca, f.password)
		if bad != nil {
			out.Verdict = *bad
			return out
		}
		opts.Roots = x509.NewCertPool()
		for _, c := range cf.Certs {
			opts.Roots.AddCert(c)
		}
	}
	var crlSrc *diagnose.CRLSource
	if f.crl != "" {
		crlSrc = diagnose.ParseCRLSource(f.crl)
	}

	var cf *pki.CertFile
	if bad := out.timed("parse", func() (string, *diagnose.Verdict, string) {
		var bad *diagnose.Verdict
		cf, bad = readCertFlag("", path, f.password)
		if bad != nil {
			return "", bad, ""
		}
		key := "no private key"
		if cf.Key != nil {
			key = "private key present, matches"
		}
		return stepOK, nil, fmt.Sprintf("%s, %d certificate(s), %s", cf.Format, len(cf.Certs), key)
	}); bad != nil {
		for _, s := range []string{"chain", "name", "validity", "revocation"} {
			out.skip(s, "the file did not parse")
		}
		out.Verdict = *bad
		return out
	}
	for _, c := range cf.Certs {
		out.Chain = append(out.Chain, diagnose.NewCertInfo(c))
	}
	leaf := cf.Certs[0]

	var verified [][]*x509.Certificate
	chainV := out.timed("chain", func() (string, *diagnose.Verdict, string) {
		var v *diagnose.Verdict
		verified, v = diagnose.VerifyChain(cf.Certs, opts)
		if v != nil {
			return "", v, "see the verdict"
		}
		if len(verified) == 0 {
			return stepNotChecked, nil, "no single time exists at which every certificate in the file is valid, so the chain cannot be judged (see validity)"
		}
		roots := "the system roots"
		if opts.Roots != nil {
			roots = "--ca " + f.ca
		}
		return stepOK, nil, fmt.Sprintf("%s (trusted via %s)", chainPath(verified), roots)
	})

	var nameV *diagnose.Verdict
	if f.name == "" {
		out.skip("name", "no --name given")
	} else {
		nameV = out.timed("name", func() (string, *diagnose.Verdict, string) {
			if v := diagnose.CheckName(leaf, f.name, opts); v != nil {
				return "", v, fmt.Sprintf("the certificate does not name %q", f.name)
			}
			return stepOK, nil, fmt.Sprintf("the certificate names %q", f.name)
		})
	}

	validityV := out.timed("validity", func() (string, *diagnose.Verdict, string) {
		window := fmt.Sprintf("%s to %s", leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
		if v := diagnose.CheckValidity(cf.Certs, opts); v != nil {
			return "", v, fmt.Sprintf("valid %s; local clock %s", window, now.Local().Format(time.RFC3339))
		}
		return stepOK, nil, fmt.Sprintf("valid %s, expires in %s", window, humanDur(leaf.NotAfter.Sub(now)))
	})

	revV := out.timed("revocation", func() (string, *diagnose.Verdict, string) {
		cctx, cancel := context.WithTimeout(ctx, diagnose.DefaultTimeout)
		defer cancel()
		res := diagnose.CheckCRL(cctx, cf.Certs, verified, crlSrc, opts)
		if len(res.Sources) > 0 {
			out.Details = append(out.Details, res.Details...)
		}
		switch {
		case res.Verdict != nil && res.Verdict.Code == diagnose.CodeRevoked:
			return "", res.Verdict, "revoked per " + strings.Join(res.Sources, ", ")
		case res.Verdict != nil:
			return "", res.Verdict, "no usable CRL from " + strings.Join(res.Sources, ", ")
		case len(res.Sources) == 0:
			return stepNotChecked, nil, "no CRL source (no --crl, and the certificate names no http(s) CRL distribution point)"
		}
		return stepOK, nil, "not revoked per " + strings.Join(res.Sources, ", ")
	})

	// The verdict is the most important failure: validity and chain first,
	// as in Check; then revoked, which no name makes usable; then the name;
	// last an unknown revocation status. The others become details.
	revoked, revUnknown := revV, (*diagnose.Verdict)(nil)
	if revV != nil && revV.Code != diagnose.CodeRevoked {
		revoked, revUnknown = nil, revV
	}
	var found []*diagnose.Verdict
	for _, v := range []*diagnose.Verdict{validityV, chainV, revoked, nameV, revUnknown} {
		if v != nil {
			found = append(found, v)
		}
	}
	if len(found) > 0 {
		out.Verdict = *found[0]
		for _, v := range found[1:] {
			out.Details = append(out.Details, fmt.Sprintf("also %s: %s", v.Code, v.Message))
		}
		return out
	}
	msg := fmt.Sprintf("the certificate in %s (%s) verified: %s", path, leaf.Subject, chainPath(verified))
	if f.name != "" {
		msg += fmt.Sprintf(", it names %q", f.name)
	}
	msg += fmt.Sprintf(", it is valid until %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	fix := ""
	if out.Steps[len(out.Steps)-1].Result == stepNotChecked {
		msg += "; revocation was not checked (no CRL source)"
		fix = "to check revocation too, pass --crl with the cluster's CRL (the coordinator serves it on its public port)"
	} else {
		msg += ", and the CRL does not list it"
	}
	out.Verdict = diagnose.Verdict{Code: diagnose.CodeOK, Message: msg, Fix: fix}
	return out
}

// chainPath renders the first verified chain by common name, leaf first.
func chainPath(verified [][]*x509.Certificate) string {
	if len(verified) == 0 {
		return "no chain"
	}
	var names []string
	for _, c := range verified[0] {
		n := c.Subject.CommonName
		if n == "" {
			n = c.Subject.String()
		}
		names = append(names, fmt.Sprintf("%q", n))
	}
	return strings.Join(names, " -> ")
}

func (o *verifyOutput) writeText(w io.Writer) {
	var b strings.Builder
	fmt.Fprintf(&b, "file:  %s\n", o.File)
	if len(o.Chain) > 0 {
		fmt.Fprintf(&b, "leaf:  %s (serial %s)\n", o.Chain[0].Subject, o.Chain[0].SerialHex)
	}
	fmt.Fprintf(&b, "clock: %s\n\n", o.Clock.Local().Format(time.RFC3339))
	if len(o.Steps) > 0 {
		t := newTable(&b, "STEP", "RESULT", "TIME", "DETAIL")
		for _, s := range o.Steps {
			res := s.Result
			if s.Code != "" {
				res = "FAILED " + string(s.Code)
			}
			took := "-"
			if s.ran {
				took = fmt.Sprintf("%.2f ms", s.Millis)
			}
			t.row(s.Step, res, took, orDash(s.Detail))
		}
		t.flush()
	}
	if len(o.Details) > 0 {
		b.WriteString("details:\n")
		for _, d := range o.Details {
			fmt.Fprintf(&b, "  - %s\n", d)
		}
	}
	writeVerdict(&b, o.Verdict)
	_, _ = io.WriteString(w, b.String())
}

// writeVerdict prints a verdict the way diagnose.Report.WriteText ends.
func writeVerdict(w io.Writer, v diagnose.Verdict) {
	fmt.Fprintf(w, "verdict: %s\n", v.Code)
	if v.Message != "" {
		fmt.Fprintln(w, v.Message)
	}
	if v.Fix != "" {
		fmt.Fprintf(w, "fix: %s\n", v.Fix)
	}
}

// readCertFlag reads a certificate file given on the command line, turning
// failures into an invalid_options or certificate_invalid verdict whose
// message names the flag (empty for a positional FILE).
func readCertFlag(flag, path, password string) (*pki.CertFile, *diagnose.Verdict) {
	cf, err := pki.ReadCertFile(path, password)
	if err == nil {
		return cf, nil
	}
	code := diagnose.CodeCertificateInvalid
	var fe *pki.FormatError
	if !errors.As(err, &fe) || errors.Is(err, pki.ErrWrongPassword) {
		code = diagnose.CodeInvalidOptions
	}
	msg := err.Error()
	if flag != "" {
		msg = flag + " " + msg
	}
	return nil, &diagnose.Verdict{Code: code, Message: msg, Fix: certFileFix(err)}
}

// certFileError is a certificate file's read failure as an error with a
// fix, for commands that do not end with a verdict.
func certFileError(err error) error {
	return &api.Error{Code: api.CodeInvalidArgument, Message: err.Error(), Fix: certFileFix(err), Cause: err}
}

// certFileFix says what to do about a certificate file that did not read.
func certFileFix(err error) string {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "check the path"
	case errors.Is(err, os.ErrPermission):
		return "run as a user who may read the file"
	case errors.Is(err, pki.ErrWrongPassword):
		return "pass the file's password with --password-file FILE"
	case errors.Is(err, pki.ErrTruncated):
		return "copy the file again, in binary mode, and check that it is complete"
	case errors.Is(err, pki.ErrKeyMismatch):
		return "pair the certificate with the key it was issued for (`ward cert inspect FILE` shows both pins)"
	case errors.Is(err, pki.ErrUnsupportedKey):
		return "convert the key as the message says, or use a file with an ECDSA, Ed25519 or RSA ≥2048 key"
	case errors.Is(err, pki.ErrNoCertificate):
		return "give the file that holds the certificate (`ward ca export` writes the cluster CA)"
	}
	return "give a PEM, DER or PKCS#12 certificate file (`ward ca export` writes the cluster CA)"
}
