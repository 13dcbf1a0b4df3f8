package agent

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/config"

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

// TestInstallCRLsOnlyWritesChanges: every Welcome carries the cluster's
// CRLs; the set the agent already holds is not written or verified again,
// and a new set replaces it on disk and in memory.
func TestInstallCRLsOnlyWritesChanges(t *testing.T) {
	ca := pkitest.New(t)
	srv, _ := ca.Leaf(t, pki.RoleCoordinator, "c1")
	chain := []*x509.Certificate{srv.Leaf, ca.Issuing.Cert, ca.Root.Cert}
	now := time.Now()
	pemOf := func(revoked ...*x509.Certificate) []byte {
		var entries []x509.RevocationListEntry
		for _, c := range revoked {
			entries = append(entries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: now})
		}
		der, err := pki.CreateCRL(ca.Issuing, entries, int64(len(entries)+1), now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
	}
	dir := t.TempDir()
	a := &Agent{cfg: config.Agent{DataDir: dir}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	path := filepath.Join(dir, fileCRLs)

	clean := pemOf()
	a.installCRLs(clean)
	if err := a.crl.status(srv.Leaf, chain, now); err != nil {
		t.Fatalf("after the first install: %v", err)
	}
	verified := len(a.crl.verified)
	first, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}

	a.installCRLs(append([]byte(nil), clean...)) // the next Welcome: same bytes
	again, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(first, again) {
		t.Error("the same CRLs were written to disk again")
	}
	if len(a.crl.verified) != verified || verified == 0 {
		t.Errorf("the signature check was forgotten: %d verified before, %d after", verified, len(a.crl.verified))
	}

	revoked := pemOf(srv.Leaf)
	a.installCRLs(revoked)
	if err := a.crl.status(srv.Leaf, chain, now); err == nil || !strings.Contains(err.Error(), "is revoked") {
		t.Fatalf("a new CRL was not taken: %v", err)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, revoked) {
		t.Error("a new CRL was not written to disk")
	}
}
