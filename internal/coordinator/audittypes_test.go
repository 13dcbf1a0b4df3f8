package coordinator

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
)

// Every audit event type the coordinator writes as a literal is listed in
// audit.Types, so `ward audit --type` accepts it.
func TestAuditTypesAreListed(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	seen := 0
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			if sel, ok := lit.Type.(*ast.SelectorExpr); !ok || sel.Sel.Name != "Event" {
				return true
			}
			for _, el := range lit.Elts {
				kv, ok := el.(*ast.KeyValueExpr)
				if !ok || kv.Key.(*ast.Ident).Name != "Type" {
					continue
				}
				bl, ok := kv.Value.(*ast.BasicLit)
				if !ok {
					continue
				}
				typ, _ := strconv.Unquote(bl.Value)
				seen++
				if !slices.Contains(audit.Types, typ) {
					t.Errorf("%s: audit type %q is not in audit.Types", fset.Position(bl.Pos()), typ)
				}
			}
			return true
		})
	}
	if seen < 10 {
		t.Fatalf("found only %d audit event literals; the scan is broken", seen)
	}
}

// The reasons the CLI completes are exactly those the coordinator takes.
func TestRevocationReasonsMatch(t *testing.T) {
	if len(api.RevocationReasons) != len(crlReasons) {
		t.Fatalf("api.RevocationReasons has %d names, the coordinator takes %d", len(api.RevocationReasons), len(crlReasons))
	}
	for _, r := range api.RevocationReasons {
		if _, ok := crlReasons[r]; !ok {
			t.Errorf("reason %q is not one the coordinator takes", r)
		}
	}
}
