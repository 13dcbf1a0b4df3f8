package etcdcerts

import (
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestIssue(t *testing.T) {
	now := time.Now()
	ca, err := NewCA("prod", now)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	tests := []struct {
		name  string
		kind  Kind
		hosts []string
		usage []x509.ExtKeyUsage
		dns   []string
		ips   int
	}{
		{"Server", Server, []string{"etcd1.example.com", "10.0.0.5", "localhost"}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, []string{"etcd1.example.com", "localhost"}, 1},
		{"Client", Client, nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cred, err := Issue(ca, tc.kind, "leaf", tc.hosts, now, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			leaf := cred.Leaf()
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: tc.usage}); err != nil {
				t.Fatalf("verify: %v", err)
			}
			if !slices.Equal(leaf.ExtKeyUsage, tc.usage) || !slices.Equal(leaf.DNSNames, tc.dns) || len(leaf.IPAddresses) != tc.ips || leaf.IsCA {
				t.Fatalf("leaf: EKU %v DNS %v IPs %v CA %v", leaf.ExtKeyUsage, leaf.DNSNames, leaf.IPAddresses, leaf.IsCA)
			}
			if tc.ips > 0 && !leaf.IPAddresses[0].Equal(net.ParseIP("10.0.0.5")) {
				t.Fatalf("IP SAN %v", leaf.IPAddresses)
			}
		})
	}
	if _, err := Issue(ca, Server, "etcd", nil, now, time.Hour); err == nil || !strings.Contains(err.Error(), "--host") {
		t.Fatalf("server certificate without hosts: err = %v", err)
	}
}

func TestLoadOrCreateCA(t *testing.T) {
	dir := t.TempDir()
	ca, created, err := LoadOrCreateCA(dir, "prod", time.Now())
	if err != nil || !created {
		t.Fatalf("first call: created %v, err %v", created, err)
	}
	for _, f := range []string{FileCA, FileCAKey} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, fi.Mode(), err)
		}
	}
	again, created, err := LoadOrCreateCA(dir, "prod", time.Now())
	if err != nil || created || !again.Cert.Equal(ca.Cert) {
		t.Fatalf("second call: created %v, err %v, same CA %v", created, err, again.Cert.Equal(ca.Cert))
	}
	os.Remove(filepath.Join(dir, FileCAKey))
	if _, _, err := LoadOrCreateCA(dir, "prod", time.Now()); err == nil || !strings.Contains(err.Error(), "only one of") {
		t.Fatalf("half a CA: err = %v", err)
	}
}
