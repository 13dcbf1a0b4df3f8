package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/store"
	"github.com/wardcluster/ward/internal/store/bolt"
)

// The store file must hold this cluster's state. A coordinator that has run
// before (its CA issued its own certificate and the admin context) and
// finds its store missing, empty, damaged or another cluster's, refuses to
// start: starting fresh would keep the CA but forget every revocation,
// token and node, so revoked certificates would work again.

// keyCluster marks a store as this cluster's, from its first start.
const keyCluster = "meta/cluster"

// clusterRecord is what keyCluster holds.
type clusterRecord struct {
	Cluster string    `json:"cluster"`
	Created time.Time `json:"created"`
}

// storeFile is the bbolt store's file name in the data directory.
const storeFile = "ward.db"

// restoreHint is the recovery step every refusal gives.
func (c *Coordinator) restoreHint() string {
	if c.cfg.EtcdStore() {
		return "restore etcd from your last snapshot (`etcdctl snapshot save` makes them, `etcdutl snapshot restore` restores one), then start the coordinator again"
	}
	return fmt.Sprintf("restore the last backup with `ward store restore --data %s --from BACKUP_FILE` (backups are made with `ward store backup`), then start the coordinator again", c.cfg.DataDir)
}

// ranBefore reports whether this data directory's coordinator has started
// before: its first start writes its own certificate (unless it serves an
// external one) and the admin context. A CA imported for a first start
// (`ward ca import`) has neither yet.
func (c *Coordinator) ranBefore() (bool, string) {
	for _, f := range []string{fileAdminCtx, fileServerCert} {
		if exists(c.path(f)) {
			return true, c.path(f)
		}
	}
	return false, ""
}

// checkStoreFile runs before the store is opened (bbolt would create a
// missing file, or initialize an empty one, and so erase the evidence).
func (c *Coordinator) checkStoreFile() error {
	path := c.path(storeFile)
	fi, err := os.Stat(path)
	missing := errors.Is(err, os.ErrNotExist)
	if err != nil && !missing {
		return fmt.Errorf("check the store file %s: %w", path, err)
	}
	ran, evidence := c.ranBefore()
	if !ran || (!missing && fi.Size() > 0) {
		return nil
	}
	what := "is missing"
	if !missing {
		what = "is empty (0 bytes)"
	}
	return fmt.Errorf("the store file %s %s, but this coordinator has run before (%s exists): starting would keep the CA but forget every revocation, join token and node, so revoked certificates would work again. Fix: %s. To start the cluster over instead, move %s away (every agent must then join again)",
		path, what, evidence, c.restoreHint(), c.cfg.DataDir)
}

// storeOpenError explains a store that could not be opened.
func (c *Coordinator) storeOpenError(err error) error {
	var corrupt *bolt.CorruptError
	if errors.As(err, &corrupt) {
		return fmt.Errorf("%v. The coordinator will not start on it. Fix: %s; the damaged file is left as it is", err, c.restoreHint())
	}
	return err
}

// checkStoreState runs once the store is open: it must be this cluster's,
// hold state if the coordinator has run before, and have the CA whose state
// it holds. A store from before keyCluster existed (it holds certificates)
// is marked now, and so is a new one.
func (c *Coordinator) checkStoreState(ctx context.Context) error {
	return c.checkStoreStateOnce(ctx, false)
}

