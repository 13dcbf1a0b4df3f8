package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/diagnose"
	"github.com/wardcluster/ward/internal/enroll"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/transport"
)

// client calls the coordinator's API with the context's certificate,
// verifying the server against the context's bundle and pins.
type client struct {
	base   string
	server string
	http   *http.Client

	// For catching up on a CA rotation: the context and its credential.
	g      *globals
	ctx    *config.Context
	path   string
	cred   *identity.Credential
	caught bool
}

func (g *globals) client() (*client, error) {
	path, source := config.ResolveContextPath(g.context)
	ctx, err := config.LoadContext(path)
	if err != nil {
		var ae *api.Error
		if errors.As(err, &ae) {
			return nil, err
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, noContextError(path, source)
		}
		return nil, api.Errorf(api.CodeFailedPrecondition,
			"start a coordinator (or `ward dev`) and run the `export WARD_CONTEXT=...` line it prints, or pass --context FILE",
			"cannot read the CLI context %s (from %s): %v", path, source, err)
	}
	cred, bundle, pins, err := ctx.Credential()
	if err != nil {
		return nil, fmt.Errorf("context %s: %w", path, err)
	}
	if len(g.pins) > 0 {
		// Explicit --pin flags replace the context's pins, never silently.
		if pins, err = pki.ParsePins(g.pins); err != nil {
			return nil, api.Errorf(api.CodeInvalidArgument, "fix the --pin value", "%v", err)
		}
	}
	for _, p := range pins {
		if p.Legacy() {
			fmt.Fprintf(g.stderr, "ward: warning: pin %s uses SHA-1, a legacy form; pin the CA key instead (`ward ca pin`)\n", p)
		}
	}
	server := ctx.Server
	if g.server != "" {
		// For this command only: the context keeps its address.
		server = g.server
	}
	src := identity.NewSource(cred, bundle)
	cfg := transport.ClientConfig(src, transport.ClientOptions{
		Cluster: ctx.Cluster, ServerName: transport.HostOf(server), Pins: pins, NextProtos: []string{transport.ALPNHTTP},
	})
	c := &client{
		g: g, ctx: ctx, path: path, cred: cred,
		base:   "https://" + server,
		server: server,
		http: &http.Client{Transport: &http.Transport{
			TLSClientConfig: cfg, ForceAttemptHTTP2: false, TLSHandshakeTimeout: 10 * time.Second,
			TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
		}},
	}
	switch d := identity.ShouldRenew(time.Now(), cred.Leaf(), 0.5); {
	case d.Expired:
		return nil, api.Errorf(api.CodeCertExpired,
			"for the admin context: restart the coordinator on its host (it renews it); for a user: ask an admin for a new login (`ward user role NAME ROLE`) and run `ward login --join-file FILE --force`",
			"the CLI certificate in %s expired at %s", path, cred.Leaf().NotAfter.UTC().Format(time.RFC3339))
	case d.Renew:
		if err := c.renewContext(ctx, path, cred); err != nil {
			fmt.Fprintf(g.stderr, "ward: could not renew the CLI certificate (it still works until %s): %v\n", cred.Leaf().NotAfter.Local().Format(time.RFC3339), err)
		} else {
			src.SetCredential(mustCred(ctx))
		}
	}
	return c, nil
}

// renewContext renews the context's certificate with its own key and saves
// the context.
func (c *client) renewContext(ctx *config.Context, path string, cred *identity.Credential) error {
	id, err := pki.IDFromCert(cred.Leaf())
	if err != nil {
		return err
	}
	csr, err := enroll.CreateCSR(cred.Key, id)
	if err != nil {
		return err
	}
	var out api.Renewed
	rctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.do(rctx, "POST", "/v1/certs/renew", api.RenewRequest{CSR: csr}, &out); err != nil {
		return err
	}
	chain, err := pki.ParseCertsPEM(out.ChainPEM)
	if err != nil || !pki.KeyMatches(chain[0], cred.Key) {
		return fmt.Errorf("the coordinator answered with an unusable certificate")
	}
	ctx.CertPEM = string(out.ChainPEM)
	if len(out.BundlePEM) > 0 {
		// Delivered over a verified connection: adopt the cluster's
		// current roots (they change during a CA rotation).
		if roots, err := pki.ParseCertsPEM(out.BundlePEM); err == nil {
			ctx.BundlePEM = string(out.BundlePEM)
			for _, r := range roots {
				if p := pki.SPKIPin(r).String(); !slices.Contains(ctx.Pins, p) && len(ctx.Pins) > 0 {
					ctx.Pins = append(ctx.Pins, p)
				}
			}
		}
	}
	return ctx.Save(path)
}

func mustCred(ctx *config.Context) *identity.Credential {
	cred, _, _, _ := ctx.Credential()
	return cred
}

// do sends a JSON request and decodes the JSON answer into out.
func (c *client) do(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.send(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
	}
	return nil
}

// send performs a request and turns failures into errors with fixes.
func (c *client) send(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.sendRequest(ctx, req)
}

// sendRequest performs a prepared request (a streamed body, for one) and
// turns failures into errors with fixes, as send does.
func (c *client) sendRequest(ctx context.Context, req *http.Request) (*http.Response, error) {
	method, path := req.Method, req.URL.Path
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		v := diagnose.Explain(err)
		code := api.CodeUnavailable
		if v.Code == diagnose.CodeClientCertRejected {
			// Refused at the handshake (revoked, a removed user, another
			// cluster): trying again cannot help.
			code = api.CodeUnauthenticated
		}
		return nil, &api.Error{Code: code, Message: fmt.Sprintf("cannot reach the coordinator at %s: %s [%s]", c.server, v.Message, v.Code), Fix: v.Fix, Cause: err}
	}
	c.catchUpRotation(resp)
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var eb api.ErrorBody
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(data, &eb) == nil && eb.Error != nil {
			return nil, eb.Error
		}
		return nil, fmt.Errorf("%s %s answered %s", method, path, resp.Status)
	}
	return resp, nil
}

// catchUpRotation renews the CLI's certificate once when the coordinator's
// certificate comes from another issuing CA than ours: a CA rotation is
// under way, and an old-CA certificate stops working when it finishes.
func (c *client) catchUpRotation(resp *http.Response) {
	if c.caught || c.ctx == nil || resp.TLS == nil || len(resp.TLS.PeerCertificates) < 2 {
		return
	}
	c.caught = true
	serverIssuer := resp.TLS.PeerCertificates[1]
	if bytes.Equal(serverIssuer.RawSubject, c.cred.Leaf().RawIssuer) {
		return
	}
	if err := c.renewContext(c.ctx, c.path, c.cred); err != nil {
		fmt.Fprintf(c.g.stderr, "ward: the cluster CA is rotating and the CLI certificate could not be renewed yet: %v\n", err)
	}
}

// call sends one API request and decodes the answer into a T. With --json
// it prints the answer and reports printed, so the caller writes its own
// text only when printed is false.
func call[T any](cmd *cobra.Command, g *globals, method, path string, in any) (out T, printed bool, err error) {
	c, err := g.client()
	if err != nil {
		return out, false, err
	}
	if err := c.do(cmd.Context(), method, path, in, &out); err != nil {
		return out, false, err
	}
	if g.json() {
		return out, true, printJSON(g.stdout, out)
	}
	return out, false, nil
}
