package e2e

import (
	"os"
	"path/filepath"
	"time"

	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/pki"
)

// userContext writes a CLI context for user name, its certificate issued
// by the coordinator's issuing CA read from the data directory (as an admin
// with access to the head node could), and returns its path. Tests use it
// for a second, non-admin user until `ward user` issues them.
func (c *cluster) userContext(name string) string {
	c.t.Helper()
	admin, err := config.LoadContext(c.ctxPath)
	if err != nil {
		c.t.Fatal(err)
	}
	certPEM, err := os.ReadFile(filepath.Join(c.data, "pki", "issuing-ca.crt"))
	if err != nil {
		c.t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(c.data, "pki", "issuing-ca.key"))
	if err != nil {
		c.t.Fatal(err)
	}
	certs, err := pki.ParseCertsPEM(certPEM)
	if err != nil {
		c.t.Fatal(err)
	}
	caKey, err := pki.ParseKeyPEM(keyPEM)
	if err != nil {
		c.t.Fatal(err)
	}
	iss := &pki.Issuer{CA: &pki.CA{Cert: certs[0], Key: caKey}}
	key, err := pki.GenerateKey()
	if err != nil {
		c.t.Fatal(err)
	}
	cert, err := iss.Issue(pki.LeafSpec{ID: pki.ID{Cluster: admin.Cluster, Role: pki.RoleUser, Name: name}, PublicKey: key.Public(), Lifetime: time.Hour}, time.Now())
	if err != nil {
		c.t.Fatal(err)
	}
	kp, err := pki.MarshalKeyPEM(key)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx := *admin
	ctx.CertPEM, ctx.KeyPEM = string(pki.EncodeCertsPEM(cert, certs[0])), string(kp)
	path := filepath.Join(c.dir, name+".context")
	if err := ctx.Save(path); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// wardAs runs the CLI with another context.
func (c *cluster) wardAs(ctxPath string, args ...string) (string, string, int) {
	return c.ward(append([]string{"--context", ctxPath}, args...)...)
}
