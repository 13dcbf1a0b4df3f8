package cli

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
)

// The CA files of a coordinator's data directory, as the coordinator lays
// them out (internal/coordinator/pkiinit.go), plus the pending issuing key
// and request of `ward ca csr`.
var (
	caFileRootCert    = filepath.Join("pki", "root-ca.crt")
	caFileRootKey     = filepath.Join("pki", "root-ca.key")
	caFileIssuingCert = filepath.Join("pki", "issuing-ca.crt")
	caFileIssuingKey  = filepath.Join("pki", "issuing-ca.key")
	caFilePendingKey  = filepath.Join("pki", "issuing-ca.pending.key")
	caFilePendingCSR  = filepath.Join("pki", "issuing-ca.pending.csr")
	caFileAdminCtx    = "admin.context"
)

// passphraseHelp is what every offline CA command says about encryption.
const passphraseHelp = `With --passphrase-file F (a file of mode 0600 holding at least 8 bytes; trailing
line breaks are not part of the passphrase), every CA key written is encrypted
at rest (scrypt and AES-256-GCM, a WARD ENCRYPTED PRIVATE KEY block). The
coordinator must then be started with the same file:
  ward coordinator --data DIR --ca-passphrase-file F`

// caDataDir is a coordinator data directory that no coordinator is using.
type caDataDir struct {
	dir string
	db  *bbolt.DB // held read-only (a shared lock) until release
}

func (d *caDataDir) path(rel string) string { return filepath.Join(d.dir, rel) }

func (d *caDataDir) release() {
	if d.db != nil {
		d.db.Close()
	}
}

func (d *caDataDir) initialized() bool { return fileExists(d.path(caFileRootCert)) }

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// openCADataDir refuses a data directory a running coordinator holds. The
// coordinator keeps an exclusive lock on ward.db; a read-only open asks for
// a shared one, so it times out exactly while a coordinator runs. The shared
// lock is kept until release, so a coordinator starting meanwhile waits
// (and gives up after its own timeout) instead of reading half-written
// files. A missing ward.db is not created.
func openCADataDir(dir string) (*caDataDir, error) {
	if dir == "" {
		return nil, api.Errorf(api.CodeInvalidArgument, "pass --data DIR, the directory the coordinator runs with (its --data)", "--data is required")
	}
	d := &caDataDir{dir: dir}
	dbPath := filepath.Join(dir, "ward.db")
	if _, err := os.Stat(dbPath); errors.Is(err, fs.ErrNotExist) {
		return d, nil
	}
	db, err := bbolt.Open(dbPath, 0o600, &bbolt.Options{Timeout: 200 * time.Millisecond, ReadOnly: true})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, api.Errorf(api.CodeFailedPrecondition, "stop the coordinator, run this command again, then start the coordinator",
			"a coordinator is running on %s: stop it first (its store %s is locked)", dir, dbPath)
	}
	if err != nil {
		return nil, fmt.Errorf("check that no coordinator runs on %s: open %s: %w", dir, dbPath, err)
	}
	d.db = db
	return d, nil
}

// prepare creates the data directory (0700) and its pki directory.
func (d *caDataDir) prepare() error {
	if err := identity.EnsureDir(d.dir); err != nil {
		return err
	}
	if err := os.MkdirAll(d.path("pki"), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", d.path("pki"), err)
	}
	return nil
}

// refuseInitialized stops an import over an existing CA unless forced.
func (d *caDataDir) refuseInitialized(force bool) error {
	if !d.initialized() {
		return nil
	}
	if gens, _ := filepath.Glob(d.path(filepath.Join("pki", "gen-*"))); len(gens) > 0 {
		// The coordinator's store records which generation is current, and
		// an offline import cannot rewrite it: the coordinator would keep
		// serving pki/gen-N and retire the imported files.
		return api.Errorf(api.CodeFailedPrecondition,
			"import into a new, empty data directory and start the coordinator there (every agent must join again either way)",
			"%s holds a rotated CA (%s): an offline import cannot replace it, because the coordinator's store records which CA generation is current",
			d.dir, strings.Join(gens, ", "))
	}
	if force {
		return nil
	}
	return api.Errorf(api.CodeFailedPrecondition,
		"to replace it anyway, add --force: the old CA files move to "+filepath.Join(d.dir, "pki", "replaced-TIME")+
			"; every agent must then join again with a new token (after `ward node revoke NAME`), and CLI contexts made by the old CA stop working",
		"%s already has a CA (%s): this cluster's agents and CLI contexts trust it", d.dir, d.path(caFileRootCert))
}

