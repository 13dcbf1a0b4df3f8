package castore_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/castore"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/store"
	"github.com/wardcluster/ward/internal/store/bolt"
)

var pass = []byte("correct horse battery staple")

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "ward.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newGen(t *testing.T, n int) *castore.Generation {
	t.Helper()
	now := time.Now()
	root, err := pki.NewRootCAGeneration("test", n, now, pki.RootLifetime)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := pki.NewIssuingCA(root, "test", n, now, pki.IssuingLifetime)
	if err != nil {
		t.Fatal(err)
	}
	return &castore.Generation{Number: n, Root: root, Issuing: iss}
}

// certsOnly is g without its keys: storing it costs no encryption (scrypt
// is slow, and very slow under the race detector), which is all the tests
// of the compare-and-set need.
func certsOnly(g *castore.Generation) *castore.Generation {
	return &castore.Generation{Number: g.Number, Root: &pki.CA{Cert: g.Root.Cert}, Issuing: &pki.CA{Cert: g.Issuing.Cert}}
}

func keeper(t *testing.T, st store.Store, p []byte) *castore.Keeper {
	t.Helper()
	k, err := castore.New(st, p, "spiffe://test/coordinator/a")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// storedGen is a store holding generation 1, with keys, and its keeper.
func storedGen(t *testing.T) (store.Store, *castore.Keeper, *castore.Generation) {
	t.Helper()
	st := openStore(t)
	k := keeper(t, st, pass)
	g := newGen(t, 1)
	if err := k.Create(context.Background(), g); err != nil {
		t.Fatal(err)
	}
	return st, k, g
}

func TestNewRefusesEmptyPassphrase(t *testing.T) {
	if _, err := castore.New(openStore(t), nil, "x"); err == nil {
		t.Fatal("a keeper without a passphrase was made")
	}
}

func TestRoundTripKeepsKeysEncrypted(t *testing.T) {
	ctx := context.Background()
	st, k, g := storedGen(t)
	rec, err := st.Get(ctx, castore.GenKey(1))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(rec.Value, &raw); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"root_key", "issuing_key"} {
		v, _ := raw[f].(string)
		if !pki.IsEncryptedKeyPEM([]byte(v)) {
			t.Errorf("%s is not a %s block: %.60q", f, pki.EncryptedKeyPEMType, v)
		}
	}
	if strings.Contains(string(rec.Value), "BEGIN PRIVATE KEY") || strings.Contains(string(rec.Value), "BEGIN EC PRIVATE KEY") {
		t.Fatal("a plain private key is in the store record")
	}
	got, err := k.Load(ctx, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Root.Cert.Equal(g.Root.Cert) || !got.Issuing.Cert.Equal(g.Issuing.Cert) || got.Cross != nil {
		t.Fatal("loaded certificates differ from the stored ones")
	}
	if !pki.KeyMatches(got.Issuing.Cert, got.Issuing.Key) || !pki.KeyMatches(got.Root.Cert, got.Root.Key) {
		t.Fatal("loaded keys do not match their certificates")
	}
	// Without keys: certificates only, no decryption.
	certsOnly, err := keeper(t, st, []byte("another passphrase")).Load(ctx, 1, false)
	if err != nil || certsOnly.Issuing.Key != nil || certsOnly.Root.Key != nil {
		t.Fatalf("load without keys: %v, keys %v %v", err, certsOnly.Issuing.Key, certsOnly.Root.Key)
	}
}

func TestLoadRefusals(t *testing.T) {
	ctx := context.Background()
	st, _, _ := storedGen(t)
	// A record whose issuing key is another CA's (encrypted with the right
	// passphrase): altered, refused.
	other := newGen(t, 2)
	rec, _ := st.Get(ctx, castore.GenKey(1))
	var raw map[string]any
	json.Unmarshal(rec.Value, &raw)
	enc, _ := pki.EncryptKeyPEM(other.Issuing.Key, pass)
	raw["issuing_key"] = string(enc)
	b, _ := json.Marshal(raw)
	if _, err := st.Txn(ctx, nil, []store.Op{store.Put(castore.GenKey(3), b)}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		gen    int
		pass   string
		is     error
		substr string
	}{
		{"WrongPassphrase", 1, "not the passphrase", pki.ErrWrongPassphrase, "issuing key of the cluster CA in store record ca/generations/1"},
		{"Missing", 9, string(pass), castore.ErrNoCA, "generation 9"},
		{"KeyOfAnotherCA", 3, string(pass), nil, "does not belong to the certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := keeper(t, st, []byte(tc.pass)).Load(ctx, tc.gen, true)
			if err == nil {
				t.Fatal("loaded")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.substr) {
				t.Errorf("error %q does not mention %q", err, tc.substr)
			}
		})
	}
}

