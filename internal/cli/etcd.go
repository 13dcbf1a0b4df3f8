package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/store/etcd"
	"github.com/wardcluster/ward/internal/store/etcd/etcdcerts"
)

func newEtcdCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "etcd", Short: "Set up the etcd store that coordinators share"}
	cmd.AddCommand(newEtcdCertsCmd(g))
	return cmd
}

// etcdCertsResult is what `ward etcd certs -o json` prints.
type etcdCertsResult struct {
	Dir       string   `json:"dir"`
	CA        string   `json:"ca"`
	CACreated bool     `json:"ca_created"`
	CAPin     string   `json:"ca_pin"`
	Written   []string `json:"written"`
}

func newEtcdCertsCmd(g *globals) *cobra.Command {
	var out, cluster, server string
	var hosts, clients []string
	var lifetime time.Duration
	var force bool
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Issue etcd server and client certificates from an etcd CA that Ward keeps in --out",
		Long: `Issue the certificates of the mutual TLS link between coordinators and etcd,
for sites with no PKI of their own. The first run creates an etcd CA in --out
(ca.pem, and ca-key.pem with mode 0600; keep it safe, later runs issue more
certificates from it). Every file is written with mode 0600.

This CA is separate from the cluster CA on purpose: etcd admits every client
certificate its CA vouches for, so trusting the cluster CA there would let
any agent or user certificate read and rewrite the whole store.

  ward etcd certs --out /etc/ward/etcd --host etcd1.example.com --host 10.0.0.5

writes etcd.pem/etcd-key.pem (the server certificate, for every --host) and
ward-coordinator.pem/ward-coordinator-key.pem (a client certificate), and
prints the etcd and coordinator flags that use them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return api.Errorf(api.CodeInvalidArgument, "pass --out DIR", "--out is required: the directory for the etcd CA and certificates")
			}
			if len(hosts) == 0 && len(clients) == 0 {
				return api.Errorf(api.CodeInvalidArgument, "pass --host NAME (etcd's server certificate) and/or --client NAME", "nothing to issue")
			}
			if err := pki.ValidName("cluster", cluster); err != nil {
				return api.Errorf(api.CodeInvalidArgument, "use --cluster with the coordinator's cluster name", "%v", err)
			}
			type leaf struct {
				kind  etcdcerts.Kind
				name  string
				hosts []string
			}
			var leaves []leaf
			if len(hosts) > 0 {
				leaves = append(leaves, leaf{etcdcerts.Server, server, hosts})
			}
			for _, c := range clients {
				leaves = append(leaves, leaf{kind: etcdcerts.Client, name: c})
			}
			for _, l := range leaves {
				if l.name == "" || strings.ContainsAny(l.name, "/\\") || l.name == "ca" || l.name == "ca-key" {
					return api.Errorf(api.CodeInvalidArgument, "use a plain name such as etcd1 or coordinator-a", "certificate name %q is not a plain file name", l.name)
				}
				for _, p := range []string{l.name + ".pem", l.name + "-key.pem"} {
					if _, err := os.Stat(filepath.Join(out, p)); err == nil && !force {
						return api.Errorf(api.CodeAlreadyExists, "pass --force to replace it, or choose another name", "%s already exists", filepath.Join(out, p))
					} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
						return err
					}
				}
			}
			now := time.Now()
			ca, created, err := etcdcerts.LoadOrCreateCA(out, cluster, now)
			if err != nil {
				return err
			}
			res := etcdCertsResult{Dir: out, CA: filepath.Join(out, etcdcerts.FileCA), CACreated: created, CAPin: pki.SPKIPin(ca.Cert).String()}
			for _, l := range leaves {
				cred, err := etcdcerts.Issue(ca, l.kind, l.name, l.hosts, now, lifetime)
				if err != nil {
					return err
				}
				cert, key := filepath.Join(out, l.name+".pem"), filepath.Join(out, l.name+"-key.pem")
				if err := etcdcerts.Save(cred, cert, key); err != nil {
					return err
				}
				res.Written = append(res.Written, cert, key)
			}
			if g.json() {
				return printJSON(g.stdout, res)
			}
			w := g.stdout
			if created {
				fmt.Fprintf(w, "Created the etcd CA %s (pin %s); its key %s must stay private.\n", res.CA, res.CAPin, filepath.Join(out, etcdcerts.FileCAKey))
			} else {
				fmt.Fprintf(w, "Used the etcd CA %s (pin %s).\n", res.CA, res.CAPin)
			}
			for _, f := range res.Written {
				fmt.Fprintf(w, "Wrote %s (0600)\n", f)
			}
			if len(hosts) > 0 {
				fmt.Fprintf(w, "\nStart etcd with (on the host named %s):\n  etcd --cert-file %s --key-file %s \\\n    --trusted-ca-file %s --client-cert-auth \\\n    --listen-client-urls https://0.0.0.0:2379 --advertise-client-urls https://%s:2379 \\\n    --max-txn-ops %d --max-request-bytes %d\n",
					hosts[0], filepath.Join(out, server+".pem"), filepath.Join(out, server+"-key.pem"), res.CA, hosts[0],
					etcd.DefaultLimits.MaxOps, etcd.DefaultLimits.MaxBytes+2<<20)
				fmt.Fprintf(w, "(add --peer-cert-file, --peer-key-file, --peer-trusted-ca-file and --peer-client-cert-auth with the same files for a cluster of several members)\n")
			}
			for _, c := range clients {
				host := "ETCD_HOST"
				if len(hosts) > 0 {
					host = hosts[0]
				}
				fmt.Fprintf(w, "\nStart a coordinator with (the same CA passphrase file on every coordinator: the cluster CA lives in etcd, its keys encrypted with it):\n  ward coordinator --store etcd://%s:2379 \\\n    --etcd-ca %s --etcd-cert %s --etcd-key %s \\\n    --ca-passphrase-file CA_PASSPHRASE_FILE ...\n",
					host, res.CA, filepath.Join(out, c+".pem"), filepath.Join(out, c+"-key.pem"))
				break
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "directory for the etcd CA and certificates (created 0700)")
	f.StringVar(&cluster, "cluster", "ward", "cluster name, written into the CA's subject")
	f.StringArrayVar(&hosts, "host", nil, "a name or IP clients dial etcd at; issues the server certificate (repeatable)")
	f.StringVar(&server, "server", "etcd", "file name of the server certificate (NAME.pem, NAME-key.pem)")
	f.StringArrayVar(&clients, "client", []string{"ward-coordinator"}, "issue a client certificate with this name (repeatable; the etcd user name if etcd auth is on)")
	f.DurationVar(&lifetime, "lifetime", etcdcerts.LeafLifetime, "lifetime of the certificates issued")
	f.BoolVar(&force, "force", false, "replace certificates that exist")
	return cmd
}
