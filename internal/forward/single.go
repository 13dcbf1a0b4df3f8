package forward

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/wardcluster/ward/internal/transport"
)

// A leader of the previous version offers no multiplexed relay: it takes
// each relayed agent session on a mutual TLS connection of its own (ALPN
// ward-relay/1), the preamble first, then the agent's bytes both ways. A
// follower upgraded first (a rolling upgrade) relays that way until the
// leader is upgraded too, so no agent loses its session meanwhile.

// relaySingle carries one session to the leader at addr over a connection
// of its own. Until the preamble is sent nothing is read from agent, and
// a failure wraps ErrNotRelayed.
func (m *Mux) relaySingle(ctx context.Context, addr string, p Preamble, agent net.Conn, started func(via string)) error {
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	up, err := m.dialTLS(dctx, addr, transport.ALPNRelay)
	cancel()
	if err != nil {
		return fmt.Errorf("%w: open a relay connection (%s) to the leader at %s: %v", ErrNotRelayed, transport.ALPNRelay, addr, err)
	}
	up.SetWriteDeadline(time.Now().Add(dialTimeout))
	if err := WritePreamble(up, p); err != nil {
		up.Close()
		return fmt.Errorf("%w: send the relay preamble to the leader at %s: %v", ErrNotRelayed, addr, err)
	}
	up.SetWriteDeadline(time.Time{})
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		up.Close()
		return fmt.Errorf("%w: the relay is shut down", ErrNotRelayed)
	}
	m.singles[up] = struct{}{}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.singles, up)
		m.mu.Unlock()
	}()
	started(transport.ALPNRelay)
	pipe(agent, up)
	return nil
}

// pipe copies bytes both ways between a and b until either side ends,
// then closes both. It returns when both copies are done.
func pipe(a, b net.Conn) {
	var once sync.Once
	closeBoth := func() { once.Do(func() { a.Close(); b.Close() }) }
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); io.Copy(a, b); closeBoth() }()
	go func() { defer wg.Done(); io.Copy(b, a); closeBoth() }()
	wg.Wait()
}
