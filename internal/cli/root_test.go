package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// run executes the command tree and returns its exit code and output.
func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Execute(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// A misspelled subcommand fails at every level, with the closest names,
// instead of printing help and exiting 0.
func TestUnknownSubcommandFails(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantErr []string
	}{
		{[]string{"job", "stauts", "1"}, []string{`unknown command "stauts" for "ward job"`, "`ward job status`"}},
		{[]string{"node", "lss"}, []string{`unknown command "lss" for "ward node"`, "`ward node ls`"}},
		{[]string{"ca", "rotat"}, []string{`unknown command "rotat" for "ward ca"`, "`ward ca rotate`"}},
		{[]string{"token", "list"}, []string{`unknown command "list" for "ward token"`, "`ward token --help` lists the commands"}},
		{[]string{"nod", "ls"}, []string{`unknown command "nod" for "ward"`, "`ward node`"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := run(t, tc.args...)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if strings.Contains(out, "Usage:") {
				t.Errorf("printed help instead of failing:\n%s", out)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if !strings.Contains(errOut, "code: INVALID_ARGUMENT") {
				t.Errorf("stderr lacks the code:\n%s", errOut)
			}
		})
	}
	// A group without a subcommand still shows its help.
	if code, out, _ := run(t, "job"); code != 0 || !strings.Contains(out, "Available Commands:") {
		t.Errorf("ward job: exit %d\n%s", code, out)
	}
}

// A context file that does not exist is reported as missing, not as a
// permissions problem.
func TestMissingContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.context")
	code, _, errOut := run(t, "node", "ls", "--context", path)
	if code != 1 || !strings.Contains(errOut, "there is no CLI context at "+path) || strings.Contains(errOut, "permission") {
		t.Errorf("exit %d:\n%s", code, errOut)
	}
	if !strings.Contains(errOut, "export WARD_CONTEXT") {
		t.Errorf("no fix:\n%s", errOut)
	}
}

// With -o json, every failure is one JSON line on stderr with its code,
// including cobra's own refusals (unknown flag, wrong argument count).
func TestErrorsAsJSON(t *testing.T) {
	for _, args := range [][]string{
		{"job", "stauts", "-o", "json"},
		{"-o", "json", "node", "ls", "--bogus"},
		{"job", "status", "--output=json"},
		{"node", "ls", "--context", filepath.Join(t.TempDir(), "nope"), "-o", "json"},
	} {
		code, out, errOut := run(t, args...)
		var eb struct {
			Error *struct{ Code, Message, Fix string } `json:"error"`
		}
		if code != 1 || out != "" || json.Unmarshal([]byte(errOut), &eb) != nil || eb.Error == nil || eb.Error.Code == "" || eb.Error.Message == "" || eb.Error.Fix == "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
		if strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%v: the error is not one line: %q", args, errOut)
		}
	}
	// Without -o json the same failure is text, with its code.
	if code, _, errOut := run(t, "node", "ls", "--bogus"); code != 1 || !strings.Contains(errOut, "code: INVALID_ARGUMENT") {
		t.Errorf("text: exit %d %q", code, errOut)
	}
}