// TestCreateExactlyOnce: coordinators creating the first generation at
// once end up with exactly one CA; the others learn it exists.
func TestCreateExactlyOnce(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	const n = 6
	gens := make([]*castore.Generation, n)
	for i := range gens {
		gens[i] = certsOnly(newGen(t, 1))
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range gens {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = keeper(t, st, pass).Create(ctx, gens[i]) }()
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("creations %d and %d both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, castore.ErrExists):
			t.Fatalf("creation %d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no creation succeeded")
	}
	got, err := keeper(t, st, pass).Load(ctx, 1, false)
	if err != nil || !got.Root.Cert.Equal(gens[winner].Root.Cert) {
		t.Fatalf("the stored CA is not the winner's: %v", err)
	}
}

func TestRetireDropAndAtomicCreate(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	k := keeper(t, st, pass)
	g := certsOnly(newGen(t, 1))
	if err := k.Create(ctx, g); err != nil {
		t.Fatal(err)
	}
	// Creating 2 and 1 together fails as a whole: 2 stays absent.
	if err := k.Create(ctx, certsOnly(newGen(t, 2)), g); !errors.Is(err, castore.ErrExists) {
		t.Fatalf("create over an existing generation: %v", err)
	}
	if ok, _ := k.Exists(ctx, 2); ok {
		t.Fatal("a failed create wrote part of its generations")
	}
	// Give the record keys (Retire treats them as opaque) and retire it.
	rec, _ := st.Get(ctx, castore.GenKey(1))
	var raw map[string]any
	json.Unmarshal(rec.Value, &raw)
	raw["root_key"], raw["issuing_key"] = "-----BEGIN "+pki.EncryptedKeyPEMType+"-----", "-----BEGIN "+pki.EncryptedKeyPEMType+"-----"
	b, _ := json.Marshal(raw)
	if _, err := st.Txn(ctx, nil, []store.Op{store.Put(castore.GenKey(1), b)}); err != nil {
		t.Fatal(err)
	}
	if err := k.Retire(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := k.Retire(ctx, 1); err != nil {
		t.Fatalf("retire twice: %v", err)
	}
	if _, err := k.Load(ctx, 1, true); err == nil || !strings.Contains(err.Error(), "retired") {
		t.Fatalf("load with keys of a retired generation: %v", err)
	}
	if g, err := k.Load(ctx, 1, false); err != nil || g.Root.Key != nil {
		t.Fatalf("load certificates of a retired generation: %v", err)
	}
	rec, _ = st.Get(ctx, castore.GenKey(1))
	if pki.IsEncryptedKeyPEM(rec.Value) || strings.Contains(string(rec.Value), pki.EncryptedKeyPEMType) {
		t.Fatal("a retired generation still holds a key")
	}
	if err := k.Drop(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if ok, _ := k.Exists(ctx, 1); ok {
		t.Fatal("dropped generation still exists")
	}
}

func TestClaimID(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	a := castore.Claim{Instance: "aaa", Host: "h1", DataDir: "/d1", Claimed: time.Now()}
	if err := castore.ClaimID(ctx, st, "c1", a); err != nil {
		t.Fatal(err)
	}
	if err := castore.ClaimID(ctx, st, "c1", a); err != nil {
		t.Fatalf("the holder claims again: %v", err)
	}
	var taken *castore.IDTakenError
	err := castore.ClaimID(ctx, st, "c1", castore.Claim{Instance: "bbb", Host: "h1", DataDir: "/d2"})
	if !errors.As(err, &taken) || taken.Owner.DataDir != "/d1" || !strings.Contains(err.Error(), `"c1"`) {
		t.Fatalf("a second instance claiming c1: %v", err)
	}
	if err := castore.ClaimID(ctx, st, "c2", castore.Claim{Instance: "bbb"}); err != nil {
		t.Fatal(err)
	}
}
