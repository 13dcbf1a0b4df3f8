package coordinator

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/store"
	"github.com/wardcluster/ward/internal/transport"
)

// caState is the coordinator's PKI as loaded from the data directory.
type caState struct {
	// mu guards every field below up to cur.
	mu     sync.RWMutex
	root   *pki.CA   // the root new join strings pin; Key is nil when kept offline
	others []*pki.CA // issuing CAs still trusted besides the current one (during a rotation)
	// external holds the roots of an externally issued server certificate
	// (--tls-cert): clients verify the coordinator against them, but they
	// are never client CAs.
	external pki.Bundle
	// retiredRoots and retiredIssuers are CAs this cluster no longer
	// trusts; agents holding their certificates may still heal.
	retiredRoots   []*x509.Certificate
	retiredIssuers []*x509.Certificate
	// During a rotation: the new root and issuing CA, and the new issuing
	// CA cross-signed by the old root (served to clients that trust only
	// the old root).
	nextRoot, nextIssuing *pki.CA
	cross                 *x509.Certificate

	// cur is the issuing CA that issues now; callers take one snapshot per
	// operation so a rotation never pairs one CA's certificate with
	// another's key.
	cur   atomic.Pointer[pki.Issuer]
	phase atomic.Int32 // the rotation phase
	// own is the coordinator's certificate with its issuing CA; src serves
	// it with the extra certificates servedChain adds.
	own     atomic.Pointer[identity.Credential]
	src     *identity.Source // the coordinator's own certificate and trust
	id      pki.ID
	created bool // this start created the CA
	// applied is the rotation state this coordinator runs (guarded by
	// rotMu); with a shared store, another coordinator may move it on.
	applied rotationRecord
}

func (c *Coordinator) path(parts ...string) string {
	return filepath.Join(append([]string{c.cfg.DataDir}, parts...)...)
}

// The files of the coordinator's PKI, relative to the data directory.
var (
	fileRootCert    = filepath.Join("pki", "root-ca.crt")
	fileRootKey     = filepath.Join("pki", "root-ca.key")
	fileIssuingCert = filepath.Join("pki", "issuing-ca.crt")
	fileIssuingKey  = filepath.Join("pki", "issuing-ca.key")
	fileServerCert  = filepath.Join("pki", "coordinator.crt")
	fileServerKey   = filepath.Join("pki", "coordinator.key")
	fileAdminCtx    = "admin.context"
)

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// coordinatorName derives the coordinator's identity name from the host
// name, falling back to "coordinator".
func coordinatorName() string {
	h, err := os.Hostname()
	if err != nil {
		return "coordinator"
	}
	h = strings.ToLower(strings.Split(h, ".")[0])
	if pki.ValidName("coordinator", h) != nil {
		return "coordinator"
	}
	return h
}

// loadOrCreatePKI creates the root and issuing CA on first start and loads
// them on every later start, refusing key files with loose permissions.
// With a shared (etcd) store the CA lives in the store, created by the first
// coordinator and found by the others.
func (c *Coordinator) loadOrCreatePKI(now time.Time) (*caState, error) {
	if err := os.MkdirAll(c.path("pki"), 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", c.path("pki"), err)
	}
	st := &caState{id: pki.ID{Cluster: c.cfg.Cluster, Role: pki.RoleCoordinator, Name: c.coordinatorID()}}
	if c.cfg.EtcdStore() {
		created, err := c.ensureSharedCA(now, st.id)
		if err != nil {
			return nil, err
		}
		st.created = created
	} else {
		created, err := c.ensureLocalCA(now)
		if err != nil {
			return nil, err
		}
		st.created = created
	}
	rot, _, err := c.readRotation(context.Background())
	if err != nil {
		return nil, err
	}
	root, iss, err := c.keeper.load(rot.Current, true)
	if err != nil {
		return nil, err
	}
	if !root.Cert.IsCA || !iss.Cert.IsCA {
		return nil, fmt.Errorf("the CA in the %s is not made of CA certificates", c.keeper.where())
	}
	if err := iss.Cert.CheckSignatureFrom(root.Cert); err != nil {
		return nil, fmt.Errorf("issuing CA %q of generation %d in the %s is not signed by root CA %q: %w", iss.Cert.Subject.CommonName, rot.Current, c.keeper.where(), root.Cert.Subject.CommonName, err)
	}
	if c.cfg.EtcdStore() {
		if err := c.claimID(st.id); err != nil {
			return nil, err
		}
	}
	st.root = root
	st.cur.Store(&pki.Issuer{CA: iss, Chain: []*x509.Certificate{iss.Cert, root.Cert}})
	if err := c.applyRotation(st, rot); err != nil {
		return nil, err
	}
	var cred *identity.Credential
	if c.cfg.TLSCert != "" {
		cred, st.external, err = c.externalCredential(now)
	} else {
		cred, err = c.serverCredential(st, now)
	}
	if err != nil {
		return nil, err
	}
	st.own.Store(cred)
	st.src = identity.NewSource(cred, st.bundleLocked())
	return st, nil
}

