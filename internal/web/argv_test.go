package web

import (
	"reflect"
	"strings"
	"testing"
)

func TestSplitCommand(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"echo task-{index}", []string{"echo", "task-{index}"}, ""},
		{"  echo   a\tb\n c  ", []string{"echo", "a", "b", "c"}, ""},
		{`sh -c 'echo $HOME; ls | wc -l'`, []string{"sh", "-c", "echo $HOME; ls | wc -l"}, ""},
		{`echo "a \"quoted\" \$word \\ and \n"`, []string{"echo", `a "quoted" $word \ and \n`}, ""},
		{`echo a\ b c\\d`, []string{"echo", "a b", `c\d`}, ""},
		{`echo ''`, []string{"echo", ""}, ""},
		{`echo a'b'"c"d`, []string{"echo", "abcd"}, ""},
		{"echo é 日本", []string{"echo", "é", "日本"}, ""},
		{"line1 \\\nline2", []string{"line1", "line2"}, ""},
		{"", nil, ""},
		{`echo 'open`, nil, "single quote at character 6 is never closed"},
		{`echo "open`, nil, "double quote at character 6 is never closed"},
		{`echo \`, nil, "lone backslash"},
	} {
		got, err := splitCommand(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("splitCommand(%q): error %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitCommand(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// FuzzSplitCommand: any input either splits or says why not, and quoting
// each argument in single quotes and splitting again gives it back.
func FuzzSplitCommand(f *testing.F) {
	for _, s := range []string{"echo a", `sh -c 'x y'`, `"a\"b"`, `a\ b`, "", `'`, "\x00", "日本 語"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args, err := splitCommand(s)
		if err != nil {
			return
		}
		var quoted []string
		for _, a := range args {
			quoted = append(quoted, "'"+strings.ReplaceAll(a, "'", `'\''`)+"'")
		}
		again, err := splitCommand(strings.Join(quoted, " "))
		if err != nil || !reflect.DeepEqual(again, args) && !(len(again) == 0 && len(args) == 0) {
			t.Fatalf("%q split to %q; quoted back and split again: %q, %v", s, args, again, err)
		}
	})
}

func TestParsePairs(t *testing.T) {
	got, err := parsePairs("label", "rack=a, zone = b\n\nempty=", true)
	if err != nil || !reflect.DeepEqual(got, map[string]string{"rack": "a", "zone": "b", "empty": ""}) {
		t.Fatalf("got %v, %v", got, err)
	}
	got, err = parsePairs("env", "A=1,2\nB=x=y", false)
	if err != nil || !reflect.DeepEqual(got, map[string]string{"A": "1,2", "B": "x=y"}) {
		t.Fatalf("got %v, %v", got, err)
	}
	if _, err := parsePairs("label", "rack", true); err == nil || !strings.Contains(err.Error(), `label "rack" is not KEY=VALUE`) {
		t.Fatalf("missing =: %v", err)
	}
	if got, _ := parsePairs("label", " \n ", true); got != nil {
		t.Fatalf("blank input gave %v", got)
	}
}

func TestShellJoinRoundTrips(t *testing.T) {
	for _, argv := range [][]string{
		{"echo", "task-{index}"},
		{"sh", "-c", "echo a; echo b"},
		{"echo", "it's", "", "$HOME", `a"b`, "x=1,y=2"},
	} {
		got, err := splitCommand(shellJoin(argv))
		if err != nil || !reflect.DeepEqual(got, argv) {
			t.Errorf("shellJoin(%q) = %s, which splits to %q, %v", argv, shellJoin(argv), got, err)
		}
	}
	if s := shellJoin([]string{"sh", "-c", "echo hi"}); s != "sh -c 'echo hi'" {
		t.Errorf("shellJoin = %s", s)
	}
}
