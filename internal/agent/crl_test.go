package agent

import (
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/pki/pkitest"
)

func TestCRLStatus(t *testing.T) {
	ca := pkitest.New(t)
	other := pkitest.New(t)
	srv, _ := ca.Leaf(t, pki.RoleCoordinator, "c1")
	chain := []*x509.Certificate{srv.Leaf, ca.Issuing.Cert, ca.Root.Cert}
	now := time.Now()
	crl := func(t *testing.T, signer *pki.CA, validity time.Duration, revoked ...*x509.Certificate) *x509.RevocationList {
		var entries []x509.RevocationListEntry
		for _, c := range revoked {
			entries = append(entries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: now})
		}
		der, err := pki.CreateCRL(signer, entries, 1, now, validity)
		if err != nil {
			t.Fatal(err)
		}
		l, _ := x509.ParseRevocationList(der)
		return l
	}
	tests := []struct {
		name        string
		crls        []*x509.RevocationList
		at          time.Time
		unavailable bool
		revoked     bool
	}{
		{name: "clean", crls: []*x509.RevocationList{crl(t, ca.Issuing, time.Hour)}, at: now},
		{name: "revoked", crls: []*x509.RevocationList{crl(t, ca.Issuing, time.Hour, srv.Leaf)}, at: now, revoked: true},
		{name: "stale", crls: []*x509.RevocationList{crl(t, ca.Issuing, time.Hour)}, at: now.Add(2 * time.Hour), unavailable: true},
		{name: "none cached", at: now, unavailable: true},
		{name: "CRL from another CA is ignored", crls: []*x509.RevocationList{crl(t, other.Issuing, time.Hour, srv.Leaf)}, at: now, unavailable: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &crlCache{crls: tt.crls}
			err := c.status(srv.Leaf, chain, tt.at)
			if got := errors.Is(err, ErrRevocationUnavailable); got != tt.unavailable {
				t.Fatalf("unavailable = %v (%v)", got, err)
			}
			if got := err != nil && strings.Contains(err.Error(), "is revoked"); got != tt.revoked {
				t.Fatalf("revoked = %v (%v)", got, err)
			}
		})
	}
}