// moveAside moves the current CA files, the coordinator's own credential
// and the admin context into pki/replaced-TIME, keeping the pending files
// of `ward ca csr`. It returns the directory, or "" when there was nothing.
func (d *caDataDir) moveAside(now time.Time) (string, error) {
	if !d.initialized() {
		return "", nil
	}
	dst := d.path(filepath.Join("pki", "replaced-"+now.UTC().Format("20060102T150405Z")))
	if err := os.Mkdir(dst, 0o700); err != nil {
		return "", fmt.Errorf("keep the old CA files: %w", err)
	}
	entries, err := os.ReadDir(d.path("pki"))
	if err != nil {
		return "", err
	}
	var moves []string
	for _, e := range entries {
		if e.Type().IsRegular() && !strings.Contains(e.Name(), ".pending.") {
			moves = append(moves, filepath.Join("pki", e.Name()))
		}
	}
	if fileExists(d.path(caFileAdminCtx)) {
		moves = append(moves, caFileAdminCtx)
	}
	for _, rel := range moves {
		if err := os.Rename(d.path(rel), filepath.Join(dst, filepath.Base(rel))); err != nil {
			return "", fmt.Errorf("keep the old CA files: %w", err)
		}
	}
	return dst, nil
}

// writeCA writes the issuing CA, then the root, each file atomically; the
// root certificate goes last because its presence is what tells the
// coordinator the directory holds a CA. A root without a key (kept
// offline) leaves no root-ca.key behind.
func (d *caDataDir) writeCA(root, issuing *pki.CA, passphrase []byte) error {
	if err := writeCAKey(d.path(caFileIssuingKey), issuing.Key, passphrase); err != nil {
		return err
	}
	if err := identity.WriteFileAtomic(d.path(caFileIssuingCert), pki.EncodeCertsPEM(issuing.Cert), 0o644); err != nil {
		return err
	}
	if root.Key != nil {
		if err := writeCAKey(d.path(caFileRootKey), root.Key, passphrase); err != nil {
			return err
		}
	} else if err := os.Remove(d.path(caFileRootKey)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the old root key: %w", err)
	}
	return identity.WriteFileAtomic(d.path(caFileRootCert), pki.EncodeCertsPEM(root.Cert), 0o644)
}

// writeCAKey writes a CA key, 0600 and atomically, encrypted when a
// passphrase is given.
func writeCAKey(path string, key crypto.Signer, passphrase []byte) error {
	var data []byte
	var err error
	if passphrase != nil {
		data, err = pki.EncryptKeyPEM(key, passphrase)
	} else {
		data, err = pki.MarshalKeyPEM(key)
	}
	if err != nil {
		return err
	}
	return identity.WriteSecret(path, data)
}

