package cli

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestReadJoinFromStdin: --join-file - takes the join string from
// standard input: the first line that is one (a person pasting it at a
// terminal is done with Enter, before any end of input), or else the last
// line (the output of `ward token create` piped in).
func TestReadJoinFromStdin(t *testing.T) {
	const js = "wardjoin://h1:7443?cluster=c&pin=sha256:ab&token=t1.secret"
	tests := []struct {
		name, in, want string
	}{
		{"pasted", js + "\n", js},
		{"pasted with blanks", "  \n" + js + "  \n", js},
		{"token create output", "Save the join string below to a file and start an agent with:\n  ward agent --data DIR --join-file FILE\n" + js + "\n", js},
		{"no newline", js, js},
		{"not a join string", "hello\nworld\n", "world"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readJoin("", "-", strings.NewReader(tt.in))
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}

	// At a terminal, input does not end after the paste.
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write([]byte(js + "\n"))
	done := make(chan string, 1)
	go func() { s, _ := readJoin("", "-", pr); done <- s }()
	select {
	case got := <-done:
		if got != js {
			t.Fatalf("got %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a pasted join string and Enter did not end the read")
	}
}
