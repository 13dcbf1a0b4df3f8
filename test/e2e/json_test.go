package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Every command's -o json is consistent: valid JSON, lists as [] never
// null, no unset times (0001-01-01), and errors as JSON on stderr with
// their code.
func TestJSONOutputIsConsistent(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	reads := [][]string{
		{"status"}, {"node", "ls"}, {"job", "ls"}, {"token", "ls"}, {"cert", "ls"}, {"ca", "status"}, {"ca", "pin"},
		{"doctor", "--horizon", "1h"}, {"audit"}, {"migrate", "status"}, {"context", "show"}, {"context", "ls"},
		{"check", "--use-context"}, {"cert", "inspect", filepath.Join(c.data, "pki", "coordinator.crt")}, {"version"},
	}
	checkAll := func(stage string) {
		for _, args := range reads {
			out, errOut, code := c.ward(append(args, "-o", "json")...)
			if code != 0 && !(args[0] == "doctor" && code == 1) {
				t.Errorf("%s: ward %s -o json: exit %d\n%s\n%s", stage, strings.Join(args, " "), code, out, errOut)
				continue
			}
			checkJSON(t, stage+": ward "+strings.Join(args, " "), out)
		}
	}
	// A fresh cluster: empty lists.
	checkAll("fresh")

	c.startAgent("n1", 1)
	id := strings.TrimSpace(c.mustWard("submit", "--count", "2", "--", "sh", "-c", "echo {index}; exit {index}"))
	c.waitJob(id, 20*time.Second)
	c.mustWard("token", "create")
	// A job still running (no end time yet) and a node that went away (no
	// last-seen time).
	running := strings.TrimSpace(c.mustWard("submit", "--", "sleep", "60"))
	waitFor(t, 20*time.Second, "the job to run", func() bool { return c.job(running).State == "running" })
	c.startAgent("gone", 1)
	c.agents["gone"].kill9()
	waitFor(t, 20*time.Second, "node gone to disconnect", func() bool { n, _ := c.node("gone"); return !n.Connected })
	reads = append(reads, []string{"job", "status", id}, []string{"job", "cancel", id}, []string{"job", "status", running})
	checkAll("busy")
	c.mustWard("job", "cancel", running)
	for _, args := range [][]string{{"logs", id}, {"run", "--count", "2", "--", "true"}} {
		out := c.mustWard(append(args, "-o", "json")...)
		for _, l := range lines(out) {
			checkJSON(t, "ward "+strings.Join(args, " "), l)
		}
	}

	// Errors: JSON on stderr, with a code, and nothing on stdout.
	for _, args := range [][]string{{"job", "status", "999"}, {"job", "stauts"}, {"node", "ls", "--bogus"}, {"job", "status"}, {"audit", "--type", "bogus"}} {
		out, errOut, code := c.ward(append(args, "-o", "json")...)
		var eb struct {
			Error *struct{ Code, Message, Fix string } `json:"error"`
		}
		if code != 1 || out != "" || json.Unmarshal([]byte(errOut), &eb) != nil || eb.Error == nil || eb.Error.Code == "" || eb.Error.Message == "" {
			t.Errorf("ward %s -o json: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
		}
	}
}

// checkJSON fails on text that is not JSON, or holds null or a zero time.
func checkJSON(t *testing.T, what, text string) {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(text), &v); err != nil {
		t.Errorf("%s: not JSON: %v\n%s", what, err, text)
		return
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case nil:
			t.Errorf("%s: %s is null (want [] or {} or no key)", what, path)
		case string:
			if strings.HasPrefix(x, "0001-01-01") {
				t.Errorf("%s: %s is an unset time %q (want the key left out)", what, path, x)
			}
		case []any:
			for i, e := range x {
				walk(fmt.Sprintf("%s[%d]", path, i), e)
			}
		case map[string]any:
			for k, e := range x {
				walk(path+"."+k, e)
			}
		}
	}
	walk("$", v)
}