// readPassphraseFile reads --passphrase-file: nil when not given; refused
// when others may read it.
func readPassphraseFile(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	if err := identity.CheckSecretPerms(path); err != nil {
		var ae *api.Error
		if errors.As(err, &ae) {
			return nil, &api.Error{Code: ae.Code, Message: "--passphrase-file: " + ae.Message, Fix: ae.Fix, Cause: err}
		}
		return nil, api.Errorf(api.CodeInvalidArgument, "check the path given to --passphrase-file", "--passphrase-file: %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, api.Errorf(api.CodeInvalidArgument, "check the path given to --passphrase-file", "read --passphrase-file: %v", err)
	}
	p, err := pki.PassphraseFromFile(data)
	if err != nil {
		return nil, api.Errorf(api.CodeInvalidArgument, "write a longer passphrase: openssl rand -base64 32 > FILE && chmod 600 FILE", "--passphrase-file %s: %v", path, err)
	}
	return p, nil
}

// readPassword returns --password or the content of --password-file
// (without trailing line breaks).
func readPassword(password, file string) (string, error) {
	if file == "" {
		return password, nil
	}
	if password != "" {
		return "", api.Errorf(api.CodeInvalidArgument, "keep one of them", "--password and --password-file are both given")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", api.Errorf(api.CodeInvalidArgument, "check the path given to --password-file", "read --password-file: %v", err)
	}
	return strings.TrimRight(string(data), "\r\n"), nil
}

// importError renders a refusal of an imported file with its fix: format
// failures (wrong password, truncation, unsupported key...) and CA
// failures (not a CA, expired, key mismatch...), each with its own message.
func importError(flag, path string, err error) error {
	var ce *pki.CAError
	if errors.As(err, &ce) {
		return &api.Error{Code: api.CodeInvalidArgument, Message: fmt.Sprintf("%s %s: %s", flag, path, ce.Summary()), Fix: ce.Fix, Cause: err}
	}
	var ke *pki.KeyCryptError
	if errors.As(err, &ke) {
		fix := "restore the key file from backup"
		switch {
		case errors.Is(err, pki.ErrPassphraseRequired):
			fix = "pass the --passphrase-file the key was written with"
		case errors.Is(err, pki.ErrWrongPassphrase):
			fix = "pass the --passphrase-file the key was written with (the same file as for `ward ca csr`)"
		}
		return &api.Error{Code: api.CodeInvalidArgument, Message: fmt.Sprintf("%s %s: %v", flag, path, err), Fix: fix, Cause: err}
	}
	var fe *pki.FormatError
	if !errors.As(err, &fe) {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			return &api.Error{Code: api.CodeInvalidArgument, Message: fmt.Sprintf("%s: %v", flag, err), Fix: certFileFix(err), Cause: err}
		}
		return err
	}
	fix := certFileFix(err)
	switch {
	case errors.Is(err, pki.ErrWrongPassword):
		fix = "give the PKCS#12 file's password with --password-file F (an empty password is also a password)"
	case errors.Is(err, pki.ErrNoKey):
		fix = "give the file that holds the CA's private key"
	case errors.Is(err, pki.ErrNoCertificate):
		fix = "give the CA certificate with --cert (PEM, DER or PKCS#12)"
	}
	msg := flag + " " + err.Error()
	if fe.Path == "" {
		msg = fmt.Sprintf("%s %s: %v", flag, path, err)
	}
	return &api.Error{Code: api.CodeInvalidArgument, Message: msg, Fix: fix, Cause: err}
}