// ensureLocalCA creates the CA in the data directory on first start (bolt
// store).
func (c *Coordinator) ensureLocalCA(now time.Time) (created bool, err error) {
	c.keeper = fileKeeper{c}
	if exists(c.path(fileRootCert)) {
		return false, nil
	}
	if exists(c.path(fileIssuingCert)) {
		return false, fmt.Errorf("%s exists but %s does not: the data directory is damaged; restore it from backup", c.path(fileIssuingCert), c.path(fileRootCert))
	}
	root, iss, err := newCA(c.cfg.Cluster, now)
	if err != nil {
		return false, err
	}
	if err := c.saveCA(c.path(fileRootCert), c.path(fileRootKey), root); err != nil {
		return false, err
	}
	if err := c.saveCA(c.path(fileIssuingCert), c.path(fileIssuingKey), iss); err != nil {
		return false, err
	}
	c.auditCACreate(root, iss)
	return true, nil
}

// newCA makes a root CA and its first issuing CA.
func newCA(cluster string, now time.Time) (root, iss *pki.CA, err error) {
	if root, err = pki.NewRootCA(cluster, now, pki.RootLifetime); err != nil {
		return nil, nil, err
	}
	if iss, err = pki.NewIssuingCA(root, cluster, 1, now, pki.IssuingLifetime); err != nil {
		return nil, nil, err
	}
	return root, iss, nil
}

func (c *Coordinator) auditCACreate(root, iss *pki.CA) {
	c.audit.Record(audit.Event{Type: "ca.create", Target: root.Cert.Subject.CommonName, Detail: map[string]string{
		"root_serial": pki.SerialHex(root.Cert), "issuing_serial": pki.SerialHex(iss.Cert), "pin": pki.SPKIPin(root.Cert).String(),
	}})
}

func (c *Coordinator) saveCA(certPath, keyPath string, ca *pki.CA) error {
	if c.caPass == nil {
		return identity.SaveCredential(&identity.Credential{Chain: []*x509.Certificate{ca.Cert}, Key: ca.Key}, certPath, keyPath)
	}
	enc, err := pki.EncryptKeyPEM(ca.Key, c.caPass)
	if err != nil {
		return err
	}
	if err := identity.WriteSecret(keyPath, enc); err != nil {
		return err
	}
	return identity.SaveCredential(&identity.Credential{Chain: []*x509.Certificate{ca.Cert}, Key: ca.Key}, certPath, "")
}