func (c *Coordinator) checkStoreStateOnce(ctx context.Context, retried bool) error {
	path := c.backend.desc
	rec, err := c.st.Get(ctx, keyCluster)
	switch {
	case err == nil:
		var cr clusterRecord
		if err := json.Unmarshal(rec.Value, &cr); err != nil {
			return fmt.Errorf("the %s is damaged: record %s does not decode (%v). Fix: %s", path, keyCluster, err, c.restoreHint())
		}
		if cr.Cluster != c.cfg.Cluster {
			return fmt.Errorf("the %s belongs to cluster %q, not %q. Fix: start with --cluster %s, or give this cluster's data directory (--data) or store (--store)", path, cr.Cluster, c.cfg.Cluster, cr.Cluster)
		}
		return c.checkCAPresent(path)
	case !errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("read the %s: %w. Fix: %s", path, err, c.restoreHint())
	}
	hasState := false
	err = c.st.Scan(ctx, prefixCerts, func(store.Record) error {
		hasState = true
		return errStopScan
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return fmt.Errorf("read the %s: %w. Fix: %s", path, err, c.restoreHint())
	}
	if ran, evidence := c.ranBefore(); ran && !hasState {
		return fmt.Errorf("the %s holds no cluster state, but this coordinator has run before (%s exists): starting would keep the CA but forget every revocation, join token and node, so revoked certificates would work again. Fix: %s. To start the cluster over instead, move %s away (every agent must then join again)",
			path, evidence, c.restoreHint(), c.cfg.DataDir)
	}
	if hasState {
		if err := c.checkCAPresent(path); err != nil {
			return err
		}
	}
	_, err = c.st.Txn(ctx, []store.Cond{store.Absent(keyCluster)}, []store.Op{putJSON(keyCluster, clusterRecord{Cluster: c.cfg.Cluster, Created: c.now().UTC()})})
	if store.IsConflict(err) && !retried {
		// Another coordinator on the same store marked it first: check its mark.
		return c.checkStoreStateOnce(ctx, true)
	}
	return err
}

var errStopScan = errors.New("stop")

// checkCAPresent refuses a store with cluster state when the CA that state
// belongs to is gone: a new CA would be created beside the old state.
func (c *Coordinator) checkCAPresent(storePath string) error {
	if c.cfg.EtcdStore() {
		return nil // the CA is in the store: ensureSharedCA checks it
	}
	if exists(c.path(fileRootCert)) {
		return nil
	}
	return fmt.Errorf("the CA file %s is missing, but the %s holds this cluster's state: a new CA would not match the certificates agents hold. Fix: restore %s from your backup of the data directory (or, to start the cluster over, move %s away)",
		c.path(fileRootCert), storePath, c.path("pki"), c.cfg.DataDir)
}

// stateError explains a store whose records do not decode or do not fit
// together at start.
func (c *Coordinator) stateError(what string, err error) error {
	return fmt.Errorf("%s from the %s: %w. The store is inconsistent. Fix: %s", what, c.backend.desc, err, c.restoreHint())
}

// backuper is a store that can copy itself while in use (bolt can).
type backuper interface {
	Backup(ctx context.Context, w io.Writer, size func(int64)) (int64, error)
}

// apiStoreBackup streams a consistent copy of the store file: GET
// /v1/store/backup, which `ward store backup` saves.
func (c *Coordinator) apiStoreBackup(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	if err := c.allow(p, authz.StoreBackup); err != nil {
		return err
	}
	b, ok := c.st.(backuper)
	if !ok {
		return api.Errorf(api.CodeFailedPrecondition, "back up etcd with its own tools: `etcdctl snapshot save FILE`", "this coordinator's store (%s) is not copied through the API", c.backend.desc)
	}
	rev, err := c.st.Rev(r.Context())
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-Ward-Store-Revision", strconv.FormatInt(rev, 10))
	n, err := b.Backup(r.Context(), w, func(size int64) {
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusOK)
	})
	if err != nil {
		c.log.Warn("store backup ended early", "by", p.String(), "bytes", n, "err", err)
		return nil // the answer has started: a short body tells the client
	}
	c.log.Info("store backed up", "by", p.String(), "bytes", n, "revision", rev)
	c.Record(p, audit.Event{Type: "store.backup", Detail: map[string]string{"bytes": strconv.FormatInt(n, 10), "revision": strconv.FormatInt(rev, 10)}})
	return nil
}
