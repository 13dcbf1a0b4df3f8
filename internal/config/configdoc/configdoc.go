// Package configdoc renders docs/config.md, the reference of every
// coordinator and agent setting, from the config structs: their keys and
// flags (struct tags), defaults (the Defaults functions) and doc comments
// (read from the package's source). A key without a doc comment is an
// error, so the reference cannot fall behind the code.
package configdoc

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"github.com/wardcluster/ward/internal/config"
)

// role is one config struct to document.
type role struct {
	typeName string // the struct in package config
	command  string
	example  string
	cfg      any // its defaults
}

func roles() []role {
	c, a := config.CoordinatorDefaults(), config.AgentDefaults()
	return []role{
		{"Coordinator", "ward coordinator", "/etc/ward/coordinator.json", &c},
		{"Agent", "ward agent", "/etc/ward/agent.json", &a},
	}
}

// Render returns the reference for the config package whose source is in
// srcDir.
func Render(srcDir string) ([]byte, error) {
	docs, err := fieldDocs(srcDir)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(header)
	var missing []string
	for _, r := range roles() {
		fmt.Fprintf(&b, "\n## `%s` (%s)\n\n", r.command, r.example)
		b.WriteString("| key | flag | type | default | what it does |\n|---|---|---|---|---|\n")
		def := reflect.ValueOf(r.cfg).Elem()
		for _, k := range config.Keys(r.cfg) {
			doc := docs[k.Owner][k.Field]
			if doc == "" {
				missing = append(missing, fmt.Sprintf("config.%s.%s (key %s)", k.Owner, k.Field, k.Name))
			}
			flag := "—"
			if k.Flag != "" {
				flag = "`--" + k.Flag + "`"
			}
			dflt := k.DocDefault
			if dflt == "" {
				dflt = "`" + config.FormatValue(def.FieldByName(k.Field).Interface()) + "`"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", k.Name, flag, typeName(k.Type), dflt, cell(k.Field, doc))
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("undocumented config keys (add a doc comment to each field): %s", strings.Join(missing, ", "))
	}
	return b.Bytes(), nil
}

const header = `# Configuration reference

<!-- Generated from internal/config by ` + "`go generate ./internal/config`" + `; do not edit. -->

The coordinator and the agent each read one JSON file, given with
` + "`--config FILE`" + `. The packages install one for each role in ` + "`/etc/ward/`" + `, and
the systemd units start each role with it. The file must say
` + "`\"version\": 1`" + `. Decoding is strict: an unknown key is an error naming the key,
the file and the line, so a typo never silently leaves a setting at its
default.

A flag given on the command line overrides the file's key, and a key the
file leaves out keeps its default. ` + "`ward coordinator --config F --print-config`" + `
(or ` + "`ward agent ...`" + `) prints every effective setting with where it came
from (default, file or flag), and ` + "`--validate`" + ` checks the settings without
starting. Durations are written as ` + "`\"30s\"`" + `, ` + "`\"10m\"`" + ` or ` + "`\"24h\"`" + `.

The files hold paths to secrets (` + "`ca_passphrase_file`" + `, ` + "`tls_password_file`" + `,
` + "`join_file`" + `), never the secrets themselves.
`

// fieldDocs reads the doc comment of every field of every struct type in
// the package at dir: type name → field name → text.
func fieldDocs(dir string) (map[string]map[string]string, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(paths) == 0 {
		return nil, fmt.Errorf("no Go source of package config in %s (%v)", dir, err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ParseComments)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", p, err)
		}
		if f.Name.Name != "config" {
			return nil, fmt.Errorf("%s is package %s, not config", p, f.Name.Name)
		}
		files = append(files, f)
	}
	out := map[string]map[string]string{}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return false
			}
			fields := map[string]string{}
			for _, fl := range st.Fields.List {
				for _, name := range fl.Names {
					fields[name.Name] = strings.TrimSpace(fl.Doc.Text())
				}
			}
			out[ts.Name.Name] = fields
			return false
		})
	}
	return out, nil
}

func typeName(t reflect.Type) string {
	switch {
	case t == reflect.TypeOf(config.Duration(0)):
		return "duration"
	case t.Kind() == reflect.Slice:
		return "list of " + t.Elem().Kind().String() + "s"
	case t.Kind() == reflect.Map:
		return "object of labels"
	case t.Kind() == reflect.Float64 || t.Kind() == reflect.Int:
		return "number"
	}
	return t.Kind().String()
}

// cell makes a field's doc comment one table cell: one line, pipes
// escaped, without the leading Go field name ("DataDir holds..." becomes
// "Holds...", "HealGrace is how long..." becomes "How long...").
func cell(field, doc string) string {
	doc = strings.Join(strings.Fields(doc), " ")
	if rest, ok := strings.CutPrefix(doc, field+" "); ok && rest != "" {
		for _, verb := range []string{"is ", "are "} {
			rest = strings.TrimPrefix(rest, verb)
		}
		doc = strings.ToUpper(rest[:1]) + rest[1:]
	}
	return strings.ReplaceAll(doc, "|", `\|`)
}
