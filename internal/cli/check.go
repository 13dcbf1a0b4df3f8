package cli

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/diagnose"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
)

// checkFlags are `ward check`'s flags: everything the connection uses.
type checkFlags struct {
	ca, cert, key          string
	password, passwordFile string
	pins                   []string
	serverName, minTLS     string
	insecure               bool
	timeout                time.Duration
	crl                    string
	trust, yes, useContext bool
}

func newCheckCmd(g *globals) *cobra.Command {
	var f checkFlags
	cmd := &cobra.Command{
		Use:   "check ADDRESS",
		Short: "Try a TLS connection with exactly the flags given and explain the outcome",
		Long: `Connects to ADDRESS (host:port) using only the flags given, never the saved
CLI context unless --use-context says so, and prints what it saw: TLS
version, cipher, key exchange and the chain with each certificate's names,
validity, SHA-256 fingerprint and SPKI pin. Then one verdict: a stable code,
what happened in plain words and the fix. It exits 0 only when the verdict
is ok.

Trust comes from --ca (roots), or from --pin alone: without --ca, a
presented certificate that a pin names is the trust anchor, as for an
agent's join. With both, the chain must lead to a --ca root and match a pin.
The CRL fetched during the check is fetched with the same trust.

--use-context checks as every other command connects: the context's trust
bundle, pins and client certificate, and its coordinator when no ADDRESS is
given. Flags given next to it override the context.

With --trust, when the verdict is unknown_authority, it shows the presented
root's fingerprint and pin and, once confirmed, adds that root to the trust
bundle of the CLI context (--context, $WARD_CONTEXT, ~/.ward/context), so
the CLI trusts the server. It then prints the two commands that check the
server with the new trust: with --use-context, and with --pin alone.`,
		Example: `  ward check coordinator.example:7443 --ca ca.pem --cert me.crt --key me.key
  ward check coordinator.example:8443 --pin sha256:3f2a...
  ward check --use-context
  ward check coordinator.example:7443 --trust`,
		Args: cobra.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var ct *contextTrust
			if f.useContext {
				var err error
				if ct, err = loadContextTrust(g); err != nil {
					return err
				}
			}
			addr := ""
			switch {
			case len(args) == 1:
				addr = args[0]
			case ct != nil:
				addr = ct.server
			default:
				return api.Errorf(api.CodeInvalidArgument, "give the address to check, e.g. `ward check coordinator.example:7443`, or --use-context to check the CLI context's coordinator",
					"ward check needs an ADDRESS (host:port)")
			}
			return runCheck(cmd, g, addr, f, ct)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.ca, "ca", "", "trusted roots: a PEM, DER or PKCS#12 bundle (default: the system roots)")
	fl.StringArrayVar(&f.pins, "pin", nil, "expected pin, sha256:<SPKI hash>, cert-sha256:<thumbprint> or sha1:<thumbprint>; repeatable, any match passes")
	fl.StringVar(&f.cert, "cert", "", "client certificate: PEM or DER (with --key), or PKCS#12 holding the key too")
	fl.StringVar(&f.key, "key", "", "private key of --cert (PEM or DER)")
	bindPassword(fl, g.stderr, &f.password, &f.passwordFile, "a PKCS#12 file given to --cert or --ca")
	fl.StringVar(&f.serverName, "server-name", "", "the name the server's certificate must cover (default: the host of ADDRESS)")
	fl.StringVar(&f.minTLS, "min-tls", "1.3", "lowest TLS version offered: 1.3 or 1.2")
	fl.BoolVar(&f.insecure, "insecure-skip-verify", false, "do not verify the chain and name (pins still apply); the verdict says so")
	fl.DurationVar(&f.timeout, "timeout", diagnose.DefaultTimeout, "bound on connect, handshake, CRL fetch and first read")
	fl.StringVar(&f.crl, "crl", "", "CRL file (DER or PEM) or http(s) URL (default: the server certificate's CRL distribution points)")
	fl.BoolVar(&f.trust, "trust", false, "on verdict unknown_authority, add the presented root CA to the CLI context's trust bundle")
	fl.BoolVar(&f.yes, "yes", false, "with --trust: do not ask for confirmation")
	fl.BoolVar(&f.useContext, "use-context", false, "take the trust bundle, pins, client certificate and (without ADDRESS) the address from the CLI context, as every other command does; flags given override them")
	return cmd
}

