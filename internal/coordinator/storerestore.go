package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/store"
	"github.com/wardcluster/ward/internal/store/bolt"
)

// RestoreReport says what RestoreStore did.
type RestoreReport struct {
	Store    string // the store file restored
	Cluster  string // the cluster the backup belongs to
	Revision int64  // the backup's store revision
	Replaced string // where the file it replaced went ("" if there was none)
	// Reapplied lists revocations the audit log records that the backup
	// did not hold (made after it): they are applied again.
	Reapplied []string
}

// RestoreStore puts the store backup from (made by `ward store backup`) in
// place of dataDir's store file, with no coordinator running on dataDir.
// The backup is checked first; the file it replaces is kept beside it as
// ward.db.replaced-TIME. Revocations made after the backup (the audit log
// has them) are applied to the restored store again, so a restore never
// brings a revoked certificate back.
func RestoreStore(dataDir, from string, now time.Time) (RestoreReport, error) {
	dst := filepath.Join(dataDir, storeFile)
	rep := RestoreReport{Store: dst}
	if err := bolt.Verify(from); err != nil {
		return rep, fmt.Errorf("the backup %s cannot be used: %w", from, err)
	}
	backup, err := bolt.Open(from, bolt.Options{ReadOnly: true})
	if err != nil {
		return rep, fmt.Errorf("the backup %s cannot be used: %w", from, err)
	}
	rec, err := backup.Get(context.Background(), keyCluster)
	if err == nil {
		var cr clusterRecord
		if err := json.Unmarshal(rec.Value, &cr); err == nil {
			rep.Cluster = cr.Cluster
		}
	}
	rep.Revision, _ = backup.Rev(context.Background())
	backup.Close()
	if rep.Cluster == "" {
		return rep, fmt.Errorf("%s is a store file without a cluster record: it is not a backup made by `ward store backup`", from)
	}

	// No coordinator may hold the file being replaced.
	if f, err := os.OpenFile(dst, os.O_RDWR, 0); err == nil {
		defer f.Close()
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			return rep, fmt.Errorf("a coordinator is running on %s (it holds %s): stop it first, then restore", dataDir, dst)
		}
		rep.Replaced = dst + ".replaced-" + now.UTC().Format("20060102T150405Z")
		if err := os.Rename(dst, rep.Replaced); err != nil {
			return rep, fmt.Errorf("move the current store file aside: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return rep, fmt.Errorf("open %s: %w", dst, err)
	}
	src, err := os.Open(from)
	if err != nil {
		return rep, err
	}
	defer src.Close()
	if err := identity.WriteStreamAtomic(dst, 0o600, func(w io.Writer) error {
		_, err := io.Copy(w, src)
		return err
	}); err != nil {
		return rep, err
	}
	if rep.Reapplied, err = reapplyRevocations(dataDir, dst); err != nil {
		return rep, fmt.Errorf("the backup is in place, but revocations made after it could not be applied again: %w (fix: run the restore again, or revoke them by hand: `ward audit --type cert.revoke` lists them)", err)
	}
	if log, err := audit.Open(filepath.Join(dataDir, "audit.log")); err == nil {
		log.Record(audit.Event{Type: "store.restore", Target: dst, Detail: map[string]string{
			"from": from, "revision": fmt.Sprint(rep.Revision), "replaced": rep.Replaced, "revocations_reapplied": fmt.Sprint(len(rep.Reapplied))}})
		log.Close()
	}
	return rep, nil
}

// reapplyRevocations marks revoked, in the store file at path, every
// certificate the data directory's audit log says was revoked. A
// certificate issued after the backup has no record: it gets one that
// holds its revocation, which is enough to refuse it at the handshake.
func reapplyRevocations(dataDir, path string) ([]string, error) {
	f, err := os.Open(filepath.Join(dataDir, "audit.log"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	events, err := audit.Read(f, time.Time{})
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("read the audit log: %w", err)
	}
	st, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	ctx := context.Background()
	latest := map[string]audit.Event{} // serial → its last revocation event
	for _, e := range events {
		if e.Type == "cert.revoke" && e.Result == "ok" && e.Target != "" {
			latest[e.Target] = e
		}
	}
	var ops []store.Op
	var done []string
	for serial, e := range latest {
		var cr certRecord
		rec, err := st.Get(ctx, certKey(serial))
		switch {
		case err == nil:
			if err := json.Unmarshal(rec.Value, &cr); err != nil {
				return nil, fmt.Errorf("%s: %w", rec.Key, err)
			}
			if cr.Revoked {
				continue
			}
		case errors.Is(err, store.ErrNotFound):
			cr = certRecord{Serial: serial, Identity: "(issued after the backup)"}
		default:
			return nil, err
		}
		cr.Revoked, cr.RevokedAt, cr.Reason = true, e.Time, e.Detail["reason"]
		if _, known := crlReasons[cr.Reason]; !known {
			cr.Reason = "unspecified"
		}
		ops = append(ops, putJSON(certKey(serial), cr))
		if node := e.Detail["node"]; node != "" {
			if nr, err := st.Get(ctx, nodeKey(node)); err == nil {
				var n nodeRecord
				if json.Unmarshal(nr.Value, &n) == nil && !n.Revoked {
					n.Revoked = true
					ops = append(ops, putJSON(nodeKey(node), n))
				}
			}
		}
		done = append(done, serial)
	}
	if len(ops) == 0 {
		return nil, nil
	}
	if _, err := st.Txn(ctx, nil, ops); err != nil {
		return nil, err
	}
	sort.Strings(done)
	return done, nil
}
