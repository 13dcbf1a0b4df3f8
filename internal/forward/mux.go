package forward

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardcluster/ward/internal/transport"
	"golang.org/x/net/http2"
)

// Relayed agent sessions travel from a follower to the leader as HTTP/2
// streams (Go's own net/http HTTP/2, full duplex) over a few mutual TLS
// connections per follower, instead of one connection per agent: the
// leader's open-files limit then bounds the agents connected to it, not
// the agents of the whole cluster. Each stream is one agent session: the
// request body carries the preamble and then the agent's bytes, the
// response body the leader's bytes. HTTP/2's per-stream flow control keeps
// one slow agent (or one session the leader does not read) from stalling
// the others: a stream can hold at most StreamWindow bytes of its
// connection's much larger window.

// ALPNMux is the protocol of a follower's multiplexed relay connection on
// the leader's cluster port. It is HTTP/2's own ("h2"), which Go's HTTP/2
// requires; the cluster port offers it after every other protocol (the
// server's preference wins), and the coordinator serves it only to
// coordinator certificates.
const ALPNMux = transport.ALPNRelayMux

// RelayPath is the request path of a relayed agent session.
const RelayPath = "/ward.relay/v2/session"

// Limits of a multiplexed relay connection, set explicitly on both sides.
const (
	// MaxStreams is the leader's SETTINGS_MAX_CONCURRENT_STREAMS: relayed
	// sessions per connection. A follower opens another connection when its
	// connections are full.
	MaxStreams = 16384
	// StreamWindow is each stream's receive window, both ways: what one
	// session can have in flight before its sender waits for it.
	StreamWindow = 64 << 10
	// ConnWindow is a connection's receive window: StreamWindow × 1024, so
	// a thousand stalled sessions leave the others room.
	ConnWindow = 64 << 20
	// frameSize is the largest DATA frame either side reads. A follower
	// holds one frame-sized buffer per session (the request body's), so it
	// is HTTP/2's minimum.
	frameSize = 16 << 10
	// pingAfter and pingTimeout find a dead peer: a connection that read
	// no frame for pingAfter sends a ping and is closed, with every session
	// on it, if no answer comes within pingTimeout. A connection carrying
	// sessions reads a heartbeat or its answer every interval, so this
	// fires only when the peer is silent; the 45 s it allows is longer
	// than a session's own liveness timeout (25 s at the default 5 s
	// interval, 40 s at 10 s), so a stalled leader that its sessions would
	// outlive does not lose them all at once. A dead leader is still found
	// sooner by each session's liveness (its agent reconnects) and by the
	// election.
	pingAfter   = 15 * time.Second
	pingTimeout = 30 * time.Second
	// writeTimeout closes a connection whose peer stopped reading.
	writeTimeout = 30 * time.Second
)

func muxConfig() *http.HTTP2Config {
	return &http.HTTP2Config{
		MaxConcurrentStreams:          MaxStreams,
		MaxReadFrameSize:              frameSize,
		MaxReceiveBufferPerStream:     StreamWindow,
		MaxReceiveBufferPerConnection: ConnWindow,
		SendPingTimeout:               pingAfter,
		PingTimeout:                   pingTimeout,
		WriteByteTimeout:              writeTimeout,
	}
}