func newCAImportCmd(g *globals) *cobra.Command {
	var f caImportFlags
	cmd := &cobra.Command{
		Use:   "import --data DIR --cert FILE [--key FILE]",
		Short: "Install your own root or issuing CA in a coordinator's data directory (offline)",
		Long: `Install a CA you bring into a coordinator's data directory, before its first start.
Run it on the coordinator's host while the coordinator is stopped.

--cert takes PEM, DER or PKCS#12 (.pfx/.p12, opened with
--password-file). The key comes from the same file or from --key. The
certificate must be a CA (basicConstraints CA:TRUE, keyUsage keyCertSign),
valid now, with a key Ward accepts (ECDSA P-256/P-384/P-521, Ed25519, RSA
≥2048), and the key must be its own.

  A root CA (self-signed) with its key: Ward keeps the root and creates its
  issuing CA under it.
  An issuing CA (signed by your root) with its key: Ward signs with it; the
  root's certificate (--chain, or after the CA in the same file) becomes the
  trust anchor, and the root key stays with you (an offline root).
  Only the certificate your CA signed for ` + "`ward ca csr`" + `: Ward installs it with
  the pending key that command made; give the root with --chain.

On a data directory that already has a CA, --force replaces it: the old files
move to pki/replaced-TIME, every agent must join again, and old CLI contexts
stop working (the coordinator writes a new admin context).

` + passphraseHelp,
		Example: `  ward ca import --data /var/lib/ward --cert root.pem --key root.key
  ward ca import --data /var/lib/ward --cert issuing.p12 --password-file p12.pass
  ward ca import --data /var/lib/ward --cert signed.pem --chain corp-root.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runCAImport(g, f, time.Now()) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.data, "data", "", "the coordinator's data directory (required; the coordinator must be stopped)")
	fl.StringVar(&f.cert, "cert", "", "the CA certificate: PEM, DER or PKCS#12 (required)")
	fl.StringVar(&f.key, "key", "", "the CA's private key, when not in --cert: PEM, DER or PKCS#12")
	bindPassword(fl, g.stderr, &f.password, &f.passwordFile, "a PKCS#12 file")
	fl.StringVar(&f.chain, "chain", "", "the root CA certificate that signed an issuing CA (PEM, DER or PKCS#12)")
	fl.StringVar(&f.passphraseFile, "passphrase-file", "", "encrypt the CA keys written with the passphrase in this file (mode 0600)")
	fl.StringVar(&f.cluster, "cluster", config.CoordinatorDefaults().Cluster, "the cluster name the coordinator runs with (its --cluster)")
	fl.BoolVar(&f.force, "force", false, "replace the CA of an initialized data directory (every agent must join again)")
	return cmd
}

type caImportFlags struct {
	data, cert, key, password, passwordFile, chain, passphraseFile, cluster string
	force                                                                   bool
}

// caImportResult is what `ward ca import -o json` prints.
type caImportResult struct {
	Data      string        `json:"data"`
	Mode      string        `json:"mode"` // "root", "issuing" or "signed-csr"
	Root      caFileSummary `json:"root"`
	Issuing   caFileSummary `json:"issuing"`
	Encrypted bool          `json:"keys_encrypted"`
	Replaced  string        `json:"replaced,omitempty"`
	Warnings  []string      `json:"warnings,omitempty"`
	Start     string        `json:"start"`
}

type caFileSummary struct {
	Subject     string    `json:"subject"`
	NotAfter    time.Time `json:"not_after"`
	Pin         string    `json:"pin"`
	Fingerprint string    `json:"sha256_fingerprint"`
	CertFile    string    `json:"cert_file"`
	KeyFile     string    `json:"key_file,omitempty"` // empty: the key is not in the data directory
	Created     bool      `json:"created,omitempty"`  // made by this import rather than imported
}

func summarizeCA(c *x509.Certificate, certFile, keyFile string) caFileSummary {
	return caFileSummary{Subject: c.Subject.String(), NotAfter: c.NotAfter, Pin: pki.SPKIPin(c).String(), Fingerprint: pki.Fingerprint(c), CertFile: certFile, KeyFile: keyFile}
}

func runCAImport(g *globals, f caImportFlags, now time.Time) error {
	if f.cert == "" {
		return api.Errorf(api.CodeInvalidArgument, "pass --cert FILE: the CA certificate (PEM, DER or PKCS#12)", "--cert is required")
	}
	if err := pki.ValidName("cluster", f.cluster); err != nil {
		return api.Errorf(api.CodeInvalidArgument, "pass the coordinator's --cluster name", "--cluster: %v", err)
	}
	password, err := readPassword(f.password, f.passwordFile)
	if err != nil {
		return err
	}
	passphrase, err := readPassphraseFile(f.passphraseFile)
	if err != nil {
		return err
	}
	d, err := openCADataDir(f.data)
	if err != nil {
		return err
	}
	defer d.release()

	cf, err := pki.ReadCertFile(f.cert, password)
	if err != nil {
		return importError("--cert", f.cert, err)
	}
	if f.key != "" {
		key, err := pki.ReadKeyFile(f.key, password)
		if err != nil {
			return importError("--key", f.key, err)
		}
		if cf.Key != nil && !pki.PublicKeyMatches(cf.Certs[0], key.Public()) {
			return api.Errorf(api.CodeInvalidArgument, "drop --key, or give a --cert file without a key",
				"--cert %s already holds a private key, and --key %s is another one", f.cert, f.key)
		}
		if err := pki.AttachKey(cf, key); err != nil {
			return importError("--key", f.key, err)
		}
	}
	chain := slices.Clone(cf.Certs[1:])
	if f.chain != "" {
		ccf, err := pki.ReadCertFile(f.chain, password)
		if err != nil {
			return importError("--chain", f.chain, err)
		}
		chain = append(chain, ccf.Certs...)
	}
	if cf.Key == nil && fileExists(d.path(caFilePendingKey)) && !pki.IsSelfSigned(cf.Certs[0]) {
		return completeSignedIssuing(g, d, f, cf, chain, passphrase, now)
	}

	ca, err := pki.ValidateCA(cf, now)
	if err != nil {
		return importError("--cert", f.cert, err)
	}
	res := caImportResult{Data: d.dir}
	var root, issuing *pki.CA
	if pki.IsSelfSigned(ca.Cert) {
		if err := pki.CheckRootForIssuing(ca.Cert); err != nil {
			return importError("--cert", f.cert, err)
		}
		root = ca
		issuing, err = pki.NewIssuingCA(root, f.cluster, 1, now, pki.IssuingLifetime)
		if err != nil {
			return err
		}
		res.Mode = "root"
	} else {
		rootCert, err := pki.IssuingRoot(ca.Cert, chain, now)
		if err != nil {
			return importError("--cert", f.cert, err)
		}
		root, issuing = &pki.CA{Cert: rootCert}, ca
		res.Mode = "issuing"
	}
	if err := pki.CheckIssuance(issuing, root.Cert, f.cluster, now); err != nil {
		return importError("--cert", f.cert, err)
	}
	return installCA(g, d, f, &res, root, issuing, passphrase, now)
}

// completeSignedIssuing installs the certificate an external CA signed for
// the pending key of `ward ca csr`.
func completeSignedIssuing(g *globals, d *caDataDir, f caImportFlags, cf *pki.CertFile, chain []*x509.Certificate, passphrase []byte, now time.Time) error {
	keyPath := d.path(caFilePendingKey)
	data, err := identity.ReadSecret(keyPath)
	if err != nil {
		return err
	}
	key, err := pki.UnlockKeyPEM(data, passphrase)
	if err != nil {
		return importError("pending key", keyPath, err)
	}
	// The certificate for the pending key may sit anywhere in the file.
	certs := slices.Clone(cf.Certs)
	if i := slices.IndexFunc(certs, func(c *x509.Certificate) bool { return pki.KeyMatches(c, key) }); i > 0 {
		certs[0], certs[i] = certs[i], certs[0]
	}
	chain = append(certs[1:], chain...)
	if err := pki.ValidateSignedIssuing(certs[0], key, chain, now); err != nil {
		return importError("--cert", f.cert, err)
	}
	rootCert, err := pki.IssuingRoot(certs[0], chain, now)
	if err != nil {
		return importError("--cert", f.cert, err)
	}
	issuing := &pki.CA{Cert: certs[0], Key: key}
	if err := pki.CheckIssuance(issuing, rootCert, f.cluster, now); err != nil {
		return importError("--cert", f.cert, err)
	}
	res := caImportResult{Data: d.dir, Mode: "signed-csr"}
	if err := installCA(g, d, f, &res, &pki.CA{Cert: rootCert}, issuing, passphrase, now); err != nil {
		return err
	}
	for _, p := range []string{caFilePendingKey, caFilePendingCSR} {
		if err := os.Remove(d.path(p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("the CA is installed, but removing %s failed: %w", d.path(p), err)
		}
	}
	return nil
}

// installCA writes a validated CA into the data directory and reports.
func installCA(g *globals, d *caDataDir, f caImportFlags, res *caImportResult, root, issuing *pki.CA, passphrase []byte, now time.Time) error {
	if err := d.refuseInitialized(f.force); err != nil {
		return err
	}
	if err := d.prepare(); err != nil {
		return err
	}
	replaced, err := d.moveAside(now)
	if err != nil {
		return err
	}
	if err := d.writeCA(root, issuing, passphrase); err != nil {
		return err
	}
	res.Replaced, res.Encrypted = replaced, passphrase != nil
	res.Root = summarizeCA(root.Cert, d.path(caFileRootCert), "")
	if root.Key != nil {
		res.Root.KeyFile = d.path(caFileRootKey)
	}
	res.Issuing = summarizeCA(issuing.Cert, d.path(caFileIssuingCert), d.path(caFileIssuingKey))
	res.Issuing.Created = res.Mode == "root"
	res.Start = fmt.Sprintf("ward coordinator --data %s --cluster %s", d.dir, f.cluster)
	if passphrase != nil {
		res.Start += " --ca-passphrase-file " + f.passphraseFile
	}
	if left := issuing.Cert.NotAfter.Sub(now); left < 30*24*time.Hour {
		res.Warnings = append(res.Warnings, fmt.Sprintf("the issuing CA expires in %s (%s); import a new one before then", humanDur(left), ts(issuing.Cert.NotAfter)))
	}
	if root.Key == nil {
		res.Warnings = append(res.Warnings, "the root key stays outside Ward (offline root): Ward cannot make a new issuing CA by itself; renew it with `ward ca csr` and `ward ca import --force` before it expires")
	}
	if g.json() {
		return printJSON(g.stdout, res)
	}
	w := g.stdout
	switch res.Mode {
	case "root":
		fmt.Fprintf(w, "Imported root CA %q into %s and created an issuing CA under it.\n", res.Root.Subject, d.dir)
	case "issuing":
		fmt.Fprintf(w, "Imported issuing CA %q into %s, signed by root %q.\n", res.Issuing.Subject, d.dir, res.Root.Subject)
	default:
		fmt.Fprintf(w, "Installed the signed issuing CA %q into %s, signed by root %q.\n", res.Issuing.Subject, d.dir, res.Root.Subject)
	}
	keyNote := func(s caFileSummary) string {
		switch {
		case s.KeyFile == "":
			return "key: not in the data directory (offline)"
		case res.Encrypted:
			return "key: " + s.KeyFile + " (encrypted)"
		}
		return "key: " + s.KeyFile
	}
	fmt.Fprintf(w, "  root CA:     %s\n               pin %s, valid until %s\n               %s\n", res.Root.CertFile, res.Root.Pin, ts(root.Cert.NotAfter), keyNote(res.Root))
	fmt.Fprintf(w, "  issuing CA:  %s\n               valid until %s\n               %s\n", res.Issuing.CertFile, ts(issuing.Cert.NotAfter), keyNote(res.Issuing))
	if replaced != "" {
		fmt.Fprintf(w, "The previous CA files are kept in %s. Every agent must join again.\n", replaced)
	}
	for _, warn := range res.Warnings {
		fmt.Fprintf(g.stderr, "warning: %s\n", warn)
	}
	fmt.Fprintf(w, "Start the coordinator with:\n  %s\n", res.Start)
	return nil
}

func newCACSRCmd(g *globals) *cobra.Command {
	var data, out, passphraseFile, cluster string
	var force bool
	cmd := &cobra.Command{
		Use:   "csr --data DIR [--out FILE]",
		Short: "Make a key and a certificate request for Ward's issuing CA, for your CA to sign (offline)",
		Long: `Make the issuing CA's key in the coordinator's data directory (as
pki/issuing-ca.pending.key, mode 0600) and print its certificate request
(PEM), for your enterprise CA to sign. The key never leaves the directory.
Run it on the coordinator's host while the coordinator is stopped.

The request asks for a CA certificate: basicConstraints critical CA:TRUE,
pathlen:0; keyUsage critical keyCertSign, cRLSign. Then install the signed
certificate with its root:
  ward ca import --data DIR --cert signed.pem --chain root.pem

` + passphraseHelp + `
Give the same --passphrase-file to ` + "`ward ca import`" + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCACSR(g, data, out, passphraseFile, cluster, force)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&data, "data", "", "the coordinator's data directory (required; the coordinator must be stopped)")
	fl.StringVar(&out, "out", "", "write the request (PEM) to this file instead of standard output")
	fl.StringVar(&passphraseFile, "passphrase-file", "", "encrypt the pending key with the passphrase in this file (mode 0600)")
	fl.StringVar(&cluster, "cluster", config.CoordinatorDefaults().Cluster, "the cluster name the coordinator runs with (its --cluster)")
	fl.BoolVar(&force, "force", false, "replace the pending key and request of an earlier run")
	return cmd
}

func runCACSR(g *globals, data, out, passphraseFile, cluster string, force bool) error {
	if err := pki.ValidName("cluster", cluster); err != nil {
		return api.Errorf(api.CodeInvalidArgument, "pass the coordinator's --cluster name", "--cluster: %v", err)
	}
	passphrase, err := readPassphraseFile(passphraseFile)
	if err != nil {
		return err
	}
	d, err := openCADataDir(data)
	if err != nil {
		return err
	}
	defer d.release()
	if fileExists(d.path(caFilePendingKey)) && !force {
		return api.Errorf(api.CodeFailedPrecondition,
			fmt.Sprintf("install the certificate signed for it (`ward ca import --data %s --cert signed.pem --chain root.pem`), or pass --force for a new key and request (a certificate signed for the old one can then no longer be installed)", d.dir),
			"a pending issuing CA key from an earlier `ward ca csr` is waiting in %s (its request: %s)", d.path(caFilePendingKey), d.path(caFilePendingCSR))
	}
	if err := d.prepare(); err != nil {
		return err
	}
	key, err := pki.GenerateKey()
	if err != nil {
		return err
	}
	csrPEM, err := pki.IssuingCSR(key, cluster)
	if err != nil {
		return err
	}
	if err := writeCAKey(d.path(caFilePendingKey), key, passphrase); err != nil {
		return err
	}
	if err := identity.WriteFileAtomic(d.path(caFilePendingCSR), csrPEM, 0o644); err != nil {
		return err
	}
	csrFile := out
	if csrFile == "" {
		csrFile = d.path(caFilePendingCSR)
	}
	next := fmt.Sprintf(`Next:
  1. Have your CA sign the request as a CA certificate with these extensions:
       basicConstraints = critical,CA:TRUE,pathlen:0
       keyUsage         = critical,keyCertSign,cRLSign
     With OpenSSL (ext.cnf holding the two lines above):
       openssl x509 -req -in %s -CA root.pem -CAkey root.key -days 365 -extfile ext.cnf -out signed.pem
  2. ward ca import --data %s --cert signed.pem --chain root.pem%s
`, csrFile, d.dir, map[bool]string{true: " --passphrase-file " + passphraseFile}[passphrase != nil])
	if d.initialized() {
		next += fmt.Sprintf("Note: %s already has a CA; step 2 will need --force, and every agent must then join again.\n", d.dir)
	}
	if g.json() {
		return printJSON(g.stdout, map[string]any{
			"csr_pem": string(csrPEM), "csr_file": d.path(caFilePendingCSR), "pending_key": d.path(caFilePendingKey),
			"key_encrypted": passphrase != nil, "out": out, "next": next,
		})
	}
	if out == "" {
		if _, err := g.stdout.Write(csrPEM); err != nil {
			return err
		}
		fmt.Fprint(g.stderr, next)
		return nil
	}
	if err := identity.WriteFileAtomic(out, csrPEM, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "Wrote the issuing CA request to %s (a copy is in %s); its key is in %s.\n%s", out, d.path(caFilePendingCSR), d.path(caFilePendingKey), next)
	return nil
}
