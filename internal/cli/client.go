package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/coordinator"
	"github.com/wardcluster/ward/internal/diagnose"
	"github.com/wardcluster/ward/internal/identity"
	"github.com/wardcluster/ward/internal/transport"
)

func version() string { return coordinator.Version }

// client calls the coordinator's API with the context's certificate,
// verifying the server against the context's bundle and pins.
type client struct {
	base   string
	server string
	http   *http.Client
}

func (g *globals) client() (*client, error) {
	path, source := config.ResolveContextPath(g.context)
	ctx, err := config.LoadContext(path)
	if err != nil {
		var ae *api.Error
		if errors.As(err, &ae) {
			return nil, err
		}
		return nil, api.Errorf(api.CodeFailedPrecondition,
			"start a coordinator (or `ward dev`) and run the `export WARD_CONTEXT=...` line it prints, or pass --context FILE",
			"cannot read the CLI context %s (from %s): %v", path, source, err)
	}
	cred, bundle, pins, err := ctx.Credential()
	if err != nil {
		return nil, fmt.Errorf("context %s: %w", path, err)
	}
	src := identity.NewSource(cred, bundle)
	cfg := transport.ClientConfig(src, transport.ClientOptions{
		Cluster: ctx.Cluster, ServerName: transport.HostOf(ctx.Server), Pins: pins, NextProtos: []string{transport.ALPNHTTP},
	})
	return &client{
		base:   "https://" + ctx.Server,
		server: ctx.Server,
		http: &http.Client{Transport: &http.Transport{
			TLSClientConfig: cfg, ForceAttemptHTTP2: false, TLSHandshakeTimeout: 10 * time.Second,
			DialContext: nil, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
		}},
	}, nil
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
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		v := diagnose.Explain(err)
		return nil, &api.Error{Code: api.CodeUnavailable, Message: fmt.Sprintf("cannot reach the coordinator at %s: %s [%s]", c.server, v.Message, v.Code), Fix: v.Fix, Cause: err}
	}
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