// contextTrust is what --use-context takes from the CLI context.
type contextTrust struct {
	path   string
	server string
	roots  *x509.CertPool
	pins   []pki.Pin
	cert   *tls.Certificate
}

// loadContextTrust reads the CLI context for --use-context.
func loadContextTrust(g *globals) (*contextTrust, error) {
	path, source := config.ResolveContextPath(g.context)
	ctx, err := config.LoadContext(path)
	if err != nil {
		return nil, api.Errorf(api.CodeInvalidArgument, "fix the context, or drop --use-context and give the trust with --ca or --pin",
			"--use-context: cannot use the CLI context %s (from %s): %v", path, source, err)
	}
	cred, bundle, pins, err := ctx.Credential()
	if err != nil {
		return nil, api.Errorf(api.CodeInvalidArgument, "fix the context, or drop --use-context and give the trust with --ca or --pin",
			"--use-context: the CLI context %s: %v", path, err)
	}
	return &contextTrust{path: path, server: ctx.Server, roots: bundle.Pool(), pins: pins, cert: cred.TLS()}, nil
}

// checkOutput is `ward check` output: the report, and what --trust did.
type checkOutput struct {
	*diagnose.Report
	Trust *trustOutcome `json:"trust,omitempty"`
}

func runCheck(cmd *cobra.Command, g *globals, addr string, f checkFlags, ct *contextTrust) error {
	opts, bad := f.options(addr, g.stderr, ct)
	var r *diagnose.Report
	if bad != nil {
		r = &diagnose.Report{Verdict: *bad, Address: addr, Chain: []diagnose.CertInfo{}}
	} else {
		r = diagnose.Check(cmd.Context(), opts)
	}
	out := checkOutput{Report: r}
	// The trust dialogue goes to stdout after the report, or to stderr when
	// stdout carries JSON.
	talk := g.stdout
	if g.json() {
		talk = g.stderr
	} else {
		r.WriteText(g.stdout)
	}
	final := r.Verdict
	if f.trust {
		if !g.json() {
			fmt.Fprintln(talk)
		}
		t := trustPresented(cmd, g, r, f, talk)
		out.Trust = t
		switch {
		case t.Refused != "":
			fmt.Fprintf(talk, "--trust: nothing added: %s\n", t.Refused)
		case t.Recheck != nil:
			final = *t.Recheck
			fmt.Fprintf(talk, "re-check with the trusted CA as the only root: verdict %s\n", final.Code)
			if !final.OK() {
				fmt.Fprintf(talk, "%s\nfix: %s\n", final.Message, final.Fix)
			}
		}
	}
	if g.json() {
		if err := printJSON(g.stdout, out); err != nil {
			return err
		}
	}
	if !final.OK() || (out.Trust != nil && out.Trust.Refused != "") {
		return exitError{1}
	}
	return nil
}

