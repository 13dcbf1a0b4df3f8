package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/wardcluster/ward/internal/diagnose"
	"github.com/wardcluster/ward/internal/store"
	"github.com/wardcluster/ward/internal/store/etcd"
	"github.com/wardcluster/ward/internal/store/etcd/etcdtest"
	"github.com/wardcluster/ward/internal/store/storetest"
)

// server is the etcd member every test in this package shares; each test
// works under a prefix of its own.
var server *etcdtest.Server

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ward-etcd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	server, err = etcdtest.Start(dir, etcdtest.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	server.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

var prefixSeq atomic.Int64

func newPrefix() string {
	return fmt.Sprintf("/ward-test/%d-%d/", time.Now().UnixNano(), prefixSeq.Add(1))
}

func options(t testing.TB, prefix string) etcd.Options {
	t.Helper()
	tl, err := server.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return etcd.Options{Endpoints: []string{server.Endpoint}, TLS: tl, Prefix: prefix, CompactEvery: -1}
}

func open(t testing.TB, o etcd.Options) *etcd.Store {
	t.Helper()
	s, err := etcd.Open(context.Background(), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, options(t, newPrefix())) })
}

func TestPersistence(t *testing.T) {
	prefixes := map[string]string{}
	storetest.RunPersistence(t, func(t *testing.T, dir string) store.Store {
		if prefixes[dir] == "" {
			prefixes[dir] = newPrefix()
		}
		return open(t, options(t, prefixes[dir]))
	})
}

// TestLeaseRevoked: a lease revoked behind the holder's back (as etcd does
// when it expires) ends the lease and its fence.
func TestLeaseRevoked(t *testing.T) {
	o := options(t, newPrefix())
	s := open(t, o)
	l, err := s.Lock(t.Context(), "leader", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	id, ok := etcd.LeaseID(l)
	if !ok {
		t.Fatal("LeaseID: not an etcd lease")
	}
	other, err := clientv3.New(clientv3.Config{Endpoints: o.Endpoints, TLS: o.TLS.Config()})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Revoke(t.Context(), id); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	storetest.CheckLostLease(t, s, l)
	// The lock is free for the next holder at once.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	l2, err := s.Lock(ctx, "leader", 5*time.Second)
	if err != nil {
		t.Fatalf("Lock after the revocation: %v", err)
	}
	l2.Release(ctx)
}

// TestLeaseLostWhileEtcdUnreachable pauses etcd (as a partition would) for
// longer than the lease's TTL: the holder's Done closes on its own clock,
// and once etcd is back its late fenced writes fail. A store of its own
// server, since pausing would stall the other tests.
func TestLeaseLostWhileEtcdUnreachable(t *testing.T) {
	srv := etcdtest.StartT(t, etcdtest.Options{})
	tl, err := srv.TLS()
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, etcd.Options{Endpoints: []string{srv.Endpoint}, TLS: tl, Prefix: "/ward/p/", CompactEvery: -1, RequestTimeout: 3 * time.Second})
	l, err := s.Lock(t.Context(), "leader", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	select {
	case <-l.Done():
		t.Logf("Done closed %v after etcd stopped answering", time.Since(paused).Round(time.Millisecond))
	case <-time.After(20 * time.Second):
		srv.Resume()
		t.Fatal("lease Done not closed 20 s after etcd stopped answering (TTL 2 s)")
	}
	// While etcd is away, calls fail as unavailable instead of hanging.
	if _, err := s.Get(t.Context(), "x"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Get while etcd is paused: err = %v, want store.ErrUnavailable", err)
	} else if !strings.Contains(err.Error(), srv.Endpoint) {
		t.Errorf("unavailable error does not name the endpoint %s: %v", srv.Endpoint, err)
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	storetest.CheckLostLease(t, s, l)
}

func TestOpenErrors(t *testing.T) {
	good, err := server.TLS()
	if err != nil {
		t.Fatal(err)
	}
	// A second CA and client certificate that etcd does not trust.
	otherDir := t.TempDir()
	if err := etcdtest.WriteCerts(otherDir, "etcd", "client"); err != nil {
		t.Fatal(err)
	}
	wrongCA, err := etcd.LoadTLS(filepath.Join(otherDir, "ca.pem"), server.ClientCert, server.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	wrongClient, err := etcd.LoadTLS(server.CA, filepath.Join(otherDir, "client.pem"), filepath.Join(otherDir, "client-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	plainSrv := etcdtest.StartT(t, etcdtest.Options{Plaintext: true})
	small := etcdtest.StartT(t, etcdtest.Options{Plaintext: true, MaxTxnOps: 128})

	tests := []struct {
		name      string
		o         etcd.Options
		code      diagnose.Code
		wantParts []string
	}{
		{"WrongCA", etcd.Options{Endpoints: []string{server.Endpoint}, TLS: wrongCA}, diagnose.CodeUnknownAuthority, []string{server.Endpoint, "--etcd-ca", "ward etcd certs"}},
		{"ClientCertRejected", etcd.Options{Endpoints: []string{server.Endpoint}, TLS: wrongClient}, diagnose.CodeClientCertRejected, []string{server.Endpoint, "--etcd-cert", "--trusted-ca-file"}},
		{"TLSToPlaintextEtcd", etcd.Options{Endpoints: []string{plainSrv.Endpoint}, TLS: good}, "", []string{plainSrv.Endpoint, "does not speak TLS", "--insecure-etcd-plaintext"}},
		{"PlaintextToTLSEtcd", etcd.Options{Endpoints: []string{server.Endpoint}, InsecurePlaintext: true}, diagnose.CodeNotTLS, []string{server.Endpoint, "speaks TLS", "--etcd-ca"}},
		{"Refused", etcd.Options{Endpoints: []string{"127.0.0.1:1"}, TLS: good}, diagnose.CodeRefused, []string{"127.0.0.1:1", "--store", "never falls back"}},
		{"NoTLSNoPlaintext", etcd.Options{Endpoints: []string{server.Endpoint}}, "", []string{"mutual TLS", "--etcd-ca", "--insecure-etcd-plaintext"}},
		{"TxnOpsTooSmall", etcd.Options{Endpoints: []string{small.Endpoint}, InsecurePlaintext: true}, "", []string{"--max-txn-ops=16384"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Prefix = "/ward/x/"
			tc.o.DialTimeout = 2 * time.Second
			start := time.Now()
			s, err := etcd.Open(t.Context(), tc.o)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded, want an error")
			}
			t.Logf("after %v: %v", time.Since(start).Round(time.Millisecond), err)
			if tc.code != "" && !strings.Contains(err.Error(), string(tc.code)+":") {
				t.Errorf("error does not carry verdict %s", tc.code)
			}
			for _, p := range tc.wantParts {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error does not mention %q", p)
				}
			}
		})
	}
}
