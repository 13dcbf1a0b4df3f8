package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/castore"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/store"
)

// fileInstance names this data directory among coordinators sharing a
// store: a random id made at its first start on a shared store.
const fileInstance = "instance"

// coordinatorID is this coordinator's name in spiffe://<cluster>/coordinator/<id>:
// coordinator_id when set; else the name in the certificate it already has,
// so it stays the same across restarts; else one derived from the host name.
func (c *Coordinator) coordinatorID() string {
	if c.cfg.CoordinatorID != "" {
		return c.cfg.CoordinatorID
	}
	if b, err := os.ReadFile(c.path(fileServerCert)); err == nil {
		if certs, err := pki.ParseCertsPEM(b); err == nil {
			if id, err := pki.IDFromCert(certs[0]); err == nil && id.Role == pki.RoleCoordinator && id.Cluster == c.cfg.Cluster {
				return id.Name
			}
		}
	}
	return coordinatorName()
}

// instanceID reads (or makes, at the first start) this data directory's
// instance id.
func (c *Coordinator) instanceID() (string, error) {
	path := c.path(fileInstance)
	b, err := os.ReadFile(path)
	if err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	id := hex.EncodeToString(raw)
	if err := identity.WriteFileAtomic(path, []byte(id+"\n"), 0o644); err != nil {
		return "", err
	}
	return id, nil
}

// ensureSharedCA makes sure the shared store holds the cluster CA, and
// that this coordinator may issue itself a certificate for id. The first
// coordinator creates the CA (compare-and-set: of several starting at once,
// exactly one does); a CA imported into the data directory (`ward ca
// import`, or a coordinator that ran on etcd before the CA moved there) is
// moved into the store instead. The others find it. Every key in the store
// is encrypted with the CA passphrase; a wrong passphrase is an error,
// never a reason to make a new CA.
func (c *Coordinator) ensureSharedCA(now time.Time, id pki.ID) (created bool, err error) {
	if len(c.caPass) == 0 {
		return false, api.Errorf(api.CodeFailedPrecondition,
			"give every coordinator the same passphrase file: --ca-passphrase-file FILE (config key ca_passphrase_file, mode 0600; make one with `openssl rand -base64 32 > FILE && chmod 600 FILE`)",
			"with an etcd store the cluster CA's keys are kept in etcd, encrypted with a passphrase, and this coordinator has none")
	}
	k, err := castore.New(c.st, c.caPass, id.String())
	if err != nil {
		return false, err
	}
	c.keeper = storeKeeper{c: c, k: k}
	ctx, cancel := context.WithTimeout(context.Background(), caStoreTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		has, err := k.Exists(ctx, 1)
		if err != nil {
			return false, fmt.Errorf("look for the cluster CA in the %s: %w", c.backend.desc, err)
		}
		local := exists(c.path(fileRootCert))
		if has {
			if local {
				return false, c.retireLocalCA(ctx, k, now)
			}
			return false, nil
		}
		if local {
			err = c.seedSharedCA(ctx, k)
		} else {
			if err := c.refuseStateWithoutCA(ctx); err != nil {
				return false, err
			}
			var root, iss *pki.CA
			if root, iss, err = newCA(c.cfg.Cluster, now); err != nil {
				return false, err
			}
			if err = k.Create(ctx, &castore.Generation{Number: 1, Root: root, Issuing: iss}); err == nil {
				c.auditCACreate(root, iss)
				c.log.Info("created the cluster CA in the store; other coordinators on this store use it", "store", c.backend.desc, "root_pin", pki.SPKIPin(root.Cert).String())
				return true, nil
			}
		}
		if errors.Is(err, castore.ErrExists) && attempt == 0 {
			continue // another coordinator stored its CA first: use that one
		}
		if err != nil {
			return false, err
		}
		return false, nil
	}
}

// claimID takes the coordinator id in the store for this data directory.
// It runs once the CA has been decrypted, so a coordinator refused for its
// passphrase claims nothing.
func (c *Coordinator) claimID(id pki.ID) error {
	ctx, cancel := context.WithTimeout(context.Background(), caStoreTimeout)
	defer cancel()
	inst, err := c.instanceID()
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	err = castore.ClaimID(ctx, c.st, id.Name, castore.Claim{Instance: inst, Host: host, DataDir: c.cfg.DataDir, Claimed: c.now().UTC()})
	var taken *castore.IDTakenError
	if errors.As(err, &taken) {
		return api.Errorf(api.CodeFailedPrecondition,
			"give each coordinator its own id with --coordinator-id NAME (config key coordinator_id); the id is derived from the host name when unset, so coordinators sharing a host need one",
			"%v", err)
	}
	if err != nil {
		return fmt.Errorf("claim coordinator id %q in the %s: %w", id.Name, c.backend.desc, err)
	}
	return nil
}

