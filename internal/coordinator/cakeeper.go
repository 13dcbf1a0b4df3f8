package coordinator

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/castore"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
)

// caKeeper is where the CA generations live: files in the data directory
// (bolt store, one coordinator) or records in the shared store (etcd, every
// coordinator), keys encrypted there.
type caKeeper interface {
	// load reads a generation's root and issuing CA. Keys are required for
	// the current and next generations (withKeys), absent for retired ones.
	load(gen int, withKeys bool) (root, iss *pki.CA, err error)
	// cross is the generation's cross certificate, or nil.
	cross(gen int) *x509.Certificate
	// save stores a new generation; it fails if the number is taken.
	save(gen int, root, iss *pki.CA, cross *x509.Certificate) error
	// drop deletes a generation a rollback abandons.
	drop(gen int)
	// retire deletes a generation's keys: it never issues again.
	retire(gen int)
	// where names the place for messages.
	where() string
}

// fileKeeper keeps generations in the data directory: generation 1 in pki/,
// generation N in pki/gen-N/.
type fileKeeper struct{ c *Coordinator }

func (f fileKeeper) where() string { return "data directory " + f.c.path("pki") }

func (f fileKeeper) load(gen int, withKeys bool) (root, iss *pki.CA, err error) {
	c := f.c
	root, err = c.loadCA(c.genPath(gen, "root-ca.crt"), c.genPath(gen, "root-ca.key"), true)
	if err != nil {
		return nil, nil, fmt.Errorf("CA generation %d: %w", gen, err)
	}
	iss, err = c.loadCA(c.genPath(gen, "issuing-ca.crt"), c.genPath(gen, "issuing-ca.key"), !withKeys)
	if err != nil {
		return nil, nil, fmt.Errorf("CA generation %d: %w", gen, err)
	}
	return root, iss, nil
}

func (f fileKeeper) cross(gen int) *x509.Certificate {
	b, err := os.ReadFile(f.c.genPath(gen, "cross.crt"))
	if err != nil {
		return nil
	}
	certs, err := pki.ParseCertsPEM(b)
	if err != nil {
		return nil
	}
	return certs[0]
}

func (f fileKeeper) save(gen int, root, iss *pki.CA, cross *x509.Certificate) error {
	c := f.c
	if err := os.MkdirAll(c.path(genDir(gen)), 0o700); err != nil {
		return err
	}
	if err := c.saveCA(c.genPath(gen, "root-ca.crt"), c.genPath(gen, "root-ca.key"), root); err != nil {
		return err
	}
	if err := c.saveCA(c.genPath(gen, "issuing-ca.crt"), c.genPath(gen, "issuing-ca.key"), iss); err != nil {
		return err
	}
	if cross == nil {
		return nil
	}
	return identity.WriteFileAtomic(c.genPath(gen, "cross.crt"), pki.EncodeCertsPEM(cross), 0o644)
}

func (f fileKeeper) drop(gen int) {
	if gen > 1 { // generation 1 is pki/ itself
		os.RemoveAll(f.c.path(genDir(gen)))
	}
}

func (f fileKeeper) retire(gen int) {
	os.Remove(f.c.genPath(gen, "root-ca.key"))
	os.Remove(f.c.genPath(gen, "issuing-ca.key"))
}

// caStoreTimeout bounds one CA read or write in the shared store.
const caStoreTimeout = 30 * time.Second

// storeKeeper keeps generations in the shared store through castore.
type storeKeeper struct {
	c *Coordinator
	k *castore.Keeper
}

func (s storeKeeper) where() string { return "the " + s.c.backend.desc }

func (s storeKeeper) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), caStoreTimeout)
}

func (s storeKeeper) load(gen int, withKeys bool) (root, iss *pki.CA, err error) {
	ctx, cancel := s.ctx()
	defer cancel()
	g, err := s.k.Load(ctx, gen, withKeys)
	if err != nil {
		return nil, nil, s.c.caStoreError(err)
	}
	return g.Root, g.Issuing, nil
}

func (s storeKeeper) cross(gen int) *x509.Certificate {
	ctx, cancel := s.ctx()
	defer cancel()
	g, err := s.k.Load(ctx, gen, false)
	if err != nil {
		return nil
	}
	return g.Cross
}

func (s storeKeeper) save(gen int, root, iss *pki.CA, cross *x509.Certificate) error {
	ctx, cancel := s.ctx()
	defer cancel()
	err := s.k.Create(ctx, &castore.Generation{Number: gen, Root: root, Issuing: iss, Cross: cross})
	if errors.Is(err, castore.ErrExists) {
		return api.Errorf(api.CodeUnavailable, "another coordinator is rotating the CA at the same moment: check `ward ca status`, then run the command again",
			"CA generation %d is already in the %s", gen, s.c.backend.desc)
	}
	return err
}

func (s storeKeeper) drop(gen int) {
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.k.Drop(ctx, gen); err != nil {
		s.c.log.Error("delete the abandoned CA generation from the store", "generation", gen, "err", err)
	}
}

func (s storeKeeper) retire(gen int) {
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.k.Retire(ctx, gen); err != nil {
		s.c.log.Error("delete the keys of a retired CA generation from the store", "generation", gen, "err", err)
	}
}

// caStoreError explains a CA that cannot be read from the shared store,
// naming the setting and the fix.
func (c *Coordinator) caStoreError(err error) error {
	var ke *castore.KeyError
	if errors.As(err, &ke) {
		switch {
		case errors.Is(err, pki.ErrWrongPassphrase):
			return api.Errorf(api.CodeFailedPrecondition,
				"give this coordinator the same passphrase file (--ca-passphrase-file, config key ca_passphrase_file) as the coordinator that created the cluster CA; no new CA is made, the one in the store is the cluster's",
				"the passphrase in %s (--ca-passphrase-file) does not decrypt the %s of the cluster CA held in the %s (record %s)", c.cfg.CAPassphraseFile, ke.Which, c.backend.desc, ke.Key)
		default:
			return fmt.Errorf("%w. Fix: %s", err, c.restoreHint())
		}
	}
	return err
}
