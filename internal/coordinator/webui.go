package coordinator

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/store"
	"github.com/wardcluster/ward/internal/web"
)

// The coordinator is the console's Cluster: the console calls the same
// operations as the HTTP API.
var _ web.Cluster = (*Coordinator)(nil)

// newConsole builds the web admin console, unless it is turned off.
func (c *Coordinator) newConsole() (*web.Server, error) {
	if !c.cfg.UI {
		return nil, nil
	}
	wc := web.Config{Cluster: c.cfg.Cluster, IdleTimeout: c.cfg.UIIdleTimeout.D(), Lifetime: c.cfg.UISessionLifetime.D(), Logger: c.log, Now: c.now}
	if f := c.cfg.UIPasswordFile; f != "" {
		data, err := identity.ReadSecret(f)
		if err != nil {
			return nil, fmt.Errorf("ui_password_file (--ui-password-file): %w", err)
		}
		if wc.Password, err = web.ParsePasswordHash(string(data)); err != nil {
			return nil, fmt.Errorf("ui_password_file (--ui-password-file) %s %w", f, err)
		}
	}
	return web.New(wc, c)
}

// mountConsole serves the console under /ui/ on the public port, and sends
// a browser that opens the port's root there.
// The console's pages are public routes: each checks its own session, and
// every operation it calls checks the session user's role.
func (c *Coordinator) mountConsole(rt *router) {
	if c.console == nil {
		return
	}
	rt.public(web.Prefix, c.console)
	rt.public("GET /{$}", web.SecurityHeaders(http.RedirectHandler(web.Prefix, http.StatusSeeOther)))
}

func (c *Coordinator) apiUILink(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	var req api.UILinkRequest
	if err := c.readOptionalJSON(w, r, &req); err != nil {
		return err
	}
	return reply[api.UILink](w)(c.UILoginLink(r.Context(), p, req.TTL.D()))
}

// UILoginLink makes a one-time link that signs into the web console as p,
// for `ward ui`. The session it opens loses its rights when the
// certificate that asked for it is revoked.
func (c *Coordinator) UILoginLink(ctx context.Context, p authz.Principal, ttl time.Duration) (api.UILink, error) {
	if err := c.allow(p, authz.UILink); err != nil {
		return api.UILink{}, err
	}
	if c.console == nil {
		return api.UILink{}, api.Errorf(api.CodeFailedPrecondition, "start the coordinator without --ui=false (or \"ui\": false in its config)", "the web console is turned off on this coordinator")
	}
	path, expires, err := c.console.NewLoginLink(p, ttl)
	if err != nil {
		return api.UILink{}, err
	}
	c.Record(p, audit.Event{Type: string(authz.UILink), Detail: map[string]string{"expires": expires.UTC().Format(time.RFC3339)}})
	return api.UILink{URL: "https://" + c.advertisedAddr(c.cfg.PublicAddr) + path, Expires: expires}, nil
}

// TrustBundle is every root clients trust, as `ward ca export` writes it.
func (c *Coordinator) TrustBundle(ctx context.Context, p authz.Principal) ([]*x509.Certificate, error) {
	if err := c.allow(p, authz.CARead); err != nil {
		return nil, err
	}
	return c.clientBundle(), nil
}

// CRL is the current CRL of the issuing CA, DER.
func (c *Coordinator) CRL(ctx context.Context, p authz.Principal) ([]byte, error) {
	if err := c.allow(p, authz.CRLRead); err != nil {
		return nil, err
	}
	cur := c.currentCRL()
	if cur == nil {
		return nil, api.Errorf(api.CodeUnavailable, "check the coordinator log for \"rebuild CRL\"", "no CRL is published for the issuing CA yet")
	}
	return cur.der, nil
}

// storeHealth reads one key from the store, with a deadline, and says how
// it went.
func (c *Coordinator) storeHealth(ctx context.Context) api.StoreHealth {
	var h api.StoreHealth
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.st.Get(ctx, keyJobSeq)
	h.Latency = api.Duration(time.Since(start))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		h.Error = err.Error()
	} else {
		h.OK = true
	}
	c.storeHealthWrites(&h)
	return h
}
