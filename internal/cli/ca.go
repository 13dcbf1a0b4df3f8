package cli

import (
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/pki"
)

func newCACmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "The cluster CA: pins, CRL, rotation, import and export"}
	cmd.AddCommand(newCACRLCmd(g), newCAPinCmd(g), newCAStatusCmd(g), newCARotateCmd(g), newCAImportCmd(g), newCACSRCmd(g), newCAExportCmd(g))
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

func printCAStatus(w io.Writer, st api.CAStatus) {
	fmt.Fprintf(w, "CA generation %d, rotation phase %d of 3: %s", st.Generation, st.Phase, st.PhaseName)
	if !st.Changed.IsZero() {
		fmt.Fprintf(w, " (since %s)", ts(st.Changed))
	}
	fmt.Fprintln(w)
	for _, r := range st.Roots {
		fmt.Fprintf(w, "  trusted root:   %s  %s  expires %s\n", r.Subject, r.Pin, ts(r.NotAfter))
	}
	fmt.Fprintf(w, "  issuing now:    %s (serial %s)\n", st.Issuing.Subject, st.Issuing.Serial)
	names := make([]string, 0, len(st.Agents))
	for n := range st.Agents {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  agents on %s: %d\n", n, st.Agents[n])
	}
	if len(st.OnOldCA) > 0 {
		fmt.Fprintf(w, "  not yet renewed: %s\n", strings.Join(st.OnOldCA, ", "))
	}
	fmt.Fprintf(w, "Next: %s\n", st.Next)
}

func newCAStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the CA, the rotation phase, and how many agents hold certificates from each CA",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, printed, err := call[api.CAStatus](cmd, g, "GET", "/v1/ca/status", nil)
			if err != nil || printed {
				return err
			}
			printCAStatus(g.stdout, st)
			return nil
		},
	}
}

func newCARotateCmd(g *globals) *cobra.Command {
	var req api.RotateRequest
	var spread time.Duration
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Move the CA rotation one phase forward (or back with --rollback)",
		Long: `Rotate the cluster CA without outages, one phase per call:

  1 trust   a new root and issuing CA are created; the new root joins every
            trust bundle (pushed to connected agents, given to the others
            when they return). The new root is cross-signed by the old one.
  2 issue   the new issuing CA issues every new certificate.
  3 renew   agents are asked to renew, each at a random moment within --spread.
  retire    the old CA leaves every trust bundle; agents that were away
            renew through the public port when they return.

--rollback returns to the previous phase (not after retiring).
ward ca status shows the phase and how many agents hold which CA's certificates.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Spread = api.Duration(spread)
			st, printed, err := call[api.CAStatus](cmd, g, "POST", "/v1/ca/rotate", req)
			if err != nil || printed {
				return err
			}
			printCAStatus(g.stdout, st)
			return nil
		},
	}
	cmd.Flags().BoolVar(&req.Rollback, "rollback", false, "return to the previous phase")
	cmd.Flags().BoolVar(&req.Force, "force", false, "retire the old CA even if some agents have not renewed (they renew when they return)")
	cmd.Flags().DurationVar(&spread, "spread", 5*time.Minute, "the renew phase spreads agent renewals over this window")
	return cmd
}
