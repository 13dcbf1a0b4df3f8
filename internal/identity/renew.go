package identity

import (
	"crypto/x509"
	"time"
)

// RenewFraction is the share of a certificate's lifetime after which it is
// renewed: about two thirds, as the design asks.
const RenewFraction = 2.0 / 3.0

// RenewalJitter spreads renewals over this share of the lifetime, so a fleet
// issued at once does not renew at once.
const RenewalJitter = 0.1

// RenewAt returns when cert should be renewed. jitter in [0,1) moves the
// moment back by up to RenewalJitter of the lifetime; pass a stable per-node
// value so the answer is reproducible. It is a pure function of its inputs.
func RenewAt(cert *x509.Certificate, jitter float64) time.Time {
	life := cert.NotAfter.Sub(cert.NotBefore)
	if life <= 0 {
		return cert.NotBefore
	}
	if jitter < 0 {
		jitter = 0
	}
	if jitter >= 1 {
		jitter = 0.999
	}
	share := RenewFraction - RenewalJitter*jitter
	return cert.NotBefore.Add(time.Duration(float64(life) * share))
}

// RenewDecision is what the policy says to do now.
type RenewDecision struct {
	Renew   bool          // renew now
	Expired bool          // already past NotAfter: renewal needs the grace path
	Wait    time.Duration // when not renewing, how long until renewal is due
}

// ShouldRenew applies RenewAt at now.
func ShouldRenew(now time.Time, cert *x509.Certificate, jitter float64) RenewDecision {
	if !now.Before(cert.NotAfter) {
		return RenewDecision{Renew: true, Expired: true}
	}
	at := RenewAt(cert, jitter)
	if !now.Before(at) {
		return RenewDecision{Renew: true}
	}
	return RenewDecision{Wait: at.Sub(now)}
}
