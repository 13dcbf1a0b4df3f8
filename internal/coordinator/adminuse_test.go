package coordinator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/transport"
)

// Doctor warns when the admin credential is the only user and is used from
// several addresses, and stops once people have credentials of their own.
func TestDoctorWarnsOfASharedAdminCredential(t *testing.T) {
	c := startServing(t)
	admin := issueTestCert(t, c, pki.ID{Cluster: c.cfg.Cluster, Role: pki.RoleUser, Name: "admin"}, "admin", time.Now(), time.Hour)
	roots := x509.NewCertPool()
	for _, r := range c.clientBundle() {
		roots.AddCert(r)
	}
	from := func(ip string) {
		t.Helper()
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DialContext: d.DialContext,
			TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", Certificates: []tls.Certificate{*admin}, NextProtos: []string{transport.ALPNHTTP}}}}
		resp, err := hc.Get("https://" + c.cfg.ClusterAddr + "/v1/status")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status from %s: %d", ip, resp.StatusCode)
		}
	}
	shared := func() bool {
		rep, err := c.Doctor(context.Background(), c.LocalAdmin(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(rep.Findings, func(f api.Finding) bool { return f.Code == "ADMIN_CREDENTIAL_SHARED" })
	}
	from("127.0.0.1")
	if shared() {
		t.Fatal("one address is not sharing")
	}
	from("127.0.0.2")
	if !shared() {
		t.Fatal("no ADMIN_CREDENTIAL_SHARED after use from two addresses")
	}
	if _, err := c.AddUser(context.Background(), c.LocalAdmin(), api.UserCreate{Name: "ann", Role: "operator"}); err != nil {
		t.Fatal(err)
	}
	if shared() {
		t.Fatal("still warned with a user of its own")
	}
}