// NewRelayServer is the leader's server of multiplexed relay connections:
// HTTP/2 only, each stream at RelayPath handed to serve as a net.Conn
// until serve returns. cs is the relaying connection's TLS state; serve
// must check it is a coordinator's (FromCoordinator's rule) before it
// trusts the preamble. Feed it connections that negotiated ALPNMux.
//
// The HTTP/2 server is golang.org/x/net/http2 (the code net/http bundles)
// for one setting net/http does not expose: the write scheduler. The
// default round-robin scheduler walks every open stream of a connection
// each time it looks for a frame to send, and with thousands of idle
// sessions per connection that walk was a quarter of a leader's CPU
// (measured: 25% of the leader's profile in writeQueue.empty at 25,000
// agents). The random scheduler keeps only the streams that have frames
// queued.
func NewRelayServer(serve func(conn net.Conn, cs *tls.ConnectionState), errLog *log.Logger) (*http.Server, error) {
	var p http.Protocols
	p.SetHTTP2(true)
	srv := &http.Server{
		Protocols: &p,
		HTTP2:     muxConfig(),
		// NextProtos naming h2 makes Serve set up HTTP/2 for the *tls.Conn
		// it is given; the handshake itself is the cluster listener's.
		TLSConfig: &tls.Config{NextProtos: []string{ALPNMux}},
		ErrorLog:  errLog,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost || r.URL.Path != RelayPath || r.ProtoMajor != 2 || r.TLS == nil {
				http.Error(w, "only relayed agent sessions are served here", http.StatusNotFound)
				return
			}
			w.WriteHeader(http.StatusOK)
			rc := http.NewResponseController(w)
			if err := rc.Flush(); err != nil {
				return
			}
			s := &streamConn{body: r.Body, w: w, rc: rc, local: addrOf(r.Context().Value(http.LocalAddrContextKey)), remote: tcpAddr(r.RemoteAddr)}
			defer s.finish()
			serve(s, r.TLS)
		}),
	}
	err := http2.ConfigureServer(srv, &http2.Server{NewWriteScheduler: func() http2.WriteScheduler { return http2.NewRandomWriteScheduler() }})
	if err != nil {
		return nil, fmt.Errorf("relay server: %w", err)
	}
	return srv, nil
}

func addrOf(v any) net.Addr {
	if a, ok := v.(net.Addr); ok {
		return a
	}
	return &net.TCPAddr{}
}

func tcpAddr(s string) net.Addr {
	if a, err := net.ResolveTCPAddr("tcp", s); err == nil {
		return a
	}
	return &net.TCPAddr{}
}

// streamConn is one relayed session's stream on the leader, as a
// net.Conn. Its deadlines are the stream's (a read deadline that passes
// ends the stream's reads with os.ErrDeadlineExceeded; a write deadline
// resets the stream). The ResponseWriter must not be touched once the
// handler returned, so every use holds gate and checks done.
type streamConn struct {
	body          io.ReadCloser
	w             http.ResponseWriter
	rc            *http.ResponseController
	local, remote net.Addr

	gate   sync.RWMutex
	done   bool       // the handler returned (under gate)
	wmu    sync.Mutex // one Write at a time
	closed atomic.Bool
	once   sync.Once
}

func (s *streamConn) Read(p []byte) (int, error) {
	n, err := s.body.Read(p)
	if err != nil && s.closed.Load() {
		err = net.ErrClosed
	}
	return n, err
}

func (s *streamConn) Write(p []byte) (int, error) {
	s.gate.RLock()
	defer s.gate.RUnlock()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.done || s.closed.Load() {
		return 0, net.ErrClosed
	}
	n, err := s.w.Write(p)
	if err == nil {
		err = s.rc.Flush()
	}
	return n, err
}

// Close ends the stream: reads end at once; a write waiting for the
// follower's window is cut by resetting the stream; otherwise the stream
// ends cleanly when the handler returns, after what was written.
func (s *streamConn) Close() error {
	s.once.Do(func() {
		s.closed.Store(true)
		s.body.Close()
		if s.wmu.TryLock() {
			s.wmu.Unlock() // no write in flight, and none starts now
			return
		}
		s.gate.RLock()
		if !s.done {
			s.rc.SetWriteDeadline(time.Unix(1, 0))
		}
		s.gate.RUnlock()
	})
	return nil
}

// finish runs as the handler returns: it closes the stream and waits for a
// write in flight, so the ResponseWriter is left alone from then on.
func (s *streamConn) finish() {
	s.Close()
	s.gate.Lock()
	s.done = true
	s.gate.Unlock()
}

func (s *streamConn) deadline(set func(time.Time) error, t time.Time) error {
	s.gate.RLock()
	defer s.gate.RUnlock()
	if s.done {
		return net.ErrClosed
	}
	return set(t)
}

func (s *streamConn) SetReadDeadline(t time.Time) error  { return s.deadline(s.rc.SetReadDeadline, t) }
func (s *streamConn) SetWriteDeadline(t time.Time) error { return s.deadline(s.rc.SetWriteDeadline, t) }
func (s *streamConn) SetDeadline(t time.Time) error {
	if err := s.SetReadDeadline(t); err != nil {
		return err
	}
	return s.SetWriteDeadline(t)
}
func (s *streamConn) LocalAddr() net.Addr  { return s.local }
func (s *streamConn) RemoteAddr() net.Addr { return s.remote }
