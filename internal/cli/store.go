package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/coordinator"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/store/bolt"
)

// newStoreCmd is `ward store`: backups of the coordinator's store and
// restoring one.
func newStoreCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "store", Short: "Back up the coordinator's store, or restore a backup"}
	cmd.AddCommand(newStoreBackupCmd(g), newStoreRestoreCmd(g))
	return cmd
}

func newStoreBackupCmd(g *globals) *cobra.Command {
	var out, data string
	cmd := &cobra.Command{
		Use:   "backup --out FILE",
		Short: "Write a consistent copy of the store file while the coordinator runs",
		Long: `Write a consistent copy of the coordinator's store (jobs, nodes, tokens,
issued and revoked certificates) to FILE (mode 0600, written atomically),
through the coordinator while it runs: the copy is one snapshot, taken while
writes go on. With --data DIR it copies the store of a stopped coordinator
directly. The copy is checked before it is kept. Restore it with
` + "`ward store restore`" + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return api.Errorf(api.CodeInvalidArgument, "pass --out FILE", "--out is required")
			}
			out, _ = filepath.Abs(out)
			var n, rev int64
			var err error
			if data != "" {
				n, rev, err = backupOffline(cmd.Context(), filepath.Join(data, "ward.db"), out)
			} else {
				n, rev, err = backupOnline(cmd.Context(), g, out)
			}
			if err != nil {
				return err
			}
			if err := bolt.Verify(out); err != nil {
				return fmt.Errorf("the backup written to %s does not check out (%w): try again", out, err)
			}
			if g.json() {
				return printJSON(g.stdout, map[string]any{"file": out, "bytes": n, "revision": rev})
			}
			fmt.Fprintf(g.stdout, "Store backed up to %s (%d bytes, revision %d).\nRestore it, with the coordinator stopped, with: ward store restore --data DIR --from %s\n", out, n, rev, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write the backup to")
	cmd.Flags().StringVar(&data, "data", "", "copy the store of a stopped coordinator in this data directory, without the API")
	return cmd
}

// backupOnline saves GET /v1/store/backup to out.
func backupOnline(ctx context.Context, g *globals, out string) (n, rev int64, err error) {
	c, err := g.client()
	if err != nil {
		return 0, 0, err
	}
	resp, err := c.send(ctx, "GET", "/v1/store/backup", nil)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	rev, _ = strconv.ParseInt(resp.Header.Get("X-Ward-Store-Revision"), 10, 64)
	err = identity.WriteStreamAtomic(out, 0o600, func(w io.Writer) error {
		var err error
		n, err = io.Copy(w, resp.Body)
		if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
			err = fmt.Errorf("the coordinator sent %d of %d bytes", n, resp.ContentLength)
		}
		return err
	})
	return n, rev, err
}

// backupOffline copies the store file of a stopped coordinator.
func backupOffline(ctx context.Context, path, out string) (n, rev int64, err error) {
	st, err := bolt.Open(path, bolt.Options{ReadOnly: true, OpenTimeout: 200 * time.Millisecond})
	if err != nil {
		var corrupt *bolt.CorruptError
		if errors.As(err, &corrupt) {
			return 0, 0, fmt.Errorf("%w: there is nothing sound to back up; restore an earlier backup instead", err)
		}
		return 0, 0, fmt.Errorf("%w (a running coordinator is backed up through its API: leave out --data)", err)
	}
	defer st.Close()
	rev, _ = st.Rev(ctx)
	err = identity.WriteStreamAtomic(out, 0o600, func(w io.Writer) error {
		var err error
		n, err = st.Backup(ctx, w, nil)
		return err
	})
	return n, rev, err
}

func newStoreRestoreCmd(g *globals) *cobra.Command {
	var data, from string
	cmd := &cobra.Command{
		Use:   "restore --data DIR --from FILE",
		Short: "Put a store backup in place of a damaged or lost store (coordinator stopped)",
		Long: `Put a backup made by ` + "`ward store backup`" + ` in place of the store file in the
data directory DIR, with the coordinator stopped. The backup is checked
first; the file it replaces is kept as ward.db.replaced-TIME. Certificates
revoked after the backup was made (the audit log in DIR records them) are
revoked in the restored store again, so no revoked certificate works again.
Other changes made after the backup (jobs, tokens, nodes that joined) are
not in it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if data == "" || from == "" {
				return api.Errorf(api.CodeInvalidArgument, "pass --data DIR (the coordinator's) and --from FILE (the backup)", "--data and --from are required")
			}
			rep, err := coordinator.RestoreStore(data, from, time.Now())
			if err != nil {
				return err
			}
			if g.json() {
				return printJSON(g.stdout, rep)
			}
			fmt.Fprintf(g.stdout, "Restored %s from %s (cluster %s, revision %d).\n", rep.Store, from, rep.Cluster, rep.Revision)
			if rep.Replaced != "" {
				fmt.Fprintf(g.stdout, "The file it replaced is kept as %s.\n", rep.Replaced)
			}
			if len(rep.Reapplied) > 0 {
				fmt.Fprintf(g.stdout, "%d revocation(s) made after the backup were applied again: %v.\n", len(rep.Reapplied), rep.Reapplied)
			}
			fmt.Fprintln(g.stdout, "Jobs, tokens and joins after the backup are not in it: agents that joined since must join again.")
			return nil
		},
	}
	cmd.Flags().StringVar(&data, "data", "", "the coordinator's data directory")
	cmd.Flags().StringVar(&from, "from", "", "the backup file (from `ward store backup`)")
	return cmd
}
