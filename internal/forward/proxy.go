package forward

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httputil"
	"time"
)

// Proxy is a follower's reverse proxy to the leader for one listener.
type Proxy struct {
	listener string
	by       string
	leader   func(ctx context.Context) (string, error)
	onError  func(w http.ResponseWriter, r *http.Request, err error)
	rp       *httputil.ReverseProxy
}

type leaderAddrKey struct{}

// NewProxy forwards requests that arrived on listener (ListenerCluster or
// ListenerPublic) to the address leader returns (its cluster port), dialing
// with the client configuration tlsFor builds for a server name (the
// follower's own coordinator certificate). by is the follower's ID.
// onError answers a request that could not be forwarded (no leader, or it
// cannot be reached).
func NewProxy(listener, by string, leader func(ctx context.Context) (string, error), tlsFor func(serverName string) *tls.Config,
	onError func(w http.ResponseWriter, r *http.Request, err error)) *Proxy {
	p := &Proxy{listener: listener, by: by, leader: leader, onError: onError}
	tr := &http.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: tlsFor(host)}
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:       p.rewrite,
		Transport:     tr,
		FlushInterval: -1, // followed logs stream as they come
		ErrorHandler:  onError,
	}
	return p
}

func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	in, out := pr.In, pr.Out
	out.URL.Scheme = "https"
	out.URL.Host = in.Context().Value(leaderAddrKey{}).(string)
	out.Host = in.Host // the console's same-origin checks see the address the browser used
	for _, h := range []string{HeaderListener, HeaderCert, HeaderFor, HeaderBy} {
		out.Header.Del(h)
	}
	out.Header.Set(HeaderListener, p.listener)
	out.Header.Set(HeaderFor, in.RemoteAddr)
	out.Header.Set(HeaderBy, p.by)
	if in.TLS != nil && len(in.TLS.PeerCertificates) > 0 {
		out.Header.Set(HeaderCert, encodeChain(in.TLS.PeerCertificates))
	}
}

// ServeHTTP forwards r to the current leader.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	addr, err := p.leader(r.Context())
	if err != nil {
		p.onError(w, r, err)
		return
	}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), leaderAddrKey{}, addr)))
}