// refuseStateWithoutCA refuses to create a CA beside cluster state that
// was made by another one: certificates were issued, so a CA existed.
func (c *Coordinator) refuseStateWithoutCA(ctx context.Context) error {
	hasState := false
	err := c.st.Scan(ctx, prefixCerts, func(store.Record) error {
		hasState = true
		return errStopScan
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return fmt.Errorf("read the %s: %w", c.backend.desc, err)
	}
	if !hasState {
		return nil
	}
	return fmt.Errorf("the %s holds this cluster's certificates but not its CA (no record %s): a new CA would not match the certificates agents hold. Fix: start the coordinator whose data directory holds the CA (%s) first, so it moves the CA into the store, or %s",
		c.backend.desc, castore.GenKey(1), filepath.Join("DATA", fileRootCert), c.restoreHint())
}

// seedSharedCA moves the CA of the data directory into the store: every
// generation the rotation record knows, keys encrypted, in one
// transaction.
func (c *Coordinator) seedSharedCA(ctx context.Context, k *castore.Keeper) error {
	rot, _, err := c.readRotation(ctx)
	if err != nil {
		return err
	}
	files := fileKeeper{c}
	var gens []*castore.Generation
	for gen := 1; gen <= max(rot.Current, rot.Next); gen++ {
		root, iss, err := files.load(gen, gen >= rot.Current)
		if err != nil {
			return fmt.Errorf("move the CA of %s into the store: %w", c.path("pki"), err)
		}
		gens = append(gens, &castore.Generation{Number: gen, Root: root, Issuing: iss, Cross: files.cross(gen)})
	}
	if err := k.Create(ctx, gens...); err != nil {
		return err
	}
	c.log.Info("moved the CA of the data directory into the store; every coordinator on this store uses it", "store", c.backend.desc, "generations", len(gens),
		"root_pin", pki.SPKIPin(gens[0].Root.Cert).String())
	return c.moveLocalCAAside(c.now())
}

// retireLocalCA handles CA files in the data directory of a coordinator
// whose store already holds the cluster CA: the same CA (moved into the
// store earlier) is put aside; another one is refused.
func (c *Coordinator) retireLocalCA(ctx context.Context, k *castore.Keeper, now time.Time) error {
	g, err := k.Load(ctx, 1, false)
	if err != nil {
		return c.caStoreError(err)
	}
	root, _, err := fileKeeper{c}.load(1, false)
	if err != nil {
		return err
	}
	if !root.Cert.Equal(g.Root.Cert) {
		return api.Errorf(api.CodeFailedPrecondition,
			fmt.Sprintf("start this coordinator with an empty data directory to use the cluster CA of the store, or move %s away; replacing the CA of an etcd cluster is not supported yet (rotate it with `ward ca rotate`)", c.path("pki")),
			"the data directory holds a CA (%s, pin %s) other than the cluster CA in the %s (pin %s)",
			c.path(fileRootCert), pki.SPKIPin(root.Cert), c.backend.desc, pki.SPKIPin(g.Root.Cert))
	}
	return c.moveLocalCAAside(now)
}

// moveLocalCAAside moves the CA files of the data directory (not the
// coordinator's own credential) into pki/moved-to-store-TIME, so the store
// is the only CA this coordinator reads.
func (c *Coordinator) moveLocalCAAside(now time.Time) error {
	dst := c.path("pki", "moved-to-store-"+now.UTC().Format("20060102T150405Z"))
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	entries, err := os.ReadDir(c.path("pki"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		n := e.Name()
		move := strings.HasPrefix(n, "gen-") && e.IsDir() ||
			slices.Contains([]string{"root-ca.crt", "root-ca.key", "issuing-ca.crt", "issuing-ca.key", "cross.crt"}, n)
		if !move {
			continue
		}
		if err := os.Rename(c.path("pki", n), filepath.Join(dst, n)); err != nil {
			return fmt.Errorf("move %s aside: %w", c.path("pki", n), err)
		}
	}
	c.log.Warn("the CA files of the data directory were moved aside: the cluster CA is read from the store now; delete them once etcd is backed up (`etcdctl snapshot save`)",
		"dir", dst)
	return nil
}
