package main

import "context"

// runRotate will rotate the cluster CA under dispatch load (runDispatchPass
// with a long job) and count tasks that failed or were lost while agents
// moved to the new trust bundle (Trust and RenewNow frames); target 0.
func runRotate(ctx context.Context, r *Result) error {
	r.param("target", "failed tasks during rotation = 0")
	return notAvailable{"needs `ward ca rotate`"}
}
