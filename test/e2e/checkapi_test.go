package e2e

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/wardcluster/ward/internal/diagnose"
)

// plaintextPort listens on loopback and answers every connection with
// banner, in plaintext, until the test ends. It returns its address.
func plaintextPort(t *testing.T, banner string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Write([]byte(banner))
			conn.Close()
		}
	}()
	return ln.Addr().String()
}

// TestCoordinatorRunsCheck: POST /v1/check runs `ward check` from the
// coordinator with the fields given, and the audit log names who ran it,
// how they authenticated and from where.
func TestCoordinatorRunsCheck(t *testing.T) {
	c := newCluster(t)
	plain := plaintextPort(t, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
	ctx := readContext(t, c.ctxPath)
	hc := c.httpClient(certAndKey(t, c))
	for _, tc := range []struct {
		name, body string
		want       diagnose.Code
	}{
		{"plaintext port", `{"address":"` + plain + `"}`, diagnose.CodeNotTLS},
		{"the public port with the cluster CA", `{"address":"` + c.public + `","cluster_ca":true}`, diagnose.CodeOK},
		{"the public port with a wrong pin", `{"address":"` + c.public + `","cluster_ca":true,"pins":["sha256:` + strings.Repeat("ab", 32) + `"]}`, diagnose.CodePinMismatch},
		{"the public port with the right pin", `{"address":"` + c.public + `","cluster_ca":true,"pins":["` + ctx.Pins[0] + `"]}`, diagnose.CodeOK},
		{"a bad pin", `{"address":"` + c.public + `","pins":["sha256:zz"]}`, diagnose.CodeInvalidOptions},
		{"no port", `{"address":"127.0.0.1"}`, diagnose.CodeInvalidOptions},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := hc.Post("https://"+c.cluster+"/v1/check", "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var rep diagnose.Report
			if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("status %s: %v", resp.Status, err)
			}
			if rep.Code != tc.want {
				t.Fatalf("verdict %s (%s), want %s", rep.Code, rep.Message, tc.want)
			}
		})
	}
	found := false
	for _, e := range c.auditEvents() {
		if e.Type == "check.run" && e.Target == plain {
			found = true
			if e.Via != "cert" || !strings.HasPrefix(e.Source, "127.0.0.1:") || !strings.HasSuffix(e.Actor, "/user/admin") || e.Detail["verdict"] != "not_tls" {
				t.Errorf("check.run audit event: %+v", e)
			}
		}
	}
	if !found {
		t.Error("no check.run audit event for the plaintext port")
	}
}
