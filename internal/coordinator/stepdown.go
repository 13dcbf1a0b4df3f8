package coordinator

import (
	"context"
	"errors"
	"time"

	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/leader"
)

// A leader that lost its term while another coordinator led holds a job
// system in memory that is no longer the truth. It steps down: Serve
// returns ErrSteppedDown, having closed its listeners, sessions and store
// like any stop, and Run starts a new coordinator in the same process, on
// the same ports, which reads everything from the store and follows the
// leader (or leads, if it wins a later election). No supervisor restart
// is needed; agents reconnect as after any coordinator stop, and their
// running tasks go on meanwhile.

// ErrSteppedDown says Serve stopped because this coordinator is no longer
// the leader and its state in memory is stale: start it again (Run does)
// to rebuild it from the store as a follower.
var ErrSteppedDown = errors.New("stepped down to follower: rebuilding from the store")

// stepDownPause spaces successive step-downs, so a coordinator whose
// leadership flaps does not spin.
const stepDownPause = time.Second

// Run creates and serves a coordinator until ctx ends or it fails, and
// starts it again after each step-down. up is called with each
// coordinator once it is created (before Serve), and first tells whether
// it is the first.
func Run(ctx context.Context, cfg config.Coordinator, opts Options, up func(c *Coordinator, first bool)) error {
	for n := 0; ; n++ {
		c, err := New(cfg, opts)
		if err != nil {
			return err
		}
		if up != nil {
			up(c, n == 0)
		}
		err = c.Serve(ctx)
		if !errors.Is(err, ErrSteppedDown) || ctx.Err() != nil {
			return err
		}
		// The same ports (they were bound to port 0 perhaps): agents,
		// peers and the admin context know these.
		cfg.ClusterAddr, cfg.PublicAddr = c.cfg.ClusterAddr, c.cfg.PublicAddr
		c.log.Warn("stepped down: starting again as a follower, with the state in the store", "reason", err.Error(), "restarts", n+1)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(stepDownPause):
		}
	}
}

// watchOtherLeader reports on the returned channel the first leader other
// than this coordinator that the tracker sees, cancelling the campaign
// (cancel) then; the channel is closed without a value when ctx ends
// first or this coordinator wins.
func (c *Coordinator) watchOtherLeader(ctx context.Context, cancel context.CancelFunc) <-chan leader.Info {
	out := make(chan leader.Info, 1)
	if c.tracker == nil {
		close(out)
		return out
	}
	go func() {
		defer close(out)
		skip := ""
		for {
			in, err := c.tracker.Wait(ctx, skip)
			if err != nil {
				return
			}
			if in.ID != c.memberID() {
				out <- in
				cancel()
				return
			}
			// A term of this coordinator's: the one that just ended (the
			// tracker has not seen it end yet), or a new one it won, which
			// ends this watch through ctx.
			skip = in.Fence
		}
	}()
	return out
}