// options turns the flags into diagnose.Options, or an invalid_options
// verdict naming the flag at fault. With ct (--use-context), what the flags
// leave open comes from the CLI context. Warnings go to warn.
func (f checkFlags) options(addr string, warn io.Writer, ct *contextTrust) (diagnose.Options, *diagnose.Verdict) {
	o := diagnose.Options{Address: addr, ServerName: f.serverName, InsecureSkipVerify: f.insecure, Timeout: f.timeout}
	invalid := func(fix, format string, args ...any) (diagnose.Options, *diagnose.Verdict) {
		return o, &diagnose.Verdict{Code: diagnose.CodeInvalidOptions, Message: fmt.Sprintf(format, args...), Fix: fix}
	}
	password, err := readPassword(f.password, f.passwordFile)
	if err != nil {
		return invalid(api.AsError(err).Fix, "%s", api.AsError(err).Message)
	}
	f.password = password
	if ct != nil {
		o.Roots, o.Pins, o.ClientCert = ct.roots, ct.pins, ct.cert
	}
	switch strings.TrimPrefix(strings.ToLower(f.minTLS), "tls") {
	case "1.3", "":
		o.MinTLS = tls.VersionTLS13
	case "1.2":
		o.MinTLS = tls.VersionTLS12
	default:
		return invalid("use --min-tls 1.3 (default) or 1.2", "--min-tls %q is not a TLS version Ward allows", f.minTLS)
	}
	if f.timeout <= 0 {
		return invalid("use a positive duration such as --timeout 5s", "--timeout %s is not positive", f.timeout)
	}
	if f.ca != "" {
		cf, bad := readCertFlag("--ca", f.ca, f.password)
		if bad != nil {
			bad.Code = diagnose.CodeInvalidOptions
			return o, bad
		}
		o.Roots = x509.NewCertPool()
		for _, c := range cf.Certs {
			o.Roots.AddCert(c)
		}
	}
	if len(f.pins) > 0 {
		pins, err := pki.ParsePins(f.pins)
		if err != nil {
			return invalid("copy the pin again; `ward ca pin` on the coordinator prints the cluster's", "--pin: %v", err)
		}
		for _, p := range pins {
			if p.Legacy() {
				fmt.Fprintf(warn, "warning: pin %s is a SHA-1 thumbprint, a legacy form; prefer the sha256: SPKI pin\n", p)
			}
		}
		o.Pins = pins
	}
	switch {
	case f.key != "" && f.cert == "":
		return invalid("pass --cert with the certificate of this key", "--key was given without --cert")
	case f.cert != "":
		cert, bad := loadClientCert(f.cert, f.key, f.password)
		if bad != nil {
			return o, bad
		}
		o.ClientCert = cert
	}
	if f.crl != "" {
		o.CRL = diagnose.ParseCRLSource(f.crl)
	}
	return o, nil
}

