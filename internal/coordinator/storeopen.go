package coordinator

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/store"
	"github.com/wardcluster/ward/internal/store/bolt"
	"github.com/wardcluster/ward/internal/store/etcd"
)

// etcdOpenTimeout bounds the first contact with etcd at start.
const etcdOpenTimeout = 30 * time.Second

// storeBackend is what the coordinator knows of its store beyond the
// contract: where it is, for messages, and the etcd link's TLS.
type storeBackend struct {
	desc    string    // "bolt store /data/ward.db" or "etcd store etcd://h:2379 (prefix /ward/c/)"
	etcdTLS *etcd.TLS // nil unless etcd over TLS
}

// openStore opens the configured store: the bolt file in the data
// directory, or etcd. An etcd that cannot be reached is an error naming
// the endpoint, the setting and the fix; there is no fallback to bolt.
func (c *Coordinator) openStore() (store.Store, error) {
	if !c.cfg.EtcdStore() {
		path := c.path(storeFile)
		c.backend.desc = "bolt store " + path
		if err := c.checkStoreFile(); err != nil {
			return nil, err
		}
		st, err := bolt.Open(path, bolt.Options{NoSync: c.cfg.StoreNoSync})
		if err != nil {
			return nil, c.storeOpenError(err) // a nil store.Store, not a nil *bolt.Store in one
		}
		return st, nil
	}
	endpoints, prefix, err := config.ParseEtcdStore(c.cfg.Store)
	if err != nil {
		return nil, err
	}
	if prefix == "" {
		prefix = "/ward/" + c.cfg.Cluster + "/"
	}
	opts := etcd.Options{Endpoints: endpoints, Prefix: prefix, Logger: c.log, InsecurePlaintext: c.cfg.InsecureEtcdPlaintext}
	if !c.cfg.InsecureEtcdPlaintext {
		if opts.TLS, err = etcd.LoadTLS(c.cfg.EtcdCA, c.cfg.EtcdCert, c.cfg.EtcdKey); err != nil {
			return nil, err
		}
		c.backend.etcdTLS = opts.TLS
	} else {
		c.log.Warn("INSECURE setting in effect: the link to etcd is plaintext; anyone on the path can read and change every job, token and certificate record",
			"setting", "--insecure-etcd-plaintext", "endpoints", strings.Join(endpoints, ","),
			"fix", "issue etcd certificates (`ward etcd certs`), serve etcd over TLS with --client-cert-auth, and pass --etcd-ca, --etcd-cert and --etcd-key")
	}
	c.backend.desc = fmt.Sprintf("etcd store %s (prefix %s)", c.cfg.Store, prefix)
	ctx, cancel := context.WithTimeout(context.Background(), etcdOpenTimeout)
	defer cancel()
	st, err := etcd.Open(ctx, opts)
	if err != nil {
		return nil, err
	}
	return st, nil
}
