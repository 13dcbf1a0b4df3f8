package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/transport"
)

func newCAExportCmd(g *globals) *cobra.Command {
	var format, password, passwordFile, out string
	cmd := &cobra.Command{
		Use:   "export [--format pem|der|p12] [--out FILE]",
		Short: "Write the cluster's trust bundle (its root CAs) as PEM, DER (.cer) or PKCS#12",
		Long: `Write the cluster's trust bundle: the root CA certificates that clients and
browsers should trust. The bundle is fetched from the coordinator's public
port (GET /v1/ca, verified against the CLI context's bundle), so it includes a
new root during a rotation; if the coordinator cannot be reached, the bundle
saved in the CLI context is written, with a note.

  pem  all roots in one PEM file (the default)
  der  one DER .cer file per root: FILE, then FILE's name with .2, .3 ...
       before the extension (ca.cer, ca.2.cer); standard output only with one root
  p12  a PKCS#12 trust store that Java's keytool and TrustManagers read
       (keytool -list -storetype PKCS12 -keystore FILE); needs --password-file`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCAExport(cmd.Context(), g, format, password, passwordFile, out)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&format, "format", "pem", "pem, der or p12")
	bindPassword(fl, g.stderr, &password, &passwordFile, "the PKCS#12 trust store (required for p12)")
	fl.StringVar(&out, "out", "", "write to this file instead of standard output")
	return cmd
}

type caExportRoot struct {
	Subject     string    `json:"subject"`
	NotAfter    time.Time `json:"not_after"`
	Fingerprint string    `json:"sha256_fingerprint"`
	Pin         string    `json:"pin"`
}

type caExportResult struct {
	Format string         `json:"format"`
	Source string         `json:"source"`
	Note   string         `json:"note,omitempty"`
	Roots  []caExportRoot `json:"roots"`
	Files  []string       `json:"files"`
}

func runCAExport(ctx context.Context, g *globals, format, password, passwordFile, out string) error {
	format = strings.ToLower(format)
	if format == "pkcs12" || format == "pfx" {
		format = "p12"
	}
	if format != "pem" && format != "der" && format != "p12" {
		return api.Errorf(api.CodeInvalidArgument, "use --format pem, der or p12", "export format %q is not supported", format)
	}
	password, err := readPassword(password, passwordFile)
	if err != nil {
		return err
	}
	if format == "p12" && password == "" {
		return api.Errorf(api.CodeInvalidArgument, "pass --password-file F; keytool then takes the same password with -storepass",
			"--format p12 needs a password: the PKCS#12 trust store is protected with it")
	}
	if g.json() && out == "" {
		return api.Errorf(api.CodeInvalidArgument, "pass --out FILE; -o json then prints what was written", "-o json prints a summary, so the bundle needs --out FILE")
	}
	if out == "" && format != "pem" {
		if f, ok := g.stdout.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&fs.ModeCharDevice != 0 {
				return api.Errorf(api.CodeInvalidArgument, "pass --out FILE, or redirect standard output to a file", "%s is binary and standard output is a terminal", format)
			}
		}
	}
	res, roots, err := exportBundle(ctx, g)
	if err != nil {
		return err
	}
	type outFile struct {
		path string // empty: standard output
		data []byte
	}
	var files []outFile
	switch format {
	case "pem":
		files = append(files, outFile{out, pki.EncodeCertsPEM(roots...)})
	case "der":
		if out == "" && len(roots) > 1 {
			return api.Errorf(api.CodeInvalidArgument, "pass --out FILE: the roots go to FILE, then FILE with .2, .3 ... before its extension, one per file",
				"the trust bundle holds %d roots, and a DER file holds one certificate", len(roots))
		}
		for i, r := range roots {
			files = append(files, outFile{numberedPath(out, i), pki.EncodeCertDER(r)})
		}
	case "p12":
		p12, err := pki.EncodePKCS12Truststore(roots, password)
		if err != nil {
			return err
		}
		files = append(files, outFile{out, p12})
	}
	res.Format = format
	res.Files = []string{}
	for _, f := range files {
		if f.path == "" {
			if _, err := g.stdout.Write(f.data); err != nil {
				return err
			}
			continue
		}
		if err := identity.WriteFileAtomic(f.path, f.data, 0o644); err != nil {
			return err
		}
		res.Files = append(res.Files, f.path)
	}
	if res.Note != "" && !g.json() {
		fmt.Fprintf(g.stderr, "note: %s\n", res.Note)
	}
	if g.json() {
		return printJSON(g.stdout, res)
	}
	if out == "" {
		return nil
	}
	fmt.Fprintf(g.stdout, "Wrote %d root CA(s) from %s as %s:\n", len(roots), res.Source, format)
	for _, f := range res.Files {
		fmt.Fprintf(g.stdout, "  %s\n", f)
	}
	for _, r := range res.Roots {
		fmt.Fprintf(g.stdout, "  %s  %s  valid until %s\n    SHA-256 %s\n", r.Pin, r.Subject, ts(r.NotAfter), r.Fingerprint)
	}
	if len(res.Files) > 1 {
		fmt.Fprintf(g.stdout, "The bundle holds %d roots: one DER file each.\n", len(res.Files))
	}
	if format == "p12" {
		fmt.Fprintf(g.stdout, "Java: keytool -list -storetype PKCS12 -keystore %s -storepass ...\n", out)
	}
	return nil
}

