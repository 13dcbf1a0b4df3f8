package enroll_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/enroll"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/pki/pkitest"
)

// TestPostAny: a join or login goes to the first coordinator of the join
// string that answers. An address that refuses connections, does not
// complete a handshake within the connect timeout, fails the pin, or
// answers UNAVAILABLE passes to the next; any other answer is final, so a
// refused token is not offered to every coordinator in turn. So is a
// failure after the request went out (the connection cut before the
// answer, an answer that is not Ward's): that coordinator may have used
// the one-time secret, and the error says so.
func TestPostAny(t *testing.T) {
	defer enroll.SetConnectTimeout(300 * time.Millisecond)()
	ca := pkitest.New(t)
	pins := []pki.Pin{pki.SPKIPin(ca.Root.Cert)}
	cert, _ := ca.Leaf(t, pki.RoleCoordinator, "c1")
	cert.Certificate = append(cert.Certificate, ca.Root.Cert.Raw) // coordinators serve their root, which the pin names
	serve := func(status int, body string) (string, *atomic.Int32) {
		var hits atomic.Int32
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			w.Write([]byte(body))
		}))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv.Listener.Addr().String(), &hits
	}
	dead := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}
	ok, okHits := serve(200, `{"node":"n1"}`)
	refused, _ := serve(401, `{"error":{"code":"TOKEN_INVALID","message":"the join token is not valid"}}`)
	unavailable, _ := serve(503, `{"error":{"code":"UNAVAILABLE","message":"no coordinator leads the cluster right now"}}`)
	other := pkitest.New(t)
	otherCert, _ := other.Leaf(t, pki.RoleCoordinator, "x")
	impostor := httptest.NewUnstartedServer(http.NotFoundHandler())
	impostor.TLS = &tls.Config{Certificates: []tls.Certificate{otherCert}}
	impostor.StartTLS()
	defer impostor.Close()
	down := dead()
	// A host that takes the TCP connection and never answers the
	// handshake (the kernel accepts into the backlog; nobody reads).
	silentLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silentLn.Close()
	silent := silentLn.Addr().String()
	// A coordinator that reads the whole request, then dies before it
	// answers.
	cut := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	cut.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	cut.StartTLS()
	defer cut.Close()
	proxyError, _ := serve(502, `<html>Bad Gateway</html>`)

	tests := []struct {
		name     string
		addrs    []string
		wantAddr string
		wantCode api.Code // the refusal, when final
		wantErr  []string // an error naming these, when none answered
		lost     bool     // the request went out: final, and the error says the secret may be used
	}{
		{"first answers", []string{ok, down}, ok, "", nil, false},
		{"first down", []string{down, ok}, ok, "", nil, false},
		{"pin mismatch, then the real one", []string{impostor.Listener.Addr().String(), ok}, ok, "", nil, false},
		{"unavailable passes on", []string{unavailable, ok}, ok, "", nil, false},
		{"a refusal is final", []string{refused, ok}, refused, api.CodeTokenInvalid, nil, false},
		{"all down", []string{down, dead()}, "", "", []string{"none of the 2 coordinators", down}, false},
		{"only one, down", []string{down}, "", "", []string{"connection refused"}, false},
		{"unavailable or down everywhere", []string{down, unavailable}, "", api.CodeUnavailable, nil, false},
		{"no handshake within the timeout, then the real one", []string{silent, ok}, ok, "", nil, false},
		{"only one, silent", []string{silent}, "", "", []string{"connect to " + silent, "no TLS connection within 300ms"}, false},
		{"answer lost after the request went out", []string{cut.Listener.Addr().String(), ok}, cut.Listener.Addr().String(), "", nil, true},
		{"an answer that is not Ward's", []string{proxyError, ok}, proxyError, "", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := okHits.Load()
			var out struct{ Node string }
			addr, err := enroll.PostAny(context.Background(), tt.addrs, pins, api.PathJoin, map[string]string{}, &out, nil)
			switch {
			case tt.lost:
				var lost *enroll.AnswerLostError
				if !errors.As(err, &lost) || addr != tt.wantAddr || !strings.Contains(err.Error(), "may have used the join string's one-time secret") {
					t.Fatalf("got %v from %s; want the answer lost at %s, saying the secret may be used", err, addr, tt.wantAddr)
				}
				if okHits.Load() != before {
					t.Fatal("the next coordinator was asked after the request went out to one")
				}
			case tt.wantCode != "":
				if api.CodeOf(err) != tt.wantCode || addr != tt.wantAddr {
					t.Fatalf("got %s from %s (%v), want %s from %s", api.CodeOf(err), addr, err, tt.wantCode, tt.wantAddr)
				}
				if okHits.Load() != before {
					t.Fatal("the next coordinator was asked after a final refusal")
				}
			case tt.wantErr != nil:
				if err == nil {
					t.Fatalf("succeeded through %s", addr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Fatalf("error %q does not name %q", err, w)
					}
				}
				var ce *enroll.ConnectError
				if !errors.As(err, &ce) {
					t.Fatalf("error %v does not say nothing was sent", err)
				}
				if strings.Contains(err.Error(), "refused") && !errors.Is(err, syscall.ECONNREFUSED) {
					t.Fatalf("error %v hides the refused connection from diagnosis", err)
				}
			default:
				if err != nil || addr != tt.wantAddr || out.Node != "n1" {
					t.Fatalf("got %q from %s, %v; want n1 from %s", out.Node, addr, err, tt.wantAddr)
				}
			}
		})
	}
}
