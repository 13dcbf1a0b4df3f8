package main

import "context"

// runRevoke will measure revocation: join N agents, keep them busy, run
// `ward node revoke` on a sample and time from the revoke call until the
// coordinator has cut each revoked node's session (its reader sees Bye or
// EOF) and refuses its next handshake; the figure is the p99 (target
// <= 100 ms). The pieces it needs from the harness already exist here:
// startCoordinator, joinAgents / simulated agents, and the admin API.
func runRevoke(ctx context.Context, r *Result) error {
	r.param("target", "revoke p99 <= 100 ms")
	return notAvailable{"needs `ward node revoke`"}
}

// runRotate will rotate the cluster CA under dispatch load (runDispatchPass
// with a long job) and count tasks that failed or were lost while agents
// moved to the new trust bundle (Trust and RenewNow frames); target 0.
func runRotate(ctx context.Context, r *Result) error {
	r.param("target", "failed tasks during rotation = 0")
	return notAvailable{"needs `ward ca rotate`"}
}
