package staging

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCleanRemote(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"data.bin", "data.bin", true},
		{"a/./b/../c.txt", "a/c.txt", true},
		{"dir/", "dir", true},
		{"", "", false},
		{".", "", false},
		{"..", "", false},
		{"../x", "", false},
		{"a/../../x", "", false},
		{"/etc/passwd", "", false},
		{`a\b`, "", false},
		{"a\x00b", "", false},
	} {
		got, err := CleanRemote(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("CleanRemote(%q) = %q, %v; want %q ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseInput(t *testing.T) {
	for _, tc := range []struct {
		arg, local, remote string
		ok                 bool
	}{
		{"/tmp/x/data.bin", "/tmp/x/data.bin", "data.bin", true},
		{"data.bin:in/d.bin", "data.bin", "in/d.bin", true},
		{"data.bin:", "data.bin", "data.bin", true},
		{":x", "", "", false},
		{"a:../b", "", "", false},
		{"a:/abs", "", "", false},
	} {
		l, r, err := ParseInput(tc.arg)
		if (err == nil) != tc.ok || l != tc.local || r != tc.remote {
			t.Errorf("ParseInput(%q) = %q, %q, %v; want %q, %q ok=%v", tc.arg, l, r, err, tc.local, tc.remote, tc.ok)
		}
	}
}

func TestParseSum(t *testing.T) {
	s := Sum(sha256.Sum256([]byte("x")))
	for _, in := range []string{s.String(), s.Hex(), strings.ToUpper(s.Hex()), " " + s.String() + " "} {
		if got, err := ParseSum(in); err != nil || got != s {
			t.Errorf("ParseSum(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "sha256:", "sha256:zz" + s.Hex()[2:], s.Hex()[1:], "md5:" + s.Hex()} {
		if _, err := ParseSum(in); err == nil {
			t.Errorf("ParseSum(%q) accepted", in)
		}
	}
}

func TestCopyLimit(t *testing.T) {
	data := bytes.Repeat([]byte("ab"), 1000)
	for _, tc := range []struct {
		name  string
		limit int64
		err   bool
	}{
		{"no limit", -1, false},
		{"exactly at it", 2000, false},
		{"one over", 1999, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dst bytes.Buffer
			n, sum, err := Copy(&dst, bytes.NewReader(data), tc.limit, &TooLargeError{What: "f", Limit: tc.limit, Setting: "s"})
			var tl *TooLargeError
			if tc.err != errors.As(err, &tl) {
				t.Fatalf("err %v, want too large: %v", err, tc.err)
			}
			if !tc.err && (n != 2000 || sum != Sum(sha256.Sum256(data)) || !bytes.Equal(dst.Bytes(), data)) {
				t.Fatalf("copied %d bytes, sum %s", n, sum)
			}
		})
	}
}

func TestBlobsPut(t *testing.T) {
	b, err := OpenBlobs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("the file's bytes")
	good := Sum(sha256.Sum256(data))
	if _, err := b.Put(bytes.NewReader(data), Sum(sha256.Sum256([]byte("other"))), "input x", -1, nil); !isMismatch(err) {
		t.Fatalf("wrong checksum: %v, want a mismatch", err)
	}
	if _, ok := b.Stat(Sum(sha256.Sum256([]byte("other")))); ok {
		t.Fatal("a mismatched upload was kept")
	}
	if _, err := b.Put(bytes.NewReader(data), good, "input x", 4, nil); err == nil {
		t.Fatal("over the limit: accepted")
	}
	if n, err := b.Put(bytes.NewReader(data), good, "input x", int64(len(data)), nil); err != nil || n != int64(len(data)) {
		t.Fatalf("Put: %d, %v", n, err)
	}
	f, size, err := b.Open(good)
	if err != nil || size != int64(len(data)) {
		t.Fatalf("Open: %d, %v", size, err)
	}
	f.Close()
	left, _ := os.ReadDir(filepath.Join(b.dir, "tmp"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func isMismatch(err error) bool {
	var m *MismatchError
	return errors.As(err, &m) && APIError(err).Code == "CHECKSUM_MISMATCH"
}

func TestMatchOutputs(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600)
	os.MkdirAll(filepath.Join(dir, "out", "sub"), 0o755)
	for _, f := range []string{"a.csv", "b.csv", "out/1.txt", "out/sub/2.txt"} {
		os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644)
	}
	os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "link.csv"))
	os.Symlink(outside, filepath.Join(dir, "escape"))
	for _, tc := range []struct {
		globs []string
		want  []string
	}{
		{[]string{"*.csv"}, []string{"a.csv", "b.csv"}},
		{[]string{"out/*"}, []string{"out/1.txt"}},
		{[]string{"out/*/*", "a.csv", "*.csv"}, []string{"a.csv", "b.csv", "out/sub/2.txt"}},
		{[]string{"escape/*"}, nil},
		{[]string{"nothing*"}, nil},
	} {
		got, err := MatchOutputs(dir, tc.globs)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("MatchOutputs(%v): %s", tc.globs, diff)
		}
	}
	if _, err := MatchOutputs(dir, []string{"../*"}); err == nil {
		t.Error("a pattern out of the directory was accepted")
	}
}