// loadClientCert reads --cert (PEM, DER or PKCS#12) and --key (PEM or DER,
// optional when --cert holds the key).
func loadClientCert(certPath, keyPath, password string) (*tls.Certificate, *diagnose.Verdict) {
	invalid := func(msg, fix string) (*tls.Certificate, *diagnose.Verdict) {
		return nil, &diagnose.Verdict{Code: diagnose.CodeInvalidOptions, Message: msg, Fix: fix}
	}
	cf, bad := readCertFlag("--cert", certPath, password)
	if bad != nil {
		bad.Code = diagnose.CodeInvalidOptions
		return nil, bad
	}
	certs, key := cf.Certs, cf.Key
	if keyPath != "" {
		data, err := os.ReadFile(keyPath)
		if err != nil {
			return invalid(fmt.Sprintf("--key: %v", err), "check the path")
		}
		k, err := pki.ParseKeyPEM(data)
		if err != nil && !bytes.Contains(data, []byte("-----BEGIN")) {
			k, err = pki.ParseKeyDER(data)
		}
		if err != nil {
			return invalid(fmt.Sprintf("--key %s: %v", keyPath, err), "give the private key as PEM (PKCS#8, SEC1 or PKCS#1) or DER; decrypt an encrypted key first")
		}
		key = k
		// Put the certificate of this key first.
		matched := false
		for i, c := range certs {
			if pki.KeyMatches(c, key) {
				certs[0], certs[i] = certs[i], certs[0]
				matched = true
				break
			}
		}
		if !matched {
			return invalid(fmt.Sprintf("--key %s belongs to none of the %d certificate(s) in --cert %s (the first is %q, SPKI pin %s)", keyPath, len(certs), certPath, certs[0].Subject, pki.SPKIPin(certs[0])),
				"pair the certificate with the key it was issued for (`ward cert inspect` shows a certificate's SPKI pin)")
		}
	}
	if key == nil {
		return invalid(fmt.Sprintf("--cert %s holds no private key and no --key was given", certPath), "pass --key with the certificate's private key, or a PKCS#12 file holding both")
	}
	tc := &tls.Certificate{PrivateKey: key, Leaf: certs[0]}
	for _, c := range certs {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc, nil
}

// trustOutcome is what `ward check --trust` did, or why it did nothing.
type trustOutcome struct {
	Context string `json:"context"`
	// Subject, SHA256 and SPKIPin describe the CA offered for trust.
	Subject        string            `json:"subject,omitempty"`
	SHA256         string            `json:"sha256,omitempty"`
	SPKIPin        string            `json:"spki_pin,omitempty"`
	Added          bool              `json:"added"`
	AlreadyTrusted bool              `json:"already_trusted,omitempty"`
	PinAdded       bool              `json:"pin_added"`
	Notes          []string          `json:"notes,omitempty"`
	Refused        string            `json:"refused,omitempty"`
	Recheck        *diagnose.Verdict `json:"recheck,omitempty"`
	// CheckWith are the commands that check the server with the new
	// trust: through the context, and with flags alone.
	CheckWith []string `json:"check_with,omitempty"`
}

// trustPresented implements --trust: it refuses unless the verdict is
// unknown_authority, shows the presented root, asks, and appends it (and
// its pin, when the context pins) to the context.
func trustPresented(cmd *cobra.Command, g *globals, r *diagnose.Report, f checkFlags, w io.Writer) *trustOutcome {
	path, source := config.ResolveContextPath(g.context)
	t := &trustOutcome{Context: path}
	if r.Code != diagnose.CodeUnknownAuthority {
		if r.OK() {
			t.Refused = "the server already verifies with the flags given (verdict ok); --trust adds a CA only when the verdict is unknown_authority"
		} else {
			t.Refused = fmt.Sprintf("the verdict is %s, not unknown_authority: trusting a CA fixes only an unknown authority, and a server that fails another check must not be trusted on sight; fix the %s problem first (see the fix above)", r.Code, r.Code)
		}
		return t
	}
	if len(r.Presented) == 0 {
		t.Refused = "the server presented no certificate to trust"
		return t
	}
	top := r.Presented[len(r.Presented)-1]
	selfSigned := bytes.Equal(top.RawSubject, top.RawIssuer) && top.CheckSignatureFrom(top) == nil
	t.Subject, t.SHA256, t.SPKIPin = top.Subject.String(), pki.Fingerprint(top), pki.SPKIPin(top).String()
	switch {
	case selfSigned:
		fmt.Fprintf(w, "presented root: %s\n", top.Subject)
	case top.IsCA && top.BasicConstraintsValid:
		note := fmt.Sprintf("the server did not send its root: the top certificate it sent, %q, is a CA issued by %q; trusting that CA instead (certificates it issued will verify, those of other CAs under the same root will not)", top.Subject, top.Issuer)
		t.Notes = append(t.Notes, note)
		fmt.Fprintf(w, "note: %s\npresented CA:   %s\n", note, top.Subject)
	default:
		t.Refused = fmt.Sprintf("the server did not send its root, and the top certificate it sent (%q, issued by %q) is not a CA: trusting it would trust this one server certificate; get the cluster CA (`ward ca export` on the coordinator) and pass it with --ca", top.Subject, top.Issuer)
		return t
	}
	fmt.Fprintf(w, "  sha256:   %s\n  spki pin: %s\n", t.SHA256, t.SPKIPin)
	fmt.Fprintln(w, "compare these with the fingerprint or pin on the coordinator (`ward ca pin`) before you trust it")

	ctx, err := loadContextForTrust(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			t.Refused = fmt.Sprintf("there is no CLI context at %s (looked there because of %s); --trust adds to an existing context and never creates one: use the context a coordinator prints (`export WARD_CONTEXT=...`) or pass --context FILE", path, source)
		} else {
			t.Refused = fmt.Sprintf("cannot use the CLI context %s (from %s): %v", path, source, err)
		}
		return t
	}
	bundle, err := parseBundle(ctx.BundlePEM)
	if err != nil {
		t.Refused = fmt.Sprintf("the trust bundle of the CLI context %s does not parse, so nothing is appended to it: %v", path, err)
		return t
	}
	pin := pki.SPKIPin(top).String()
	for _, c := range bundle {
		if c.Equal(top) {
			t.AlreadyTrusted = true
		}
	}
	hasPin := false
	for _, p := range ctx.Pins {
		if pp, err := pki.ParsePin(p); err == nil && pp.String() == pin {
			hasPin = true
		}
	}
	addPin := len(ctx.Pins) > 0 && !hasPin
	if len(ctx.Pins) == 0 {
		note := "the context pins nothing, so no pin is added (one pin would restrict it to this CA alone)"
		t.Notes = append(t.Notes, note)
		fmt.Fprintf(w, "note: %s\n", note)
	}
	if t.AlreadyTrusted && !addPin {
		fmt.Fprintf(w, "this CA is already in the trust bundle of %s; nothing changed\n", path)
	} else {
		if !f.yes {
			fmt.Fprint(w, "Trust this CA? [y/N] ")
			in := cmd.InOrStdin()
			answer, _ := bufio.NewReader(in).ReadString('\n')
			if !isTerminal(in) {
				// Nobody saw the answer typed: show it, so the log reads well.
				fmt.Fprintln(w, strings.TrimSpace(answer))
			}
			if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
				t.Refused = fmt.Sprintf("not confirmed; %s is unchanged", path)
				return t
			}
		}
		if !t.AlreadyTrusted {
			if ctx.BundlePEM != "" && !strings.HasSuffix(ctx.BundlePEM, "\n") {
				ctx.BundlePEM += "\n"
			}
			ctx.BundlePEM += string(pki.EncodeCertsPEM(top))
		}
		if addPin {
			ctx.Pins = append(ctx.Pins, pin)
		}
		if err := ctx.Save(path); err != nil {
			t.Refused = fmt.Sprintf("could not save the CLI context %s: %v", path, err)
			return t
		}
		t.Added, t.PinAdded = !t.AlreadyTrusted, addPin
		what := "added it to the trust bundle"
		if t.AlreadyTrusted {
			what = "it was in the trust bundle already; added its pin"
		} else if addPin {
			what += " and its pin to the pins"
		}
		fmt.Fprintf(w, "trusted: %s of %s\n", what, path)
	}
	// check never reads the context unless asked: say how to see what the
	// CLI will now do, and which flags alone reproduce it.
	t.CheckWith = []string{
		fmt.Sprintf("ward check %s --use-context", r.Address),
		fmt.Sprintf("ward check %s --pin %s", r.Address, pin),
	}
	fmt.Fprintf(w, "the CLI context now trusts this CA; ward check reads no context unless asked:\n  %s   (as the CLI connects)\n  %s   (the flags alone)\n", t.CheckWith[0], t.CheckWith[1])

	// Check again as the context now will: with this CA as the root.
	opts, bad := f.options(r.Address, io.Discard, nil)
	if bad == nil {
		opts.Roots = x509.NewCertPool()
		opts.Roots.AddCert(top)
		v := diagnose.Check(cmd.Context(), opts).Verdict
		t.Recheck = &v
	}
	return t
}

// loadContextForTrust reads a context file the way config.LoadContext
// does (permissions first), but accepts one whose trust bundle is empty:
// that is the context --trust exists to complete.
func loadContextForTrust(path string) (*config.Context, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	if c, err := config.LoadContext(path); err == nil {
		return c, nil
	}
	data, err := identity.ReadSecret(path)
	if err != nil {
		return nil, err
	}
	var c config.Context
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("context file %s is not valid JSON: %w", path, err)
	}
	if c.Version != config.FileVersion {
		return nil, fmt.Errorf("context file %s has version %d; this Ward reads version %d", path, c.Version, config.FileVersion)
	}
	if c.Server == "" || c.CertPEM == "" || c.KeyPEM == "" {
		return nil, fmt.Errorf("context file %s is incomplete: it needs server, cert_pem and key_pem", path)
	}
	return &c, nil
}

// parseBundle reads a context's trust bundle; an empty one is no error.
func parseBundle(pemText string) ([]*x509.Certificate, error) {
	if strings.TrimSpace(pemText) == "" {
		return nil, nil
	}
	return pki.ParseCertsPEM([]byte(pemText))
}

// isTerminal reports whether r (a reader or a writer) is a character
// device, such as a terminal a user types into or watches.
func isTerminal(r any) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
