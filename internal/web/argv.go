package web

import (
	"fmt"
	"strings"
)

// splitCommand splits a command line into arguments the way a POSIX shell
// splits words, without any expansion: blanks separate arguments; '...'
// keeps everything literally; "..." keeps everything but \" \\ \$ \` and a
// backslash-newline; a backslash outside quotes keeps the next character.
// No variables, globs, pipes or redirections: the job runs the command
// directly (wrap it in sh -c '...' for those).
func splitCommand(s string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inWord := false
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch {
		case c == '\'':
			end := indexRune(rs, i+1, '\'')
			if end < 0 {
				return nil, fmt.Errorf("the single quote at character %d is never closed", i+1)
			}
			cur.WriteString(string(rs[i+1 : end]))
			i, inWord = end, true
		case c == '"':
			j := i + 1
			for ; j < len(rs) && rs[j] != '"'; j++ {
				if rs[j] == '\\' && j+1 < len(rs) {
					switch rs[j+1] {
					case '"', '\\', '$', '`':
						cur.WriteRune(rs[j+1])
						j++
						continue
					case '\n':
						j++
						continue
					}
				}
				cur.WriteRune(rs[j])
			}
			if j >= len(rs) {
				return nil, fmt.Errorf("the double quote at character %d is never closed", i+1)
			}
			i, inWord = j, true
		case c == '\\':
			if i+1 >= len(rs) {
				return nil, fmt.Errorf("the command ends with a lone backslash")
			}
			i++
			if rs[i] != '\n' {
				cur.WriteRune(rs[i])
				inWord = true
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(c)
			inWord = true
		}
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, nil
}

func indexRune(rs []rune, from int, r rune) int {
	for i := from; i < len(rs); i++ {
		if rs[i] == r {
			return i
		}
	}
	return -1
}

// parsePairs reads KEY=VALUE pairs, one per line (or also separated by
// commas), as labels and environment variables are typed into a form;
// spaces around keys and values are dropped. what names the field in
// errors.
func parsePairs(what, s string, commas bool) (map[string]string, error) {
	sep := func(r rune) bool { return r == '\n' || r == '\r' || (commas && r == ',') }
	var out map[string]string
	for _, item := range strings.FieldsFunc(s, sep) {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k, v, ok := strings.Cut(item, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("%s %q is not KEY=VALUE", what, item)
		}
		if out == nil {
			out = map[string]string{}
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, nil
}
