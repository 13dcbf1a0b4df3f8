package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/wardcluster/ward/internal/store/etcd/etcdtest"
)

// haMember is one `ward coordinator` process of an HA cluster, on fixed
// addresses so it can be restarted where agents look for it.
type haMember struct {
	dir, cluster, public string
	proc                 *coordProc
	admin                *adminAPI
}

// haCluster is n `ward coordinator` processes sharing one local etcd
// member (the real etcd server from etcdtest, its own process, fsync on,
// mutual TLS) and the cluster CA it holds.
type haCluster struct {
	srv       *etcdtest.Server
	bin       string
	storeArgs []string
	members   []*haMember
}

// startHACluster starts the etcd member and n coordinators in dir: the
// first creates the cluster CA in etcd, the others find it and issue
// themselves their own certificates. extra flags go to every coordinator.
func startHACluster(ctx context.Context, name, dir string, n int, extra ...string) (*haCluster, error) {
	progress("%s: starting one local etcd", name)
	srv, err := etcdtest.Start(filepath.Join(dir, "etcd"), etcdtest.Options{})
	if err != nil {
		return nil, err
	}
	trackChild(srv.Pid())
	h := &haCluster{srv: srv}
	if h.bin, err = wardBinary(ctx); err != nil {
		h.stop()
		return nil, err
	}
	pass := filepath.Join(dir, "ca-passphrase")
	if err := os.WriteFile(pass, []byte(name+" bench cluster CA passphrase\n"), 0o600); err != nil {
		h.stop()
		return nil, err
	}
	h.storeArgs = append([]string{"--store", "etcd://" + srv.Endpoint, "--etcd-ca", srv.CA, "--etcd-cert", srv.ClientCert, "--etcd-key", srv.ClientKey,
		"--ca-passphrase-file", pass}, extra...)
	for i := range n {
		m := &haMember{dir: filepath.Join(dir, fmt.Sprintf("c%d", i))}
		if m.cluster, err = freeLoopbackAddr(); err == nil {
			m.public, err = freeLoopbackAddr()
		}
		if err == nil {
			err = os.MkdirAll(m.dir, 0o700)
		}
		if err != nil {
			h.stop()
			return nil, err
		}
		h.members = append(h.members, m)
	}
	progress("%s: starting %d coordinators", name, n)
	for _, m := range h.members {
		if err := h.start(ctx, m); err != nil {
			h.stop()
			return nil, err
		}
	}
	if err := waitMembers(ctx, h.members, n); err != nil {
		h.stop()
		return nil, err
	}
	return h, nil
}

// start (re)starts one member's process and waits until it is ready.
func (h *haCluster) start(ctx context.Context, m *haMember) error {
	p, err := startCoordinatorProcess(ctx, h.bin, m.dir, append(h.storeArgs, "--cluster-addr", m.cluster, "--public-addr", m.public, "--coordinator-id", filepath.Base(m.dir))...)
	if err != nil {
		return err
	}
	m.proc = p
	if m.admin == nil {
		if m.admin, err = newAdminAPI(p.contextPath); err != nil {
			return err
		}
	}
	return m.admin.waitReady(ctx, 30*time.Second)
}

// stop stops every coordinator, then etcd.
func (h *haCluster) stop() {
	for _, m := range h.members {
		if m.proc != nil {
			m.proc.stop()
		}
		if m.admin != nil {
			m.admin.close()
		}
	}
	h.srv.Stop()
}

// clusterAddrs is every member's cluster address.
func (h *haCluster) clusterAddrs() []string {
	var out []string
	for _, m := range h.members {
		out = append(out, m.cluster)
	}
	return out
}

// id is the member's coordinator ID (its --coordinator-id).
func (m *haMember) id() string { return filepath.Base(m.dir) }