// loadCA reads a CA certificate and key, decrypting the key with the CA
// passphrase when it is encrypted. An absent root key is allowed (offline
// root); an absent issuing key is not.
func (c *Coordinator) loadCA(certPath, keyPath string, keyOptional bool) (*pki.CA, error) {
	if keyOptional && !exists(keyPath) {
		data, err := os.ReadFile(certPath)
		if err != nil {
			return nil, err
		}
		certs, err := pki.ParseCertsPEM(data)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", certPath, err)
		}
		return &pki.CA{Cert: certs[0]}, nil
	}
	data, err := identity.ReadSecret(keyPath)
	if err != nil {
		return nil, err
	}
	key, err := pki.UnlockKeyPEM(data, c.caPass)
	switch {
	case errors.Is(err, pki.ErrPassphraseRequired):
		return nil, api.Errorf(api.CodeFailedPrecondition, "start the coordinator with --ca-passphrase-file FILE (the file given to `ward ca import --passphrase-file`)",
			"CA key %s is encrypted", keyPath)
	case errors.Is(err, pki.ErrWrongPassphrase):
		return nil, api.Errorf(api.CodeFailedPrecondition, "give the passphrase file the key was encrypted with",
			"the passphrase in %s does not decrypt CA key %s", c.cfg.CAPassphraseFile, keyPath)
	case err != nil:
		return nil, fmt.Errorf("read CA key %s: %w", keyPath, err)
	}
	if c.caPass != nil && !pki.IsEncryptedKeyPEM(data) {
		c.log.Warn("a CA key is stored unencrypted although a passphrase is configured; it is encrypted now", "key", keyPath)
		enc, err := pki.EncryptKeyPEM(key, c.caPass)
		if err != nil {
			return nil, err
		}
		if err := identity.WriteSecret(keyPath, enc); err != nil {
			return nil, err
		}
	}
	cred, err := identity.LoadChainForKey(certPath, key)
	if err != nil {
		return nil, err
	}
	return &pki.CA{Cert: cred.Leaf(), Key: cred.Key}, nil
}

// serverNames are the DNS names and IPs the coordinator's certificate must
// cover: the host name, every advertised name, and loopback.
func (c *Coordinator) serverNames() ([]string, []net.IP) {
	dns := []string{"localhost"}
	ips := []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}
	add := func(s string) {
		if s == "" {
			return
		}
		if ip := net.ParseIP(s); ip != nil {
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
			return
		}
		if !slices.Contains(dns, strings.ToLower(s)) {
			dns = append(dns, strings.ToLower(s))
		}
	}
	if h, err := os.Hostname(); err == nil {
		add(h)
	}
	for _, a := range c.cfg.Advertise {
		add(a)
	}
	for _, addr := range []string{c.cfg.ClusterAddr, c.cfg.PublicAddr} {
		if h := transport.HostOf(addr); h != "" && h != "0.0.0.0" && h != "::" {
			add(h)
		}
	}
	return dns, ips
}

