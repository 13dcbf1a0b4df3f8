package coordinator

import (
	"context"
	"encoding/json"
	"math/big"
	"time"

	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/store"
)

// Revocations made on any coordinator sharing the store reach this one
// through a watch on the certificate records: the serial joins the
// in-memory revocation set (new handshakes are refused), every live
// connection standing for it closes (agent sessions, API calls, log
// follows), a revoked node's session ends and, on the coordinator that
// serves the node, its tasks are requeued, and the CRLs are signed again. The watch delivers within milliseconds of the
// commit; the rebuild of the CRLs runs apart so it never delays a cut.

// followRetryMax bounds the wait before watching again after a watch could
// not start.
const followRetryMax = 2 * time.Second

// followRevocations runs until ctx ends. When a watch ends (compaction,
// etcd leader loss, falling behind) it re-reads every certificate record
// and watches again, so nothing revoked meanwhile is missed.
func (c *Coordinator) followRevocations(ctx context.Context) {
	c.followPrefix(ctx, prefixCerts, "certificate records",
		func(ctx context.Context) {
			// Revocations committed before the watch began (while the last
			// one was down) are found by reading every record once.
			if err := c.catchUpRevocations(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("re-read revocations from the store", "err", err)
			}
		},
		func(ev store.Event) {
			if ev.Type == store.EventPut && c.applyStoredRevocation(ev.Record) {
				c.kickCRL()
			}
		})
}

// followPrefix watches prefix until ctx ends: catchUp runs each time a
// watch starts (to apply what changed while none ran), then apply runs for
// every event. A watch that cannot start is retried with backoff; one that
// ends is started again.
func (c *Coordinator) followPrefix(ctx context.Context, prefix, what string, catchUp func(context.Context), apply func(store.Event)) {
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		w, err := c.st.Watch(ctx, prefix)
		if err != nil {
			c.log.Warn("cannot watch the store for changes made on other coordinators; retrying", "what", what, "err", err, "retry_in", wait.String())
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, followRetryMax)
			continue
		}
		wait = 100 * time.Millisecond
		catchUp(ctx)
		for ev := range w.Events() {
			apply(ev)
		}
		if err := w.Err(); err != nil && ctx.Err() == nil {
			c.log.Warn("a watch of the store ended; re-reading and watching again", "what", what, "err", err)
		}
	}
}

// catchUpRevocations applies every revoked certificate record not yet in
// the revocation set.
func (c *Coordinator) catchUpRevocations(ctx context.Context) error {
	applied := false
	err := c.st.Scan(ctx, prefixCerts, func(r store.Record) error {
		if c.applyStoredRevocation(r) {
			applied = true
		}
		return nil
	})
	if applied {
		c.kickCRL()
	}
	return err
}

// applyStoredRevocation applies one certificate record if it is revoked
// and this coordinator has not applied it yet (a revocation made here was
// applied before its record came back by the watch). It reports whether it
// did anything.
func (c *Coordinator) applyStoredRevocation(r store.Record) bool {
	var cr certRecord
	if err := json.Unmarshal(r.Value, &cr); err != nil {
		c.log.Warn("a certificate record in the store does not decode", "key", r.Key, "err", err)
		return false
	}
	if !cr.Revoked {
		return false
	}
	serial, ok := new(big.Int).SetString(cr.Serial, 16)
	if !ok {
		return false
	}
	// A revocation made here holds lineage until it is applied: wait for it,
	// so its own record coming back is seen as applied.
	c.lineage.RLock()
	defer c.lineage.RUnlock()
	now := c.now()
	newSerial := !c.revoked.Contains(serial)
	if newSerial {
		at := cr.RevokedAt
		if at.IsZero() {
			at = now
		}
		c.revoked.Add(at, cr.Serial)
	}
	if cr.Role == string(pki.RoleAgent) {
		node, requeued := "", 0
		c.mu.Lock()
		n := c.nodes[cr.Name]
		serves := false
		if n != nil && n.CertSerial == cr.Serial && !n.Revoked {
			n.Revoked = true // the revoking coordinator wrote the node's record
			node = cr.Name
			// Only the coordinator the node's session is (or was last) on
			// holds its tasks' current state; the others just stop
			// accepting it.
			serves = c.sessions[node] != nil || c.lostTimers[node] != nil
			if sn, ok := c.cl.Node(node); ok && !serves {
				sn.Revoked, sn.Connected = true, false
			}
		}
		c.mu.Unlock()
		// Decided before the connections close: a session that ends starts
		// the node's lost timer.
		closed := c.live.closeSerial(cr.Serial)
		if serves {
			requeued = c.takeNodeOut(node, "node revoked on another coordinator", now)
		}
		return c.revocationApplied(cr, newSerial, closed, node, requeued, now)
	}
	return c.revocationApplied(cr, newSerial, c.live.closeSerial(cr.Serial), "", 0, now)
}

// revocationApplied logs and finishes a revocation applied from the store;
// it reports whether the serial was new here.
func (c *Coordinator) revocationApplied(cr certRecord, newSerial bool, closed int, node string, requeued int, now time.Time) bool {
	if !newSerial && closed == 0 && node == "" {
		return false
	}
	if newSerial {
		c.metrics.Revocations.Add(1)
	}
	c.log.Info("revocation from the store applied", "serial", cr.Serial, "identity", cr.Identity, "reason", cr.Reason,
		"sessions_closed", closed, "node", node, "tasks_requeued", requeued,
		"revoked_at", cr.RevokedAt.UTC().Format(time.RFC3339Nano))
	if c.revokedSelf([]string{cr.Serial}) {
		c.log.Warn("this coordinator's own certificate was revoked on another coordinator; issuing a new one")
		if err := c.renewOwnCertificate(now); err != nil {
			c.log.Error("reissue the coordinator certificate", "err", err)
		}
	}
	return newSerial
}
