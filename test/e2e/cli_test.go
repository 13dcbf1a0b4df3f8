package e2e

import (
	"strings"
	"testing"
)

// What a new user meets in the first hour, command by command.
func TestFirstHourCLI(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.startAgent("n1", 2)

	t.Run("cancel of an ended job is not an error", func(t *testing.T) {
		c.mustWard("run", "--count", "2", "--", "true")
		out, errOut, code := c.ward("job", "cancel", "1")
		if code != 0 || !strings.Contains(out, "Job 1 already ended (completed") || !strings.Contains(out, "nothing to cancel") {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		var res struct {
			State        string `json:"state"`
			AlreadyEnded bool   `json:"already_ended"`
		}
		c.wardJSON(&res, "job", "cancel", "1")
		if res.State != "completed" || !res.AlreadyEnded {
			t.Errorf("cancel -o json: %+v", res)
		}
	})
	t.Run("audit refuses an unknown type", func(t *testing.T) {
		out, errOut, code := c.ward("audit", "--type", "bogus")
		if code != 1 || out != "" || !strings.Contains(errOut, `--type "bogus" is not an audit event type`) || !strings.Contains(errOut, "session.open") || !strings.Contains(errOut, "code: INVALID_ARGUMENT") {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		for _, typ := range []string{"session", "session.open", "job.submit"} {
			out := c.mustWard("audit", "--type", typ)
			if !strings.Contains(out, "session.open") && !strings.Contains(out, "job.submit") {
				t.Errorf("audit --type %s:\n%s", typ, out)
			}
		}
	})
}