// covers reports whether cert names every required DNS name and IP.
func covers(cert *x509.Certificate, dns []string, ips []net.IP) bool {
	for _, d := range dns {
		if !slices.Contains(cert.DNSNames, d) {
			return false
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

// serverCredential loads the coordinator's certificate, issuing a new one
// when it is missing, no longer covers the advertised names, is past its
// renewal point, or comes from another issuing CA.
func (c *Coordinator) serverCredential(st *caState, now time.Time) (*identity.Credential, error) {
	dns, ips := c.serverNames()
	certPath, keyPath := c.path(fileServerCert), c.path(fileServerKey)
	if exists(certPath) {
		cred, err := identity.LoadCredential(certPath, keyPath)
		if err != nil {
			return nil, err
		}
		leaf := cred.Leaf()
		fresh := !identity.ShouldRenew(now, leaf, 0).Renew
		id, _ := pki.IDFromCert(leaf)
		if fresh && id == st.id && covers(leaf, dns, ips) && leaf.CheckSignatureFrom(st.cur.Load().CA.Cert) == nil {
			return cred, nil
		}
		c.log.Info("reissuing coordinator certificate", "reason", "names or id changed, renewal due or new issuing CA", "old_serial", pki.SerialHex(leaf), "id", st.id.String())
	}
	key, err := pki.GenerateKey()
	if err != nil {
		return nil, err
	}
	iss := st.cur.Load()
	crl := []string{"https://" + c.advertisedAddr(c.cfg.PublicAddr) + "/v1/crl/" + pki.SerialHex(iss.CA.Cert)}
	cert, err := iss.Issue(pki.LeafSpec{ID: st.id, PublicKey: key.Public(), Lifetime: c.cfg.CoordinatorCertLifetime.D(), DNSNames: dns, IPs: ips, CRLURLs: crl}, now)
	if err != nil {
		return nil, err
	}
	cred := &identity.Credential{Chain: []*x509.Certificate{cert, iss.CA.Cert}, Key: key}
	if err := identity.SaveCredential(cred, certPath, keyPath); err != nil {
		return nil, err
	}
	c.recordIssued(cert, iss.CA.Cert, "")
	return cred, nil
}

// writeAdminContext issues an admin user certificate and writes the CLI
// context next to the data, unless one already exists.
func (c *Coordinator) writeAdminContext(now time.Time) (string, error) {
	path := c.path(fileAdminCtx)
	if exists(path) {
		ctx, err := config.LoadContext(path)
		if err != nil {
			return "", err
		}
		changed := false
		// Keep the admin context pointing at where the listeners are now.
		server, public := c.localAddr(c.cfg.ClusterAddr), c.localAddr(c.cfg.PublicAddr)
		if ctx.Server != server || ctx.Public != public {
			ctx.Server, ctx.Public = server, public
			changed = true
		}
		// An admin certificate that expired while the coordinator was down
		// can no longer renew itself over the API: renew it here, keeping
		// its key.
		cred, _, _, err := ctx.Credential()
		if err != nil {
			return "", fmt.Errorf("admin context %s: %w", path, err)
		}
		if d := identity.ShouldRenew(now, cred.Leaf(), 0); d.Expired {
			id, _ := pki.IDFromCert(cred.Leaf())
			iss := c.issuer()
			cert, err := iss.Issue(pki.LeafSpec{ID: id, PublicKey: cred.Key.Public(), Lifetime: c.cfg.UserCertLifetime.D(), CRLURLs: c.crlURLs(), UserRole: string(authz.RoleAdmin)}, now)
			if err != nil {
				return "", err
			}
			ctx.CertPEM = string(pki.EncodeCertsPEM(cert, iss.CA.Cert))
			c.recordIssued(cert, iss.CA.Cert, pki.SerialHex(cred.Leaf()))
			c.audit.Record(audit.Event{Type: "cert.renew", Target: id.String(), Detail: map[string]string{"serial": pki.SerialHex(cert), "old_serial": pki.SerialHex(cred.Leaf()), "purpose": "expired admin context"}})
			changed = true
		}
		ctx.BundlePEM = string(c.clientBundle().PEM())
		if changed {
			if err := ctx.Save(path); err != nil {
				return "", err
			}
		}
		return path, nil
	}
	key, err := pki.GenerateKey()
	if err != nil {
		return "", err
	}
	id := pki.ID{Cluster: c.cfg.Cluster, Role: pki.RoleUser, Name: "admin"}
	iss := c.issuer()
	cert, err := iss.Issue(pki.LeafSpec{ID: id, PublicKey: key.Public(), Lifetime: c.cfg.UserCertLifetime.D(), CRLURLs: c.crlURLs(), UserRole: string(authz.RoleAdmin)}, now)
	if err != nil {
		return "", err
	}
	keyPEM, err := pki.MarshalKeyPEM(key)
	if err != nil {
		return "", err
	}
	ctx := &config.Context{
		Version:   config.FileVersion,
		Cluster:   c.cfg.Cluster,
		Server:    c.localAddr(c.cfg.ClusterAddr),
		Public:    c.localAddr(c.cfg.PublicAddr),
		BundlePEM: string(c.clientBundle().PEM()),
		Pins:      []string{pki.SPKIPin(c.pinRoot()).String()},
		CertPEM:   string(pki.EncodeCertsPEM(cert, iss.CA.Cert)),
		KeyPEM:    string(keyPEM),
	}
	if err := ctx.Save(path); err != nil {
		return "", err
	}
	c.recordIssued(cert, iss.CA.Cert, "")
	c.audit.Record(audit.Event{Type: "cert.issue", Target: id.String(), Detail: map[string]string{"serial": pki.SerialHex(cert), "purpose": "admin context"}})
	return path, nil
}

// localAddr turns a listen address into one a local client can dial.
func (c *Coordinator) localAddr(listen string) string {
	host, port, _ := net.SplitHostPort(listen)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	// An external certificate may not name loopback: use a name it covers.
	if own := c.ca.own.Load(); own != nil && len(c.ca.external) > 0 && own.Leaf().VerifyHostname(host) != nil && len(c.cfg.Advertise) > 0 {
		host = c.cfg.Advertise[0]
	}
	return net.JoinHostPort(host, port)
}

// advertisedAddr is what remote peers dial for a listener: the first
// advertised name with the listener's port.
func (c *Coordinator) advertisedAddr(listen string) string {
	host, port, _ := net.SplitHostPort(listen)
	if len(c.cfg.Advertise) > 0 {
		return net.JoinHostPort(c.cfg.Advertise[0], port)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return net.JoinHostPort(host, port)
}

// ensureDataDir creates the data directory and refuses a loose one.
func ensureDataDir(dir string) error {
	if err := identity.EnsureDir(dir); err != nil {
		return err
	}
	// Every key file in the data directory is checked at every start.
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasSuffix(p, ".key") || strings.HasSuffix(p, ".context") {
			return identity.CheckSecretPerms(p)
		}
		return nil
	})
}

// recordIssued remembers an issued certificate for `ward cert ls` and
// revocation, with the serial of the certificate it renews (parent, or "").
// It goes through the journal like every other write.
func (c *Coordinator) recordIssued(cert, issuer *x509.Certificate, parent string) {
	rec := issuedRecord(cert, issuer)
	rec.Parent = parent
	c.pendingCerts = append(c.pendingCerts, rec)
}

// flushIssued writes certificate records queued before the journal ran.
func (c *Coordinator) flushIssued() error {
	var ops []store.Op
	for _, r := range c.pendingCerts {
		ops = append(ops, putJSON(certKey(r.Serial), r))
		if r.Parent != "" {
			ops = append(ops, store.Put(lineageKey(r.Parent, r.Serial), nil))
		}
	}
	c.pendingCerts = nil
	if len(ops) == 0 {
		return nil
	}
	return c.journal.Wait(ops)
}

// servedChain is the chain the listeners present for cred: its own chain,
// then, during and after a rotation, the new issuing CA cross-signed by the
// old root, and every root, so clients that trust (or pin) either root
// verify the coordinator.
func (c *Coordinator) servedChain(cred *identity.Credential) *identity.Credential {
	c.ca.mu.RLock()
	extra := []*x509.Certificate{}
	if c.ca.cross != nil {
		extra = append(extra, c.ca.cross)
	}
	extra = append(extra, c.ca.src.Bundle()...)
	extra = append(extra, c.ca.retiredRoots...)
	extra = append(extra, c.ca.external...)
	c.ca.mu.RUnlock()
	chain := slices.Clone(cred.Chain)
	for _, e := range extra {
		if !slices.ContainsFunc(chain, e.Equal) {
			chain = append(chain, e)
		}
	}
	return &identity.Credential{Chain: chain, Key: cred.Key}
}

// clientBundle is what clients verify the coordinator against: the
// cluster's roots, plus the roots of an external server certificate.
func (c *Coordinator) clientBundle() pki.Bundle {
	return append(slices.Clone(c.ca.src.Bundle()), c.ca.external...)
}

// issuer is the issuing CA that issues now.
func (c *Coordinator) issuer() *pki.Issuer { return c.ca.cur.Load() }

// pinRoot is the root new join strings and contexts pin.
func (c *Coordinator) pinRoot() *x509.Certificate {
	c.ca.mu.RLock()
	defer c.ca.mu.RUnlock()
	if len(c.ca.external) > 0 {
		return c.ca.external[0] // joining agents see the external chain
	}
	return c.ca.root.Cert
}
