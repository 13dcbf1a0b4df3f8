package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/enroll"
)

// TestJoinGlobalLimit: joins are limited for all addresses together, the
// refusal says when to retry and names the setting, and a real agent that
// meets the limit backs off, says so in its log and joins when it may.
// Failed joins are audited with the token's ID, never its secret.
func TestJoinGlobalLimit(t *testing.T) {
	c := newCluster(t, "--join-global-burst", "3", "--join-global-rate", "0.5")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for i := range 3 {
		if err := joinWith(t, c.token(), fmt.Sprintf("g%d", i), key, &x509.CertificateRequest{}); err != nil {
			t.Fatalf("join %d within the burst: %v", i, err)
		}
	}
	join := c.token()
	err := joinWith(t, join, "g3", key, &x509.CertificateRequest{})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeRateLimited || !strings.Contains(ae.Message, "join_global_rate=0.5/s") || ae.RetryAfter <= 0 {
		t.Fatalf("a join over the global burst: %v (retry after %v), want RATE_LIMITED naming join_global_rate with a retry time", err, ae)
	}
	js, _ := enroll.ParseJoinString(join)
	audited := false
	for _, e := range c.auditEvents() {
		if e.Type == "join" && e.Result == string(api.CodeRateLimited) && e.Detail["token_id"] == js.TokenID {
			audited = true
		}
		for _, v := range e.Detail {
			if strings.Contains(v, js.Secret) {
				t.Fatalf("the token secret is in the audit log: %+v", e)
			}
		}
	}
	if !audited {
		t.Errorf("the refused join is not audited with its token ID %s", js.TokenID)
	}

	// A real agent, refused at first, retries and joins.
	dir := filepath.Join(c.dir, "agent-late")
	p := startProc(t, c.dir, "agent-late", nil, "agent", "--data", dir, "--name", "late", "--join-file", c.writeJoinFile(join))
	waitFor(t, 30*time.Second, "the rate-limited agent to join", func() bool {
		if !p.running() {
			t.Fatalf("the agent exited instead of retrying: %s", p.stderrText())
		}
		n, ok := c.node("late")
		return ok && n.State == "ready"
	})
	log := p.stderrText()
	if !strings.Contains(log, "join refused for now; retrying") || !strings.Contains(log, "code=RATE_LIMITED") || !strings.Contains(log, "retry_in=") {
		t.Errorf("the agent's log does not say it backed off:\n%s", log)
	}
}

// TestJoinFloodFromOneAddress: an address over its join rate is refused,
// but an attempt from it with a valid token still joins, so a flood from a
// shared address (a NAT) does not lock out the real agents behind it.
func TestJoinFloodFromOneAddress(t *testing.T) {
	c := newCluster(t, "--join-burst", "5", "--join-rate", "0.1")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	js, _ := enroll.ParseJoinString(c.token())
	_, other, _ := enroll.NewToken()
	js.Secret = other
	limited := 0
	for i := range 20 {
		if api.CodeOf(joinWith(t, js.String(), fmt.Sprintf("flood-%d", i), key, &x509.CertificateRequest{})) == api.CodeRateLimited {
			limited++
		}
	}
	if limited != 15 {
		t.Fatalf("%d of 20 bad attempts were rate limited, want 15 (burst 5)", limited)
	}
	if err := joinWith(t, c.token(), "real", key, &x509.CertificateRequest{}); err != nil {
		t.Fatalf("a join with a valid token from the flooding address: %v", err)
	}
}
