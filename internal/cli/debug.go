package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/buildinfo"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/supportbundle"
)

func newDebugCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "debug",
		Short: "Collect what support needs when something breaks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	var out, since string
	var lines int
	bundle := &cobra.Command{
		Use:   "bundle --out FILE.tar.gz",
		Short: "Write a support bundle: status, doctor, nodes, CA, certificates, audit and log lines, versions, config",
		Long: `Write a support bundle (a tar.gz, mode 0600) from the coordinator the CLI
context points at: the cluster status, doctor findings, node list, CA
status, issued certificates (public parts only), join tokens (IDs and
limits; only hashes of secrets are ever stored), the last --lines audit
events and coordinator log lines, the coordinator's effective config,
a listing of its data directory (names, modes and sizes; no file is
read), runtime figures, its metrics and every version.

It never contains a private key, a token secret or a passphrase: the
coordinator sends none, and every file is scrubbed again before it is
written (PEM private keys and join-token secrets are replaced). A part
that cannot be collected is listed in errors.txt; the rest is still
written.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return api.Errorf(api.CodeInvalidArgument, "pass --out FILE.tar.gz", "ward debug bundle needs a file to write")
			}
			if lines < 1 || lines > 2000 {
				return api.Errorf(api.CodeInvalidArgument, "use --lines between 1 and 2000", "--lines %d is out of range", lines)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			b := collectBundle(cmd.Context(), c, lines, since)
			var buf bytes.Buffer
			dir := "ward-bundle-" + time.Now().UTC().Format("20060102T150405Z")
			if err := b.Write(&buf, dir); err != nil {
				return err
			}
			abs, _ := filepath.Abs(out)
			if err := identity.WriteFileAtomic(abs, buf.Bytes(), 0o600); err != nil {
				return fmt.Errorf("write the bundle: %w", err)
			}
			if g.json() {
				return printJSON(g.stdout, map[string]any{"file": abs, "files": b.Names(), "scrubbed": b.Scrubbed})
			}
			fmt.Fprintf(g.stdout, "Wrote %s (%d files, %d bytes; %s).\n", abs, len(b.Names()), buf.Len(), b.Summary())
			return nil
		},
	}
	f := bundle.Flags()
	f.StringVar(&out, "out", "", "file to write (tar.gz, mode 0600)")
	f.IntVar(&lines, "lines", 500, "audit events and coordinator log lines to include (at most 2000)")
	f.StringVar(&since, "since", "24h", "audit events from this far back (then the last --lines of them)")
	cmd.AddCommand(bundle)
	return cmd
}

// collectBundle gathers every part it can; a part that fails is listed in
// errors.txt instead of ending the bundle.
func collectBundle(ctx context.Context, c *client, lines int, since string) *supportbundle.Bundle {
	b := supportbundle.New(time.Now())
	var errs []string
	get := func(path string) []byte {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		resp, err := c.send(rctx, "GET", path, nil)
		if err != nil {
			errs = append(errs, fmt.Sprintf("GET %s: %v", path, err))
			return nil
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		if err != nil {
			errs = append(errs, fmt.Sprintf("GET %s: %v", path, err))
			return nil
		}
		return data
	}
	addJSON := func(name, path string) []byte {
		data := get(path)
		if data == nil {
			return nil
		}
		var pretty bytes.Buffer
		if json.Indent(&pretty, data, "", "  ") == nil {
			data = pretty.Bytes()
		}
		b.Add(name, data)
		return data
	}
	b.AddJSON("versions/cli.json", buildinfo.Get())
	b.AddJSON("context.json", map[string]any{"server": c.ctx.Server, "public": c.ctx.Public, "cluster": c.ctx.Cluster, "pins": c.ctx.Pins,
		"certificate": c.cred.Leaf().Subject.String(), "expires": c.cred.Leaf().NotAfter.UTC()})
	addJSON("status.json", "/v1/status")
	addJSON("doctor.json", "/v1/doctor")
	addJSON("nodes.json", "/v1/nodes")
	addJSON("ca-status.json", "/v1/ca/status")
	addJSON("certs.json", "/v1/certs")
	addJSON("tokens.json", "/v1/tokens")
	if data := get("/v1/audit?since=" + url.QueryEscape(since)); data != nil {
		var events []audit.Event
		if err := json.Unmarshal(data, &events); err != nil {
			errs = append(errs, "audit: "+err.Error())
		} else {
			var jl bytes.Buffer
			for _, e := range events[max(0, len(events)-lines):] {
				line, _ := json.Marshal(e)
				jl.Write(append(line, '\n'))
			}
			b.Add("audit.jsonl", jl.Bytes())
		}
	}
	if data := get(fmt.Sprintf("/v1/debug/info?lines=%d", lines)); data != nil {
		var info api.DebugInfo
		if err := json.Unmarshal(data, &info); err != nil {
			errs = append(errs, "debug info: "+err.Error())
		} else {
			b.Add("coordinator/log.jsonl", []byte(strings.Join(info.LogLines, "\n")+"\n"))
			var cfg bytes.Buffer
			json.Indent(&cfg, info.Config, "", "  ")
			b.Add("coordinator/config.json", cfg.Bytes())
			var listing strings.Builder
			for _, f := range info.DataDir {
				fmt.Fprintf(&listing, "%s %10d %s %s\n", f.Mode, f.Size, f.Modified.Format(time.RFC3339), f.Path)
			}
			b.Add("coordinator/data-dir.txt", []byte(listing.String()))
			b.AddJSON("coordinator/runtime.json", info.Runtime)
		}
	}
	if data := get("/metrics"); data != nil {
		b.Add("coordinator/metrics.txt", data)
	}
	if len(errs) > 0 {
		b.Add("errors.txt", []byte(strings.Join(errs, "\n")+"\n"))
	}
	return b
}
