package config_test

import (
	"strings"
	"testing"

	"github.com/wardcluster/ward/internal/config"
)

func TestValidateStore(t *testing.T) {
	tls := func(c *config.Coordinator) {
		c.EtcdCA, c.EtcdCert, c.EtcdKey = "ca.pem", "c.pem", "c-key.pem"
		c.CAPassphraseFile = "ca.pass"
	}
	tests := []struct {
		name string
		set  func(c *config.Coordinator)
		want string // "" means valid
	}{
		{"BoltDefault", func(c *config.Coordinator) {}, ""},
		{"BoltByName", func(c *config.Coordinator) { c.Store = "bolt" }, ""},
		{"EtcdTLS", func(c *config.Coordinator) { c.Store = "etcd://h1:2379,h2:2379"; tls(c) }, ""},
		{"EtcdPlaintextOptIn", func(c *config.Coordinator) {
			c.Store = "etcd://h1:2379"
			c.InsecureEtcdPlaintext = true
			c.CAPassphraseFile = "ca.pass"
		}, ""},
		{"EtcdWithoutCAPassphrase", func(c *config.Coordinator) { c.Store = "etcd://h1:2379"; tls(c); c.CAPassphraseFile = "" },
			"ca_passphrase_file (--ca-passphrase-file): is required with an etcd store"},
		{"CoordinatorID", func(c *config.Coordinator) { c.CoordinatorID = "head-1" }, ""},
		{"BadCoordinatorID", func(c *config.Coordinator) { c.CoordinatorID = "Head 1" }, "coordinator_id (--coordinator-id)"},
		{"EtcdWithoutTLS", func(c *config.Coordinator) { c.Store = "etcd://h1:2379" }, "etcd_ca (--etcd-ca): is required"},
		{"EtcdMissingKey", func(c *config.Coordinator) { c.Store = "etcd://h1:2379"; tls(c); c.EtcdKey = "" }, "etcd_key (--etcd-key): is required"},
		{"PlaintextAndTLS", func(c *config.Coordinator) { c.Store = "etcd://h1:2379"; tls(c); c.InsecureEtcdPlaintext = true }, "choose TLS or plaintext"},
		{"EtcdFlagsOnBolt", func(c *config.Coordinator) { tls(c) }, "apply only to an etcd store"},
		{"UnknownStore", func(c *config.Coordinator) { c.Store = "postgres://x" }, "must be bolt or etcd://"},
		{"BadEndpoint", func(c *config.Coordinator) { c.Store = "etcd://h1"; tls(c) }, "must be HOST:PORT"},
		{"NoSyncOnEtcd", func(c *config.Coordinator) { c.Store = "etcd://h1:2379"; tls(c); c.StoreNoSync = true }, "bolt store only"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := config.CoordinatorDefaults()
			c.DataDir = t.TempDir()
			tc.set(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestParseEtcdStore(t *testing.T) {
	tests := []struct {
		in        string
		endpoints string
		prefix    string
		bad       bool
	}{
		{in: "etcd://h1:2379", endpoints: "h1:2379"},
		{in: "etcd://h1:2379,10.0.0.2:2379/ward/prod", endpoints: "h1:2379,10.0.0.2:2379", prefix: "/ward/prod/"},
		{in: "etcd://[::1]:2379/", endpoints: "[::1]:2379"},
		{in: "etcd://h1", bad: true},
		{in: "etcd://h1:2379,", bad: true},
		{in: "http://h1:2379", bad: true},
		{in: "etcd://h1:2379/a?b", bad: true},
		{in: "etcd://h1:2379/a//b", bad: true},
	}
	for _, tc := range tests {
		eps, prefix, err := config.ParseEtcdStore(tc.in)
		if (err != nil) != tc.bad {
			t.Errorf("ParseEtcdStore(%q) err = %v, want error %v", tc.in, err, tc.bad)
			continue
		}
		if !tc.bad && (strings.Join(eps, ",") != tc.endpoints || prefix != tc.prefix) {
			t.Errorf("ParseEtcdStore(%q) = %v %q, want %v %q", tc.in, eps, prefix, tc.endpoints, tc.prefix)
		}
	}
}
