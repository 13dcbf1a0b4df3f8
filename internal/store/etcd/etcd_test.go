package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

func TestMain(m *testing.M) { os.Exit(etcdtest.Main(m, &server)) }

func newPrefix() string {
	return etcdtest.Prefix("test")
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

// TestPersistence runs on an etcd member of its own: etcd's revision is
// the whole cluster's, so a lease left by an earlier test that expires
// between Close and the reopen (deleting its keys) would move it.
func TestPersistence(t *testing.T) {
	own := etcdtest.StartT(t, etcdtest.Options{})
	tl, err := own.TLS()
	if err != nil {
		t.Fatal(err)
	}
	prefixes := map[string]string{}
	storetest.RunPersistence(t, func(t *testing.T, dir string) store.Store {
		if prefixes[dir] == "" {
			prefixes[dir] = newPrefix()
		}
		return open(t, etcd.Options{Endpoints: []string{own.Endpoint}, TLS: tl, Prefix: prefixes[dir], CompactEvery: -1})
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

// TestTxnFoldsRepeatedKeys: etcd refuses a transaction that writes a key
// twice or writes inside a range it deletes; the store folds such ops to
// their net effect, as the journal's group commits need.
func TestTxnFoldsRepeatedKeys(t *testing.T) {
	s := open(t, options(t, newPrefix()))
	ctx := t.Context()
	if _, err := s.Txn(ctx, nil, []store.Op{store.Put("a/1", []byte("x")), store.Put("a/3", []byte("x")), store.Put("a/5", []byte("x")), store.Put("b", []byte("b"))}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ops  []store.Op
		want map[string]string // a/ and b after the Txn
	}{
		{"PutTwice", []store.Op{store.Put("a/1", []byte("1")), store.Put("a/1", []byte("2"))},
			map[string]string{"a/1": "2", "a/3": "x", "a/5": "x", "b": "b"}},
		{"PutThenDelete", []store.Op{store.Put("a/1", []byte("1")), store.Delete("a/1")},
			map[string]string{"a/3": "x", "a/5": "x", "b": "b"}},
		{"DeletePrefixThenPutInside", []store.Op{store.Put("a/9", []byte("gone")), store.DeletePrefix("a/"), store.Put("a/3", []byte("new")), store.Put("a/3", []byte("newer"))},
			map[string]string{"a/3": "newer", "b": "b"}},
		{"DeletePrefixPutThenDelete", []store.Op{store.DeletePrefix("a/"), store.Put("a/3", []byte("new")), store.Delete("a/3"), store.Put("a/4", []byte("4"))},
			map[string]string{"a/4": "4", "b": "b"}},
		{"TwoRanges", []store.Op{store.DeletePrefix("a/"), store.DeletePrefix("a/5"), store.Put("a/5", []byte("5"))},
			map[string]string{"a/5": "5", "b": "b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Reset a/ to the fixture, then apply.
			if _, err := s.Txn(ctx, nil, []store.Op{store.DeletePrefix("a/"), store.Put("a/1", []byte("x")), store.Put("a/3", []byte("x")), store.Put("a/5", []byte("x"))}); err != nil {
				t.Fatal(err)
			}
			before, _ := s.Rev(ctx)
			rev, err := s.Txn(ctx, nil, tc.ops)
			if err != nil {
				t.Fatalf("Txn: %v", err)
			}
			if rev != before+1 {
				t.Errorf("Txn returned rev %d, want %d (one revision)", rev, before+1)
			}
			got := map[string]string{}
			for _, p := range []string{"a/", "b"} {
				recs, err := s.List(ctx, p)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range recs {
					got[r.Key] = string(r.Value)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("after Txn: %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTxnTooLarge(t *testing.T) {
	o := options(t, newPrefix())
	o.Limits = store.Limits{MaxOps: 4, MaxBytes: 100}
	s := open(t, o)
	ops := make([]store.Op, 5)
	for i := range ops {
		ops[i] = store.Put(fmt.Sprint("k", i), nil)
	}
	before, _ := s.Rev(t.Context())
	for _, ops := range [][]store.Op{ops, {store.Put("big", make([]byte, 200))}} {
		if _, err := s.Txn(t.Context(), nil, ops); !errors.Is(err, store.ErrTxnTooLarge) {
			t.Fatalf("Txn over the limits: err = %v, want ErrTxnTooLarge", err)
		}
	}
	if rev, _ := s.Rev(t.Context()); rev != before {
		t.Fatalf("a refused Txn wrote: rev %d -> %d", before, rev)
	}
}
