package cli

import (
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/pki"
)

func newCACmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "The cluster CA: pins, CRL, rotation, import and export"}
	cmd.AddCommand(newCACRLCmd(g), newCAPinCmd(g))
	return cmd
}

func newCACRLCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "crl",
		Short: "Show the issuing CA's current CRL, or write it (DER) with --out",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.send(cmd.Context(), "GET", "/v1/ca/crl", nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			der, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
			if err != nil {
				return err
			}
			crl, err := x509.ParseRevocationList(der)
			if err != nil {
				return fmt.Errorf("the coordinator sent an unreadable CRL: %w", err)
			}
			if out != "" {
				if err := os.WriteFile(out, der, 0o644); err != nil {
					return err
				}
			}
			type entry struct {
				Serial string    `json:"serial"`
				At     time.Time `json:"revoked_at"`
				Reason int       `json:"reason_code"`
			}
			summary := struct {
				Issuer     string    `json:"issuer"`
				Number     string    `json:"number"`
				ThisUpdate time.Time `json:"this_update"`
				NextUpdate time.Time `json:"next_update"`
				Revoked    []entry   `json:"revoked"`
				File       string    `json:"file,omitempty"`
			}{Issuer: crl.Issuer.String(), Number: crl.Number.String(), ThisUpdate: crl.ThisUpdate, NextUpdate: crl.NextUpdate, File: out, Revoked: []entry{}}
			for _, e := range crl.RevokedCertificateEntries {
				summary.Revoked = append(summary.Revoked, entry{Serial: fmt.Sprintf("%x", e.SerialNumber), At: e.RevocationTime, Reason: e.ReasonCode})
			}
			if g.json() {
				return printJSON(g.stdout, summary)
			}
			fmt.Fprintf(g.stdout, "CRL #%s by %s\n  this update: %s\n  next update: %s (%s)\n  revoked:     %d certificate(s)\n",
				summary.Number, summary.Issuer, ts(crl.ThisUpdate), ts(crl.NextUpdate), until(crl.NextUpdate), len(summary.Revoked))
			for _, e := range summary.Revoked {
				fmt.Fprintf(g.stdout, "    %s  %s  reason %d\n", e.Serial, ts(e.At), e.Reason)
			}
			if out != "" {
				fmt.Fprintf(g.stdout, "Wrote the CRL (DER) to %s.\n", out)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the CRL in DER to this file")
	return cmd
}

func newCAPinCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "pin",
		Short: "Print the SPKI pin of every CA in the CLI context's trust bundle",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path, _ := config.ResolveContextPath(g.context)
			ctx, err := config.LoadContext(path)
			if err != nil {
				return err
			}
			roots, err := pki.ParseCertsPEM([]byte(ctx.BundlePEM))
			if err != nil {
				return err
			}
			type pinOut struct {
				Subject string `json:"subject"`
				Pin     string `json:"pin"`
			}
			var outs []pinOut
			for _, r := range roots {
				outs = append(outs, pinOut{Subject: r.Subject.CommonName, Pin: pki.SPKIPin(r).String()})
			}
			if g.json() {
				return printJSON(g.stdout, outs)
			}
			for _, o := range outs {
				fmt.Fprintf(g.stdout, "%s  %s\n", o.Pin, o.Subject)
			}
			return nil
		},
	}
}