// numberedPath names the i-th DER file: FILE, then FILE with .2, .3 ...
// before a .cer/.der/.crt extension, or FILE.2.cer without one.
func numberedPath(out string, i int) string {
	if out == "" || i == 0 {
		return out
	}
	switch ext := filepath.Ext(out); strings.ToLower(ext) {
	case ".cer", ".der", ".crt":
		return fmt.Sprintf("%s.%d%s", strings.TrimSuffix(out, ext), i+1, ext)
	}
	return fmt.Sprintf("%s.%d.cer", out, i+1)
}

// exportBundle fetches the trust bundle from the coordinator's public port,
// verified with the CLI context's bundle, and falls back to the context's
// bundle when the coordinator cannot be reached.
func exportBundle(ctx context.Context, g *globals) (caExportResult, []*x509.Certificate, error) {
	var res caExportResult
	path, source := config.ResolveContextPath(g.context)
	cctx, err := config.LoadContext(path)
	if err != nil {
		var ae *api.Error
		if errors.As(err, &ae) {
			return res, nil, err
		}
		return res, nil, api.Errorf(api.CodeFailedPrecondition,
			"run the `export WARD_CONTEXT=...` line the coordinator prints, or pass --context FILE",
			"cannot read the CLI context %s (from %s): %v", path, source, err)
	}
	saved, err := pki.ParseCertsPEM([]byte(cctx.BundlePEM))
	if err != nil {
		return res, nil, fmt.Errorf("context %s: trust bundle: %w", path, err)
	}
	roots, url, ferr := fetchPublicBundle(ctx, cctx.Public, pki.Bundle(saved))
	if ferr != nil {
		roots = saved
		res.Source = "the CLI context " + path
		res.Note = fmt.Sprintf("the coordinator's bundle could not be fetched (%v); wrote the bundle saved in the CLI context %s, which may miss a root added since", ferr, path)
	} else {
		res.Source = url
	}
	for _, r := range roots {
		res.Roots = append(res.Roots, caExportRoot{Subject: r.Subject.String(), NotAfter: r.NotAfter, Fingerprint: pki.Fingerprint(r), Pin: pki.SPKIPin(r).String()})
	}
	return res, roots, nil
}

// fetchPublicBundle GETs /v1/ca from the public address over TLS verified
// with trust.
func fetchPublicBundle(ctx context.Context, public string, trust pki.Bundle) ([]*x509.Certificate, string, error) {
	if public == "" {
		return nil, "", errors.New("the CLI context names no public address")
	}
	url := "https://" + public + api.PathCA
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: trust.Pool(), ServerName: transport.HostOf(public), MinVersion: tls.VersionTLS12,
		}},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("GET %s answered %s", url, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, "", err
	}
	certs, err := pki.ParseCertsPEM(data)
	if err != nil {
		return nil, "", fmt.Errorf("GET %s: %w", url, err)
	}
	return certs, url, nil
}
